"""What the engine decided for one customer message, ready to be stored in one go."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.messages import DialogueState, EventKind, Reply


@dataclass(frozen=True)
class ReferenceNotice:
    """A link code for the customer whose conversation `reference` someone quoted on another channel:
    sent to that conversation's channel, so only its owner can continue it elsewhere."""

    reference: str
    code: str
    text: str


@dataclass(frozen=True)
class Outcome:
    """Replies and transcript events of one turn, and the conversation's new state.

    The store writes all of it, and marks the message processed, in one transaction.
    """

    replies: tuple[Reply, ...] = ()
    events: tuple[tuple[EventKind, dict[str, Any]], ...] = ()
    fallback_streak: int | None = None  # None: the bot did not take this turn
    handoff_reason: str | None = None
    handoff_detail: Mapping[str, Any] = field(default_factory=dict)
    dialogue: DialogueState | None = None  # None: unchanged
    # What the bot made of the customer's message (intent, sentiment, ...), kept on its event.
    message_data: Mapping[str, Any] = field(default_factory=dict)
    opted_out: bool | None = None  # the customer sent STOP (True) or START (False) on this identity
    link_code: str | None = None   # a code given to this customer to send on another channel
    reference_notice: ReferenceNotice | None = None
    customer_attributes: Mapping[str, Any] = field(default_factory=dict)  # merged into the profile; None removes
    customer_name: str | None = None  # the name the customer gave in the chat, for their profile
