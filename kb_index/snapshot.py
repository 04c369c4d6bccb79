"""Index snapshots: build a new one beside the live one, then switch a pointer atomically.

Layout under the index directory:

    CURRENT                  name of the live snapshot (replaced atomically)
    snapshots/<name>/        index.faiss, chunks.json, manifest.json
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import faiss

from bot.errors import SwitchboardError
from bot.ports import Encoder
from kb_index.articles import Chunk, chunk_article, load_articles

POINTER = "CURRENT"


def current_snapshot(index_dir: Path) -> Path | None:
    """Return the live snapshot directory, or None if nothing was built yet."""
    try:
        name = (index_dir / POINTER).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    snapshot = index_dir / "snapshots" / name
    return snapshot if snapshot.is_dir() else None


def build_snapshot(kb_dir: Path, index_dir: Path, encoder: Encoder,
                   report: Callable[[str], None] = lambda line: None) -> Path:
    """Index every article of `kb_dir` into a new snapshot and make it the live one."""
    started = time.perf_counter()
    articles = load_articles(kb_dir)
    chunks = [chunk for article in articles for chunk in chunk_article(article)]
    if not chunks:
        raise SwitchboardError(f"the articles in {kb_dir} have no text to index")
    report(f"read {len(articles)} articles from {kb_dir}: {len(chunks)} chunks")

    vectors = encoder.encode([chunk.embedding_text() for chunk in chunks])
    report(f"embedded {len(chunks)} chunks in {time.perf_counter() - started:.1f}s")
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)

    snapshots = index_dir / "snapshots"
    snapshots.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256("".join(c.embedding_text() for c in chunks).encode()).hexdigest()[:12]
    name = time.strftime("%Y%m%dT%H%M%S") + f"-{digest}"
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=snapshots))
    try:
        faiss.write_index(index, str(staging / "index.faiss"))
        (staging / "chunks.json").write_text(json.dumps([asdict(c) for c in chunks]), encoding="utf-8")
        (staging / "manifest.json").write_text(json.dumps({
            "articles": len(articles), "chunks": len(chunks), "dimension": int(vectors.shape[1]),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }), encoding="utf-8")
        final = snapshots / name
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    pointer = index_dir / f".{POINTER}.tmp"
    pointer.write_text(name, encoding="utf-8")
    os.replace(pointer, index_dir / POINTER)
    report(f"snapshot {name} is live ({time.perf_counter() - started:.1f}s)")
    return final


def load_snapshot(snapshot: Path) -> tuple[faiss.Index, list[Chunk]]:
    """Load a snapshot's index and chunk metadata."""
    try:
        index = faiss.read_index(str(snapshot / "index.faiss"))
        chunks = [Chunk(**c) for c in json.loads((snapshot / "chunks.json").read_text(encoding="utf-8"))]
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        raise SwitchboardError(f"the index snapshot {snapshot} is unreadable: {exc}; "
                               "rebuild it with `switchboard kb build`") from exc
    if index.ntotal != len(chunks):
        raise SwitchboardError(f"the index snapshot {snapshot} is inconsistent; rebuild it")
    return index, chunks

