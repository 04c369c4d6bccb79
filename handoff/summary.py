"""A ticket's short extractive summary: what the customer wants, what the bot answered, why it handed off."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.messages import Author, Conversation, Event, EventKind

_REASONS = {
    "customer_request": "the customer asked for a person",
    "repeated_fallback": "the bot did not understand several times in a row",
    "negative_sentiment": "the customer seemed upset",
    "sensitive_intent": "a sensitive topic",
    "keyword": "a keyword of the handoff policy",
    "action": "an action decided a person should take over",
    "processing_error": "the bot failed to process a message",
}


# Messages that say little about what the customer needs.
_SMALL_TALK = ("greet", "goodbye", "thanks", "acknowledge", "give_name")


@dataclass(frozen=True)
class Summary:
    wants: str | None        # the question that led to the handoff (not the request for a person itself)
    bot_answered: str | None  # what the bot replied to that question
    why: str | None          # the handoff reason in words, with its detail

    def as_json(self) -> dict[str, Any]:
        return {"wants": self.wants, "bot_answered": self.bot_answered, "why": self.why}


def summarize(conversation: Conversation, transcript: list[Event]) -> Summary:
    """Pick the sentences an agent reads first, from the transcript itself (nothing is generated): the
    customer's latest question before the handoff, and the bot's reply to that same question."""
    handoffs = [e for e in transcript if e.kind == EventKind.HANDOFF]
    until = handoffs[-1].seq if handoffs else None
    before = [e for e in transcript if until is None or e.seq < until]
    asked = [e for e in before if e.kind == EventKind.MESSAGE_IN and e.text]
    request = asked[-1].seq if asked and handoffs and handoffs[-1].data.get("reason") == "customer_request" else None
    # Greetings and the request for a person say little: the latest message the bot took as a question.
    questions = [e for e in asked if e.seq != request and e.data.get("intent") not in (*_SMALL_TALK, "request_human")]
    wants = (questions or asked)[-1] if asked else None
    answered = None
    if wants is not None:
        after = [e for e in before if e.seq > wants.seq]
        upto = next((e.seq for e in after if e.kind == EventKind.MESSAGE_IN), None)
        answered = next((e for e in after if e.kind == EventKind.MESSAGE_OUT and e.author == Author.BOT
                         and (upto is None or e.seq < upto)), None)
    why = None
    if handoffs:
        reason = str(handoffs[-1].data.get("reason", conversation.handoff_reason or ""))
        why = _REASONS.get(reason, reason.replace("_", " "))
        detail = handoffs[-1].data.get("why") or handoffs[-1].data.get("intent") or handoffs[-1].data.get("keyword")
        if detail:
            why = f"{why} ({detail})"
    return Summary(wants.text if wants else None, answered.text if answered else None, why)


def latest_question(transcript: list[Event]) -> str | None:
    """The customer's latest message with something to answer: not small talk, not the request for a person."""
    asked = [e for e in transcript if e.kind == EventKind.MESSAGE_IN and e.text]
    requests = {max((m.seq for m in asked if m.seq < e.seq), default=None) for e in transcript
                if e.kind == EventKind.HANDOFF and e.data.get("reason") == "customer_request"}
    questions = [e for e in asked if e.seq not in requests and e.data.get("intent") not in (*_SMALL_TALK,
                                                                                         "request_human")]
    return questions[-1].text if questions else None
