"""What the engine decided for one customer message, ready to be stored in one go."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.messages import EventKind, Reply


@dataclass(frozen=True)
class Outcome:
    """Replies and transcript events of one turn, and the conversation's new state.

    The store writes all of it, and marks the message processed, in one transaction.
    """

    replies: tuple[Reply, ...] = ()
    events: tuple[tuple[EventKind, dict[str, Any]], ...] = ()
    fallback_streak: int | None = None  # None: the bot did not take this turn
    handoff_reason: str | None = None
