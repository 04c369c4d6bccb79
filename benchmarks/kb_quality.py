"""The KB decision's precision against coverage on the test splits, as the sample shop ships: docs/kb-quality.png.

Coverage is the share of all questions the bot answers outright; precision the share of those answers with the
right article. Each point is one answer threshold, the policy's other thresholds as they are. Three curves:

- English test questions to the sample KB as it ships, taught its labelled dev questions (the `taught` policy);
- the same questions to the KB untaught (`SWITCHBOARD_KB_QUESTIONS=`, the English policy), for comparison;
- the five languages' test questions (`lang/*/test*.csv`) to the KB as it ships, tuned on the dev splits (the
  `tuned` policy).

Dev is left out: the shipped KB is taught and tuned on it. `python -m benchmarks.kb_quality`.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from bot.dialogue.kb_decision import KbPolicy, LanguagePolicies
from bot.ports import Encoder
from kb_index.encoder import load_encoder, vectors_name
from kb_index.evaluation import EvalCase, EvalResult, load_cases, report_decisions, run_cases
from kb_index.retriever import HybridRetriever
from kb_index.snapshot import build_snapshot
from switchboard.app import (
    kb_policy,
    labelled_kb_questions,
    language_detector,
    multilingual_model,
    other_language_policies,
)
from switchboard.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "data" / "kb_eval"
STEPS = 24  # thresholds a curve, spread over the quantiles of its questions' best scores


@dataclasses.dataclass(frozen=True)
class Curve:
    """One line of the plot: the questions' results, the policies that decide them, and whose threshold moves."""

    label: str
    results: list[EvalResult]
    english: KbPolicy
    others: LanguagePolicies
    varied: Literal["taught", "tuned"] | None  # the policy whose answer threshold moves; None: the English one

    @property
    def policy(self) -> KbPolicy:
        return self.english if self.varied is None else getattr(self.others, self.varied)

    def at(self, threshold: float) -> tuple[float, float]:
        """(coverage, precision) with the answer threshold at `threshold` (choices from no higher)."""
        moved = dataclasses.replace(self.policy, answer_score=threshold,
                                    choice_score=min(self.policy.choice_score, threshold))
        english, others = self.english, self.others
        if self.varied is None:
            english = moved
        elif self.varied == "taught":
            others = dataclasses.replace(others, taught=moved)
        else:
            others = dataclasses.replace(others, tuned=moved)
        report = report_decisions(self.results, english, others)
        return report.answered / report.questions, report.answer_precision

    def points(self) -> list[tuple[float, float, float]]:
        """(threshold, coverage, precision) across the range the best scores span, and at the policy's own."""
        scores = sorted(r.score for r in self.results)
        steps = {round(scores[round(i * (len(scores) - 1) / (STEPS - 1))], 3) for i in range(STEPS)}
        return [(t, *self.at(t)) for t in sorted(steps | {self.policy.answer_score})]


def _results(settings: Settings, encoder: Encoder, index: Path, cases: Sequence[EvalCase],
             taught: bool) -> list[EvalResult]:
    multilingual = multilingual_model(dataclasses.replace(settings, index_dir=index), threads=0)
    print(f"building the sample KB ({'taught and tuned' if taught else 'untaught'}) ...", flush=True)
    build_snapshot(settings.kb_dir, index, encoder, model=vectors_name(settings.model, settings.encoder),
                   multilingual=multilingual, questions=labelled_kb_questions(settings) if taught else [])
    retriever = HybridRetriever(index, encoder, multilingual=multilingual)
    return run_cases(retriever, cases, languages=language_detector(settings))


def curves() -> list[Curve]:
    """Build the sample KB both ways and score the test splits; prints progress as it goes."""
    settings = Settings(kb_dir=ROOT / "data" / "kb", kb_questions=f"{EVAL}/dev*.csv,{EVAL}/lang/*/dev*.csv")
    english_cases = load_cases(EVAL / "test.csv")
    other_cases = [case for path in sorted(EVAL.glob("lang/*/test*.csv")) for case in load_cases(path)]
    english, others = kb_policy(settings), other_language_policies(settings)
    with tempfile.TemporaryDirectory(prefix="switchboard-kbq-") as tmp:
        encoder = load_encoder(settings.model, Path(tmp) / "onnx", settings.encoder)  # exported once, for both
        shipped = _results(settings, encoder, Path(tmp) / "taught", english_cases + other_cases, taught=True)
        untaught = _results(settings, encoder, Path(tmp) / "untaught", english_cases, taught=False)
    return [
        Curve("English test, taught (as shipped)", shipped[:len(english_cases)], english, others, "taught"),
        Curve("English test, untaught", untaught, english, others, None),
        Curve(f"five languages' test ({len(other_cases)}), tuned (as shipped)", shipped[len(english_cases):],
              english, others, "tuned"),
    ]


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 5))
    for curve in curves():
        points = curve.points()
        axes.plot([c for _, c, _ in points], [p for _, _, p in points], marker=".", label=curve.label)
        chosen = curve.policy.answer_score
        here = next(point for point in points if point[0] == chosen)
        axes.annotate(f"{chosen:.3g}", (here[1], here[2]), textcoords="offset points", xytext=(5, -12))
        print(curve.label, " ".join(f"{t:.3f}:{c:.2f}/{p:.2f}" for t, c, p in points))
    axes.axhline(0.9, color="grey", linewidth=0.8, linestyle="--")
    axes.set_xlabel("coverage: share of all questions answered outright")
    axes.set_ylabel("precision: share of answers with the right article")
    axes.set_title("KB answers: precision against coverage, one point per answer threshold")
    axes.set_ylim(0.5, 1.01)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(ROOT / "docs" / "kb-quality.png", dpi=100)


if __name__ == "__main__":
    main()
