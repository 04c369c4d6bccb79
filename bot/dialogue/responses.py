"""Bot responses (`utter_*`) from a Rasa `domain.yml`: variations, conditions, `{placeholder}` filling."""

from __future__ import annotations

import random
import re
import string
from collections.abc import Mapping
from typing import Any

from bot.errors import SwitchboardError
from bot.messages import Button

REQUIRED = ("utter_fallback", "utter_handoff", "utter_kb_answer")
_FORMATTER = string.Formatter()
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ResponseTemplates:
    """Chooses a variation of a named response and fills its placeholders.

    A variation is a candidate when its `channel` (if any) is the message's channel, its
    `condition`s (slot equals value) hold, and every placeholder has a value. Among the
    candidates, the most specific win: channel-specific ones, then those that use the most
    values, so "Hi {name}!" is chosen over "Hi!" when the name is known. One of the winners
    is picked at random, as Rasa does.
    """

    def __init__(self, responses: Mapping[str, list[dict[str, Any]]], rng: random.Random | None = None) -> None:
        missing = [name for name in REQUIRED if name not in responses]
        if missing:
            raise SwitchboardError(f"the responses lack {', '.join(missing)}")
        self._responses = responses
        self._rng = rng or random.Random()

    def has(self, name: str) -> bool:
        """Tell whether a response of this name exists."""
        return name in self._responses

    def varies_on(self, name: str, slot: str, value: Any) -> bool:
        """Whether a variation of the response is for `slot` holding `value` (a `condition` on it): a response
        with variations for `language: de` is written in German for German customers, in its default for others."""
        return value is not None and any(
            isinstance(condition, dict) and condition.get("type", "slot") == "slot" and condition.get("name") == slot
            and condition.get("value") == value
            for variation in self._responses.get(name, ()) for condition in variation.get("condition") or ())

    def render(self, name: str, values: Mapping[str, Any] | None = None, slots: Mapping[str, Any] | None = None,
               channel: str | None = None) -> tuple[str, tuple[Button, ...]]:
        """Return the text and buttons of one variation of a response.

        Placeholders are filled from `values`, then from `slots`; a placeholder no candidate can
        fill is left as it is.
        """
        known = {k: v for k, v in {**(slots or {}), **(values or {})}.items() if v is not None}
        variations = [v for v in self._responses[name] if _applies(v, slots or {}, channel)] \
            or self._responses[name]
        filled = [v for v in variations if _placeholders(v) <= known.keys()] or variations
        best = max(_specificity(v) for v in filled)
        variation = self._rng.choice([v for v in filled if _specificity(v) == best])
        text = _FORMATTER.vformat(str(variation.get("text", "")), (), _Keep(known))
        # Like Rasa, button titles and payloads take placeholders too ("{order_number}").
        raw_buttons = variation.get("buttons") or []
        buttons = tuple(Button(_fill(str(b["title"]), known), _fill(str(b["payload"]), known))
                        for b in raw_buttons if isinstance(b, dict))
        return text, buttons


def _fill(template: str, known: Mapping[str, Any]) -> str:
    """`template` with its `{name}` placeholders filled; JSON in a payload (`/intent{"key": "value"}`) stays."""
    return _PLACEHOLDER.sub(lambda m: str(known[m.group(1)]) if m.group(1) in known else m.group(0), template)


def _applies(variation: Mapping[str, Any], slots: Mapping[str, Any], channel: str | None) -> bool:
    if variation.get("channel") and variation["channel"] != channel:
        return False
    for condition in variation.get("condition") or ():
        if isinstance(condition, dict) and condition.get("type", "slot") == "slot" \
                and slots.get(str(condition.get("name"))) != condition.get("value"):
            return False
    return True


def _placeholders(variation: Mapping[str, Any]) -> set[str]:
    return {field for _, field, _, _ in _FORMATTER.parse(str(variation.get("text", ""))) if field}


def _specificity(variation: Mapping[str, Any]) -> tuple[bool, int, int]:
    return (bool(variation.get("channel")), len(variation.get("condition") or ()), len(_placeholders(variation)))


class _Keep(dict[str, Any]):
    """Leaves unknown placeholders in place instead of failing."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
