"""The knowledge base's part of a turn: answer a question, offer "did you mean" choices, or decline; and the
customer's taps on those choices and on "did this help?" under an answer.

Which of the three it is comes from `kb_decision`; this says it to the customer (in their language where
the article has a translation), keeps what was decided on the transcript for the gaps report, and reads
the taps back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.delivery.capabilities import CAPABILITIES
from bot.dialogue.kb_decision import KbAction, KbDecision, KbPolicy, LanguagePolicies, decide, scored_multilingual
from bot.dialogue.responses import ResponseTemplates
from bot.dialogue.turn import Turn
from bot.language import babel_locale, base_language, is_english
from bot.messages import Author, Button, Event, EventKind, Passage, Reply
from bot.ports import DialogueMemory, Retriever

# The payloads of the "did you mean" buttons: an article chosen, or none of them.
KB_CHOICE = "/kb_article"
KB_NONE = "/kb_none"
# The payloads of "did this help?" under an answer.
KB_HELPFUL = "/kb_helpful"
KB_UNHELPFUL = "/kb_unhelpful"
_KB_CHOICE = re.compile(r"/kb_article\{\s*\"article_id\"\s*:\s*\"([^\"]{1,200})\"\s*\}")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Tap:
    """A tap on a button the knowledge base offered. `miss`: the customer said it did not help, and the bot
    falls back with this response (which may hand off); None: the tap is answered."""

    miss: str | None = None


class KbAnswers:
    """Answers questions from the retriever's passages, as the calibrated policies decide."""

    def __init__(self, retriever: Retriever, responses: ResponseTemplates, memory: DialogueMemory, *,
                 policy: KbPolicy, other_languages: LanguagePolicies, passages: int, quote_chars: int) -> None:
        self._retriever = retriever
        self._responses = responses
        self._memory = memory
        self._policy = policy
        self._other_languages = other_languages
        self._passages = passages
        self._quote_chars = quote_chars

    def answer(self, turn: Turn, vector: Any, choices: bool = True) -> bool:
        """Answer from the KB, offer the close articles as choices (unless not `choices`), or decline
        (False: the caller falls back)."""
        language = turn.language
        passages = self._retriever.search(turn.text, k=self._passages, vector=vector, channel=turn.channel,
                                          language=language)
        multilingual = scored_multilingual(passages, self._retriever, language)
        names = self._retriever.unknown_names(turn.text, language,
                                              [n for n in (turn.values.get("full_name"), turn.customer_name) if n])
        decision = decide(passages, self._other_languages.deciding(passages, language, multilingual, self._policy),
                          names)
        if decision.action == KbAction.CHOICES and not (choices and self._responses.has("utter_kb_choices")):
            decision = KbDecision(KbAction.DECLINE, (), decision.score, decision.margin)
        turn.events.append((EventKind.KB_ANSWER, {
            "passages": _passage_records(passages[:5]),
            "decision": decision.action.value, "offered": list(decision.article_ids),
            "answered": decision.action == KbAction.ANSWER, "question": turn.text,
            **({"language": language, "encoder": "multilingual"} if multilingual else {}),
            **({"unknown_names": names} if names else {}),
        }))
        if decision.action == KbAction.ANSWER:
            self._quote_answer(turn, self._version(decision.passages[0], language))
            return True
        if decision.action == KbAction.CHOICES:
            self._offer_choices(turn, decision)
            return True
        return False

    def feedback(self, turn: Turn) -> Tap | None:
        """A tap on "did this help?": thanks for a yes; a no is a miss that the gaps report shows as answered
        wrongly. None if the message is no such tap."""
        helpful = {KB_HELPFUL: True, KB_UNHELPFUL: False}.get(turn.text.strip())
        if helpful is None:
            return None
        answer = self._last_kb_event(turn)
        if answer is None or not answer.data.get("answered"):
            return None
        turn.events.append((EventKind.KB_ANSWER, {
            "decision": "feedback", "helpful": helpful, "answered": helpful, "question": answer.data.get("question"),
            "article_id": (answer.data.get("passages") or [{}])[0].get("article_id")}))
        if not helpful:
            return Tap(miss="utter_kb_sorry")
        if self._responses.has("utter_kb_thanks"):
            turn.say(self._responses, "utter_kb_thanks")
        return Tap()

    def choice(self, turn: Turn) -> Tap | None:
        """A tap on a "did you mean" button: the chosen article is answered and the choice kept as a
        labelled example of the question; "none of these" is a miss. None if the message is no such tap."""
        text = turn.text.strip()
        chosen = _KB_CHOICE.fullmatch(text)
        if chosen is None and text != KB_NONE:
            return None
        offer = self._last_offer(turn)
        if offer is None:
            return None  # an old or forged payload: read as any other message
        question = str(offer.data.get("question") or "")
        if chosen is None:
            turn.events.append((EventKind.KB_ANSWER, {"decision": "none_of_these", "answered": False,
                                                      "question": question, "offered": offer.data.get("offered")}))
            return Tap(miss="utter_fallback")
        article_id = chosen.group(1)
        language = offer.data.get("language")  # the question's, as it was searched
        passages = [p for p in self._retriever.search(question, k=self._passages, channel=turn.channel,
                                                      language=language)
                    if p.topic == article_id]
        if article_id not in (offer.data.get("offered") or ()) or not passages:
            return None
        turn.events.append((EventKind.KB_ANSWER, {
            "decision": "chosen", "answered": True, "question": question, "chosen": article_id,
            "passages": _passage_records(passages[:1])}))
        self._quote_answer(turn, self._version(passages[0], turn.language or language))
        return Tap()

    def _quote_answer(self, turn: Turn, best: Passage) -> None:
        response = "utter_kb_answer" if best.url or not self._responses.has("utter_kb_answer_no_link") \
            else "utter_kb_answer_no_link"
        turn.say(self._responses, response, passage=self._quote(best), title=best.title, url=best.url)
        note = self._language_note(turn, best.lang or "en")
        if note:
            answer = turn.replies[-1]
            turn.replies[-1] = Reply(answer.conversation_id, f"{note}\n\n{answer.text}", answer.author, answer.buttons)
        turn.notes["answered_by"] = {"kind": "kb", "article_id": best.article_id, "title": best.title}
        capabilities = CAPABILITIES.get(turn.channel or "")
        if capabilities is not None and capabilities.feedback and self._responses.has("utter_kb_feedback"):
            # "Did this help?" under the answer: a "no" shows editors a wrong answer.
            text, buttons = self._responses.render("utter_kb_feedback", turn.values, turn.slots, turn.channel)
            answer = turn.replies[-1]
            turn.replies[-1] = Reply(answer.conversation_id, f"{answer.text}\n\n{text}", answer.author,
                                     (*answer.buttons, *buttons))

    def _language_note(self, turn: Turn, article_language: str) -> str:
        """What to say before an article that has no version in the customer's language: that it is in
        English, or in the language it is in, named in the customer's ("nur auf Englisch", "only in German")."""
        customer = turn.language
        if not customer or base_language(customer) == base_language(article_language):
            return ""
        if is_english(article_language):
            response, values = "utter_kb_in_english", turn.values
        else:
            name = babel_locale(turn.written_in(self._responses, "utter_kb_in_language")).languages.get(
                base_language(article_language), article_language)
            response, values = "utter_kb_in_language", {**turn.values, "article_language": name}
        if not self._responses.has(response):
            return ""
        return self._responses.render(response, values, turn.slots, turn.channel)[0]

    def _version(self, passage: Passage, language: str | None) -> Passage:
        """The passage in the customer's language where its article has that translation."""
        return self._retriever.translation(passage, language) or passage

    def _offer_choices(self, turn: Turn, decision: KbDecision) -> None:
        """"Did you mean": the close articles as buttons (numbered options where there are none), titled in
        the customer's language where a translation was found, and "none of these"."""
        text, buttons = self._responses.render("utter_kb_choices", turn.values, turn.slots, turn.channel)
        none = next((b for b in buttons if b.payload == KB_NONE), Button("None of these", KB_NONE))
        choices = tuple(Button(self._version(p, turn.language).title, f'{KB_CHOICE}{{"article_id": "{p.topic}"}}')
                        for p in decision.passages)
        turn.replies.append(Reply(turn.conversation.conversation_id, text, Author.BOT, (*choices, none)))
        turn.notes["answered_by"] = {"kind": "kb_choices", "articles": list(decision.article_ids)}

    def _last_offer(self, turn: Turn) -> Event | None:
        """The latest "did you mean" of this conversation, if the bot's last KB decision was one."""
        event = self._last_kb_event(turn)
        return event if event is not None and event.data.get("decision") == KbAction.CHOICES.value else None

    def _last_kb_event(self, turn: Turn) -> Event | None:
        """The bot's latest KB decision in this conversation before this message."""
        if turn.seq is None:
            return None
        for event in reversed(self._memory.transcript(turn.conversation.conversation_id)):
            if event.kind == EventKind.KB_ANSWER and event.seq < turn.seq and event.data.get("decision") != "feedback":
                return event
        return None

    def _quote(self, passage: Passage) -> str:
        """Quote the passage's first sentences, within the length cap, ending on a whole sentence."""
        quote = ""
        for sentence in _SENTENCE_END.split(" ".join(passage.text.split())):
            if quote and len(quote) + 1 + len(sentence) > self._quote_chars:
                break
            quote = f"{quote} {sentence}".strip()
        return quote


def _passage_records(passages: Sequence[Passage]) -> list[dict[str, Any]]:
    """The passages a KB decision looked at, as its transcript event keeps them (no text: titles and scores)."""
    return [{"article_id": p.article_id, "title": p.title, "heading": p.heading, "score": round(p.score, 4)}
            for p in passages]
