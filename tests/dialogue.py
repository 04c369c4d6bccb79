"""Drive conversations through the engine's public API, turn by turn, and record what the bot says."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.dialogue.engine import Engine
from bot.messages import Conversation, Event, EventKind, InboundMessage, Profile
from bot.outcome import Outcome
from bot.stores.conversations import OPEN_STATUSES, ConversationStore


@dataclass
class Clock:
    """The engine's clock, set by the test."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class RecordingChannel:
    """A channel that stores each customer message, runs the engine on it, stores the turn and
    records the replies, as the processor does, one message at a time."""

    store: ConversationStore
    engine: Engine
    clock: Clock
    channel: str = "web"
    sent: list[tuple[str, str]] = field(default_factory=list)  # (external_id, text)
    last_outcome: Outcome | None = None

    def say(self, text: str, external_id: str = "customer-1", name: str | None = None,
            data: dict[str, Any] | None = None) -> list[str]:
        """The customer writes; return the texts the bot sends back for this message."""
        accepted = self.store.accept(InboundMessage(self.channel, external_id, uuid.uuid4().hex, text,
                                                    profile=Profile(display_name=name), data=data or {}))
        pending = self.store.next_pending(accepted.conversation_id)
        assert pending is not None
        conversation = self.store.get_conversation(accepted.conversation_id)
        outcome = self.engine.respond(conversation, pending.text, pending.channel, pending.event_seq,
                                      media=pending.media, link=pending.link, rated=pending.rated,
                                      language=pending.language)
        assert self.store.complete_turn(pending, outcome)
        self.last_outcome = outcome
        replies = [reply.text for reply in outcome.replies]
        self.sent.extend((external_id, reply) for reply in replies)
        return replies

    def on(self, channel: str) -> RecordingChannel:
        """The same store and engine, reached on another channel."""
        return RecordingChannel(self.store, self.engine, self.clock, channel, self.sent)

    def conversation(self, external_id: str = "customer-1") -> Conversation:
        open_ = [c for c in self.store.list_conversations(OPEN_STATUSES) if c.last_external_id == external_id]
        assert len(open_) == 1, f"expected one open conversation for {external_id}, found {len(open_)}"
        return open_[0]

    def messages_in(self, external_id: str = "customer-1") -> list[Event]:
        """The customer's messages of the open conversation, with what the bot made of each."""
        return [e for e in self.store.transcript(self.conversation(external_id).conversation_id)
                if e.kind == EventKind.MESSAGE_IN]

    def handoff_event(self, external_id: str = "customer-1") -> Event:
        events = [e for e in self.store.transcript(self.conversation(external_id).conversation_id)
                  if e.kind == EventKind.HANDOFF]
        assert len(events) == 1
        return events[0]
