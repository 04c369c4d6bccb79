"""The one message model that crosses every boundary of Switchboard."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def new_reply_id() -> str:
    """Return a fresh, globally unique reply id (the outbox idempotency key)."""
    return uuid.uuid4().hex


class Author(StrEnum):
    CUSTOMER = "customer"
    BOT = "bot"
    AGENT = "agent"
    SYSTEM = "system"


class EventKind(StrEnum):
    MESSAGE_IN = "message_in"
    MESSAGE_OUT = "message_out"
    HANDOFF = "handoff"
    ASSIGNED = "assigned"
    RETURNED_TO_BOT = "returned_to_bot"
    CLOSED = "closed"
    KB_ANSWER = "kb_answer"
    NOTE = "note"
    CSAT = "csat"  # the customer's rating of a closed conversation
    MERGED = "merged"      # two customers became one (by an agent, a link code or a verified email)
    UNMERGED = "unmerged"  # an agent undid a merge
    REOPENED = "reopened"  # an agent took a closed conversation up again


class ConversationStatus(StrEnum):
    BOT = "bot"            # the bot answers
    QUEUED = "queued"      # handed off, waiting for an agent
    ASSIGNED = "assigned"  # an agent holds it; the bot stays silent
    CLOSED = "closed"


@dataclass(frozen=True)
class Profile:
    """What a channel knows about the person behind an identity."""

    display_name: str | None = None
    phone: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class InboundMessage:
    """A customer's message as a connector parsed it, before it is stored."""

    channel: str
    external_id: str
    provider_message_id: str
    text: str
    received_at: datetime = field(default_factory=utcnow)
    attachments: tuple[str, ...] = ()
    profile: Profile = field(default_factory=Profile)
    # What else the channel said about the message, kept on its event: e.g. `media` ("photo")
    # for a message without text, `start_payload` of a Telegram deep link.
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Button:
    title: str
    payload: str


@dataclass(frozen=True)
class Reply:
    """A message to the customer; `reply_id` makes its delivery idempotent."""

    conversation_id: str
    text: str
    author: Author
    buttons: tuple[Button, ...] = ()
    reply_id: str = field(default_factory=new_reply_id)


@dataclass(frozen=True)
class Event:
    """One row of a conversation's transcript."""

    conversation_id: str
    seq: int
    kind: EventKind
    author: Author
    channel: str | None
    external_id: str | None
    text: str | None
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class Passage:
    """A piece of a knowledge-base article found for a question."""

    article_id: str
    title: str
    url: str
    heading: str
    text: str
    score: float
    lang: str = ""            # the article's language ("" for the knowledge base's own, English)
    translation_of: str = ""  # the original this article translates
    multilingual: bool = False  # scored by the multilingual encoder, whose scores are on a scale of their own
    # The KB learnt from labelled questions: the multilingual encoder's question mapped (kb_index.query_tuning), or
    # the English side's examples holding labelled English questions (`Chunk.labelled`): a scale of its own again.
    tuned: bool = False

    @property
    def topic(self) -> str:
        """The article this passage answers as: the original, whichever translation it is in."""
        return self.translation_of or self.article_id


@dataclass(frozen=True)
class DialogueState:
    """What the bot remembers within a conversation between turns."""

    slots: dict[str, Any] = field(default_factory=dict)
    active_loop: str | None = None   # the action that asked the customer a question
    negative_streak: int = 0         # negative messages in a row
    latest_action: str | None = None  # the custom action that answered the previous message, if one did
    # What was said and done, for rules and stories: [kind, name, active loop] (bot.dialogue.rules.Happened), the latest
    # steps only.
    history: tuple[list[str | None], ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"slots": self.slots, "active_loop": self.active_loop, "negative_streak": self.negative_streak,
                "latest_action": self.latest_action, "history": list(self.history)}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> DialogueState:
        return cls(dict(raw.get("slots") or {}), raw.get("active_loop"), int(raw.get("negative_streak") or 0),
                   raw.get("latest_action"), tuple(list(step) for step in raw.get("history") or ()))


