"""What a build learns from labelled questions: the multilingual encoder's questions tuned to the knowledge base
(kb_index.query_tuning), fitted at build, kept with the snapshot, applied to questions in other languages, decided by
a policy of its own; and the labelled English questions taught as example questions, which English questions meet."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from flask import Flask

from bot.dialogue.kb_decision import OTHER_LANGUAGES, KbPolicy, parse_language_policies, policy_spec
from bot.errors import SwitchboardError
from bot.language import LanguageDetector
from bot.messages import Passage
from bot.ports import Encoder
from kb_index import query_tuning
from kb_index.articles import chunk_article, load_articles
from kb_index.evaluation import EvalCase, load_cases, report_decisions, run_cases
from kb_index.multilingual import MultilingualModel
from kb_index.query_tuning import ADAPTER, labelled_questions
from kb_index.retriever import HybridRetriever
from kb_index.snapshot import article_hashes, build_snapshot, changes_since_live, current_snapshot, load_snapshot
from switchboard.app import services_of
from switchboard.settings import Settings
from tests.conftest import ROOT, SAMPLE_VECTORS, Editor

LANGUAGES = ["de", "bg", "zh", "zh-TW", "th"]
DETECTOR = LanguageDetector(["en", *LANGUAGES])


def _lang_cases(split: str) -> list[EvalCase]:
    return [case for language in LANGUAGES for case in load_cases(ROOT / "data" / "kb_eval" / "lang" / language
                                                                  / f"{split}.csv")]


@pytest.fixture(scope="session")
def tuned_on_dev(tmp_path_factory: pytest.TempPathFactory, index_dir: Path, encoder: Encoder,
                 multilingual: MultilingualModel) -> Path:
    """The sample KB's index with the questions tuned on every dev split but dev2 (English and translated), so that
    dev2 is a fair measure of questions it was not tuned on."""
    index = tmp_path_factory.mktemp("tuned_on_dev")
    questions = [case for split in ("dev", "dev3", "dev4") for case in
                 load_cases(ROOT / "data" / "kb_eval" / f"{split}.csv") + _lang_cases(split)]
    build_snapshot(ROOT / "data" / "kb", index, encoder, model=SAMPLE_VECTORS, multilingual=multilingual,
                   vectors_from=index_dir, questions=questions)
    return index


def test_the_sample_shop_is_tuned_on_its_dev_splits_only() -> None:
    questions = labelled_questions(Settings().kb_questions, ROOT)
    test_questions = {case.question for path in (ROOT / "data" / "kb_eval").rglob("test*.csv")
                      for case in load_cases(path)}
    assert len(questions) > 800 and not test_questions & {case.question for case in questions}


def test_a_build_keeps_the_map_and_tunes_only_questions_in_other_languages(
        tuned_on_dev: Path, index_dir: Path, encoder: Encoder, multilingual: MultilingualModel) -> None:
    snapshot = load_snapshot(current_snapshot(tuned_on_dev))  # type: ignore[arg-type]
    assert snapshot.adapter is not None and snapshot.adapter.shape == (384, 384)
    assert snapshot.manifest["tuned_on"] == 134 + 83 + 129 + 5 * (54 + 66 + 111)
    tuned = HybridRetriever(tuned_on_dev, encoder, multilingual=multilingual)
    plain = HybridRetriever(index_dir, encoder, multilingual=multilingual)
    german = tuned.search("wie lange dauert eine rückerstattung", k=3, language="de")
    assert german and all(p.multilingual and p.tuned for p in german)
    assert not any(p.tuned for p in plain.search("wie lange dauert eine rückerstattung", k=3, language="de"))
    english = tuned.search("how long does a refund take", k=5, language="en")  # never mapped, but taught
    assert english and not any(p.multilingual for p in english) and all(p.tuned for p in english)


def test_questions_nobody_tuned_on_reach_their_article_more_often(
        tuned_on_dev: Path, index_dir: Path, encoder: Encoder, multilingual: MultilingualModel) -> None:
    """dev2 (the five languages), tuned on the other dev splits: reach 0.626 -> 0.796, 46 of 50 answers right -> 55
    of 59, 63 -> 72 of 80 unanswerable questions declined (docs/kb-quality.md); floors a few questions below."""
    cases = _lang_cases("dev2")
    plain = report_decisions(run_cases(HybridRetriever(index_dir, encoder, multilingual=multilingual), cases,
                                       languages=DETECTOR), KbPolicy())
    tuned = report_decisions(run_cases(HybridRetriever(tuned_on_dev, encoder, multilingual=multilingual), cases,
                                       languages=DETECTOR), KbPolicy())
    assert tuned.reach >= plain.reach + 0.15, (plain, tuned)
    assert tuned.answer_precision >= 0.9 and tuned.decline_rate >= 0.85, tuned


# Each language's whole test split (test.csv and test2.csv, 93 answerable and 27 unanswerable questions), tuned on
# dev, dev3 and dev4: reach 0.78 to 0.85, 93% to 100% of the answers right, 21 or 22 of 27 declined (the shop as it
# ships, also tuned on dev2, is in docs/kb-quality.md). Issue #16 asks 70%, 85% and 75%. Floors a few questions below.
TEST_FLOORS = {"reach": 0.74, "answer_precision": 0.86, "decline_rate": 0.70}


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_language_s_test_questions_reach_their_article(
        tuned_on_dev: Path, encoder: Encoder, multilingual: MultilingualModel, language: str) -> None:
    cases = [case for split in ("test", "test2")
             for case in load_cases(ROOT / "data" / "kb_eval" / "lang" / language / f"{split}.csv")]
    assert len(cases) == 120
    report = report_decisions(run_cases(HybridRetriever(tuned_on_dev, encoder, multilingual=multilingual), cases,
                                        languages=DETECTOR), KbPolicy())
    assert all(report.as_dict()[metric] >= floor for metric, floor in TEST_FLOORS.items()), report


def test_labelled_english_questions_are_taught_as_examples_that_only_english_questions_meet(
        tuned_on_dev: Path, encoder: Encoder, multilingual: MultilingualModel) -> None:
    snapshot = load_snapshot(current_snapshot(tuned_on_dev))  # type: ignore[arg-type]
    taught = [snapshot.chunks[i] for i in sorted(snapshot.labelled)]
    english = {case.question: case.expected for split in ("dev", "dev3", "dev4")
               for case in load_cases(ROOT / "data" / "kb_eval" / f"{split}.csv") if case.expected}
    labelled = {**english, **{case.question: case.expected for split in ("dev", "dev3", "dev4")
                              for case in _lang_cases(split) if case.expected}}
    # The answerable questions the language detector reads as English ("versandkosten?" among them).
    assert snapshot.manifest["labelled_examples"] == len(taught) >= sum(c.question in english for c in taught) \
        >= len(english) - 5
    detect = LanguageDetector().detect
    assert all(labelled[c.question] == c.article_id and detect(c.question) in (None, "en") for c in taught)
    # A section of the article answers each; the words of the customers' questions are not the KB's own.
    assert all(c.text and not c.translation_of for c in taught)
    assert not snapshot.vocabulary.knows("pasword") and "paswrd" not in snapshot.vocabulary.correct("paswrd reset")
    retriever = HybridRetriever(tuned_on_dev, encoder, multilingual=multilingual)
    met = retriever.search("forgot my pasword", k=3, language="en")  # a labelled dev question, asked again
    assert met[0].topic == "password-reset" and met[0].tuned and not met[0].multilingual
    for question, language in (("passwort vergessen", "de"), ("忘记密码了", "zh")):
        found = retriever.search(question, k=10, language=language)
        assert found and all(p.multilingual for p in found)
    assert snapshot.multilingual is not None
    rows = snapshot.multilingual.reconstruct_batch(np.array(sorted(snapshot.labelled), dtype=np.int64))
    assert taught and not rows.any()  # the multilingual index holds no vector for them


def test_english_questions_nobody_taught_are_decided_better(tuned_on_dev: Path, index_dir: Path, encoder: Encoder,
                                                             multilingual: MultilingualModel) -> None:
    """English dev2, taught the other dev splits' labelled questions and decided by the taught policy, against the
    untaught KB and the English policy: reach 0.855 -> 0.877, answers 104 of 114 right -> 96 of 102, 24 -> 28 of
    32 unanswerable questions declined (docs/kb-quality.md); floors a few questions below."""
    cases = load_cases(ROOT / "data" / "kb_eval" / "dev2.csv")
    plain = report_decisions(run_cases(HybridRetriever(index_dir, encoder, multilingual=multilingual), cases,
                                       languages=DETECTOR), KbPolicy())
    taught = report_decisions(run_cases(HybridRetriever(tuned_on_dev, encoder, multilingual=multilingual), cases,
                                        languages=DETECTOR), KbPolicy())
    assert taught.reach >= plain.reach and taught.answer_precision >= 0.92, (plain, taught)
    assert taught.decline_rate >= 0.8 > plain.decline_rate, (plain, taught)


def test_the_taught_policy_decides_english_passages_of_a_taught_kb() -> None:
    policies = parse_language_policies("taught=0.7/0.05/0.6/0.1")
    assert policies.taught == KbPolicy(answer_score=0.7, answer_margin=0.05, choice_score=0.6, choice_window=0.1)
    english = KbPolicy()
    taught = [Passage("a", "A", "", "", "text", 0.8, tuned=True)]
    assert policies.deciding(taught, "en", False, english) == policies.taught
    assert policies.deciding([replace(taught[0], tuned=False)], "en", False, english) == english
    assert policies.deciding(taught, "de", True, english) == policies.tuned
    assert OTHER_LANGUAGES.deciding([], None, False, english) == english


@pytest.fixture
def small_kb(tmp_path: Path) -> Path:
    kb = tmp_path / "kb"
    kb.mkdir()
    for name in ("returns-policy.md", "shipping-costs.md", "password-reset.md"):
        shutil.copy(ROOT / "data" / "kb" / name, kb / name)
    return kb


SMALL_QUESTIONS = [EvalCase("kann ich meine jacke zurückgeben", "returns-policy"),
                   EvalCase("was kostet der versand", "shipping-costs"),
                   EvalCase("ich habe mein passwort vergessen", "password-reset"),
                   EvalCase("wie wird das wetter morgen", None)]


@pytest.fixture(autouse=True)
def few_questions_tune(monkeypatch: pytest.MonkeyPatch) -> None:
    """Here a handful of labelled questions tune the small KB, to test what tuning does; a real build tunes on no
    fewer than query_tuning.MIN_QUESTIONS (the test below)."""
    monkeypatch.setattr("kb_index.snapshot.MIN_QUESTIONS", 1)
    monkeypatch.setattr("kb_index.snapshot.MIN_UNANSWERABLE", 0)


def test_only_answerable_english_questions_about_the_kb_are_taught_and_they_edit_no_article(
        small_kb: Path, tmp_path: Path, encoder: Encoder) -> None:
    index = tmp_path / "index"
    questions = [EvalCase("i forgot my pasword", "password-reset"), EvalCase("can i return worn underwear",
                                                                             "returns-policy"),
                 EvalCase("was kostet der versand", "shipping-costs"),
                 EvalCase("how do i reset my netflix password", None), EvalCase("wheres my parcel", "order-tracking")]
    build_snapshot(small_kb, index, encoder, model=SAMPLE_VECTORS, questions=questions)  # English only
    snapshot = load_snapshot(current_snapshot(index))  # type: ignore[arg-type]
    assert sorted((c.question, c.article_id, c.heading) for c in snapshot.chunks if c.labelled) == [
        ("can i return worn underwear", "returns-policy", "Items we cannot take back"),  # the nearest section
        ("i forgot my pasword", "password-reset", "Forgot your password?")]
    assert snapshot.manifest["labelled_examples"] == 2 and snapshot.multilingual is None
    found = HybridRetriever(index, encoder).search("forgot my pasword", k=3)
    assert found[0].topic == "password-reset" and found[0].tuned
    written = [chunk for article in load_articles(small_kb) for chunk in chunk_article(article)]
    assert not any(changes_since_live(index, article_hashes(written, [c.content_hash() for c in written])).values())


def test_too_few_labelled_questions_tune_nothing_and_say_how_many_are_needed(
        small_kb: Path, tmp_path: Path, encoder: Encoder, multilingual: MultilingualModel,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kb_index.snapshot.MIN_QUESTIONS", query_tuning.MIN_QUESTIONS)
    monkeypatch.setattr("kb_index.snapshot.MIN_UNANSWERABLE", query_tuning.MIN_UNANSWERABLE)
    said: list[str] = []
    built = build_snapshot(small_kb, tmp_path / "index", encoder, multilingual=multilingual, questions=SMALL_QUESTIONS,
                           report=said.append)
    assert not (built / ADAPTER).exists() and load_snapshot(built).adapter is None
    assert json.loads((built / "manifest.json").read_text())["tuned_on"] == 0
    assert any("not tuned: 4 labelled questions" in line and "(1 of them unanswerable)" in line
               and "0 example questions" in line and f"at least {query_tuning.MIN_QUESTIONS}" in line
               for line in said), said
    # As many as needed, but none the KB cannot answer: no bar to learn.
    monkeypatch.setattr("kb_index.snapshot.MIN_QUESTIONS", 3)
    answerable = [case for case in SMALL_QUESTIONS if case.expected]
    built = build_snapshot(small_kb, tmp_path / "index", encoder, multilingual=multilingual, questions=answerable,
                           report=said.append)
    assert load_snapshot(built).adapter is None and any("(0 of them unanswerable)" in line for line in said), said


def test_a_rebuild_takes_the_map_it_fitted_before(small_kb: Path, tmp_path: Path, encoder: Encoder,
                                                   multilingual: MultilingualModel,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    index = tmp_path / "index"
    first = build_snapshot(small_kb, index, encoder, multilingual=multilingual, questions=SMALL_QUESTIONS)

    def refit(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("fitted again")

    monkeypatch.setattr(query_tuning, "fit_adapter", refit)
    monkeypatch.setattr("kb_index.snapshot.fit_adapter", refit)
    second = build_snapshot(small_kb, index, encoder, multilingual=multilingual, questions=SMALL_QUESTIONS)
    assert np.array_equal(np.load(first / ADAPTER), np.load(second / ADAPTER))
    assert json.loads((second / "manifest.json").read_text())["tuned_on"] == 4


def test_questions_about_other_articles_tune_nothing_and_say_so(small_kb: Path, tmp_path: Path, encoder: Encoder,
                                                               multilingual: MultilingualModel) -> None:
    said: list[str] = []
    others = [EvalCase("wo ist meine bestellung", "order-tracking"), EvalCase("geschenkkarte", "gift-cards"),
              EvalCase("was kostet der versand", "shipping-costs")]
    built = build_snapshot(small_kb, tmp_path / "index", encoder, multilingual=multilingual, questions=others,
                           report=said.append)
    assert not (built / ADAPTER).exists() and load_snapshot(built).adapter is None
    assert any("2 of the 3 labelled questions" in line and "gift-cards" in line for line in said), said
    assert any("SWITCHBOARD_KB_QUESTIONS" in line and "not tuned" in line for line in said), said


def test_the_snapshot_counts_the_questions_it_was_tuned_on(small_kb: Path, tmp_path: Path, encoder: Encoder,
                                                           multilingual: MultilingualModel) -> None:
    elsewhere = EvalCase("wo ist meine bestellung", "order-tracking")  # an article this KB lacks: left out
    built = build_snapshot(small_kb, tmp_path / "index", encoder, multilingual=multilingual,
                           questions=[*SMALL_QUESTIONS, elsewhere])
    assert json.loads((built / "manifest.json").read_text())["tuned_on"] == len(SMALL_QUESTIONS)


def test_the_articles_example_questions_tune_it_too(small_kb: Path, tmp_path: Path, encoder: Encoder,
                                                   multilingual: MultilingualModel) -> None:
    """What editors taught is labelled by the article that lists it: on the sample KB with dev3's answerable questions
    as example questions and dev's as labelled ones, the five languages' dev2 questions were reached 0.730 -> 0.787
    of the time when the examples were labels too (docs/kb-quality.md)."""
    article = small_kb / "shipping-costs.md"
    tags = "tags: [shipping, payments]\n"
    article.write_text(article.read_text(encoding="utf-8").replace(
        tags, f"{tags}questions: [was zahle ich fürs paket nach wien, 送货要多少钱]\n"), encoding="utf-8")
    said: list[str] = []
    taught_only = build_snapshot(small_kb, tmp_path / "taught", encoder, multilingual=multilingual, report=said.append)
    assert load_snapshot(taught_only).adapter is not None
    assert json.loads((taught_only / "manifest.json").read_text())["tuned_on"] == 2
    assert any("0 labelled questions and 2 example questions" in line for line in said), said
    both = build_snapshot(small_kb, tmp_path / "both", encoder, multilingual=multilingual, questions=SMALL_QUESTIONS)
    assert json.loads((both / "manifest.json").read_text())["tuned_on"] == len(SMALL_QUESTIONS) + 2
    assert not np.array_equal(np.load(both / ADAPTER), np.load(taught_only / ADAPTER))


def test_a_damaged_map_is_refused_with_a_clear_error(small_kb: Path, tmp_path: Path, encoder: Encoder,
                                                      multilingual: MultilingualModel) -> None:
    built = build_snapshot(small_kb, tmp_path / "index", encoder, multilingual=multilingual, questions=SMALL_QUESTIONS)
    np.save(built / ADAPTER, np.ones((3, 3), dtype=np.float32))
    with pytest.raises(SwitchboardError, match=r"unreadable.*not a 384 x 384 map.*kb build"):
        load_snapshot(built)


@pytest.mark.parametrize(("spec", "error"), [("data/kb_eval/nowhere.csv", "nowhere.csv"),
                                              ("data/kb_eval/lang/*/nothing*.csv", "no file matches"),
                                              ("data/kb_eval", "is no file")])
def test_labelled_questions_must_name_files(spec: str, error: str) -> None:
    with pytest.raises(SwitchboardError, match=error):
        labelled_questions(spec, ROOT)


def test_labelled_questions_may_be_named_wherever_they_are() -> None:
    relative = labelled_questions("data/kb_eval/lang/*/dev.csv", ROOT)
    assert len(relative) == 5 * 54
    assert labelled_questions(f"{ROOT}/data/kb_eval/lang/*/dev.csv, {ROOT}/data/kb_eval/dev.csv") == \
        relative + load_cases(ROOT / "data" / "kb_eval" / "dev.csv")


def test_tuned_passages_are_decided_by_the_tuned_policy() -> None:
    assert OTHER_LANGUAGES.get("de", tuned=True) == OTHER_LANGUAGES.get("bg", tuned=True) == OTHER_LANGUAGES.tuned
    assert OTHER_LANGUAGES.tuned.answer_score < OTHER_LANGUAGES.shared.answer_score  # a scale of its own
    custom = parse_language_policies("tuned=0.9/0.1/0.8/0.05")
    assert policy_spec(custom.tuned) == "0.9/0.1/0.8/0.05" and custom.shared == OTHER_LANGUAGES.shared
    with pytest.raises(SwitchboardError, match="<language, \\*, tuned or taught>"):
        parse_language_policies("tuned=0.9/0.1")


def test_kb_eval_says_the_questions_were_tuned_and_suggests_the_tuned_policy(
        tuned_on_dev: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from switchboard.cli import main

    monkeypatch.setenv("SWITCHBOARD_INDEX_DIR", str(tuned_on_dev))
    result = CliRunner().invoke(main, ["kb", "eval", "--questions",
                                       str(ROOT / "data" / "kb_eval" / "lang" / "th" / "dev2.csv")])
    assert result.exit_code == 0, result.output
    assert "tuned to this KB on 1501 labelled questions" in result.stderr
    assert "answer at 0.694 with a lead of 0.04" in result.output
    assert "SWITCHBOARD_KB_OTHER_LANGUAGES=tuned=" in result.output
    english = CliRunner().invoke(main, ["kb", "eval", "--questions", str(ROOT / "data" / "kb_eval" / "dev2.csv")])
    assert english.exit_code == 0, english.output
    taught = load_snapshot(current_snapshot(tuned_on_dev)).manifest["labelled_examples"]  # type: ignore[arg-type]
    assert f"This KB was taught {taught} labelled English questions" in english.stderr
    assert "decided by the taught policy" in english.stderr
    assert "answer at 0.67 with a lead of 0.10" in english.output
    assert "SWITCHBOARD_KB_OTHER_LANGUAGES=taught=" in english.output



def test_a_publish_tunes_the_kb_and_a_draft_is_tried_with_the_published_map(
        tmp_path: Path, index_kb: Callable[[Path, Path], Path], make_app: Callable[..., Flask]) -> None:
    kb, index, questions = tmp_path / "kb", tmp_path / "index", tmp_path / "questions.csv"
    shutil.copytree(ROOT / "data" / "kb", kb)
    index_kb(kb, index)
    questions.write_text("question,expected_article_id\n" + "".join(f"{case.question},{case.expected or ''}\n"
                                                                     for case in SMALL_QUESTIONS), encoding="utf-8")
    app = make_app(kb_dir=kb, index_dir=index, kb_questions=str(questions))
    editor = Editor(app)
    assert "the bot answers from it now" in editor.post("/console/kb/publish")
    live = current_snapshot(index)
    assert live is not None and json.loads((live / "manifest.json").read_text())["tuned_on"] == 4
    editor.new_article("snowshoe-rental", "Snowshoe rental", "## Renting snowshoes\nOur Leeds store rents them out.")
    draft = editor.client.get("/console/kb/test?q=kann+man+schneeschuhe+mieten&against=draft")
    assert draft.status_code == 200
    tried = current_snapshot(services_of(app).settings.var_dir / "kb_draft")
    assert tried is not None and np.array_equal(np.load(tried / ADAPTER), np.load(live / ADAPTER))
    assert json.loads((tried / "manifest.json").read_text())["tuned_on"] == 4


def test_the_sample_questions_are_optional_and_a_business_s_own_are_not(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from switchboard.app import labelled_kb_questions

    assert len(labelled_kb_questions(Settings())) > 800  # run from the project: the sample shop's dev splits
    monkeypatch.chdir(tmp_path)  # a business's own directory, without them
    assert labelled_kb_questions(Settings()) == []
    assert labelled_kb_questions(Settings(kb_questions="")) == []
    with pytest.raises(SwitchboardError, match=r"our-questions\.csv"):
        labelled_kb_questions(Settings(kb_questions="our-questions.csv"))
    with pytest.raises(SwitchboardError, match=r"our-questions\.csv"):  # English questions are taught them too
        labelled_kb_questions(Settings(languages="en", kb_questions="our-questions.csv"))


def test_a_taught_question_is_mapped_as_the_customer_s_and_meets_it(small_kb: Path, tmp_path: Path,
                                                                    encoder: Encoder,
                                                                    multilingual: MultilingualModel) -> None:
    taught = "was zahle ich fürs paket nach wien"
    article = small_kb / "shipping-costs.md"
    text = article.read_text(encoding="utf-8")
    tags = "tags: [shipping, payments]\n"
    article.write_text(text.replace(tags, f"{tags}questions: [{taught}]\n"), encoding="utf-8")
    built = build_snapshot(small_kb, tmp_path / "index", encoder, multilingual=multilingual, questions=SMALL_QUESTIONS)
    snapshot = load_snapshot(built)
    row = next(i for i, chunk in enumerate(snapshot.chunks) if chunk.question == taught)
    encoded = np.load(built / "multilingual.npy")[row]  # as encoded, for a later build to reuse
    assert np.allclose(encoded, multilingual.queries.encode([taught])[0], atol=1e-5)
    assert snapshot.adapter is not None and snapshot.multilingual is not None
    mapped = query_tuning.adapt(encoded[None], snapshot.adapter)[0]
    assert np.allclose(snapshot.multilingual.reconstruct(row), mapped, atol=1e-5)
    found = HybridRetriever(tmp_path / "index", encoder, multilingual=multilingual).search(taught, k=3, language="de")
    assert found[0].article_id == "shipping-costs" and found[0].tuned



def test_a_server_rebuilds_an_index_from_before_tuning(tmp_path: Path, index_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from switchboard.cli.serve import index_predates

    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    manifest = json.loads((current_snapshot(index_dir) / "manifest.json").read_text())  # type: ignore[operator]
    (snapshot / "manifest.json").write_text(json.dumps(manifest))
    assert manifest["tuned_on"] == 0  # built without labelled questions: nothing to rebuild for
    assert index_predates(Settings(), snapshot) is None
    del manifest["tuned_on"]  # as a build before questions were tuned wrote it
    (snapshot / "manifest.json").write_text(json.dumps(manifest))
    assert "tuning questions in other languages" in str(index_predates(Settings(), snapshot))
    assert index_predates(Settings(kb_questions=""), snapshot) is None
    assert index_predates(Settings(languages="en"), snapshot) is None
    monkeypatch.chdir(tmp_path)  # where the sample's questions are not
    assert index_predates(Settings(), snapshot) is None
    del manifest["multilingual"]
    (snapshot / "manifest.json").write_text(json.dumps(manifest))
    assert index_predates(Settings(kb_questions=""), snapshot) == "answers in en,de,bg,zh,zh-TW,th"
    monkeypatch.chdir(ROOT)
    del manifest["labelled_examples"]  # as a build before labelled English questions were taught wrote it
    (snapshot / "manifest.json").write_text(json.dumps(manifest))
    assert "labelled English questions" in str(index_predates(Settings(languages="en"), snapshot))
    assert index_predates(Settings(languages="en", kb_questions=""), snapshot) is None

