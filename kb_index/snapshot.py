"""Index snapshots: build a new one beside the live one, then switch a pointer atomically.

Layout under the index directory:

    CURRENT                  name of the live snapshot (replaced atomically)
    snapshots/<name>/        index.faiss, vectors.npy, chunks.json, bm25/, manifest.json, names.txt
                             (the words that are names, kb_index.vocabulary), and with the
                             multilingual encoder multilingual.faiss and multilingual.npy
    onnx/                    the encoders' ONNX exports, named by the weights' hash

A build reuses the vectors of every chunk whose text is unchanged since the live
snapshot, so a one-article edit embeds one article.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import bm25s
import faiss
import numpy as np
from tqdm import tqdm

from bot.errors import SwitchboardError
from bot.language import DEFAULT_LANGUAGES, LanguageDetector, is_english
from bot.ports import Encoder
from kb_index.articles import Chunk, chunk_article, load_articles
from kb_index.evaluation import EvalCase
from kb_index.multilingual import MultilingualModel
from kb_index.own_language import OwnChunks, chunk_languages, own_chunks
from kb_index.query_tuning import (
    ADAPTER,
    MIN_QUESTIONS,
    MIN_UNANSWERABLE,
    QueryTuning,
    adapt,
    cache_key,
    cached,
    fit_adapter,
    keep,
    questions_key,
)
from kb_index.vocabulary import NAMES_VERSION, KbVocabulary, international_words, stemmer

# bm25s sets its logger to DEBUG when it is imported: every lexical index it builds would log a line.
logging.getLogger(bm25s.__name__).setLevel(logging.WARNING)

POINTER = "CURRENT"
EXAMPLES_AS = "queries"  # how the multilingual index embeds example questions (the manifest's "examples")
# How chunks become BM25 tokens; a snapshot built another way gets its lexical index rebuilt on load.
LEXICAL = "bm25s-en-stopwords-snowball-1"
LOCK = ".build.lock"
HNSW_NEIGHBOURS = 32
SOURCES = "articles"  # a snapshot's copy of the article files it was built from
NAMES = "names.txt"


def tokenize(texts: list[str]) -> list[list[str]]:
    """Lexical tokens for BM25: lower-cased words of two or more characters, English stop words dropped,
    reduced to their stems ("returns", "returned" and "returning" are one word)."""
    tokens: list[list[str]] = bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False,
                                             stemmer=stemmer())
    return tokens


@dataclass(frozen=True)
class BuildOptions:
    hnsw_min_chunks: int = 20_000  # below this, an exact flat index
    max_chunk_chars: int = 1200
    batch_size: int = 256
    keep_snapshots: int = 10       # older ones are deleted after a publish


@contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """Serialise builds: a build that started earlier must not finish last and revert a newer one."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with (index_dir / LOCK).open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Snapshot:
    """A loaded snapshot: dense index, lexical index and the chunks they number."""

    path: Path
    index: faiss.Index
    bm25: bm25s.BM25
    chunks: list[Chunk]
    manifest: dict[str, Any]
    vocabulary: KbVocabulary
    multilingual: faiss.Index | None = None  # every chunk by the multilingual encoder, if it was built
    searchable: int = 0  # chunks[:searchable] are originals; the rest translations (multilingual index only)
    translations: dict[tuple[str, str], tuple[int, ...]] = field(default_factory=dict)  # (original, lang)
    positions: dict[tuple[str, str], int] = field(default_factory=dict)  # a chunk's number by article id, text
    languages: dict[str, OwnChunks] = field(default_factory=dict)  # chunks by their base language
    # Whether any article is written in another language than English (an article without `lang` is in
    # English): every question is then matched by the multilingual encoder, which reads them all.
    foreign: bool = False
    chunk_languages: tuple[str, ...] = ()  # each chunk's base language as questions meet it (own_language)
    adapter: np.ndarray | None = None  # the multilingual encoder's questions tuned to this KB (query_tuning)

    @property
    def originals(self) -> list[Chunk]:
        return self.chunks[:self.searchable]

    @cached_property
    def question_mask(self) -> np.ndarray:
        """Which chunks are articles' example questions, by number (bool)."""
        return np.fromiter((bool(chunk.question) for chunk in self.chunks), dtype=bool, count=len(self.chunks))

    @cached_property
    def examples(self) -> int:
        """How many chunks are articles' example questions."""
        return int(self.question_mask.sum())

    def serving(self, channel: str | None, audience: str) -> np.ndarray:
        """Which chunks may answer `audience` on `channel` (`Chunk.serves`), by number (bool); made once a pair."""
        mask = self._serving.get((channel, audience))
        if mask is None:
            mask = self._serving[channel, audience] = np.fromiter(
                (chunk.serves(channel, audience) for chunk in self.chunks), dtype=bool, count=len(self.chunks))
        return mask

    @cached_property
    def _serving(self) -> dict[tuple[str | None, str], np.ndarray]:
        return {}

    @cached_property
    def labelled(self) -> frozenset[int]:
        """The numbers of the chunks that are labelled English questions (`Chunk.labelled`)."""
        return frozenset(i for i, chunk in enumerate(self.chunks) if chunk.labelled)


