"""Rasa 3 `rules.yml`: an intent followed by the actions the bot runs for it."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bot.domain import DATA_KEYS, Warn, load_yaml_files
from bot.errors import SwitchboardError

log = logging.getLogger(__name__)

_UNSUPPORTED_STEP_KEYS = ("slot_was_set", "active_loop", "checkpoint", "or", "user", "bot")


def load_rules(path: Path, warn: Warn = log.warning) -> dict[str, tuple[str, ...]]:
    """Return intent -> actions (responses `utter_*` or custom actions), in file order, from a rules file or
    the `rules` parts of every file under a directory (Rasa's `data/`).

    A rule Switchboard cannot follow (conditions, slot or loop steps, more than one user
    turn) is skipped with a warning that names the file and the rule.
    """
    rules: dict[str, tuple[str, ...]] = {}
    tree = path.is_dir()
    for file, document in load_yaml_files(path, "rules"):
        for key in document:
            if key == "stories":
                warn(f"{file}: 'stories' are ignored; Switchboard follows rules only")
            elif key not in (DATA_KEYS if tree else ("version", "rules")):
                warn(f"{file}: key '{key}' is ignored")
        _read_rules(file, document.get("rules") or (), warn, rules)
    return rules


def _read_rules(path: Path, items: Iterable[Any], warn: Warn, rules: dict[str, tuple[str, ...]]) -> None:
    for item in items:
        name = str(item.get("rule", "unnamed rule")) if isinstance(item, dict) else "unnamed rule"
        if not isinstance(item, dict) or not isinstance(item.get("steps"), list):
            raise SwitchboardError(f"{path}: rule '{name}' needs a list of 'steps'")
        skipped = [key for key in ("condition", "conversation_start") if item.get(key)]
        if item.get("wait_for_user_input") is False:
            skipped.append("wait_for_user_input")
        steps = item["steps"]
        for step in steps:
            skipped.extend(key for key in _UNSUPPORTED_STEP_KEYS if isinstance(step, dict) and key in step)
        intents = [step["intent"] for step in steps if isinstance(step, dict) and "intent" in step]
        actions = [str(step["action"]) for step in steps if isinstance(step, dict) and "action" in step]
        if skipped:
            warn(f"{path}: rule '{name}' is skipped: {', '.join(sorted(set(skipped)))} not supported")
            continue
        if len(intents) != 1 or not actions or "intent" not in steps[0]:
            warn(f"{path}: rule '{name}' is skipped: it must be one intent step followed by action steps")
            continue
        intent = str(intents[0])
        if intent in rules:
            warn(f"{path}: rule '{name}' is skipped: intent '{intent}' already has a rule")
            continue
        rules[intent] = tuple(actions)
