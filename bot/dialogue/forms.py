"""Rasa 3 forms and slot mappings: which slots a customer's message fills, and what a form asks next.

Slot mappings apply to every message, as Rasa's `action_extract_slots` does: a mapping with `conditions`
only while one of them holds (this form active, and this slot requested where one is named), with
`intent` / `not_intent` filters, and never for an intent the active form ignores. `from_trigger_intent`
applies to the message that activates its form. The engine runs the form itself (`bot/dialogue/engine.py`):
it validates what was extracted (through `validate_<form>` where the domain lists one), asks for the
first required slot still empty, and deactivates once none is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

REQUESTED_SLOT = "requested_slot"  # Rasa's slot naming the slot a form asked for
DEACTIVATE_LOOP = "action_deactivate_loop"
LISTEN = "action_listen"
RESTART = "action_restart"
DEFAULT_ACTIONS = (DEACTIVATE_LOOP, LISTEN, RESTART)  # Rasa's default actions a rule or story may name


@dataclass(frozen=True)
class Form:
    name: str
    required_slots: tuple[str, ...]
    ignored_intents: tuple[str, ...] = ()

    @property
    def validation_action(self) -> str:
        return f"validate_{self.name}"

    def next_slot(self, slots: Mapping[str, Any]) -> str | None:
        """The first required slot still empty; None when the form is complete."""
        return next((name for name in self.required_slots if slots.get(name) is None), None)

    def ask(self, slot: str, responses: Sequence[str], actions: Sequence[str]) -> tuple[str, str] | None:
        """How the form asks for `slot`: ("response" | "action", name), Rasa's order of preference."""
        for kind, name in (("response", f"utter_ask_{self.name}_{slot}"), ("response", f"utter_ask_{slot}"),
                           ("action", f"action_ask_{self.name}_{slot}"), ("action", f"action_ask_{slot}")):
            if name in (responses if kind == "response" else actions):
                return kind, name
        return None


@dataclass(frozen=True)
class SlotMapping:
    """Where a slot's value comes from: an entity, the message text, its intent, the intent that activated a
    form, or an action (`custom`)."""

    type: str
    entity: str | None = None
    role: str | None = None
    group: str | None = None
    value: Any = None                  # from_intent, from_trigger_intent: the value the slot takes
    intents: tuple[str, ...] = ()      # only when the message has one of these intents
    not_intents: tuple[str, ...] = ()
    # Only while one of these holds: (the active loop, the requested slot or None for any).
    conditions: tuple[tuple[str, str | None], ...] = ()
    action: str | None = None          # custom: the action that sets it

    def holds(self, active_loop: str | None, requested_slot: str | None) -> bool:
        return not self.conditions or any(loop == active_loop and requested in (None, requested_slot)
                                          for loop, requested in self.conditions)

    def as_rasa(self) -> dict[str, Any]:
        """The mapping as an action server sees it in the domain (rasa-sdk's form validation reads it)."""
        fields = {"type": self.type, "entity": self.entity, "role": self.role, "group": self.group,
                  "value": self.value, "action": self.action,
                  "intent": list(self.intents) or None, "not_intent": list(self.not_intents) or None,
                  "conditions": [{"active_loop": loop, "requested_slot": requested}
                                 for loop, requested in self.conditions] or None}
        return {key: value for key, value in fields.items() if value is not None}


class Found(Protocol):
    """An entity as slot mappings see it (bot.dialogue.entities.Entity is one)."""

    @property
    def entity(self) -> str: ...
    @property
    def value(self) -> Any: ...
    @property
    def role(self) -> str | None: ...
    @property
    def group(self) -> str | None: ...


def extract_slots(slots: Mapping[str, Sequence[SlotMapping]], intent: str | None, entities: Sequence[Found],
                  text: str, active_loop: str | None, requested_slot: str | None,
                  ignored_by_form: Mapping[str, tuple[str, ...]], activating: str | None = None) -> dict[str, Any]:
    """The slots this message fills, by each slot's first mapping that gives a value (an entity's first value in
    the message). `slots` maps each slot
    to its mappings; `ignored_by_form` each form's ignored intents; `activating` names the form this message
    activates (its `from_trigger_intent` mappings apply, and mappings conditioned on it)."""
    loop = activating or active_loop
    filled: dict[str, Any] = {}
    for name, mappings in slots.items():
        for mapping in mappings:
            if (mapping.intents and intent not in mapping.intents) or intent in mapping.not_intents:
                continue
            if loop is not None and intent in ignored_by_form.get(loop, ()) \
                    and any(c[0] == loop for c in mapping.conditions):
                continue
            if not mapping.holds(loop, None if activating else requested_slot):
                continue
            value = _value(mapping, entities, text, activating)
            if value is not None:
                filled[name] = value
                break
    return filled


def _value(mapping: SlotMapping, entities: Sequence[Found], text: str,
           activating: str | None) -> Any:
    if mapping.type == "from_entity":
        return next((e.value for e in entities if e.entity == mapping.entity
                     and mapping.role in (None, e.role) and mapping.group in (None, e.group)), None)
    if mapping.type == "from_text":
        return text or None
    if mapping.type == "from_intent":
        return mapping.value
    if mapping.type == "from_trigger_intent":
        return mapping.value if activating is not None else None
    return None
