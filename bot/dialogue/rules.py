"""Rasa 3 rules and stories: what the bot does next, from what the conversation has said and done.

A conversation's history is a list of steps: the customer's intents, the actions the bot ran (responses
included), and forms activated or deactivated, each with the form that was active when it happened.
A rule applies where its steps so far are the end of that history (its whole history, for
`conversation_start`), its `condition`s hold (the form one as it stood at the rule's first step), and
its `slot_was_set` steps hold; the step after is what the bot does. A rule's last action is followed by
listening, unless it says `wait_for_user_input: false`. Stories are matched the way Rasa's memoization
policy matches them: the longest stretch of any story (checkpoints joined, `or` steps as alternatives)
that ends the history and holds the latest intent names the next action, wherever in the story it lies.
Rules come before stories, as in Rasa's policy priorities; of several, the longest match wins, then the
rule with more conditions, then the one written first.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.dialogue.domain import DATA_KEYS, Warn, load_yaml_files
from bot.dialogue.forms import LISTEN
from bot.errors import SwitchboardError

log = logging.getLogger(__name__)

_ANY_VALUE = "\x00set"  # `slot_was_set: [name]`: set, to anything
MAX_STORY_PATHS = 2000  # stories joined at checkpoints, at most; more is reported and cut


@dataclass(frozen=True)
class Happened:
    """One step of a conversation's history: an intent, an action, or a form (de)activated (`loop`)."""

    kind: str                 # "intent", "action" or "loop"
    name: str | None          # the intent, the action, the form activated (None: deactivated)
    loop: str | None = None   # the form active when it happened

    def as_json(self) -> list[str | None]:
        return [self.kind, self.name, self.loop]

    @classmethod
    def from_json(cls, raw: Sequence[str | None]) -> Happened:
        return cls(str(raw[0]), raw[1], raw[2] if len(raw) > 2 else None)


@dataclass(frozen=True)
class Step:
    """A step of a rule or story: an intent (any of `names`), an action, a form (de)activated, or slots
    that hold (any of `slots`' alternatives, each a list of slot and value)."""

    kind: str
    names: tuple[str | None, ...] = ()
    slots: tuple[tuple[tuple[str, Any], ...], ...] = ()

    def matches(self, happened: Happened) -> bool:
        if self.kind != happened.kind:
            return False
        # A retrieval intent's steps name its base: `faq` is the intent `faq/opening_hours` too, and
        # `utter_faq` the response `utter_faq/opening_hours`.
        return happened.name in self.names or (happened.name is not None
                                               and happened.name.split("/", 1)[0] in self.names)

    def holds(self, slots: Mapping[str, Any]) -> bool:
        return any(all(_holds(slots, name, value) for name, value in alternative) for alternative in self.slots)


def _holds(slots: Mapping[str, Any], name: str, value: Any) -> bool:
    return slots.get(name) is not None if value == _ANY_VALUE else _same(slots.get(name), value)


def _same(actual: Any, expected: Any) -> bool:
    """A slot's value against a condition's: YAML's true and "true" alike, numbers by value."""
    if expected is None or actual is None:
        return actual is expected
    if isinstance(expected, bool) or isinstance(actual, bool):
        return str(actual).lower() == str(expected).lower()
    return bool(actual == expected or str(actual) == str(expected))


