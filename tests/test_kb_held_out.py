"""`kb eval --held-out`: the labelled questions a build learns from, each scored by a snapshot that did not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.errors import SwitchboardError
from bot.ports import Encoder
from kb_index.evaluation import EvalCase, load_cases, run_cases
from kb_index.held_out import FOLDS, folds, score_held_out
from kb_index.retriever import HybridRetriever
from kb_index.snapshot import build_snapshot
from switchboard.cli import main

ROOT = Path(__file__).resolve().parent.parent
DEV = [ROOT / "data" / "kb_eval" / "dev.csv", ROOT / "data" / "kb_eval" / "dev2.csv"]


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("question,expected_article_id\n" + "".join(f"{q},{a}\n" for q, a in rows), encoding="utf-8")
    return path


def test_files_of_several_names_are_held_out_a_name_at_a_time_with_their_translations(tmp_path: Path) -> None:
    files = [_write(tmp_path / "dev.csv", [("where is my parcel", "order-tracking"), ("hi there", "")]),
             _write(tmp_path / "de" / "dev.csv", [("wo ist mein paket", "order-tracking")]),
             _write(tmp_path / "dev2.csv", [("how much is shipping", "shipping-costs")])]
    assert folds(files) == [
        [EvalCase("where is my parcel", "order-tracking"), EvalCase("hi there", None),
         EvalCase("wo ist mein paket", "order-tracking")],
        [EvalCase("how much is shipping", "shipping-costs")]]


def test_files_of_one_name_are_held_out_in_parts_by_the_question() -> None:
    cases = load_cases(DEV[0])
    parts = folds([DEV[0]])
    assert len(parts) == FOLDS and all(parts)
    assert sorted(case.question for part in parts for case in part) == sorted(case.question for case in cases)
    assert folds([DEV[0]]) == parts  # the same parts every time


def test_held_out_questions_are_scored_by_snapshots_that_never_learnt_them(
        tmp_path: Path, index_dir: Path, encoder: Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_INDEX_DIR", str(index_dir))
    monkeypatch.setenv("SWITCHBOARD_KB_DIR", str(ROOT / "data" / "kb"))
    monkeypatch.setenv("SWITCHBOARD_LANGUAGES", "en")
    monkeypatch.setenv("SWITCHBOARD_KB_QUESTIONS", ",".join(map(str, DEV)))
    result = CliRunner().invoke(main, ["kb", "eval", "--held-out", "--json"])
    assert result.exit_code == 0, result.output
    assert "fold 1 of 2" in result.stderr and "fold 2 of 2" in result.stderr
    assert "not from it" in result.stderr and "Leave a margin" in result.stderr
    held_out = {r["question"]: r for r in json.loads(result.stdout)["results"]}
    cases = {case.question: case for path in DEV for case in load_cases(path)}
    assert held_out.keys() == cases.keys()

    # dev.csv's questions are scored as a snapshot taught dev2.csv's alone scores them ...
    build_snapshot(ROOT / "data" / "kb", tmp_path / "dev2", encoder, questions=load_cases(DEV[1]),
                   vectors_from=index_dir)
    for result in run_cases(HybridRetriever(tmp_path / "dev2", encoder), load_cases(DEV[0])):
        assert held_out[result.question]["score"] == pytest.approx(result.score, abs=2e-4), result.question
        assert held_out[result.question]["top"] == list(result.ranked[:3]), result.question
    # ... and not as one taught them all, which meets each answerable question again as its own example.
    build_snapshot(ROOT / "data" / "kb", tmp_path / "all", encoder, questions=list(cases.values()),
                   vectors_from=index_dir)
    in_sample = [r for r in run_cases(HybridRetriever(tmp_path / "all", encoder), list(cases.values()))
                 if r.expected]
    hit = sum(r.ranked[:1] == (r.expected,) for r in in_sample) / len(in_sample)
    held_hit = sum(held_out[r.question]["top"][:1] == [r.expected] for r in in_sample) / len(in_sample)
    assert hit > 0.98 and held_hit < hit - 0.05, (hit, held_hit)


def test_held_out_measures_the_labelled_questions_only(index_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_INDEX_DIR", str(index_dir))
    monkeypatch.setenv("SWITCHBOARD_LANGUAGES", "en")
    both = CliRunner().invoke(main, ["kb", "eval", "--held-out", "--questions", str(DEV[0])])
    assert both.exit_code == 2 and "leave out --questions" in both.output
    monkeypatch.setenv("SWITCHBOARD_KB_QUESTIONS", "")
    none = CliRunner().invoke(main, ["kb", "eval", "--held-out"])
    assert none.exit_code == 1 and "set SWITCHBOARD_KB_QUESTIONS" in none.output
    monkeypatch.setenv("SWITCHBOARD_KB_QUESTIONS", str(DEV[0].parent / "nowhere.csv"))
    missing = CliRunner().invoke(main, ["kb", "eval", "--held-out"])
    assert missing.exit_code == 1 and "nowhere.csv" in missing.output


def test_one_question_cannot_be_held_out(tmp_path: Path, encoder: Encoder) -> None:
    alone = _write(tmp_path / "questions.csv", [("where is my parcel", "order-tracking")])
    with pytest.raises(SwitchboardError, match=r"at least two folds.*hold 1"):
        score_held_out(ROOT / "data" / "kb", tmp_path / "work", encoder, [alone], model="", multilingual=None,
                       languages=None)
    assert not (tmp_path / "work").exists()  # refused before building anything
