"""The dialogue engine: decides the bot's turn for one stored customer message."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.messages import Author, Conversation, ConversationStatus, EventKind, Passage, Reply, utcnow
from bot.nlu import NearestNeighbourIntentClassifier
from bot.outcome import Outcome
from bot.ports import Encoder, Retriever
from bot.responses import ResponseTemplates

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class EnginePolicy:
    """The engine's thresholds and handoff rules."""

    kb_min_score: float = 0.5
    fallbacks_before_handoff: int = 2
    handoff_intent: str = "request_human"
    kb_passages: int = 3
    quote_chars: int = 400


class Engine:
    """Intent -> response, else knowledge base -> quoted answer, else fallback; hands off when due."""

    def __init__(self, encoder: Encoder, classifier: NearestNeighbourIntentClassifier,
                 retriever: Retriever, responses: ResponseTemplates, policy: EnginePolicy) -> None:
        self._encoder = encoder
        self._classifier = classifier
        self._retriever = retriever
        self._responses = responses
        self._policy = policy

    def respond(self, conversation: Conversation, text: str, channel: str | None = None) -> Outcome:
        """Decide the bot's turn for a message that came on `channel`; a conversation that is not the
        bot's gets no reply."""
        if conversation.status != ConversationStatus.BOT:
            return Outcome()
        vector = self._encoder.encode([text])[0]
        prediction = self._classifier.predict(vector)
        if prediction.intent == self._policy.handoff_intent:
            return self.hand_off(conversation, "customer_request")
        if prediction.intent is not None and self._responses.has(f"utter_{prediction.intent}"):
            return Outcome(replies=(self._reply(conversation, f"utter_{prediction.intent}"),),
                           fallback_streak=0)

        passages = self._retriever.search(text, k=self._policy.kb_passages, vector=vector, channel=channel)
        tried = (EventKind.KB_ANSWER, {
            "passages": [{"article_id": p.article_id, "title": p.title, "heading": p.heading,
                          "score": round(p.score, 4)} for p in passages],
            "answered": bool(passages) and passages[0].score >= self._policy.kb_min_score,
        })
        if tried[1]["answered"]:
            best = passages[0]
            response = "utter_kb_answer" if best.url or not self._responses.has("utter_kb_answer_no_link") \
                else "utter_kb_answer_no_link"
            reply = self._reply(conversation, response, passage=self._quote(best), title=best.title, url=best.url)
            return Outcome(replies=(reply,), events=(tried,), fallback_streak=0)

        streak = conversation.fallback_streak + 1
        if streak >= self._policy.fallbacks_before_handoff:
            handoff = self.hand_off(conversation, "repeated_fallback")
            return Outcome(replies=handoff.replies, events=(tried,), fallback_streak=0,
                           handoff_reason=handoff.handoff_reason)
        return Outcome(replies=(self._reply(conversation, "utter_fallback"),), events=(tried,),
                       fallback_streak=streak)

    def preview(self, text: str, channel: str | None = None) -> Outcome:
        """What the bot would answer this as the first message of a conversation; nothing is stored."""
        now = utcnow()
        conversation = Conversation("preview", "preview", "SB-PREVW", ConversationStatus.BOT, None, None, 0,
                                    channel or "preview", "preview", now, now)
        return self.respond(conversation, text, channel)

    def hand_off(self, conversation: Conversation, reason: str) -> Outcome:
        """Queue the conversation for an agent and tell the customer what happens next."""
        reply = self._reply(conversation, "utter_handoff", reference=conversation.reference)
        return Outcome(replies=(reply,), fallback_streak=0, handoff_reason=reason)

    def _reply(self, conversation: Conversation, response: str, **values: str) -> Reply:
        text, buttons = self._responses.render(response, **values)
        return Reply(conversation.conversation_id, text, Author.BOT, buttons)

    def _quote(self, passage: Passage) -> str:
        """Quote the passage's first sentences, within the length cap, ending on a whole sentence."""
        quote = ""
        for sentence in _SENTENCE_END.split(" ".join(passage.text.split())):
            if quote and len(quote) + 1 + len(sentence) > self._policy.quote_chars:
                break
            quote = f"{quote} {sentence}".strip()
        return quote
