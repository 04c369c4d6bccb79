"""Rasa 3 rules: an intent, the actions the bot runs for it, and the conditions under which it does.

A rule applies to a message of its intent when its `condition`s hold (slots set, to a value where one is
given; a form active or none) and, with `conversation_start: true`, when the message begins the
conversation. `slot_was_set` steps after the actions describe what an action sets and are not checked.
Where several rules share an intent, the one with the most conditions that hold wins, as in Rasa's
RulePolicy. A rule Switchboard cannot follow yet (forms' `active_loop` steps, `wait_for_user_input:
false`, more than one user turn, or no intent first) is skipped with a warning naming the file and the rule.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.domain import DATA_KEYS, Warn, load_yaml_files
from bot.errors import SwitchboardError

log = logging.getLogger(__name__)

_UNSUPPORTED_STEP_KEYS = ("active_loop", "checkpoint", "user", "bot")
_ANY_VALUE = object()  # `slot_was_set: [name]`: set, to anything


@dataclass(frozen=True)
class Rule:
    name: str
    actions: tuple[str, ...]                   # responses (`utter_*`) and custom actions, in order
    slots: tuple[tuple[str, Any], ...] = ()    # condition: these slots have these values (_ANY_VALUE: are set)
    loop: tuple[str | None, ...] = ()          # condition: this form is active (None: none is); empty: either
    conversation_start: bool = False           # condition: the message begins the conversation

    @property
    def conditions(self) -> int:
        return len(self.slots) + len(self.loop) + self.conversation_start

    def applies(self, slots: Mapping[str, Any], active_loop: str | None, first_message: bool) -> bool:
        """Whether the rule's conditions hold for a message in this state."""
        if self.conversation_start and not first_message:
            return False
        if self.loop and active_loop not in self.loop:
            return False
        return all(slots.get(name) is not None if value is _ANY_VALUE else _same(slots.get(name), value)
                   for name, value in self.slots)


def _same(actual: Any, expected: Any) -> bool:
    """A slot's value against a condition's: YAML's true and "true" alike, numbers by value."""
    if expected is None or actual is None:
        return actual is expected
    if isinstance(expected, bool) or isinstance(actual, bool):
        return str(actual).lower() == str(expected).lower()
    return actual == expected or str(actual) == str(expected)


Rules = Mapping[str, tuple[Rule, ...]]  # intent -> its rules, those with the most conditions first


def load_rules(path: Path, warn: Warn = log.warning) -> dict[str, tuple[Rule, ...]]:
    """The rules of a rules file, or of every file under a directory (Rasa's `data/`), by intent."""
    found: dict[str, list[Rule]] = {}
    tree = path.is_dir()
    for file, document in load_yaml_files(path, "rules"):
        for key in document:
            if key == "stories":
                warn(f"{file}: 'stories' are ignored; Switchboard follows rules only")
            elif key not in (DATA_KEYS if tree else ("version", "rules")):
                warn(f"{file}: key '{key}' is ignored")
        _read_rules(file, document.get("rules") or (), warn, found)
    return {intent: tuple(sorted(rules, key=lambda r: -r.conditions)) for intent, rules in found.items()}


def _read_rules(path: Path, items: Iterable[Any], warn: Warn, found: dict[str, list[Rule]]) -> None:
    for item in items:
        name = str(item.get("rule", "unnamed rule")) if isinstance(item, dict) else "unnamed rule"
        if not isinstance(item, dict) or not isinstance(item.get("steps"), list):
            raise SwitchboardError(f"{path}: rule '{name}' needs a list of 'steps'")
        steps = [step for step in item["steps"] if isinstance(step, dict)]
        skipped = sorted({key for step in steps for key in _UNSUPPORTED_STEP_KEYS if key in step}
                         | ({"wait_for_user_input"} if item.get("wait_for_user_input") is False else set()))
        if skipped:
            warn(f"{path}: rule '{name}' is skipped: {', '.join(skipped)} not supported yet")
            continue
        intents = _first_intents(steps)
        later = [step for step in steps[1:] if "intent" in step or "or" in step]
        actions = tuple(str(step["action"]) for step in steps if "action" in step)
        if not intents or later or not actions:
            warn(f"{path}: rule '{name}' is skipped: it must be one intent step (or an `or` of intents) followed "
                 "by action steps")
            continue
        try:
            slots, loop = _conditions(item.get("condition") or ())
        except ValueError as exc:
            warn(f"{path}: rule '{name}' is skipped: {exc}")
            continue
        rule = Rule(name, actions, slots, loop, bool(item.get("conversation_start")))
        for intent in intents:
            same = [r for r in found.get(intent, []) if (r.slots, r.loop, r.conversation_start)
                    == (rule.slots, rule.loop, rule.conversation_start)]
            if same:
                warn(f"{path}: rule '{name}' is skipped: rule '{same[0].name}' already answers '{intent}' under the "
                     "same conditions")
                continue
            found.setdefault(intent, []).append(rule)


def _first_intents(steps: list[dict[str, Any]]) -> list[str]:
    """The intent(s) of the first step: `intent: x`, or `or: [intent: x, intent: y]`."""
    if not steps:
        return []
    first = steps[0]
    if "intent" in first:
        return [str(first["intent"])]
    alternatives = first.get("or")
    if isinstance(alternatives, list) and alternatives and all(isinstance(a, dict) and set(a) == {"intent"}
                                                             for a in alternatives):
        return [str(a["intent"]) for a in alternatives]
    return []


def _conditions(raw: Iterable[Any]) -> tuple[tuple[tuple[str, Any], ...], tuple[str | None, ...]]:
    slots: list[tuple[str, Any]] = []
    loop: list[str | None] = []
    for condition in raw:
        if isinstance(condition, dict) and "slot_was_set" in condition:
            for entry in condition["slot_was_set"] or ():
                if isinstance(entry, dict):
                    slots.extend((str(slot), value) for slot, value in entry.items())
                else:
                    slots.append((str(entry), _ANY_VALUE))
        elif isinstance(condition, dict) and "active_loop" in condition:
            value = condition["active_loop"]
            loop.append(None if value is None else str(value))
        else:
            raise ValueError(f"condition {condition!r} is not slot_was_set or active_loop")
    return tuple(slots), tuple(loop)
