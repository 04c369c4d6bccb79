"""How well the intent classifier does on a test file: accuracy, F1, confusions, out-of-scope rejection."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_fscore_support

from bot.dialogue.nlu import FALLBACK, OUT_OF_SCOPE, IntentPrediction
from bot.dialogue.training_data import Example


@dataclass(frozen=True)
class IntentScore:
    intent: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class NluReport:
    accuracy: float             # out-of-scope examples count as right when rejected
    in_scope_accuracy: float
    macro_f1: float             # over the test file's intents, out_of_scope included
    out_of_scope_examples: int
    out_of_scope_rejected: int
    threshold: float
    top_guess_accuracy: float   # in scope, had nothing been rejected: what rejection costs
    intents: tuple[IntentScore, ...]
    confusions: tuple[tuple[str, str, int], ...]   # (intent, predicted, count), most frequent first
    predictions: tuple[dict[str, Any], ...]        # one per test example, in file order

    def as_json(self) -> dict[str, Any]:
        report = asdict(self)
        report["intents"] = [asdict(score) for score in self.intents]
        report["confusions"] = [{"intent": i, "predicted": p, "count": n} for i, p, n in self.confusions]
        report["predictions"] = list(self.predictions)
        return report


def evaluate(examples: Sequence[Example], predictions: Sequence[IntentPrediction], threshold: float,
             confusions: int = 10) -> NluReport:
    """Score predictions against the test examples they were made for."""
    gold = [FALLBACK if e.intent == OUT_OF_SCOPE else e.intent for e in examples]
    predicted = [p.intent or FALLBACK for p in predictions]
    right = [g == p for g, p in zip(gold, predicted, strict=True)]
    in_scope = [r for r, g in zip(right, gold, strict=True) if g != FALLBACK]
    labels = sorted(set(gold))
    precision, recall, f1, support = precision_recall_fscore_support(gold, predicted, labels=labels,
                                                                     zero_division=0)
    scores = [IntentScore(OUT_OF_SCOPE if label == FALLBACK else label, round(float(p), 4),
                               round(float(r), 4), round(float(f), 4), int(s))
              for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)]
    mistakes = Counter((g, p) for g, p in zip(gold, predicted, strict=True) if g != p)
    return NluReport(
        accuracy=round(sum(right) / len(right), 4) if right else 0.0,
        in_scope_accuracy=round(sum(in_scope) / len(in_scope), 4) if in_scope else 0.0,
        macro_f1=round(float(sum(f1) / len(f1)), 4) if len(f1) else 0.0,
        out_of_scope_examples=gold.count(FALLBACK),
        out_of_scope_rejected=sum(1 for g, p in zip(gold, predicted, strict=True) if g == p == FALLBACK),
        threshold=round(threshold, 4),
        top_guess_accuracy=round(sum(p.best_guess[0] == e.intent for e, p in zip(examples, predictions, strict=True)
                                     if e.intent != OUT_OF_SCOPE) / len(in_scope), 4) if in_scope else 0.0,
        intents=tuple(sorted(scores, key=lambda score: score.intent)),
        confusions=tuple((OUT_OF_SCOPE if g == FALLBACK else g, p, n)
                         for (g, p), n in mistakes.most_common(confusions)),
        predictions=tuple({"text": e.text, "intent": e.intent, "predicted": p.intent or FALLBACK,
                           "confidence": p.confidence} for e, p in zip(examples, predictions, strict=True)),
    )


def nearest_neighbour_accuracy(train: Sequence[Example], train_vectors: np.ndarray, test: Sequence[Example],
                               test_vectors: np.ndarray) -> float:
    """In-scope accuracy of the plainest few-shot classifier, the baseline to beat: each test message takes
    the intent of its most similar training example (cosine on the same unit vectors; no rejection)."""
    labels = np.array([e.intent for e in train])
    keep = labels != OUT_OF_SCOPE
    rows = [i for i, e in enumerate(test) if e.intent != OUT_OF_SCOPE]
    if not keep.any() or not rows:
        return 0.0
    nearest = labels[keep][(test_vectors[rows] @ train_vectors[keep].T).argmax(axis=1)]
    return round(float(np.mean(nearest == np.array([test[i].intent for i in rows]))), 4)


def without_test_messages(train: Sequence[Example], test: Sequence[Example]) -> tuple[list[Example], list[Example]]:
    """The training examples whose text is no test message's, and those left out: a message the classifier was
    trained on says nothing of how it reads new ones. Texts compare without case, spaces and punctuation, so
    "Danke!" is "danke"; the shortest messages ("ok", "hallo") are the usual ones caught."""
    tested = {_compared(example.text) for example in test}
    kept: list[Example] = []
    left_out: list[Example] = []
    for example in train:
        (left_out if _compared(example.text) in tested else kept).append(example)
    return kept, left_out


def _compared(text: str) -> str:
    return "".join(character for character in text.casefold() if character.isalnum())
