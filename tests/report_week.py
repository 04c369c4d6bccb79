"""A known week of conversations for the reports, written through the store's own API.

The week (UTC, Monday 2 to Sunday 8 November 2026; opening hours Mon-Fri 09:00-17:00 London, which
is UTC in November) is written through the store's own API with a clock the test moves:

  A  web       Mon 09:00  question, KB answer (shipping-costs) 2 s later, "did this help?": yes
  B  telegram  Mon 10:00  question, KB decline 4 s later; asks for a person (handoff 10:01:01);
                          agent X takes it 10:05, replies 10:11:01, closes 10:31:01 tagged "refund"
                          with the rating question; the customer rates it 4
  C  telegram  Thu 09:00  the same customer as B: KB choices 1 s later, picks returns-policy
  D  sms       Sat 22:00  keyword handoff with a notice 3 s later; a reply to it fails for good; agent Y takes
                          it Mon 9 Nov 08:00, replies 08:10, closes 08:20 without a rating question
  E  web       Tue 10 Nov outside the week
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from bot.analytics.reports import ReportOptions
from bot.messages import Author, EventKind, InboundMessage, Reply
from bot.outcome import Outcome
from bot.stores import agents, conversations, outbox
from bot.stores.conversations import ConversationStore

MONDAY = datetime(2026, 11, 2, tzinfo=UTC)
WEEK = ReportOptions(start=MONDAY, end=MONDAY + timedelta(days=7), now=datetime(2026, 11, 20, tzinfo=UTC))


@dataclass
class Clock:
    now: datetime

    def at(self, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
        self.now = datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)
        return self.now


def set_store_clock(patch: pytest.MonkeyPatch, clock: Clock) -> None:
    """Make every part of the store read the time from `clock`."""
    for module in (conversations, outbox, agents):
        patch.setattr(module, "utcnow", lambda: clock.now)


class Week:
    def __init__(self, store: ConversationStore, clock: Clock, first_message: int = 0) -> None:
        self.store, self.clock, self._mid = store, clock, first_message

    def agent(self, name: str) -> str:
        email = f"{name.lower()}@example.com"
        known = self.store.agent_credentials(email)
        return known[0].agent_id if known else self.store.add_agent(email, name, "agent", "-").agent_id

    def message(self, channel: str, who: str, text: str, when: datetime) -> str:
        self._mid += 1
        accepted = self.store.accept(InboundMessage(channel=channel, external_id=who, text=text,
                                                    provider_message_id=f"m{self._mid}", received_at=when))
        return accepted.conversation_id

    def turn(self, conversation_id: str, when: datetime, *events: tuple[EventKind, dict[str, object]],
             reply: str | None = "ok", handoff: str | None = None) -> Reply | None:
        pending = self.store.next_pending(conversation_id)
        assert pending is not None
        self.clock.now = when
        replies = (Reply(conversation_id, reply, Author.BOT),) if reply else ()
        self.store.complete_turn(pending, Outcome(replies=replies, events=events, fallback_streak=0,
                                                  handoff_reason=handoff))
        return replies[0] if replies else None


def kb(decision: str, article: str | None = None, **data: object) -> tuple[EventKind, dict[str, object]]:
    passages = [{"article_id": article, "score": 0.9}] if article else []
    return EventKind.KB_ANSWER, {"decision": decision, "passages": passages, **data}


def write_week(store: ConversationStore, clock: Clock) -> Week:
    week, at = Week(store, clock), clock.at
    x, y = week.agent("X"), week.agent("Y")
    a = week.message("web", "a", "how much is shipping", at(2, 9))
    week.turn(a, at(2, 9, 0, 2), kb("answer", "shipping-costs", answered=True))
    week.message("web", "a", "/kb_helpful", at(2, 9, 1))
    week.turn(a, at(2, 9, 1, 1), (EventKind.KB_ANSWER, {"decision": "feedback", "helpful": True, "answered": True}))

    b = week.message("telegram", "b", "my parcel is broken", at(2, 10))
    week.turn(b, at(2, 10, 0, 4), kb("decline", answered=False))
    week.message("telegram", "b", "a person please", at(2, 10, 1))
    week.turn(b, at(2, 10, 1, 1), handoff="customer_request")
    at(2, 10, 5)
    store.claim(b, x)
    at(2, 10, 11, 1)
    store.agent_reply(b, x, "Sorry about that, a refund is on its way")
    at(2, 10, 31, 1)
    store.close_conversation(b, x, resolution="refund", csat_question=("How did we do? 1-5", ()))
    week.message("telegram", "b", "4", at(2, 10, 35))

    c = week.message("telegram", "b", "can i send it back", at(5, 9))
    week.turn(c, at(5, 9, 0, 1), kb("choices", offered=["returns-policy", "exchanges"], answered=False))
    week.message("telegram", "b", '/kb_choice{"article_id": "returns-policy"}', at(5, 9, 0, 30))
    week.turn(c, at(5, 9, 0, 31), kb("chosen", "returns-policy", chosen="returns-policy", answered=True))

    d = week.message("sms", "+447700900001", "I want to complain", at(7, 22))
    notice = week.turn(d, at(7, 22, 0, 3), handoff="keyword")
    assert notice is not None
    at(7, 22, 5)
    store.delivery_failed(notice.reply_id, "the number does not exist")
    at(9, 8)
    store.claim(d, y)
    at(9, 8, 10)
    store.agent_reply(d, y, "What went wrong?")
    at(9, 8, 20)
    store.close_conversation(d, y)

    e = week.message("web", "e", "hello", at(10, 10))
    week.turn(e, at(10, 10, 0, 1))
    return week
