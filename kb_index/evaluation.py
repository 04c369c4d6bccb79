"""Answer quality on a question set: hit@k, MRR, and what the bot decides (answer, choices, decline),
with the decision's thresholds calibrated on a dev split."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bot.dialogue.kb_decision import (
    OTHER_LANGUAGES,
    KbAction,
    KbDecision,
    KbPolicy,
    LanguagePolicies,
    best_per_article,
    decide,
    scored_multilingual,
)
from bot.errors import SwitchboardError
from bot.language import LanguageDetector
from bot.messages import Passage
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
    passages: tuple[Passage, ...] = ()
    language: str | None = None  # as detected, when a detector was given
    multilingual: bool = False   # scored by the multilingual encoder, so decided by its own policy
    unknown_names: tuple[str, ...] = ()  # names in the question that the KB never mentions


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


def run_cases(retriever: Retriever, cases: Sequence[EvalCase], depth: int = 10,
              languages: LanguageDetector | None = None) -> list[EvalResult]:
    """Search every question once, in its language as the bot would detect it; the results can then be
    scored at any threshold."""
    results = []
    for case in cases:
        language = languages.detect(case.question) if languages is not None else None
        passages = retriever.search(case.question, k=depth, language=language)
        ranked = tuple(dict.fromkeys(p.topic for p in passages))  # a translation counts as its original
        results.append(EvalResult(case.question, case.expected, ranked, passages[0].score if passages else 0.0,
                                  tuple(passages), language, scored_multilingual(passages, retriever, language),
                                  tuple(retriever.unknown_names(case.question, language))))
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


@dataclass(frozen=True)
class DecisionReport:
    """What the bot does with a question set under a decision policy."""

    questions: int
    answerable: int
    unanswerable: int
    answered: int
    answered_right: int
    answer_precision: float      # of the answers given, the share with the right article
    offered: int                 # questions answered with choices
    offered_right: int           # ... where the right article was among them
    reach: float                 # answerable questions answered right or offered the right article
    declined_unanswerable: int
    decline_rate: float          # of the unanswerable questions, the share declined

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, questions: int, answerable: int, answered: int, answered_right: int, offered: int,
           offered_right: int, declined_unanswerable: int) -> DecisionReport:
        """The report of these counts, with the shares derived from them."""
        unanswerable = questions - answerable
        return cls(
            questions=questions, answerable=answerable, unanswerable=unanswerable,
            answered=answered, answered_right=answered_right,
            answer_precision=answered_right / answered if answered else 0.0,
            offered=offered, offered_right=offered_right,
            reach=(answered_right + offered_right) / answerable if answerable else 0.0,
            declined_unanswerable=declined_unanswerable,
            decline_rate=declined_unanswerable / unanswerable if unanswerable else 0.0,
        )


def decisions(results: Sequence[EvalResult], policy: KbPolicy,
              other_languages: LanguagePolicies = OTHER_LANGUAGES) -> list[KbDecision]:
    """The bot's decision for each question: by `other_languages` where the multilingual encoder scored it or the
    KB was taught labelled English questions, else by `policy`."""
    return [decide(r.passages, other_languages.deciding(r.passages, r.language, r.multilingual, policy),
                   r.unknown_names)
            for r in results]


def is_right(result: EvalResult, decision: KbDecision) -> bool:
    """Whether the decision is what the question needed."""
    if result.expected is None:
        return decision.action == KbAction.DECLINE
    if decision.action == KbAction.ANSWER:
        return decision.article_ids[0] == result.expected
    return decision.action == KbAction.CHOICES and result.expected in decision.article_ids


def report_decisions(results: Sequence[EvalResult], policy: KbPolicy,
                     other_languages: LanguagePolicies = OTHER_LANGUAGES) -> DecisionReport:
    """Score the decisions as a customer would meet them."""
    return tally_decisions(results, decisions(results, policy, other_languages))


def tally_decisions(results: Sequence[EvalResult], made: Sequence[KbDecision]) -> DecisionReport:
    """Score decisions already made (`decisions`), one a result."""
    pairs = list(zip(results, made, strict=True))
    answered = [(r, d) for r, d in pairs if d.action == KbAction.ANSWER]
    offered = [(r, d) for r, d in pairs if d.action == KbAction.CHOICES]
    return DecisionReport.of(
        questions=len(pairs), answerable=sum(r.expected is not None for r, _ in pairs),
        answered=len(answered), answered_right=sum(is_right(r, d) for r, d in answered),
        offered=len(offered), offered_right=sum(is_right(r, d) for r, d in offered),
        declined_unanswerable=sum(1 for r, d in pairs if r.expected is None and d.action == KbAction.DECLINE))


def tally_by_language(results: Sequence[EvalResult], made: Sequence[KbDecision]) -> dict[str, DecisionReport]:
    """`tally_decisions` for each language the questions were detected in ("none": no language detected)."""
    languages: dict[str, list[tuple[EvalResult, KbDecision]]] = {}
    for result, decision in zip(results, made, strict=True):
        languages.setdefault(result.language or "none", []).append((result, decision))
    return {language: tally_decisions([r for r, _ in pairs], [d for _, d in pairs])
            for language, pairs in sorted(languages.items())}


_MARGINS = (0.0, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1)
_WINDOWS = (0.03, 0.05, 0.1, 0.2)
_POINTS = 20        # thresholds tried first: the best scores' quantiles
_BETWEEN = 40       # then at most this many scores between the quantiles on either side of each chosen threshold


def calibrate_policy(results: Sequence[EvalResult], min_precision: float = 0.92,
                     min_decline_rate: float = 0.8) -> KbPolicy:
    """The policy that reaches the most answerable questions while its answers stay at least
    `min_precision` right and it declines at least `min_decline_rate` of the unanswerable ones; then
    the most right answers. Thresholds are tried across the range the best scores span (each encoder
    has its own scale): first at twenty quantiles, then, around the thresholds chosen, at the scores
    between their neighbouring quantiles (where many questions score alike, a quantile apart is 0.01 or
    more, and the threshold that declines enough may lie inside). Run it on a dev split, never on the
    split you report."""
    best_scores = sorted(round(r.score, 3) for r in results) or [0.0]
    grid = sorted({best_scores[round(i * (len(best_scores) - 1) / (_POINTS - 1))] for i in range(_POINTS)})
    tally = PolicyTally(results)

    def around(threshold: float) -> list[float]:
        """The scores between the quantiles either side of `threshold`, evenly thinned to `_BETWEEN`."""
        place = grid.index(threshold)
        low, high = grid[max(place - 1, 0)], grid[min(place + 1, len(grid) - 1)]
        inside = sorted({score for score in best_scores if low <= score <= high})
        return [*inside[::max(1, -(-len(inside) // _BETWEEN))], threshold]

    chosen = _best_policy(tally, grid, grid, min_precision, min_decline_rate)
    coarse = chosen[1]
    chosen = _best_policy(tally, around(coarse.answer_score), [coarse.choice_score], min_precision, min_decline_rate,
                          chosen)
    chosen = _best_policy(tally, [chosen[1].answer_score], around(coarse.choice_score), min_precision,
                          min_decline_rate, chosen)
    return chosen[1]


def _best_policy(tally: PolicyTally, answers: Sequence[float], choices: Sequence[float], min_precision: float,
                 min_decline_rate: float, best: tuple[tuple[bool, float, int, float], KbPolicy] | None = None
                 ) -> tuple[tuple[bool, float, int, float], KbPolicy]:
    """The best of `best` and every policy of these thresholds (a choice never above the answer), with its key:
    feasible first, then reach, right answers and precision."""
    for answer, margin, choice, window in itertools.product(answers, _MARGINS, choices, _WINDOWS):
        if choice > answer:
            continue
        policy = KbPolicy(answer_score=answer, answer_margin=margin, choice_score=choice, choice_window=window)
        report = tally.report(policy)
        feasible = (report.answered == 0 or report.answer_precision >= min_precision) \
            and report.decline_rate >= min_decline_rate
        key = (feasible, report.reach, report.answered_right, report.answer_precision)
        if best is None or key > best[0]:
            best = (key, policy)
    assert best is not None
    return best


_NO_ARTICLE = -1e9  # the score of a place in PolicyTally's rows past a question's articles: below any threshold


class PolicyTally:
    """`report_decisions` of one policy for every question, as array operations over the questions: a
    calibration scores thousands of policies, and deciding them question by question took 7 s for 300."""

    def __init__(self, results: Sequence[EvalResult]) -> None:
        articles = [best_per_article(r.passages) for r in results]
        width = max((len(found) for found in articles), default=0) + 2  # room for a best and a runner-up
        self.scores = np.full((len(results), width), _NO_ARTICLE)
        self.rank = np.full(len(results), width)  # where the expected article is among the found; width: not
        for row, (result, found) in enumerate(zip(results, articles, strict=True)):
            self.scores[row, :len(found)] = [p.score for p in found]
            topics = [p.topic for p in found]
            if result.expected in topics:
                self.rank[row] = topics.index(result.expected)
        self.answerable = np.array([r.expected is not None for r in results], dtype=bool)
        self.found = np.array([bool(found) and not r.unknown_names for r, found in zip(results, articles, strict=True)],
                              dtype=bool)  # else declined whatever the policy
        self.best = self.scores[:, 0]
        runner_up = np.where(self.scores[:, 1] > _NO_ARTICLE, self.scores[:, 1], 0.0)
        self.margin = self.best - runner_up
        self.rows = np.arange(len(results))

    def report(self, policy: KbPolicy) -> DecisionReport:
        answer = self.found & (self.best >= policy.answer_score) & (self.margin >= policy.answer_margin)
        close = (self.scores >= policy.choice_score) & (self.best[:, None] - self.scores <= policy.choice_window)
        choices = self.found & ~answer & (close.sum(axis=1) >= 2)
        listed = close & (np.cumsum(close, axis=1) <= policy.max_choices)  # the choices offered
        expected_listed = np.pad(listed, ((0, 0), (0, 1)))[self.rows, self.rank]
        return DecisionReport.of(
            questions=len(self.rows), answerable=int(self.answerable.sum()),
            answered=int(answer.sum()), answered_right=int((answer & (self.rank == 0)).sum()),
            offered=int(choices.sum()), offered_right=int((choices & expected_listed).sum()),
            declined_unanswerable=int((~answer & ~choices & ~self.answerable).sum()))
