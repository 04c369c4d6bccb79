"""The KB-gap report: questions the bot could not answer, grouped by meaning, largest group first."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from bot.language import is_english
from bot.messages import ConversationStatus, Event, EventKind
from bot.ports import ConversationStore, Encoder

NOT_ANSWERED = "not_answered"        # the knowledge base had nothing good enough
ANSWERED_WRONGLY = "answered_wrongly"  # answered, then "did this help?": no, or a request for a person
ASKED_FOR_PERSON = "asked_for_person"  # the customer asked for a person after a message the bot did not answer


@dataclass(frozen=True)
class GapQuestion:
    conversation_id: str
    text: str
    reason: str
    asked_at: datetime
    language: str | None = None  # as detected when it came in
    names: tuple[str, ...] = ()  # declined for naming these, which the KB never mentions


def gap_key(question: str) -> str:
    """How a handled question is remembered: a hash of its words, never the customer's text itself."""
    return hashlib.sha256(" ".join(question.lower().split()).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class GapCluster:
    size: int
    representative: str          # the question closest to the group's centre
    examples: tuple[str, ...]    # distinct questions, closest first (five at most)
    reasons: dict[str, int]
    questions: tuple[str, ...] = ()  # every distinct question of the group, closest first
    language: str | None = None      # the group's language: questions are grouped within one language
    names: dict[str, int] = field(default_factory=dict)  # names the KB never mentions, by how many asked


def gap_questions(transcript: Sequence[Event]) -> list[GapQuestion]:
    """Find a conversation's unanswered questions in its transcript. Messages without a letter ("2",
    "?", "👍") ask nothing an article could answer, and are left out."""
    found = []
    last_question: Event | None = None
    previous_question: Event | None = None
    answered: Event | None = None  # the message the bot's latest KB decision answered
    for event in transcript:
        if event.kind == EventKind.MESSAGE_IN:
            previous_question, last_question = last_question, event
        elif event.kind == EventKind.KB_ANSWER and last_question is not None:
            decision = event.data.get("decision")
            # Button taps come after the question, which the event keeps.
            question = str(event.data.get("question") or last_question.text or "")
            if decision == "feedback":
                if event.data.get("helpful") is False:
                    found.append(GapQuestion(event.conversation_id, question, ANSWERED_WRONGLY,
                                             last_question.created_at, _language(last_question)))
                answered = None
            elif decision != "choices":  # after choices, the customer's pick tells
                answered = last_question if event.data.get("answered") else None
                if answered is None:
                    found.append(GapQuestion(event.conversation_id, question, NOT_ANSWERED, last_question.created_at,
                                             _language(last_question), tuple(event.data.get("unknown_names") or ())))
        elif (event.kind == EventKind.HANDOFF and event.data.get("reason") == "customer_request"
              and previous_question is not None):
            # The message that asked for a person says nothing about the KB; the one before it might.
            reason = ANSWERED_WRONGLY if answered is previous_question else ASKED_FOR_PERSON
            found.append(GapQuestion(event.conversation_id, previous_question.text or "", reason,
                                     previous_question.created_at, _language(previous_question)))
    return [question for question in found if any(c.isalpha() for c in question.text)]


def _language(message: Event) -> str | None:
    language = message.data.get("language")
    return str(language) if language else None


def cluster_gaps(questions: Sequence[GapQuestion], encoder: Encoder, similarity: float = 0.6,
                 other_languages: Encoder | None = None, other_similarity: float = 0.9) -> list[GapCluster]:
    """Group questions whose meaning is close (cosine to a group's first question >= `similarity`), each
    language apart: English ones (and those of no known language) by `encoder`, the others by
    `other_languages` when given (the multilingual encoder, at `other_similarity`: its cosines run high,
    0.83 to 0.86 between different questions of one language, 0.92 and up between rewordings)."""
    by_language: dict[str | None, list[GapQuestion]] = {}
    for question in questions:
        language = question.language if question.language and not is_english(question.language) else None
        by_language.setdefault(language, []).append(question)
    clusters = []
    for language, group in by_language.items():
        multilingual = language is not None and other_languages is not None
        clusters += _cluster(group, other_languages if multilingual and other_languages else encoder,
                             other_similarity if multilingual else similarity, language)
    return sorted(clusters, key=lambda c: (-c.size, c.language or "", c.representative))


def _cluster(questions: Sequence[GapQuestion], encoder: Encoder, similarity: float,
             language: str | None) -> list[GapCluster]:
    vectors = encoder.encode([q.text for q in questions])
    leaders: list[int] = []
    members: list[list[int]] = []
    for i, vector in enumerate(vectors):
        if leaders:
            scores = vectors[leaders] @ vector
            best = int(np.argmax(scores))
            if scores[best] >= similarity:
                members[best].append(i)
                continue
        leaders.append(i)
        members.append([i])
    return [replace(_describe(group, questions, vectors), language=language) for group in members]


def _describe(group: list[int], questions: Sequence[GapQuestion], vectors: np.ndarray) -> GapCluster:
    centre = vectors[group].mean(axis=0)
    by_closeness = sorted(group, key=lambda i: -float(vectors[i] @ centre))
    examples = tuple(dict.fromkeys(questions[i].text for i in by_closeness))
    reasons = Counter(questions[i].reason for i in group)
    names = Counter(name for i in group for name in questions[i].names)
    return GapCluster(len(group), examples[0], examples[:5], dict(reasons), examples, names=dict(names.most_common()))


def collect_gaps(store: ConversationStore, since: datetime | None = None, until: datetime | None = None,
                 handled: Collection[str] = ()) -> list[GapQuestion]:
    """Every unanswered question in the store's conversations asked in [since, until), but for those an
    editor already handled (answered with an article, or dismissed; `handled` holds their `gap_key`s)."""
    conversations = store.list_conversations(list(ConversationStatus))
    return [question for c in conversations for question in gap_questions(store.transcript(c.conversation_id))
            if (since is None or question.asked_at >= since) and (until is None or question.asked_at < until)
            and question.text.strip() and gap_key(question.text) not in handled]