@dataclass(frozen=True)
class Pattern:
    """A rule or a story: its steps and, for a rule, its conditions."""

    name: str
    steps: tuple[Step, ...]
    rule: bool = True
    slots: tuple[tuple[str, Any], ...] = ()   # condition: these slots have these values (_ANY_VALUE: are set)
    loop: tuple[str | None, ...] = ()         # condition: this form is active (None: none is); empty: either
    conversation_start: bool = False
    wait_for_user_input: bool = True

    @property
    def conditions(self) -> int:
        return len(self.slots) + len(self.loop) + self.conversation_start

    @property
    def actions(self) -> list[str]:
        return [str(step.names[0]) for step in self.steps if step.kind == "action"]

    @functools.cached_property
    def _moves(self) -> list[int]:
        """The positions of the steps that are not slots."""
        return [i for i, step in enumerate(self.steps) if step.kind != "slots"]

    @functools.cached_property
    def ends(self) -> dict[tuple[str, str | None], list[int]]:
        """For each step (kind, name): how many moves a match that ends with it covers."""
        ends: dict[tuple[str, str | None], list[int]] = {}
        for end, i in enumerate(self._moves, start=1):
            for name in self.steps[i].names:
                ends.setdefault((self.steps[i].kind, name), []).append(end)
        return ends

    def predict(self, history: Sequence[Happened], slots: Mapping[str, Any]) -> tuple[int, str] | None:
        """(how many steps of history it matched, the next action or LISTEN) where this path applies."""
        if not history:
            return None
        moves = self._moves
        best: tuple[int, str] | None = None
        for end in _keys_of(history[-1], self.ends):
            following = self._following(moves, end)
            if following is None:
                continue
            # The longest stretch of moves ending here that is the end of the history: a rule's from its start.
            length = 0
            while length < min(end, len(history)) and self.steps[moves[end - 1 - length]].matches(history[-1 - length]):
                length += 1
            if self.rule and length < end:
                continue
            window = moves[end - length:end]
            if not length or (best is not None and length <= best[0]) or not self._holds(window, slots):
                continue
            if self.rule and not self._condition(history, length, slots):
                continue
            best = (length, following)
        return best

    def _following(self, moves: list[int], end: int) -> str | None:
        """What the bot does after the path's first `end` moves: an action, LISTEN, or None (the path says
        nothing here: it ends on the customer's words, or a rule goes on without waiting)."""
        last = self.steps[moves[end - 1]]
        rest = [self.steps[i] for i in moves[end:]]
        if all(step.kind == "loop" for step in rest):
            rest = []  # trailing `active_loop` steps say what the last action did
        if rest:
            if rest[0].kind == "action":
                return str(rest[0].names[0])
            if rest[0].kind == "loop":
                return None  # a form is (de)activated first
            return None if last.kind == "intent" else LISTEN
        if last.kind == "intent":
            return None
        return LISTEN if self.wait_for_user_input or not self.rule else None

    def _holds(self, window: Sequence[int], slots: Mapping[str, Any]) -> bool:
        """A story's stretch holds the customer's latest words; the slots steps in it, and the one right after
        it (what its last action set), hold now."""
        if not self.rule and not any(self.steps[i].kind == "intent" for i in window):
            return False
        return all(self.steps[i].holds(slots) for i in range(window[0], min(window[-1] + 2, len(self.steps)))
                   if self.steps[i].kind == "slots")

    def _condition(self, history: Sequence[Happened], length: int, slots: Mapping[str, Any]) -> bool:
        if self.conversation_start and length != len(history):
            return False
        if self.loop and history[-length].loop not in self.loop:
            return False
        return all(_holds(slots, name, value) for name, value in self.slots)


@dataclass(frozen=True)
class Rulebook:
    """A project's rules and stories."""

    rules: tuple[Pattern, ...] = ()
    stories: tuple[Pattern, ...] = ()

    @functools.cached_property
    def _by_step(self) -> tuple[dict[tuple[str, str | None], list[int]], ...]:
        """For rules and for stories: each step (kind, name) -> the paths holding it, by their order."""
        indexes: list[dict[tuple[str, str | None], list[int]]] = []
        for paths in (self.rules, self.stories):
            index: dict[tuple[str, str | None], list[int]] = {}
            for order, path in enumerate(paths):
                for key in path.ends:
                    index.setdefault(key, []).append(order)
            indexes.append(index)
        return tuple(indexes)

    def next_action(self, history: Sequence[Happened], slots: Mapping[str, Any]) -> tuple[str, str] | None:
        """(the next action or LISTEN, the rule or story that says so), or None if none applies."""
        if not history:
            return None
        for paths, index in zip((self.rules, self.stories), self._by_step, strict=True):
            best: tuple[tuple[int, int, int], str, str] | None = None
            # Only the paths with a step like the latest one can match the history's end.
            for order in sorted(set(_keys_of(history[-1], index))):
                path = paths[order]
                found = path.predict(history, slots)
                if found is not None:
                    rank = (found[0], path.conditions, -order)
                    if best is None or rank > best[0]:
                        best = (rank, found[1], path.name)
            if best is not None:
                return best[1], best[2]
        return None

    def actions(self) -> set[str]:
        """Every action a rule or story runs."""
        return {action for path in (*self.rules, *self.stories) for action in path.actions}


