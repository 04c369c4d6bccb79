"""The labelled questions a build learns from, scored out of fold.

A build taught and tuned on labelled questions (SWITCHBOARD_KB_QUESTIONS) has seen them: asked again, they
reach their articles almost always, so their figures say nothing of new questions, and a decision policy
calibrated on them declines too little. Here each fold of them is scored by a snapshot built from the other
folds only, as a new question meets the shipped one; the policy calibrated on those scores is the honest one.

Files of several names (dev.csv, dev2.csv, ..., each perhaps in several languages' directories) are held out a
name at a time, with every file of that name, so that a question is never scored by a snapshot that was taught
its translation. Questions all in files of one name are held out in FOLDS parts by a hash of their text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

from bot.errors import SwitchboardError
from bot.language import LanguageDetector
from bot.ports import Encoder
from kb_index.evaluation import EvalCase, EvalResult, load_cases, run_cases
from kb_index.multilingual import MultilingualModel
from kb_index.retriever import HybridRetriever
from kb_index.snapshot import build_snapshot

FOLDS = 4


def folds(files: Sequence[Path]) -> list[list[EvalCase]]:
    """The labelled questions of `files`, in the folds they are held out by."""
    by_name: dict[str, list[EvalCase]] = {}
    for path in files:
        by_name.setdefault(path.stem, []).extend(load_cases(path))
    if len(by_name) > 1:
        return [by_name[name] for name in sorted(by_name)]
    cases = [case for group in by_name.values() for case in group]
    return [[case for case in cases if _fold_of(case.question) == fold] for fold in range(FOLDS)]


def _fold_of(question: str) -> int:
    return int.from_bytes(hashlib.sha256(question.strip().lower().encode()).digest()[:4], "big") % FOLDS


def score_held_out(kb_dir: Path, workdir: Path, encoder: Encoder, files: Sequence[Path], *, model: str,
                   multilingual: MultilingualModel | None, languages: LanguageDetector | None,
                   report: Callable[[str], None] = lambda line: None) -> tuple[list[EvalResult], HybridRetriever]:
    """Every labelled question of `files`, scored by a snapshot of `kb_dir` built (in `workdir`) from the other
    folds' questions; and the last fold's retriever, for what all of them share (the articles). Each snapshot is
    built from nothing: one given another index's vectors would take its map too, fitted on every question."""
    held_out = folds(files)
    if sum(1 for fold in held_out if fold) < 2:
        raise SwitchboardError("scoring out of fold needs labelled questions in at least two folds; "
                               f"{', '.join(map(str, files))} hold {sum(map(len, held_out))}")
    results: list[EvalResult] = []
    retriever: HybridRetriever | None = None
    for number, scored in enumerate(held_out, start=1):
        if not scored:
            continue
        taught = [case for other in held_out if other is not scored for case in other]
        report(f"fold {number} of {len(held_out)}: a snapshot learning from {len(taught)} labelled questions "
               f"scores the other {len(scored)} ...")
        index = workdir / f"fold-{number}"
        build_snapshot(kb_dir, index, encoder, model=model, multilingual=multilingual, questions=taught,
                       report=report)
        retriever = HybridRetriever(index, encoder, multilingual=multilingual)
        results += run_cases(retriever, scored, languages=languages)
    assert retriever is not None  # two folds at least hold questions
    return results, retriever
