"""The boundaries of the domain core, one small protocol each.

Adapters outside `bot/` implement these: the sentence-transformers encoder and the
FAISS retriever in `kb_index/`, the stores in `bot/stores/`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from bot.messages import (
    Accepted,
    Agent,
    Button,
    Conversation,
    ConversationStatus,
    Customer,
    Event,
    InboundMessage,
    OutboxEntry,
    Passage,
    PendingMessage,
    Reply,
)
from bot.outcome import Outcome


class Meter(Protocol):
    """What monitoring counts as it happens (switchboard/metrics.py); `NO_METER` counts nothing."""

    def message_received(self, channel: str) -> None: ...

    def turn_done(self, channel: str, outcome: Outcome, waited: float | None) -> None:
        """A turn stored; `waited`: seconds from the message's arrival to its replies' commit."""
        ...

    def delivery(self, channel: str, result: str) -> None:
        """A reply's send: "sent", "retry" or "failed"."""
        ...


class _NoMeter:
    def message_received(self, channel: str) -> None:
        pass

    def turn_done(self, channel: str, outcome: Outcome, waited: float | None) -> None:
        pass

    def delivery(self, channel: str, result: str) -> None:
        pass


NO_METER: Meter = _NoMeter()


class Encoder(Protocol):
    """Turns texts into unit-length float32 vectors, one row per text."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class Retriever(Protocol):
    """Finds knowledge-base passages for a question, best first."""

    def search(self, text: str, k: int, vector: np.ndarray | None = None, channel: str | None = None,
               audience: str = "customers", language: str | None = None) -> list[Passage]: ...

    def multilingual_for(self, language: str | None) -> bool:
        """Whether questions in `language` are scored by the multilingual encoder (a scale of their own)."""
        ...

    def translation(self, passage: Passage, language: str | None) -> Passage | None:
        """The passage's part of its article's translation into `language`, if there is one."""
        ...

    def unknown_names(self, text: str, language: str | None = None, people: Sequence[str] = ()) -> list[str]:
        """Names in a question (brands, services, places) that the KB never mentions; the names of `people`
        (the customer's) are no topic."""
        ...


class DialogueMemory(Protocol):
    """What the engine reads beyond the message: the customer, earlier turns, the queue."""

    def get_customer(self, customer_id: str) -> Customer: ...

    def transcript(self, conversation_id: str) -> list[Event]: ...

    def wrote_before(self, conversation_id: str, seq: int) -> bool:
        """Whether the customer wrote in the conversation before its event `seq`."""
        ...

    def previous_conversation(self, customer_id: str, before: str) -> Conversation | None: ...

    def reference_owner(self, reference: str) -> str | None: ...

    def queue_length(self) -> int: ...

    def agents_online(self, since: datetime) -> int: ...


class ConversationStore(Protocol):
    """Customers, conversations, transcripts and the outbox, changed atomically."""

    def accept(self, message: InboundMessage) -> Accepted: ...

    def conversations_with_pending(self, unleased: bool = False) -> list[str]: ...

    def next_pending(self, conversation_id: str) -> PendingMessage | None: ...

    def processed(self, inbound_id: int) -> bool: ...

    def complete_turn(self, pending: PendingMessage, outcome: Outcome, holder: str | None = None) -> bool: ...

    def lease(self, conversation_id: str, holder: str, seconds: float) -> int | None: ...

    def renew_leases(self, holder: str, seconds: float) -> int: ...

    def release(self, conversation_id: str, holder: str) -> bool: ...

    def get_conversation(self, conversation_id: str) -> Conversation: ...

    def get_customer(self, customer_id: str) -> Customer: ...

    def set_attributes(self, customer_id: str, attributes: dict[str, Any]) -> Customer: ...

    def merges_of(self, customer_id: str) -> list[dict[str, Any]]: ...

    def handle_gaps(self, question_hashes: Sequence[str], action: str, article_id: str | None,
                    agent_id: str) -> None: ...

    def handled_gaps(self) -> set[str]: ...

    def request_email_code(self, channel: str, external_id: str, email: str, client: str = "") -> str: ...

    def verify_email_code(self, channel: str, external_id: str, code: str) -> str: ...

    def list_conversations(self, statuses: Sequence[ConversationStatus]) -> list[Conversation]: ...

    def conversations_of(self, customer_id: str) -> list[Conversation]: ...

    def transcript(self, conversation_id: str) -> list[Event]: ...

    def identity_events(self, channel: str, external_id: str, after_id: int) -> list[tuple[int, Event]]: ...

    def outbox_for(self, channel: str, external_id: str, status: str) -> list[OutboxEntry]: ...

    def take_replies(self, channel: str, external_id: str,
                     answering: tuple[str, int] | None = None) -> list[OutboxEntry]: ...

    def mark_sent(self, reply_ids: Sequence[str]) -> None: ...

    def outbox_of(self, conversation_id: str) -> list[OutboxEntry]: ...

    def claim(self, conversation_id: str, agent_id: str) -> Conversation: ...

    def agent_reply(self, conversation_id: str, agent_id: str, text: str, admin: bool = False,
                    to: tuple[str, str] | None = None) -> Reply: ...

    def add_note(self, conversation_id: str, agent_id: str, text: str) -> Event: ...

    def transfer(self, conversation_id: str, agent_id: str, to_agent_id: str, admin: bool = False) -> Conversation: ...

    def return_to_bot(self, conversation_id: str, agent_id: str, admin: bool = False,
                      notice: tuple[str, tuple[Button, ...]] | None = None) -> Conversation: ...

    def reopen(self, conversation_id: str, agent_id: str) -> Conversation: ...

    def set_tags(self, conversation_id: str, tags: Sequence[str]) -> Conversation: ...

    def snooze(self, conversation_id: str, agent_id: str, until: datetime | None,
               admin: bool = False) -> Conversation: ...

    def close_conversation(self, conversation_id: str, agent_id: str, resolution: str | None = None,
                           admin: bool = False, csat_question: tuple[str, tuple[Button, ...]] | None = None,
                           ) -> Conversation: ...


class AgentStore(Protocol):
    """Agent accounts; passwords arrive and leave only as hashes."""

    def add_agent(self, email: str, name: str, role: str, password_hash: str) -> Agent: ...

    def agent_credentials(self, email: str) -> tuple[Agent, str] | None: ...

    def get_agent(self, agent_id: str) -> Agent | None: ...

    def count_agents(self) -> int: ...

    def list_agents(self) -> list[Agent]: ...

    def update_agent(self, email: str, *, active: bool | None = None, password_hash: str | None = None,
                     role: str | None = None) -> Agent: ...

    def touch_agent(self, agent_id: str, now: datetime) -> None: ...

    def set_presence(self, agent_id: str, presence: str) -> None: ...

    def add_agent_token(self, token_hash: str, agent_id: str, expires_at: datetime) -> None: ...

    def revoke_agent_token(self, token_hash: str) -> None: ...

    def agent_for_token(self, token_hash: str, now: datetime) -> Agent | None: ...


class WebSessionStore(Protocol):
    """Web chat sessions, kept by the hash of their bearer token."""

    def add_web_session(self, token_hash: str, external_id: str, expires_at: datetime) -> None: ...

    def web_session(self, token_hash: str, now: datetime) -> str | None: ...