def _keys_of(happened: Happened, index: Mapping[tuple[str, str | None], list[int]]) -> list[int]:
    """What `index` holds for a step like `happened`; a retrieval intent's or response's base too (`faq` for
    `faq/location`)."""
    found = list(index.get((happened.kind, happened.name), ()))
    if happened.name and "/" in happened.name:
        found += index.get((happened.kind, happened.name.split("/", 1)[0]), ())
    return found


def load_rules(path: Path, warn: Warn = log.warning) -> Rulebook:
    """The rules and stories of a file, or of every file under a directory (Rasa's `data/`)."""
    rules: list[Pattern] = []
    segments: list[tuple[tuple[str, ...], Pattern, tuple[str, ...]]] = []
    tree = path.is_dir()
    for file, document in load_yaml_files(path, "rules"):
        for key in document:
            if key not in (DATA_KEYS if tree else ("version", "rules", "stories")):
                warn(f"{file}: key '{key}' is ignored")
        for item in document.get("rules") or ():
            rule = _read(file, item, "rule", warn)
            if rule is not None and not _repeats(rule, rules, file, warn):
                rules.append(rule[1])
        for item in document.get("stories") or ():
            story = _read(file, item, "story", warn)
            if story is not None:
                segments.append(story)
    return Rulebook(tuple(rules), tuple(_join(segments, warn)))


def _read(file: Path, item: Any, kind: str, warn: Warn) -> tuple[tuple[str, ...], Pattern, tuple[str, ...]] | None:
    """A rule or story: (the checkpoints it starts from, its path, the checkpoints it ends on)."""
    name = str(item.get(kind, f"unnamed {kind}")) if isinstance(item, dict) else f"unnamed {kind}"
    if not isinstance(item, dict) or not isinstance(item.get("steps"), list):
        raise SwitchboardError(f"{file}: {kind} '{name}' needs a list of 'steps'")
    starts: list[str] = []
    ends: list[str] = []
    steps: list[Step] = []
    for raw in item["steps"]:
        try:
            step = _step(raw)
        except ValueError as exc:
            warn(f"{file}: {kind} '{name}' is skipped: {exc}")
            return None
        if isinstance(step, str):
            (ends if steps else starts).append(step)
        elif step is not None:
            if ends:
                warn(f"{file}: {kind} '{name}' is skipped: a checkpoint may only begin or end it")
                return None
            steps.append(step)
    if not any(step.kind in ("action", "loop") for step in steps):
        warn(f"{file}: {kind} '{name}' is skipped: it has no action step")
        return None
    if kind == "story":
        return tuple(starts), Pattern(name, tuple(steps), rule=False), tuple(ends)
    if starts or ends:
        warn(f"{file}: rule '{name}' is skipped: rules have no checkpoints")
        return None
    try:
        slots, loop = _conditions(item.get("condition") or ())
    except ValueError as exc:
        warn(f"{file}: rule '{name}' is skipped: {exc}")
        return None
    return (), Pattern(name, tuple(steps), True, slots, loop, bool(item.get("conversation_start")),
                    item.get("wait_for_user_input") is not False), ()


def _step(raw: Any) -> Step | str | None:
    """A step; a checkpoint's name; None for what carries nothing to match (`action_listen`, entities)."""
    if not isinstance(raw, dict):
        raise ValueError(f"step {raw!r} is not a mapping")
    if "intent" in raw:
        return Step("intent", (str(raw["intent"]),))
    if "action" in raw:
        return None if raw["action"] == LISTEN else Step("action", (str(raw["action"]),))
    if "active_loop" in raw:
        return Step("loop", (None if raw["active_loop"] is None else str(raw["active_loop"]),))
    if "slot_was_set" in raw:
        return Step("slots", slots=(_slot_values(raw["slot_was_set"]),))
    if "checkpoint" in raw:
        return str(raw["checkpoint"])
    if "or" in raw and isinstance(raw["or"], list) and raw["or"]:
        alternatives = [_step(a) for a in raw["or"]]
        if all(isinstance(a, Step) and a.kind == "intent" for a in alternatives):
            return Step("intent", tuple(n for a in alternatives if isinstance(a, Step) for n in a.names))
        if all(isinstance(a, Step) and a.kind == "slots" for a in alternatives):
            return Step("slots", slots=tuple(s for a in alternatives if isinstance(a, Step) for s in a.slots))
        raise ValueError("an `or` must list intents or slot_was_set steps")
    if "user" in raw or "bot" in raw:
        raise ValueError("end-to-end `user` and `bot` steps are not supported")
    raise ValueError(f"step {raw!r} is not intent, action, active_loop, slot_was_set, checkpoint or or")


