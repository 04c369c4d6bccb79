"""The KB-gap report: questions the bot could not answer, grouped by meaning, largest group first."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bot.messages import ConversationStatus, Event, EventKind
from bot.ports import ConversationStore, Encoder

NOT_ANSWERED = "not_answered"        # the knowledge base had nothing good enough
ASKED_FOR_PERSON = "asked_for_person"  # answered, but the customer then asked for a person


@dataclass(frozen=True)
class GapQuestion:
    conversation_id: str
    text: str
    reason: str


@dataclass(frozen=True)
class GapCluster:
    size: int
    representative: str          # the question closest to the group's centre
    examples: tuple[str, ...]    # distinct questions, closest first
    reasons: dict[str, int]


def gap_questions(transcript: Sequence[Event]) -> list[GapQuestion]:
    """Find a conversation's unanswered questions in its transcript."""
    found = []
    last_question: Event | None = None
    previous_question: Event | None = None
    for event in transcript:
        if event.kind == EventKind.MESSAGE_IN:
            previous_question, last_question = last_question, event
        elif (event.kind == EventKind.KB_ANSWER and not event.data.get("answered") and last_question
              and event.data.get("decision") != "choices"):  # after choices, the customer's pick tells
            # "None of these" was tapped after the question itself, which the event keeps.
            question = event.data.get("question") or last_question.text or ""
            found.append(GapQuestion(event.conversation_id, str(question), NOT_ANSWERED))
        elif (event.kind == EventKind.HANDOFF and event.data.get("reason") == "customer_request"
              and previous_question is not None):
            # The message that asked for a person says nothing about the KB; the one before it might.
            found.append(GapQuestion(event.conversation_id, previous_question.text or "", ASKED_FOR_PERSON))
    return found


def cluster_gaps(questions: Sequence[GapQuestion], encoder: Encoder, similarity: float = 0.6) -> list[GapCluster]:
    """Group questions whose meaning is close (cosine to a group's first question >= `similarity`)."""
    if not questions:
        return []
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
    clusters = [_describe(group, questions, vectors) for group in members]
    return sorted(clusters, key=lambda c: (-c.size, c.representative))


def _describe(group: list[int], questions: Sequence[GapQuestion], vectors: np.ndarray) -> GapCluster:
    centre = vectors[group].mean(axis=0)
    by_closeness = sorted(group, key=lambda i: -float(vectors[i] @ centre))
    examples = tuple(dict.fromkeys(questions[i].text for i in by_closeness))
    reasons = Counter(questions[i].reason for i in group)
    return GapCluster(len(group), examples[0], examples[:5], dict(reasons))


def collect_gaps(store: ConversationStore) -> list[GapQuestion]:
    """Every unanswered question in the store's conversations."""
    conversations = store.list_conversations(list(ConversationStatus))
    return [question for c in conversations for question in gap_questions(store.transcript(c.conversation_id))]