def current_snapshot(index_dir: Path) -> Path | None:
    """Return the live snapshot directory, or None if nothing was built yet."""
    try:
        name = (index_dir / POINTER).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    snapshot = index_dir / "snapshots" / name
    return snapshot if snapshot.is_dir() else None


def pointer_stamp(index_dir: Path) -> tuple[int, int] | None:
    """A cheap fingerprint of the pointer file; it changes whenever a build switches it."""
    try:
        stat = (index_dir / POINTER).stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _reusable_vectors(index_dir: Path, model: str, key: str = "model",
                      file: str = "vectors.npy") -> dict[str, np.ndarray]:
    live = current_snapshot(index_dir)
    if live is None:
        return {}
    try:
        manifest = json.loads((live / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get(key) != model:
            return {}
        hashes = json.loads((live / "hashes.json").read_text(encoding="utf-8"))
        vectors = np.load(live / file)
    except (OSError, ValueError):
        return {}  # an unreadable old snapshot only costs a full re-embed
    return dict(zip(hashes, vectors, strict=False))


def _manifest_value(index_dir: Path, key: str) -> Any:
    """A value of the live snapshot's manifest, None if there is none or it is unreadable."""
    live = current_snapshot(index_dir)
    try:
        return json.loads((live / "manifest.json").read_text(encoding="utf-8")).get(key) if live else None
    except (OSError, ValueError, AttributeError):
        return None


def _names(index_dir: Path) -> frozenset[str]:
    """The international words, as the live snapshot lists them if it listed them the same way (listing them
    takes seconds)."""
    live = current_snapshot(index_dir)
    if live is not None:
        try:
            if json.loads((live / "manifest.json").read_text(encoding="utf-8")).get("names") == NAMES_VERSION:
                return frozenset((live / NAMES).read_text(encoding="utf-8").split())
        except (OSError, ValueError):
            pass
    return international_words()


def build_snapshot(kb_dir: Path, index_dir: Path, encoder: Encoder, *, model: str = "", author: str = "",
                   options: BuildOptions | None = None, progress: bool = False,
                   report: Callable[[str], None] = lambda line: None,
                   multilingual: MultilingualModel | None = None, vectors_from: Path | None = None,
                   questions: Sequence[EvalCase] = ()) -> Path:
    """Index every article of `kb_dir` into a new snapshot and make it the live one.

    `model` names the encoder; vectors are reused only from a snapshot of the same model (the live one of
    `index_dir`, and of `vectors_from`: a draft index takes the published one's).
    `author` is recorded with the list of articles added, changed and removed. With `multilingual`,
    the chunks are also indexed for questions in other languages, and with labelled `questions` the
    multilingual encoder's questions are tuned to these articles (kb_index.query_tuning).
    """
    with build_lock(index_dir):
        return _build(kb_dir, index_dir, encoder, model, author, options or BuildOptions(), progress, report,
                      multilingual, vectors_from, questions)


def _embed(chunks: list[Chunk], hashes: list[str], encoder: Encoder, known: dict[str, np.ndarray],
           options: BuildOptions, label: str, progress: bool) -> np.ndarray:
    """Every chunk's vector: reused where its text is unchanged, the rest embedded in batches."""
    todo = [i for i, h in enumerate(hashes) if h not in known]
    fresh: dict[str, np.ndarray] = {}
    with tqdm(total=len(todo), desc=label, unit="chunk", disable=not progress or not todo) as bar:
        for start in range(0, len(todo), options.batch_size):
            batch = todo[start:start + options.batch_size]
            for i, vector in zip(batch, encoder.encode([chunks[i].embedding_text() for i in batch]), strict=True):
                fresh[hashes[i]] = vector
            bar.update(len(batch))
    fresh.update(known)
    return np.vstack([fresh[h] for h in hashes]).astype(np.float32)


def _dense_index(vectors: np.ndarray, options: BuildOptions) -> faiss.Index:
    dimension = int(vectors.shape[1])
    index: faiss.Index
    if len(vectors) >= options.hnsw_min_chunks:
        index = faiss.IndexHNSWFlat(dimension, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
    else:
        index = faiss.IndexFlatIP(dimension)
    index.add(vectors)
    return index


def _build(kb_dir: Path, index_dir: Path, encoder: Encoder, model: str, author: str, options: BuildOptions,
           progress: bool, report: Callable[[str], None], multilingual: MultilingualModel | None,
           vectors_from: Path | None, questions: Sequence[EvalCase]) -> Path:
    started = time.perf_counter()
    articles = load_articles(kb_dir)
    chunks = [chunk for article in articles for chunk in chunk_article(article, options.max_chunk_chars)]
    chunks += _labelled_examples(chunks, questions)
    # Originals first: English questions are matched against them; translations only by questions in their language.
    chunks = [c for c in chunks if not c.translation_of] + [c for c in chunks if c.translation_of]
    searchable = sum(1 for c in chunks if not c.translation_of)
    if not searchable:
        raise SwitchboardError(f"the articles in {kb_dir} have no text to index")
    if searchable < len(chunks) and multilingual is None:
        report(f"left out {len(chunks) - searchable} chunks of translated articles: no language but English "
               "is served (SWITCHBOARD_LANGUAGES)")
        chunks = chunks[:searchable]
    foreign = sorted({c.lang for c in chunks[:searchable] if c.lang and not is_english(c.lang)})
    if foreign and multilingual is None:
        report(f"articles in {', '.join(foreign)} are matched by the English encoder, which does not read them: "
               f"add {', '.join(foreign)} to SWITCHBOARD_LANGUAGES and build again")
    hashes = [chunk.content_hash() for chunk in chunks]
    sources = [index_dir, *([vectors_from] if vectors_from is not None else [])]
    known = {h: v for source in sources for h, v in _reusable_vectors(source, model).items()}
    todo = [h for h in hashes[:searchable] if h not in known]
    taught = sum(chunk.labelled for chunk in chunks)
    report(f"read {len(articles)} articles from {kb_dir}: {len(chunks) - taught} chunks ({len(chunks) - searchable} "
           f"translated)" + (f" and {taught} labelled English questions as example questions" if taught else "")
           + f"; {searchable - len(todo)} unchanged, {len(todo)} to embed")
    vectors = _embed(chunks[:searchable], hashes[:searchable], encoder, known, options, "embedding", progress)
    chunks = _answering_sections(chunks, vectors)
    dimension = int(vectors.shape[1])
    index = _dense_index(vectors, options)
    lexical = lexical_index(chunks[:searchable])
    other_vectors = None
    # The articles' example questions; the labelled ones are not the multilingual encoder's (their rows stay zero).
    asked = [i for i, chunk in enumerate(chunks) if chunk.question and not chunk.labelled]
    if multilingual is not None:
        # Example questions are embedded as questions ("query: "), as the customer's is, so that a question
        # taught and asked again meets itself; a snapshot from before that embedded them as passages.
        asked_hashes = {hashes[i] for i in asked}
        reusable: dict[str, np.ndarray] = {}
        for source in sources:
            found = _reusable_vectors(source, multilingual.name, "multilingual", "multilingual.npy")
            if _manifest_value(source, "examples") != EXAMPLES_AS:
                found = {h: v for h, v in found.items() if h not in asked_hashes}
            reusable.update((h, v) for h, v in found.items() if v.any())  # a labelled question's row is no vector
        sections = [i for i, chunk in enumerate(chunks) if not chunk.question]
        rows: dict[int, np.ndarray] = {}
        for numbers, role, label in ((sections, multilingual.passages, "embedding for other languages"),
                                     (asked, multilingual.queries, "embedding example questions")):
            if numbers:
                rows.update(zip(numbers, _embed([chunks[i] for i in numbers], [hashes[i] for i in numbers], role,
                                                reusable, options, label, progress), strict=True))
        width = rows[sections[0]].shape[0]
        other_vectors = np.vstack([rows.get(i, np.zeros(width)) for i in range(len(chunks))]).astype(np.float32)
    adapter, tuned_on = None, 0
    if multilingual is not None and other_vectors is not None and (questions or asked):
        live = current_snapshot(vectors_from) if vectors_from is not None else None
        if live is not None and (live / ADAPTER).exists():
            adapter = np.load(live / ADAPTER)  # a draft is tried with the published map: fitting takes seconds
            tuned_on = int(json.loads((live / "manifest.json").read_text(encoding="utf-8")).get("tuned_on") or 0)
        else:
            adapter, tuned_on = _query_adapter(index_dir, chunks, asked, other_vectors, multilingual, questions,
                                               options, report, progress)

    snapshots = index_dir / "snapshots"
    snapshots.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=snapshots))
    try:
        faiss.write_index(index, str(staging / "index.faiss"))
        np.save(staging / "vectors.npy", vectors)
        if other_vectors is not None:
            searched = other_vectors
            if adapter is not None:  # example questions are questions: mapped as the customer's is, they meet it
                searched = other_vectors.copy()
                searched[asked] = adapt(other_vectors[asked], adapter)
                np.save(staging / ADAPTER, adapter)
            faiss.write_index(_dense_index(searched, options), str(staging / "multilingual.faiss"))
            np.save(staging / "multilingual.npy", other_vectors)  # as encoded: what a later build reuses
        lexical.save(str(staging / "bm25"))
        (staging / "chunks.json").write_text(json.dumps([asdict(c) for c in chunks]), encoding="utf-8")
        # The article files as published: a rollback can bring them back, and versions can be compared.
        for article in articles:
            kept = staging / SOURCES / article.path.relative_to(kb_dir)
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(article.path, kept)
        (staging / "hashes.json").write_text(json.dumps(hashes), encoding="utf-8")
        (staging / NAMES).write_text("\n".join(sorted(_names(index_dir))), encoding="utf-8")
        # The articles as written: labelled questions are not theirs, and an editor's unpublished edits compare them.
        written = [i for i, chunk in enumerate(chunks) if not chunk.labelled]
        digests = article_hashes([chunks[i] for i in written], [hashes[i] for i in written])
        (staging / "manifest.json").write_text(json.dumps({
            "articles": len(articles), "chunks": len(chunks), "embedded": len(todo), "dimension": dimension,
            "index": type(index).__name__, "model": model, "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "author": author, "article_hashes": digests, "lexical": LEXICAL, "searchable": searchable,
            "multilingual": multilingual.name if multilingual is not None else None,
            "changes": changes_since_live(index_dir, digests), "names": NAMES_VERSION,
            "examples": EXAMPLES_AS if multilingual is not None else None,
            "tuned_on": tuned_on, "labelled_examples": taught,
        }), encoding="utf-8")
        # Sortable by age (builds are serialised), unique by the staging suffix.
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        final = snapshots / f"{stamp}-{staging.name.removeprefix('.building-')}"
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    switch_to(index_dir, final.name)
    prune_snapshots(index_dir, options.keep_snapshots)
    report(f"snapshot {final.name} is live: {len(chunks)} chunks, {len(todo)} embedded, "
           f"{type(index).__name__}, {time.perf_counter() - started:.1f}s")
    return final


def _query_adapter(index_dir: Path, chunks: list[Chunk], examples: Sequence[int], vectors: np.ndarray,
                   multilingual: MultilingualModel, questions: Sequence[EvalCase], options: BuildOptions,
                   report: Callable[[str], None], progress: bool) -> tuple[np.ndarray | None, int]:
    """The map tuning the multilingual encoder's questions to these chunks (kb_index.query_tuning), fitted on the
    labelled questions whose article the KB has and on the articles' example questions (the chunks `examples`
    numbers, labelled by the article that lists them), or kept from a build on the same, and how many those are;
    None and 0 if too few fit."""
    # Fitted against the originals: a translation is matched in its own language, less its offset (own_language),
    # and a map pulling questions towards translations put the tuned scores on another scale for each KB.
    rows = [i for i, chunk in enumerate(chunks) if not chunk.question and not chunk.translation_of]
    topics = [chunks[i].article_id for i in rows]
    known = set(topics)
    answerable = [q for q in questions if q.expected is not None]
    lacking = sorted({q.expected for q in answerable if q.expected not in known}, key=str)
    if lacking:
        report(f"{sum(q.expected in lacking for q in answerable)} of the {len(answerable)} labelled questions "
               f"(SWITCHBOARD_KB_QUESTIONS) name articles this KB lacks ({', '.join(map(str, lacking[:5]))}"
               f"{', ...' if len(lacking) > 5 else ''}): left out")
    usable = [q for q in questions if q.expected is None or q.expected in known]
    if questions and (len(lacking) * 2 > len(known) or not any(q.expected for q in usable)):
        report("the multilingual encoder is not tuned: the labelled questions are not about this KB's articles; "
               "point SWITCHBOARD_KB_QUESTIONS at questions labelled with them")
        return None, 0
    # What editors taught ("answer with article X" in the gaps report) is labelled too, and encoded already.
    taught = [EvalCase(chunks[i].question, chunks[i].translation_of or chunks[i].article_id) for i in examples]
    labelled = [*usable, *taught]
    unanswerable = sum(q.expected is None for q in usable)
    if len(labelled) < MIN_QUESTIONS or unanswerable < MIN_UNANSWERABLE:
        report(f"the multilingual encoder is not tuned: {len(usable)} labelled questions are about this KB's "
               f"articles ({unanswerable} of them unanswerable) and its articles list {len(taught)} example "
               f"questions; tuning needs at least {MIN_QUESTIONS} together, {MIN_UNANSWERABLE} of them questions "
               "the KB cannot answer (fitted on fewer, it answered more wrongly than untuned); label more in "
               "SWITCHBOARD_KB_QUESTIONS (docs/multilingual.md)")
        return None, 0
    tuning = QueryTuning()
    passages = vectors[rows]
    key = cache_key(multilingual.name, passages, topics, labelled, tuning)
    adapter = cached(index_dir, key)
    if adapter is None:
        report(f"tuning the multilingual encoder's questions on {len(usable)} labelled questions and {len(taught)} "
               "example questions")
        texts = [q.question for q in usable]
        asked = cached(index_dir, questions_key(multilingual.name, texts)) if texts else vectors[[]]
        if asked is None:
            encoded = []
            with tqdm(total=len(texts), desc="encoding labelled questions", unit="question",
                      disable=not progress) as bar:
                for start in range(0, len(texts), options.batch_size):
                    encoded.append(multilingual.queries.encode(texts[start:start + options.batch_size]))
                    bar.update(len(encoded[-1]))
            asked = np.vstack(encoded).astype(np.float32)
            keep(index_dir, questions_key(multilingual.name, texts), asked)
        adapter = fit_adapter(np.vstack([asked, vectors[list(examples)]]), [q.expected for q in labelled], passages,
                              topics, tuning)
        keep(index_dir, key, adapter)
    return adapter, len(labelled)


def lexical_index(chunks: list[Chunk]) -> bm25s.BM25:
    """BM25 over the chunks' titles, headings and texts."""
    lexical = bm25s.BM25()
    lexical.index(tokenize([chunk.embedding_text() for chunk in chunks]), show_progress=False)
    return lexical


def article_hashes(chunks: list[Chunk], hashes: list[str]) -> dict[str, str]:
    """One digest per article over its chunks' texts and its metadata, so any edit counts as a change."""
    combined: dict[str, str] = {}
    for chunk, digest in zip(chunks, hashes, strict=True):
        # A translation's link counts as a change; articles without one hash as they always did.
        meta = json.dumps([chunk.url, chunk.channels, chunk.audience, chunk.lang,
                           *([chunk.translation_of] if chunk.translation_of else [])])
        combined[chunk.article_id] = hashlib.sha256(
            (combined.get(chunk.article_id, "") + digest + meta).encode()).hexdigest()
    return combined


def changes_since_live(index_dir: Path, article_hashes: dict[str, str]) -> dict[str, list[str]]:
    """Articles added, changed and removed compared with the live snapshot."""
    live = current_snapshot(index_dir)
    try:
        before = json.loads((live / "manifest.json").read_text(encoding="utf-8"))["article_hashes"] if live else {}
    except (OSError, ValueError, KeyError):
        before = {}
    return {
        "added": sorted(set(article_hashes) - set(before)),
        "changed": sorted(a for a in set(article_hashes) & set(before) if article_hashes[a] != before[a]),
        "removed": sorted(set(before) - set(article_hashes)),
    }


def list_snapshots(index_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every complete snapshot with its manifest, newest first."""
    found = []
    for path in (index_dir / "snapshots").glob("[0-9]*"):
        try:
            found.append((path, json.loads((path / "manifest.json").read_text(encoding="utf-8"))))
        except (OSError, ValueError):
            continue
    return sorted(found, key=lambda item: item[0].name, reverse=True)


def prune_snapshots(index_dir: Path, keep: int) -> None:
    """Delete all but the `keep` newest snapshots; the live one always stays."""
    live = current_snapshot(index_dir)
    for path, _ in list_snapshots(index_dir)[keep:]:
        if path != live:
            shutil.rmtree(path, ignore_errors=True)


def rollback(index_dir: Path, name: str, kb_dir: Path | None = None) -> Path:
    """Make an earlier snapshot live again; it must load. With `kb_dir`, its article files become that
    snapshot's too (files it did not have are removed), so the next publish does not bring back what
    was rolled back; a snapshot published before Switchboard kept its files cannot do that."""
    with build_lock(index_dir):
        path = snapshot_path(index_dir, name)
        load_snapshot(path)
        if kb_dir is not None:
            restore_sources(path, kb_dir)
        switch_to(index_dir, name)
        return path


def snapshot_path(index_dir: Path, name: str) -> Path:
    """The directory of a kept snapshot, or an error that says how to list them."""
    path = index_dir / "snapshots" / name
    if "/" in name or "\\" in name or name.startswith(".") or not path.is_dir():
        raise SwitchboardError(f"no snapshot {name!r}; `switchboard kb versions` lists them")
    return path


def snapshot_sources(path: Path) -> dict[str, str] | None:
    """A snapshot's article files (path within the KB directory -> text), or None for a snapshot built
    before they were kept."""
    sources = path / SOURCES
    if not sources.is_dir():
        return None
    return {file.relative_to(sources).as_posix(): file.read_text(encoding="utf-8")
            for file in sorted(sources.rglob("*.md"))}


def restore_sources(path: Path, kb_dir: Path) -> None:
    """Make `kb_dir`'s article files those of the snapshot at `path`."""
    sources = snapshot_sources(path)
    if sources is None:
        raise SwitchboardError(f"{path.name} was published before Switchboard kept the articles' files, so they "
                               "cannot be brought back; make it live without restoring them")
    for current in kb_dir.rglob("*.md"):
        if current.relative_to(kb_dir).as_posix() not in sources:
            current.unlink()
    for relative, text in sources.items():
        target = kb_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")


def switch_to(index_dir: Path, name: str) -> None:
    """Make a snapshot live by replacing the pointer file atomically."""
    handle, staging = tempfile.mkstemp(prefix=f".{POINTER}-", dir=index_dir)
    with os.fdopen(handle, "w", encoding="utf-8") as pointer:
        pointer.write(name)
    os.replace(staging, index_dir / POINTER)


_CHUNK_TEXT_FIELDS = ("article_id", "title", "url", "heading", "text", "audience", "lang", "question",
                      "translation_of")


def _chunk(value: Any, number: int) -> Chunk:
    """A chunk as chunks.json stores it, every field checked: a snapshot that loads must answer."""
    if not isinstance(value, dict):
        raise ValueError(f"chunk {number} is not an object")
    for name in _CHUNK_TEXT_FIELDS:
        if name in value and not isinstance(value[name], str):
            raise ValueError(f"chunk {number}: {name!r} must be text, not {type(value[name]).__name__}")
    if not isinstance(value.get("labelled", False), bool):
        raise ValueError(f"chunk {number}: 'labelled' must be true or false")
    channels = value.get("channels", [])
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise ValueError(f"chunk {number}: 'channels' must be a list of channel names")
    if not value.get("article_id") or not value.get("text"):
        raise ValueError(f"chunk {number} has no article id or no text")
    return Chunk(**{**value, "channels": tuple(channels)})


def _labelled_examples(chunks: list[Chunk], questions: Sequence[EvalCase]) -> list[Chunk]:
    """The labelled English questions about these articles as example questions of them (`Chunk.labelled`; the
    section that answers each is chosen once they are embedded, `_answering_sections`), those an article lists
    already left out. English questions phrased like one meet it
    (docs/kb-quality.md: on the sample shop's dev splits, each scored against the other splits' labelled questions,
    English reach rose from 0.80 to 0.87 at the same share of right answers and declines)."""
    first: dict[str, Chunk] = {}  # an article's first section, until _answering_sections picks the nearest
    listed = set()
    for chunk in chunks:
        if chunk.question:
            listed.add((chunk.article_id, chunk.question.strip().lower()))
        elif not chunk.translation_of:
            first.setdefault(chunk.article_id, chunk)
    answerable = [q for q in questions if q.expected in first]
    if not answerable:
        return []
    detect = LanguageDetector().detect
    taught = []
    for case in answerable:
        article = str(case.expected)
        key = (article, case.question.strip().lower())
        if key in listed or not is_english(detect(case.question) or "en"):
            continue
        listed.add(key)
        taught.append(replace(first[article], question=case.question, labelled=True))
    return taught


def _answering_sections(chunks: list[Chunk], vectors: np.ndarray) -> list[Chunk]:
    """`chunks` with each English example question (a labelled one, or one an article lists in English) answered
    by the section of its article nearest to it by the English encoder (`vectors`, the originals'); examples in
    other languages keep the section sharing most of their words, the English encoder reading them poorly. A
    customer's words share few with the article's: "how long is the warranty on jackets" shares most words with the
    section on what the warranty does not cover, and is nearest to the one on the two-year warranty; of the sample
    shop's 119 labelled questions whose section the two ways tell apart, the nearest was the better one about four
    times in five, read by hand."""
    sections: dict[str, list[int]] = {}
    for i, chunk in enumerate(chunks[:len(vectors)]):
        if not chunk.question:
            sections.setdefault(chunk.article_id, []).append(i)
    detect = _question_detector(chunks)
    found = list(chunks)
    for i, chunk in enumerate(chunks[:len(vectors)]):
        if chunk.labelled or (chunk.question and is_english(detect(chunk.question) or chunk.lang or "en")):
            candidates = sections[chunk.article_id]
            best = candidates[int(np.argmax(vectors[candidates] @ vectors[i]))]
            found[i] = replace(chunks[best], question=chunk.question, labelled=chunk.labelled)
    return found


def _question_detector(chunks: list[Chunk]) -> Callable[[str], str | None]:
    """What tells an example question's language: the detector over the languages Switchboard ships and
    those the KB's articles are in (the shipped ones alone if the detector has no model for one of those). Only
    the articles' own examples are told (labelled ones are English), and with none no detector is loaded (its
    model takes about 0.4 s to load, at every build and every snapshot load)."""
    if not any(chunk.question and not chunk.labelled for chunk in chunks):
        return lambda question: None
    languages = dict.fromkeys([*DEFAULT_LANGUAGES, *(chunk.lang for chunk in chunks if chunk.lang)])
    try:
        return LanguageDetector(list(languages)).detect
    except ValueError:
        return LanguageDetector().detect


def load_snapshot(path: Path) -> Snapshot:
    """Load a snapshot's dense index, lexical index and chunks, and check they fit together and answer a
    search: a snapshot that fails here never goes live."""
    try:
        index = faiss.read_index(str(path / "index.faiss"))
        lexical = bm25s.BM25.load(str(path / "bm25"))
        stored = json.loads((path / "chunks.json").read_text(encoding="utf-8"))
        if not isinstance(stored, list) or not stored:
            raise ValueError("chunks.json must be a non-empty list")
        chunks = [_chunk(value, number) for number, value in enumerate(stored, 1)]
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):
            raise ValueError("manifest.json must be an object")
        searchable = int(manifest.get("searchable", len(chunks)))
        if manifest.get("lexical") != LEXICAL:
            # Built by an earlier Switchboard that tokenised differently: queries must meet the same tokens.
            lexical = lexical_index(chunks[:searchable])
        if index.ntotal != searchable or lexical.scores.get("num_docs") != searchable:
            raise ValueError(f"the dense index has {index.ntotal} entries and the lexical one "
                             f"{lexical.scores.get('num_docs')}, for {searchable} chunks")
        if searchable > len(chunks) or any(c.translation_of for c in chunks[:searchable]) \
                or not all(c.translation_of for c in chunks[searchable:]):
            raise ValueError(f"the first {searchable} chunks must be the originals and the rest translations")
        multilingual = None
        if searchable < len(chunks) and not (path / "multilingual.faiss").exists():
            raise ValueError(f"{len(chunks) - searchable} translated chunks but no multilingual index")
        if (path / "multilingual.faiss").exists():
            multilingual = faiss.read_index(str(path / "multilingual.faiss"))
            if multilingual.ntotal != len(chunks):
                raise ValueError(f"the multilingual index has {multilingual.ntotal} entries for {len(chunks)} chunks")
            multilingual.search(np.zeros((1, multilingual.d), dtype=np.float32), 1)
        adapter = None
        if (path / ADAPTER).exists():
            if multilingual is None:
                raise ValueError(f"{ADAPTER} but no multilingual index")
            adapter = np.load(path / ADAPTER)
            if adapter.shape != (multilingual.d, multilingual.d) or not np.isfinite(adapter).all():
                raise ValueError(f"{ADAPTER} is not a {multilingual.d} x {multilingual.d} map")
        # Listed by the build since 2026-12; an older snapshot gets them listed here (a few seconds).
        names = frozenset((path / NAMES).read_text(encoding="utf-8").split()) if (path / NAMES).exists() \
            else international_words()
        # A search through both indexes, as every question will make.
        index.search(np.zeros((1, index.d), dtype=np.float32), 1)
        lexical.get_scores(tokenize([chunks[0].text])[0] or ["a"])
    except (OSError, RuntimeError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SwitchboardError(f"the index snapshot {path} is unreadable: {exc}; "
                               "rebuild it with `switchboard kb build`") from exc
    for dense in (index, multilingual):
        if isinstance(dense, faiss.IndexHNSWFlat):
            dense.hnsw.efSearch = 64
    originals = chunks[:searchable]
    # A labelled question's words are the customer's, typos and all: they neither mend typos nor excuse names.
    vocabulary = KbVocabulary((text for c in originals if not c.labelled
                               for text in (c.title, c.heading, c.text, c.question)), names)
    translations: dict[tuple[str, str], list[int]] = {}
    for number, chunk in enumerate(chunks[searchable:], searchable):
        translations.setdefault((chunk.translation_of, chunk.lang), []).append(number)
    positions: dict[tuple[str, str], int] = {}
    for number, chunk in enumerate(chunks):
        positions.setdefault((chunk.article_id, chunk.text), number)  # a section before its example questions
    # Told and indexed here rather than stored: a few milliseconds for a KB's worth of sections.
    languages = chunk_languages(chunks, _question_detector(chunks))
    foreign = any(c.lang and not is_english(c.lang) for c in originals)
    return Snapshot(path, index, lexical, chunks, manifest, vocabulary, multilingual, searchable,
                    {key: tuple(numbers) for key, numbers in translations.items()}, positions,
                    own_chunks(chunks, languages, searchable, english=foreign), foreign, languages, adapter)
