"""Retrieval quality on a question set: hit@k, MRR, answer precision, and threshold calibration."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bot.errors import SwitchboardError
from bot.ports import Retriever


@dataclass(frozen=True)
class EvalCase:
    question: str
    expected: str | None  # None: the KB cannot answer this, the bot should not try


@dataclass(frozen=True)
class EvalResult:
    question: str
    expected: str | None
    ranked: tuple[str, ...]  # distinct article ids, best first
    score: float             # the best passage's score


@dataclass(frozen=True)
class EvalReport:
    threshold: float
    questions: int
    answerable: int
    hit_at_1: float
    hit_at_3: float
    mrr: float
    answered: int
    answer_precision: float      # of the questions answered, the share answered with the right article
    answer_recall: float         # of the answerable questions, the share answered with the right article
    rejected_unanswerable: int   # should-not-answer questions that were not answered
    unanswerable: int

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data."""
        return asdict(self)


def load_cases(path: Path) -> list[EvalCase]:
    """Read a CSV with the columns `question` and `expected_article_id` (empty: should not answer)."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"question", "expected_article_id"} - set(reader.fieldnames or ())
            if missing:
                raise SwitchboardError(f"{path} lacks the column(s) {', '.join(sorted(missing))}")
            cases = [EvalCase(row["question"].strip(), (row["expected_article_id"] or "").strip() or None)
                     for row in reader if (row["question"] or "").strip()]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SwitchboardError(f"cannot read the question set {path}: {exc}") from exc
    if not cases:
        raise SwitchboardError(f"{path} has no questions")
    return cases


def run_cases(retriever: Retriever, cases: Sequence[EvalCase], depth: int = 10) -> list[EvalResult]:
    """Search every question once; the results can then be scored at any threshold."""
    results = []
    for case in cases:
        passages = retriever.search(case.question, k=depth)
        ranked = tuple(dict.fromkeys(p.article_id for p in passages))
        results.append(EvalResult(case.question, case.expected, ranked, passages[0].score if passages else 0.0))
    return results


def score(results: Sequence[EvalResult], threshold: float) -> EvalReport:
    """Score search results as the bot would act on them at an answer threshold."""
    answerable = [r for r in results if r.expected is not None]
    unanswerable = [r for r in results if r.expected is None]
    answered = [r for r in results if r.score >= threshold]
    right = [r for r in answered if r.expected is not None and r.ranked[:1] == (r.expected,)]

    def rank(r: EvalResult) -> int | None:
        return r.ranked.index(r.expected) + 1 if r.expected in r.ranked else None

    ranks = [rank(r) for r in answerable]
    n = max(len(answerable), 1)
    return EvalReport(
        threshold=threshold,
        questions=len(results),
        answerable=len(answerable),
        hit_at_1=sum(1 for k in ranks if k == 1) / n,
        hit_at_3=sum(1 for k in ranks if k is not None and k <= 3) / n,
        mrr=sum(1 / k for k in ranks if k is not None) / n,
        answered=len(answered),
        answer_precision=len(right) / len(answered) if answered else 0.0,
        answer_recall=len(right) / n,
        rejected_unanswerable=sum(1 for r in unanswerable if r.score < threshold),
        unanswerable=len(unanswerable),
    )


def calibrate(results: Sequence[EvalResult]) -> float:
    """The threshold that makes the most right decisions: right answers plus rightly declined questions.

    Ties go to the higher threshold: declining is cheaper than a wrong answer.
    """
    candidates = sorted({round(r.score, 3) for r in results} | {0.0})

    def right_decisions(t: float) -> int:
        report = score(results, t)
        wrong_article_declined = sum(1 for r in results if r.expected is not None and r.score < t
                                     and r.ranked[:1] != (r.expected,))
        return round(report.answer_recall * report.answerable) + report.rejected_unanswerable \
            + wrong_article_declined

    return max(candidates, key=lambda t: (right_decisions(t), t))