def _slot_values(raw: Iterable[Any] | None) -> tuple[tuple[str, Any], ...]:
    values: list[tuple[str, Any]] = []
    for entry in raw or ():
        if isinstance(entry, dict):
            values.extend((str(slot), value) for slot, value in entry.items())
        else:
            values.append((str(entry), _ANY_VALUE))
    return tuple(values)


def _conditions(raw: Iterable[Any]) -> tuple[tuple[tuple[str, Any], ...], tuple[str | None, ...]]:
    slots: list[tuple[str, Any]] = []
    loop: list[str | None] = []
    for condition in raw:
        if isinstance(condition, dict) and "slot_was_set" in condition:
            slots.extend(_slot_values(condition["slot_was_set"]))
        elif isinstance(condition, dict) and "active_loop" in condition:
            value = condition["active_loop"]
            loop.append(None if value is None else str(value))
        else:
            raise ValueError(f"condition {condition!r} is not slot_was_set or active_loop")
    return tuple(slots), tuple(loop)


def _repeats(rule: tuple[Any, Pattern, Any], rules: list[Pattern], file: Path, warn: Warn) -> bool:
    """Whether an earlier rule does something else at the same point under the same conditions (Rasa refuses
    such contradicting rules; the first is kept)."""
    new = rule[1]
    for old in rules:
        if (old.slots, old.loop, old.conversation_start) != (new.slots, new.loop, new.conversation_start):
            continue
        before, action = _first_action(old.steps)
        if before and before == _first_action(new.steps)[0] and action != _first_action(new.steps)[1]:
            warn(f"{file}: rule '{new.name}' is skipped: rule '{old.name}' already answers "
                 f"'{'/'.join(str(n) for n in before[-1].names)}' under the same conditions")
            return True
    return False


def _first_action(steps: tuple[Step, ...]) -> tuple[tuple[Step, ...], Step | None]:
    """The steps before a rule's first action, and that action."""
    moves = [step for step in steps if step.kind != "slots"]
    index = next((i for i, step in enumerate(moves) if step.kind == "action"), len(moves))
    return tuple(moves[:index]), moves[index] if index < len(moves) else None


def _join(segments: list[tuple[tuple[str, ...], Pattern, tuple[str, ...]]], warn: Warn) -> list[Pattern]:
    """Stories as whole paths: one that ends on a checkpoint goes on with each story that begins there."""
    by_checkpoint: dict[str, list[Pattern]] = {}
    for starts, story, _ in segments:
        for checkpoint in starts:
            by_checkpoint.setdefault(checkpoint, []).append(story)
    ends_of = {id(story): ends for _, story, ends in segments}
    paths: list[Pattern] = []

    def extend(steps: tuple[Step, ...], name: str, ends: tuple[str, ...], depth: int) -> None:
        following = [story for checkpoint in ends for story in by_checkpoint.get(checkpoint, ())]
        if not following or depth >= 10:
            paths.append(Pattern(name, steps, rule=False))
            return
        for story in following:
            if len(paths) >= MAX_STORY_PATHS:
                return
            extend(steps + story.steps, f"{name} > {story.name}", ends_of[id(story)], depth + 1)

    for starts, story, ends in segments:
        if not starts:
            extend(story.steps, story.name, ends, 0)
    reached = {checkpoint for _, _, ends in segments for checkpoint in ends}
    for starts, story, ends in segments:
        if starts and not set(starts) & reached:
            warn(f"story '{story.name}' begins at checkpoint(s) {', '.join(starts)}, which no story ends on")
            extend(story.steps, story.name, ends, 0)
    if len(paths) >= MAX_STORY_PATHS:
        warn(f"the stories join at their checkpoints into more than {MAX_STORY_PATHS} paths; only the first "
             f"{MAX_STORY_PATHS} are followed")
    return paths[:MAX_STORY_PATHS]