@dataclass(frozen=True)
class Conversation:
    conversation_id: str
    customer_id: str
    reference: str
    status: ConversationStatus
    assignee_id: str | None
    handoff_reason: str | None
    fallback_streak: int
    last_channel: str
    last_external_id: str
    created_at: datetime
    updated_at: datetime
    dialogue: DialogueState = field(default_factory=DialogueState)
    csat: int | None = None  # the customer's rating, 1 to 5, after it was closed
    csat_comment: str | None = None  # what they wrote with it ("4 - quick, but ...")
    closed_at: datetime | None = None  # when an agent closed it (it keeps who held it and why)
    tags: tuple[str, ...] = ()          # agents' labels
    snoozed_until: datetime | None = None  # its holder does not see it in their list until then

    def snoozed(self, now: datetime) -> bool:
        return self.snoozed_until is not None and self.snoozed_until > now


@dataclass(frozen=True)
class Customer:
    customer_id: str
    display_name: str | None
    identities: tuple[tuple[str, str], ...]  # (channel, external_id)
    attributes: dict[str, Any] = field(default_factory=dict)  # set by actions or imported: plan, city, ...
    email: str | None = None     # verified on the web chat, or imported
    phone: str | None = None     # E.164; SMS and WhatsApp from it are this customer
    language: str | None = None

    def matched_on(self, text: str) -> str:
        """Which of this customer's fields holds `text` (as a search for customers looks), else "a message"."""
        needle = text.strip().lower()
        fields = [("id", self.customer_id if self.customer_id == text.strip() else None),
                  ("name", self.display_name), ("email", self.email), ("phone", self.phone),
                  *((f"identity {channel}", external_id) for channel, external_id in self.identities)]
        return next((name for name, value in fields if value and needle in value.lower()), "a message")


@dataclass(frozen=True)
class Accepted:
    """What `Inbox.accept` stored: the message's event and whether it was new."""

    conversation_id: str
    customer_id: str
    event_seq: int
    inbound_id: int
    duplicate: bool


@dataclass(frozen=True)
class PendingMessage:
    """A stored customer message the engine has not processed yet."""

    inbound_id: int
    conversation_id: str
    event_seq: int
    channel: str
    external_id: str
    text: str
    media: str | None = None  # the kind of a message without text (photo, sticker, ...)
    link: str | None = None   # the result of a link code in the message: linked, same, wrong, expired, limited
    throttled: bool = False   # sent in a flood: answered only if it is the last message waiting
    rated: str | None = None  # a rating of a closed conversation: "first", or "repeat" for a later one
    followed: bool = False    # a later message of the conversation waits too
    language: str | None = None  # detected when it was stored (None: too short to tell)
    received_at: datetime | None = None  # when it was stored


@dataclass(frozen=True)
class OutboxEntry:
    reply_id: str
    conversation_id: str
    channel: str
    external_id: str
    text: str
    author: Author
    buttons: tuple[Button, ...]
    status: str
    in_reply_to: int | None
    event_seq: int
    created_at: datetime
    attempts: int = 0
    parts_sent: int = 0            # of a reply split for its channel, how many parts went out
    receipt: str | None = None     # the provider's latest word: queued, sent, delivered, failed, ...
    error: str | None = None


PRESENCE_MINUTES = 15  # an agent seen this recently (and not away) counts as online


@dataclass(frozen=True)
class Agent:
    agent_id: str
    email: str
    name: str
    role: str
    active: bool
    presence: str = "online"  # or "away": not counted as available for handoffs
    last_seen_at: datetime | None = None  # their latest request while signed in; None: never signed in

    def availability(self, now: datetime) -> str:
        """What colleagues see: disabled, never signed in, away, online, or offline (not seen lately)."""
        if not self.active:
            return "disabled"
        if self.last_seen_at is None:
            return "never signed in"
        if self.presence == "away":
            return "away"
        return "online" if now - self.last_seen_at <= timedelta(minutes=PRESENCE_MINUTES) else "offline"
