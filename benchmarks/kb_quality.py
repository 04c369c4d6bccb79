"""The KB decision's precision against coverage on the dev and test splits: docs/kb-quality.png.

Coverage is the share of all questions the bot answers outright; precision the share of those
answers with the right article. Each point is one answer threshold, the other thresholds at their
calibrated values. `python -m benchmarks.kb_quality`.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from kb_index.encoder import DEFAULT_MODEL, load_encoder
from kb_index.evaluation import EvalResult, load_cases, report_decisions, run_cases
from kb_index.retriever import HybridRetriever
from kb_index.snapshot import build_snapshot
from switchboard.app import kb_policy
from switchboard.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def curve(results: list[EvalResult]) -> list[tuple[float, float, float]]:
    """(threshold, coverage, precision) for answer thresholds from 0.40 to 0.90, and the one in use."""
    base = kb_policy(Settings())
    points = []
    for threshold in sorted({step / 100 for step in range(40, 91, 2)} | {base.answer_score}):
        report = report_decisions(results, dataclasses.replace(base, answer_score=threshold,
                                                               choice_score=min(base.choice_score, threshold)))
        points.append((threshold, report.answered / report.questions, report.answer_precision))
    return points


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with tempfile.TemporaryDirectory(prefix="switchboard-kbq-") as tmp:
        encoder = load_encoder(DEFAULT_MODEL, Path(tmp) / "onnx", "onnx")
        build_snapshot(ROOT / "data" / "kb", Path(tmp) / "index", encoder, model=DEFAULT_MODEL)
        retriever = HybridRetriever(Path(tmp) / "index", encoder)
        splits = {name: run_cases(retriever, [case for file in files
                                              for case in load_cases(ROOT / "data" / "kb_eval" / file)])
                  for name, files in (("dev", ("dev.csv", "dev2.csv")), ("test", ("test.csv",)))}
    figure, axes = plt.subplots(figsize=(7, 5))
    chosen = kb_policy(Settings()).answer_score
    for name, results in splits.items():
        points = curve(results)
        axes.plot([c for _, c, _ in points], [p for _, _, p in points], marker=".", label=name)
        here = next(point for point in points if point[0] == chosen)
        axes.annotate(f"{chosen:.2f}", (here[1], here[2]), textcoords="offset points", xytext=(5, -12))
        print(name, " ".join(f"{t:.2f}:{c:.2f}/{p:.2f}" for t, c, p in points))
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
