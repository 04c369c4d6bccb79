"""Bot responses (`utter_*`) from a Rasa `domain.yml`, with `{placeholder}` filling."""

from __future__ import annotations

import random
import string
from pathlib import Path

import yaml

from bot.errors import SwitchboardError
from bot.messages import Button

REQUIRED = ("utter_fallback", "utter_handoff", "utter_kb_answer")


class ResponseTemplates:
    """Chooses a variation of a named response and fills its placeholders."""

    def __init__(self, responses: dict[str, list[dict[str, object]]], rng: random.Random | None = None) -> None:
        missing = [name for name in REQUIRED if name not in responses]
        if missing:
            raise SwitchboardError(f"domain.yml lacks the responses {', '.join(missing)}")
        self._responses = responses
        self._rng = rng or random.Random()

    @classmethod
    def from_domain(cls, path: Path) -> ResponseTemplates:
        """Read the `responses` section of a Rasa 3 `domain.yml`."""
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SwitchboardError(f"cannot read domain {path}: {exc}") from exc
        responses = document.get("responses") or {}
        return cls({str(name): list(variations) for name, variations in responses.items()})

    def has(self, name: str) -> bool:
        """Tell whether a response of this name exists."""
        return name in self._responses

    def render(self, name: str, **values: str) -> tuple[str, tuple[Button, ...]]:
        """Return the text and buttons of one variation of a response."""
        variation = self._rng.choice(self._responses[name])
        text = string.Formatter().vformat(str(variation.get("text", "")), (), _Keep(values))
        raw_buttons = variation.get("buttons") or []
        assert isinstance(raw_buttons, list)
        buttons = tuple(Button(str(b["title"]), str(b["payload"])) for b in raw_buttons)
        return text, buttons


class _Keep(dict[str, str]):
    """Leaves unknown placeholders in place instead of failing."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
