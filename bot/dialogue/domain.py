"""A Rasa 3 `domain.yml`: intents, entities, slots with their mappings, responses, actions. Switchboard's
own responses (bot/dialogue/platform_responses.yml) fill in what the domain does not define.

Keys Switchboard does not act on are reported through `warn`, naming the file and the key,
and otherwise ignored, so a domain written for Rasa loads as far as it can.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.dialogue.forms import REQUESTED_SLOT, Form, SlotMapping
from bot.errors import SwitchboardError

log = logging.getLogger(__name__)

Warn = Callable[[str], None]

_TOP_KEYS = {"version", "intents", "entities", "slots", "responses", "actions", "forms"}
_IGNORED_TOP_KEYS = {
    "session_config": "a session is a Switchboard conversation, which an agent closes",
    "e2e_actions": "end-to-end actions are not supported",
    "config": "entities are not stored as slots without an explicit mapping",
}
_SLOT_KEYS = {"type", "initial_value", "mappings", "influence_conversation", "values", "min_value",
              "max_value"}
_MAPPING_TYPES = {"from_entity", "from_text", "from_intent", "from_trigger_intent", "custom"}


# libyaml's safe loader where PyYAML was built with it (about ten times faster on a large project's files).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: Path, what: str) -> dict[str, Any]:
    """Read a YAML mapping, or raise a SwitchboardError that names the file."""
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        raise SwitchboardError(f"cannot read {what} {path}: {exc}") from exc
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise SwitchboardError(f"{path} must hold a YAML mapping at the top level")
    return document


# What a file of a Rasa project's `data/` may hold; each reader takes its own part and leaves the rest.
DATA_KEYS = ("version", "nlu", "rules", "stories", "responses")


def load_yaml_files(path: Path, what: str) -> list[tuple[Path, dict[str, Any]]]:
    """A YAML file's mapping, or those of every .yml or .yaml file under a directory at any depth, in path
    order (Rasa's `data/` and `domain/` layouts)."""
    if not path.is_dir():
        return [(path, load_yaml(path, what))]
    files = sorted(p for p in path.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
    if not files:
        raise SwitchboardError(f"{path} holds no .yml files of {what}")
    return [(file, load_yaml(file, what)) for file in files]


@dataclass(frozen=True)
class Slot:
    name: str
    type: str
    initial_value: Any = None
    mappings: tuple[SlotMapping, ...] = ()


@dataclass(frozen=True)
class Domain:
    intents: tuple[str, ...] = ()
    entities: tuple[str, ...] = ()
    slots: Mapping[str, Slot] = field(default_factory=dict)
    responses: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)
    actions: tuple[str, ...] = ()
    forms: Mapping[str, Form] = field(default_factory=dict)

    @functools.cached_property
    def slot_mappings(self) -> dict[str, tuple[SlotMapping, ...]]:
        """Each slot that messages fill, with its mappings."""
        return {name: slot.mappings for name, slot in self.slots.items() if slot.mappings}

    @functools.cached_property
    def ignored_intents(self) -> dict[str, tuple[str, ...]]:
        """Each form's ignored intents."""
        return {name: form.ignored_intents for name, form in self.forms.items()}

    def initial_slots(self) -> dict[str, Any]:
        """Every slot with its initial value."""
        return {name: slot.initial_value for name, slot in self.slots.items()}

    def as_action_domain(self) -> dict[str, Any]:
        """The domain as an action server receives it with each call."""
        return {
            "version": "3.1",
            "intents": list(self.intents),
            "entities": list(self.entities),
            "slots": {name: {"type": slot.type, "initial_value": slot.initial_value,
                             "mappings": [m.as_rasa() for m in slot.mappings]}
                      for name, slot in self.slots.items()},
            "responses": {name: list(variations) for name, variations in self.responses.items()},
            "actions": list(self.actions),
            "forms": {name: {"required_slots": list(form.required_slots),
                             **({"ignored_intents": list(form.ignored_intents)} if form.ignored_intents else {})}
                      for name, form in self.forms.items()},
        }


def load_domain(path: Path, warn: Warn = log.warning,
                extra_responses: Mapping[str, list[dict[str, Any]]] | None = None) -> Domain:
    """Read a Rasa 3 domain: a file, or a directory of files that together make one (Rasa's `domain/`).
    Unsupported keys are reported, not fatal. `extra_responses` (those of the training data files, such as a
    retrieval intent's `utter_chitchat/ask_name`) come before the domain's own, Switchboard's after."""
    intents: list[str] = []
    entities: list[str] = []
    slots: dict[str, Slot] = {}
    own: dict[str, list[dict[str, Any]]] = {}
    actions: list[str] = []
    forms: dict[str, Form] = {}
    for file, document in load_yaml_files(path, "domain"):
        for key in document:
            if key in _IGNORED_TOP_KEYS:
                warn(f"{file}: key '{key}' is ignored ({_IGNORED_TOP_KEYS[key]})")
            elif key not in _TOP_KEYS:
                warn(f"{file}: unknown key '{key}' is ignored")
        intents += _names(document.get("intents"), file, "intents", warn)
        entities += _names(document.get("entities"), file, "entities", warn)
        slots |= {name: _slot(name, spec, file, warn) for name, spec in (document.get("slots") or {}).items()}
        own |= read_responses(document, file, warn)
        actions += [str(a) for a in document.get("actions") or ()]
        forms |= {str(name): _form(str(name), spec, file, warn) for name, spec in (document.get("forms") or {}).items()}
    if forms and REQUESTED_SLOT not in slots:
        slots[REQUESTED_SLOT] = Slot(REQUESTED_SLOT, "any")  # Rasa adds it for forms
    for form in forms.values():
        for name in form.required_slots:
            if name not in slots:
                raise SwitchboardError(f"{path}: form '{form.name}' requires slot '{name}', which is not under 'slots'")
    responses = {**platform_responses(), **(extra_responses or {}), **own}
    if "utter_fallback" not in own and "utter_default" in own:
        responses["utter_fallback"] = own["utter_default"]  # what Rasa's default fallback says
    return Domain(tuple(dict.fromkeys(intents)), tuple(dict.fromkeys(entities)), slots, responses,
                  tuple(dict.fromkeys(actions)), forms)


PLATFORM_RESPONSES = Path(__file__).with_name("platform_responses.yml")


@functools.cache
def platform_responses() -> dict[str, list[dict[str, Any]]]:
    """Switchboard's own responses (handoff notices, KB answers, ratings, ...), which a domain may redefine."""
    return read_responses(load_yaml(PLATFORM_RESPONSES, "responses"), PLATFORM_RESPONSES, log.warning)


def read_responses(document: Mapping[str, Any], path: Path, warn: Warn) -> dict[str, list[dict[str, Any]]]:
    responses: dict[str, list[dict[str, Any]]] = {}
    for name, variations in (document.get("responses") or {}).items():
        if not isinstance(variations, list) or not all(isinstance(v, dict) for v in variations):
            raise SwitchboardError(f"{path}: response '{name}' must be a list of variations with 'text'")
        for variation in variations:
            for key in variation:
                if key not in ("text", "buttons", "condition", "channel"):
                    warn(f"{path}: key '{key}' of response '{name}' is ignored")
        responses[str(name)] = variations
    return responses


def _names(items: list[Any] | None, path: Path, key: str, warn: Warn) -> list[str]:
    """Intents and entities are listed as names, or as one-key mappings carrying options."""
    names = []
    for item in items or ():
        if isinstance(item, dict):
            for name, options in item.items():
                if options:
                    warn(f"{path}: options of {key[:-1]} '{name}' ({', '.join(options)}) are ignored")
                names.append(str(name))
        else:
            names.append(str(item))
    return names


def _slot(name: str, spec: object, path: Path, warn: Warn) -> Slot:
    if not isinstance(spec, dict):
        raise SwitchboardError(f"{path}: slot '{name}' must be a mapping with at least 'type'")
    for key in spec:
        if key not in _SLOT_KEYS:
            warn(f"{path}: key '{key}' of slot '{name}' is ignored")
    mappings = []
    for raw in spec.get("mappings") or ():
        kind = str(raw.get("type", ""))
        if kind not in _MAPPING_TYPES:
            warn(f"{path}: mapping type '{kind}' of slot '{name}' is not supported; the slot is set only "
                 "by actions")
            continue
        conditions = tuple((str(c["active_loop"]), None if c.get("requested_slot") is None
                            else str(c["requested_slot"]))
                           for c in raw.get("conditions") or () if isinstance(c, dict) and c.get("active_loop"))
        mappings.append(SlotMapping(
            type=kind,
            entity=raw.get("entity"),
            role=raw.get("role"),
            group=raw.get("group"),
            value=raw.get("value"),
            intents=_as_tuple(raw.get("intent")),
            not_intents=_as_tuple(raw.get("not_intent")),
            conditions=conditions,
            action=raw.get("action"),
        ))
        if kind == "from_entity" and not raw.get("entity"):
            raise SwitchboardError(f"{path}: slot '{name}' maps from_entity without naming the entity")
        if kind in ("from_intent", "from_trigger_intent") and "value" not in raw:
            raise SwitchboardError(f"{path}: slot '{name}' maps {kind} without the 'value' it sets")
    return Slot(str(name), str(spec.get("type", "any")), spec.get("initial_value"), tuple(mappings))


def _form(name: str, spec: object, path: Path, warn: Warn) -> Form:
    spec = spec or {}
    required = spec.get("required_slots") if isinstance(spec, dict) else None
    if isinstance(required, dict):
        # Rasa 2's layout: each required slot with its mappings, which Rasa 3 keeps under `slots`.
        warn(f"{path}: form '{name}' lists its slots' mappings (Rasa 2); they are ignored: the slots' own "
             "`mappings` under 'slots' fill them")
        required = list(required)
    if not isinstance(spec, dict) or not isinstance(required or [], list):
        raise SwitchboardError(f"{path}: form '{name}' must be a mapping with a list of 'required_slots'")
    for key in spec:
        if key not in ("required_slots", "ignored_intents"):
            warn(f"{path}: key '{key}' of form '{name}' is ignored")
    return Form(name, tuple(str(s) for s in required or ()), _as_tuple(spec.get("ignored_intents")))


def _as_tuple(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return (str(value),)
