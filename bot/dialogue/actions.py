"""Custom actions over the Rasa action server protocol, whichever side of a socket they run on.

The engine builds the call (`next_action`, `tracker`, `domain`) and reads back `events`
and `responses`; an `ActionServer` carries it, in this process or over HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.errors import SwitchboardError
from bot.messages import Conversation, ConversationStatus, Event, EventKind

PROTOCOL_VERSION = "3.6.0"


class ActionFailed(SwitchboardError):
    """An action could not run: unknown, rejected, timed out, or its server failed."""

    status = 502
    code = "action_failed"


class ActionRejected(ActionFailed):
    """The action declined this message (rasa-sdk's ActionExecutionRejection); the bot answers it
    as if no action were running."""

    code = "action_rejected"


class ActionServer(Protocol):
    """Runs one action call of the Rasa action server protocol and returns its reply."""

    def run(self, call: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TurnInput:
    """What the tracker shows of the customer's latest message."""

    text: str
    intent: str | None
    confidence: float
    ranking: Sequence[tuple[str, float]]
    entities: Sequence[Mapping[str, Any]]
    channel: str | None
    customer: Mapping[str, Any] = field(default_factory=dict)  # the profile, for personal answers
    sent_at: str | None = None  # when the customer wrote (ISO 8601), for answers that depend on the date


@dataclass
class ActionResult:
    """An action's effect, read from its events and responses."""

    slots: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)  # to merge into the customer's profile
    messages: list[dict[str, Any]] = field(default_factory=list)  # text / response / buttons
    active_loop: str | None = None
    active_loop_set: bool = False
    pause: bool = False
    followup: str | None = None
    reset_slots: bool = False
    customer_name: str | None = None  # the name the customer gave, for their profile


# An action sets attributes of the customer's profile (a plan, a loyalty tier) by returning
# `{"event": "customer_attributes", "attributes": {...}}`; a None value removes one.
CUSTOMER_ATTRIBUTES_EVENT = "customer_attributes"
# And the name agents see for the customer, given in the chat ("my name is Anna Schmidt"), by returning
# `{"event": "customer_name", "name": "Anna Schmidt"}`.
CUSTOMER_NAME_EVENT = "customer_name"
MAX_NAME_LENGTH = 100


def build_call(action: str, conversation_id: str, slots: Mapping[str, Any], active_loop: str | None,
               turn: TurnInput, history: Sequence[Event], domain: Mapping[str, Any],
               candidates: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The request body of the action server protocol for one action of this turn. `candidates`: the slots a
    form's validation action is to check, as the `slot` events that end the tracker's events (rasa-sdk's
    `tracker.slots_to_validate()` reads them there)."""
    latest = {
        "text": turn.text,
        "intent": {"name": turn.intent, "confidence": turn.confidence},
        "intent_ranking": [{"name": name, "confidence": conf} for name, conf in turn.ranking],
        "entities": list(turn.entities),
        # Switchboard's own: who the customer is (`tracker.latest_message["metadata"]["customer"]`) and
        # when they wrote (`["sent_at"]`: "is my order late?" is asked of that day, not the action's clock).
        "metadata": {"customer": dict(turn.customer), "sent_at": turn.sent_at},
    }
    return {
        "next_action": action,
        "sender_id": conversation_id,
        "version": PROTOCOL_VERSION,
        "tracker": {
            "sender_id": conversation_id,
            "slots": dict(slots),
            "latest_message": latest,
            "events": [*_history_events(history), {"event": "user", "text": turn.text, "parse_data": latest,
                                                   "input_channel": turn.channel},
                       *({"event": "slot", "name": name, "value": value}
                         for name, value in (candidates or {}).items())],
            "paused": False,
            "followup_action": None,
            "active_loop": {"name": active_loop} if active_loop else {},
            "latest_action_name": "action_listen",
            "latest_input_channel": turn.channel,
        },
        "domain": dict(domain),
    }


def tracker_state(conversation: Conversation, history: Sequence[Event]) -> dict[str, Any]:
    """A conversation as Rasa's tracker (`GET /conversations/<id>/tracker`): slots, the latest message
    and what the bot understood of it, and the messages as `user` and `bot` events."""
    state = conversation.dialogue
    events = _history_events(history)
    latest_user = next((e for e in reversed(history) if e.kind == EventKind.MESSAGE_IN), None)
    latest: dict[str, Any] = {}
    if latest_user is not None:
        latest = {"text": latest_user.text,
                  "intent": {"name": latest_user.data.get("intent"),
                             "confidence": latest_user.data.get("confidence")},
                  "entities": [{"entity": name, "value": value}
                               for name, value in (latest_user.data.get("entities") or {}).items()]}
    return {
        "sender_id": conversation.last_external_id,
        "slots": dict(state.slots),
        "latest_message": latest,
        "events": events,
        "paused": conversation.status != ConversationStatus.BOT,
        "followup_action": None,
        "active_loop": {"name": state.active_loop} if state.active_loop else {},
        "latest_action_name": state.latest_action or "action_listen",
        "latest_input_channel": latest_user.channel if latest_user is not None else None,
        "latest_event_time": events[-1]["timestamp"] if events else None,
    }


def _history_events(history: Sequence[Event]) -> list[dict[str, Any]]:
    """Earlier messages of the conversation as Rasa `user` and `bot` events."""
    events: list[dict[str, Any]] = []
    for event in history:
        if event.kind == EventKind.MESSAGE_IN:
            events.append({"event": "user", "text": event.text, "timestamp": event.created_at.timestamp(),
                           "input_channel": event.channel,
                           "parse_data": {"intent": {"name": event.data.get("intent")}}})
        elif event.kind == EventKind.MESSAGE_OUT:
            events.append({"event": "bot", "text": event.text, "timestamp": event.created_at.timestamp(),
                           "metadata": {"author": event.author.value}})
    return events


def read_reply(action: str, reply: object) -> ActionResult:
    """Apply the events and responses of an action server's reply; unknown events are ignored."""
    if not isinstance(reply, dict) or not isinstance(reply.get("events", []), list) \
            or not isinstance(reply.get("responses", []), list):
        raise ActionFailed(f"action '{action}' returned a reply that is not {{events, responses}}")
    result = ActionResult()
    for event in reply.get("events") or ():
        if not isinstance(event, dict):
            continue
        kind = event.get("event")
        if kind == "slot" and isinstance(event.get("name"), str):
            result.slots[event["name"]] = event.get("value")
        elif kind in ("reset_slots", "restart"):
            result.reset_slots = True
            result.slots.clear()
        elif kind == "active_loop":
            result.active_loop = event.get("name") or None
            result.active_loop_set = True
        elif kind == "pause":
            result.pause = True
        elif kind == "followup" and isinstance(event.get("name"), str):
            result.followup = event["name"]
        elif kind == CUSTOMER_ATTRIBUTES_EVENT and isinstance(event.get("attributes"), dict):
            result.attributes.update(event["attributes"])
        elif kind == CUSTOMER_NAME_EVENT and isinstance(event.get("name"), str) and event["name"].strip():
            result.customer_name = event["name"].strip()[:MAX_NAME_LENGTH]
    for message in reply.get("responses") or ():
        if isinstance(message, dict):
            result.messages.append(message)
    return result
