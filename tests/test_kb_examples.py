"""Example questions editors teach (front matter `questions:`, or "answer with article X" in the gaps
report): they answer the question taught, in any language, without answering what they do not match."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import frontmatter
import numpy as np
import pytest

from bot.language import LanguageDetector
from bot.ports import Encoder
from kb_index.articles import Chunk
from kb_index.evaluation import load_cases, report_decisions, run_cases
from kb_index.multilingual import MultilingualModel
from kb_index.own_language import chunk_languages
from kb_index.retriever import HybridRetriever
from kb_index.snapshot import build_snapshot, current_snapshot, load_snapshot
from switchboard.app import kb_policy
from switchboard.settings import Settings
from tests.conftest import ROOT
from tests.test_multilingual import Counting

EVAL = ROOT / "data" / "kb_eval"
LANGUAGES = ("de", "bg", "zh", "zh-TW", "th")


def _dev_files() -> list[Path]:
    return [EVAL / "dev.csv", *(EVAL / "lang" / language / "dev.csv" for language in LANGUAGES)]


@pytest.fixture(scope="module")
def taught(tmp_path_factory: pytest.TempPathFactory, encoder: Encoder,
           multilingual: MultilingualModel) -> HybridRetriever:
    """The sample KB after an editor taught it the answerable questions of data/kb_eval/dev.csv and of
    every language's dev set (311), each to the article that answers it."""
    kb = tmp_path_factory.mktemp("taught") / "kb"
    shutil.copytree(ROOT / "data" / "kb", kb)
    questions: dict[str, list[str]] = {}
    for path in _dev_files():
        with path.open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["expected_article_id"]:
                    questions.setdefault(row["expected_article_id"], []).append(row["question"])
    for path in kb.glob("*.md"):
        post = frontmatter.load(path)
        if post["id"] in questions:
            post["questions"] = questions[post["id"]]
            path.write_text(frontmatter.dumps(post) + "\n", encoding="utf-8")
    index = kb.parent / "index"
    build_snapshot(kb, index, encoder, multilingual=multilingual)
    return HybridRetriever(index, encoder, multilingual=multilingual)


# Measured with the questions above taught: English dev2 reach 0.89, 105 of 113 answers right, 22 of 32
# declined; the other languages' test sets together 0.65, 30 of 31, 28 of 30 (untaught 0.64, 29 of 30, 28). Scored as
# sections, as before, the taught questions answered more of what they did not match: dev2 86% right and 17
# of 32 declined with only dev.csv taught, the other languages 5 of 30 declined.
def test_taught_questions_do_not_answer_what_they_do_not_match(taught: HybridRetriever) -> None:
    english = report_decisions(run_cases(taught, load_cases(EVAL / "dev2.csv"), languages=LanguageDetector()),
                               kb_policy(Settings()))
    assert english.answer_precision >= 0.89 and english.decline_rate >= 0.62 and english.reach >= 0.85, english
    cases = [case for language in LANGUAGES for case in load_cases(EVAL / "lang" / language / "test.csv")]
    others = report_decisions(run_cases(taught, cases, languages=LanguageDetector()), kb_policy(Settings()))
    assert others.answer_precision >= 0.9 and others.decline_rate >= 0.83 and others.reach >= 0.55, others


@pytest.mark.parametrize("path", _dev_files(), ids=lambda path: path.parent.name)
def test_a_taught_question_asked_again_reaches_its_article(taught: HybridRetriever, path: Path) -> None:
    # Measured: every English and Chinese one answered, 38 to 40 of 41 in the other languages (the rest offered
    # with their article among the choices). Embedded as passages, as before, German ones were answered 26 times.
    cases = [case for case in load_cases(path) if case.expected]
    report = report_decisions(run_cases(taught, cases, languages=LanguageDetector()), kb_policy(Settings()))
    assert report.reach >= 0.95 and report.answered == report.answered_right >= 0.85 * len(cases), report


def test_example_questions_are_embedded_as_questions_and_reused(tmp_path: Path, encoder: Encoder,
                                                                multilingual: MultilingualModel) -> None:
    kb = tmp_path / "kb"
    shutil.copytree(ROOT / "data" / "kb", kb)
    article = kb / "gift-cards.md"
    post = frontmatter.load(article)
    post["questions"] = ["礼品卡能先用一半剩下的以后再用吗"]
    article.write_text(frontmatter.dumps(post) + "\n", encoding="utf-8")
    queries, passages = Counting(multilingual.queries), Counting(multilingual.passages)
    model = MultilingualModel(multilingual.name, queries, passages)
    first = build_snapshot(kb, tmp_path / "index", encoder, multilingual=model)
    snapshot = load_snapshot(first)
    assert (queries.texts, passages.texts) == (1, len(snapshot.chunks) - 1)
    asked = next(n for n, chunk in enumerate(snapshot.chunks) if chunk.question)
    assert snapshot.multilingual is not None and np.allclose(
        snapshot.multilingual.reconstruct(asked), multilingual.queries.encode(["礼品卡能先用一半剩下的以后再用吗"])[0],
        atol=1e-5)
    assert snapshot.manifest["examples"] == "queries"
    build_snapshot(kb, tmp_path / "index", encoder, multilingual=model)  # nothing changed: nothing embedded
    assert (queries.texts, passages.texts) == (1, len(snapshot.chunks) - 1)
    # A snapshot from before embedded example questions as passages: they are embedded again, sections reused.
    manifest = json.loads((current_snapshot(tmp_path / "index") / "manifest.json").read_text(encoding="utf-8"))
    del manifest["examples"]
    (current_snapshot(tmp_path / "index") / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    build_snapshot(kb, tmp_path / "index", encoder, multilingual=model)
    assert (queries.texts, passages.texts) == (2, len(snapshot.chunks) - 1)



def test_an_example_question_is_in_its_own_language() -> None:
    section = Chunk("shipping-costs", "Shipping costs", "", "How much?", "Standard delivery costs EUR 4.95.")
    german = Chunk("shipping-costs", "Shipping costs", "", "How much?", "Standard delivery costs EUR 4.95.",
                   question="was kostet der versand nach österreich")
    languages = {"was kostet der versand nach österreich": "de"}
    assert chunk_languages([section, german], languages.get) == ("en", "de")
    translated = Chunk("shipping-costs.zh", "运费", "", "", "标准配送运费为 4.95 欧元", lang="zh-TW")
    assert chunk_languages([translated], languages.get) == ("zh-TW",)
