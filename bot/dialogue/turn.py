"""One customer message while the engine answers it: what the bot made of it, and what it says and does."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.dialogue.entities import Entity
from bot.dialogue.nlu import IntentPrediction
from bot.dialogue.responses import ResponseTemplates
from bot.dialogue.rules import Happened
from bot.messages import Author, Conversation, DialogueState, EventKind, Reply
from bot.outcome import Outcome, ReferenceNotice

HISTORY_STEPS = 60  # steps of a conversation's history kept for rules and stories
LANGUAGE_SLOT = "language"  # set each turn when the domain declares it


@dataclass
class Turn:
    """The working state of one customer message while the engine answers it."""

    conversation: Conversation
    text: str
    channel: str | None
    seq: int | None            # the message's place in the transcript; None for previews
    slots: dict[str, Any]
    active_loop: str | None
    negative_streak: int
    values: dict[str, str]     # placeholder values every response may use (the customer's name)
    notes: dict[str, Any]      # what the bot made of the message, kept on its transcript event
    language: str | None = None  # the message's, else the customer's profile's
    prediction: IntentPrediction | None = None
    entities: list[Entity] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    events: list[tuple[EventKind, dict[str, Any]]] = field(default_factory=list)
    fallback_streak: int | None = None  # None: the bot did not take this turn
    handoff: tuple[str, dict[str, Any]] | None = None
    opted_out: bool | None = None
    link_code: str | None = None
    reference_notice: ReferenceNotice | None = None
    attributes: dict[str, Any] = field(default_factory=dict)  # set by actions on the customer's profile
    previous_action: str | None = None  # the custom action that answered the previous message
    customer_name: str | None = None    # a name the customer gave, set by an action
    acted: str | None = None            # the custom action that answered this one
    history: list[Happened] = field(default_factory=list)  # what was said and done, for rules and stories
    extracted: dict[str, Any] = field(default_factory=dict)  # slots this message filled
    interrupted: bool = False  # the active form declined this message: when it runs again, it only asks

    def happened(self, kind: str, name: str | None) -> None:
        self.history.append(Happened(kind, name, self.active_loop))

    def kept_history(self) -> tuple[list[str | None], ...]:
        if len(self.history) <= HISTORY_STEPS:
            return tuple(step.as_json() for step in self.history)
        # A cut history no longer holds the conversation's start: `conversation_start` rules cannot match it.
        return (Happened("cut", None).as_json(), *(step.as_json() for step in self.history[-HISTORY_STEPS + 1:]))

    def outcome(self) -> Outcome:
        return Outcome(
            replies=tuple(self.replies), events=tuple(self.events), fallback_streak=self.fallback_streak,
            handoff_reason=self.handoff[0] if self.handoff else None,
            handoff_detail=self.handoff[1] if self.handoff else {},
            dialogue=DialogueState(self.slots, self.active_loop, self.negative_streak, self.acted,
                                   self.kept_history()),
            message_data=self.notes, opted_out=self.opted_out, link_code=self.link_code,
            reference_notice=self.reference_notice, customer_attributes=self.attributes,
            customer_name=self.customer_name,
        )

    def written_in(self, responses: ResponseTemplates, response: str) -> str | None:
        """The language `response` is written in for this customer: theirs where the domain has a variation for it
        (a `condition` on the language slot), else None, the default's (English in the sample domain). Dates and
        language names within it are written in the same."""
        return self.language if responses.varies_on(response, LANGUAGE_SLOT, self.language) else None

    def say(self, responses: ResponseTemplates, response: str, **values: Any) -> None:
        """Say a domain response: a reply, and a step of the conversation's history."""
        self.reply(responses, response, values)
        self.happened("action", response)

    def reply(self, responses: ResponseTemplates, response: str, values: Mapping[str, Any] | None = None) -> None:
        """Add a domain response to the replies, rendered for this turn (its slots, channel and values)."""
        text, buttons = responses.render(response, {**self.values, **(values or {})}, self.slots, self.channel)
        self.replies.append(Reply(self.conversation.conversation_id, text, Author.BOT, buttons))
