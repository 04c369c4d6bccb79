"""Publishing the working copy of the knowledge base, as the console's editor pages use it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.ports import Encoder
from kb_index.articles import chunk_article, load_articles
from kb_index.multilingual import MultilingualModel
from kb_index.snapshot import (
    BuildOptions,
    article_hashes,
    build_snapshot,
    changes_since_live,
    current_snapshot,
    list_snapshots,
    rollback,
)


class KnowledgeBasePublisher:
    """Publishes, lists and rolls back snapshots of one KB directory; running retrievers follow."""

    def __init__(self, kb_dir: Path, index_dir: Path, encoder: Encoder, model: str,
                 options: BuildOptions | None = None, on_publish: Callable[[], object] = lambda: None,
                 multilingual: MultilingualModel | None = None) -> None:
        self._kb_dir = kb_dir
        self._multilingual = multilingual
        self._index_dir = index_dir
        self._encoder = encoder
        self._model = model
        self._options = options or BuildOptions()
        # Other processes notice the pointer on their next search; this one should not wait for that.
        self._on_publish = on_publish

    def publish(self, author: str) -> Path:
        """Build the working copy into a new snapshot and make it live."""
        path = build_snapshot(self._kb_dir, self._index_dir, self._encoder, model=self._model, author=author,
                              options=self._options, multilingual=self._multilingual)
        self._on_publish()
        return path

    def unpublished(self) -> dict[str, list[str]]:
        """Articles added, changed and removed in the working copy since the live snapshot."""
        chunks = [c for a in load_articles(self._kb_dir) for c in chunk_article(a, self._options.max_chunk_chars)]
        return changes_since_live(self._index_dir, article_hashes(chunks, [c.content_hash() for c in chunks]))

    def live(self) -> Path | None:
        """The live snapshot."""
        return current_snapshot(self._index_dir)

    def versions(self) -> list[tuple[Path, dict[str, Any]]]:
        """Every kept snapshot with its manifest, newest first."""
        return list_snapshots(self._index_dir)

    def rollback(self, name: str) -> Path:
        """Make an earlier snapshot live again."""
        path = rollback(self._index_dir, name)
        self._on_publish()
        return path
