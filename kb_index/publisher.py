"""Publishing the working copy of the knowledge base, as the console's editor pages use it."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bot.errors import SwitchboardError
from bot.ports import Encoder
from kb_index.articles import chunk_article, load_articles
from kb_index.editing import SharedEdits
from kb_index.evaluation import EvalCase
from kb_index.multilingual import MultilingualModel
from kb_index.snapshot import (
    BuildOptions,
    article_hashes,
    build_snapshot,
    changes_since_live,
    current_snapshot,
    list_snapshots,
    rollback,
    snapshot_path,
    snapshot_sources,
)


class KnowledgeBasePublisher:
    """Publishes, lists and rolls back snapshots of one KB directory; running retrievers follow."""

    def __init__(self, kb_dir: Path, index_dir: Path, encoder: Encoder, model: str,
                 options: BuildOptions | None = None, on_publish: Callable[[], object] = lambda: None,
                 multilingual: MultilingualModel | None = None, shared: SharedEdits | None = None,
                 questions: Sequence[EvalCase] = ()) -> None:
        self._kb_dir = kb_dir
        self._questions = questions  # labelled: each build learns from them (kb_index.snapshot)
        self._shared = shared  # the edits saved on every host, where hosts share no directory
        self._multilingual = multilingual
        self._index_dir = index_dir
        self._encoder = encoder
        self._model = model
        self._options = options or BuildOptions()
        # Other processes notice the pointer on their next search; this one should not wait for that.
        self._on_publish = on_publish

    def publish(self, author: str) -> Path:
        """Build the working copy into a new snapshot and make it live (with every host's saved edits, which
        then leave the store)."""
        taken = self._catch_up()
        path = build_snapshot(self._kb_dir, self._index_dir, self._encoder, model=self._model, author=author,
                              options=self._options, multilingual=self._multilingual, questions=self._questions)
        self._on_publish()
        if self._shared is not None and taken:
            self._shared.forget(taken)
        return path

    def unpublished(self, index_dir: Path | None = None) -> dict[str, list[str]]:
        """Articles added, changed and removed in the working copy since the live snapshot (of `index_dir`)."""
        self._catch_up()
        chunks = [c for a in load_articles(self._kb_dir) for c in chunk_article(a, self._options.max_chunk_chars)]
        return changes_since_live(index_dir or self._index_dir,
                                  article_hashes(chunks, [c.content_hash() for c in chunks]))

    def build_draft(self, draft_dir: Path) -> bool:
        """Index the working copy (unpublished edits included) into `draft_dir`, a private index for testing
        questions before publishing; only what changed since the published or the last draft is embedded.
        Returns False when the draft already matched the working copy."""
        if current_snapshot(draft_dir) is not None and not any(self.unpublished(draft_dir).values()):
            return False
        build_snapshot(self._kb_dir, draft_dir, self._encoder, model=self._model, author="draft",
                       options=replace(self._options, keep_snapshots=2), multilingual=self._multilingual,
                       vectors_from=self._index_dir, questions=self._questions)
        return True

    def live(self) -> Path | None:
        """The live snapshot."""
        return current_snapshot(self._index_dir)

    def versions(self) -> list[tuple[Path, dict[str, Any]]]:
        """Every kept snapshot with its manifest, newest first."""
        return list_snapshots(self._index_dir)

    def rollback(self, name: str, restore_files: bool = True) -> Path:
        """Make an earlier snapshot live again; with `restore_files`, the articles being edited become that
        version's too (otherwise the next publish brings back what was rolled back)."""
        path = rollback(self._index_dir, name, self._kb_dir if restore_files else None)
        if self._shared is not None and restore_files:
            self._shared.forget()  # the edits saved since are undone on every host, as here
        self._on_publish()
        return path

    def _catch_up(self) -> int:
        return self._shared.catch_up() if self._shared is not None else 0

    def diff(self, name: str) -> tuple[str | None, list[tuple[str, list[str]]]]:
        """What a version changed in the article files, against the version before it: that version's
        name (None for the first) and each changed file's unified diff. An error for versions published
        before their files were kept."""
        after = snapshot_sources(snapshot_path(self._index_dir, name))
        names = [path.name for path, _ in self.versions()]  # newest first
        previous = next(iter(names[names.index(name) + 1:]), None) if name in names else None
        before = snapshot_sources(snapshot_path(self._index_dir, previous)) if previous else {}
        if after is None or before is None:
            raise SwitchboardError("versions published before Switchboard kept the articles' files cannot be "
                                   "compared")
        changes = []
        for file in sorted(set(before) | set(after)):
            old, new = before.get(file, ""), after.get(file, "")
            if old != new:
                changes.append((file, list(difflib.unified_diff(
                    old.splitlines(), new.splitlines(), f"{previous or 'nothing'}/{file}", f"{name}/{file}",
                    lineterm=""))))
        return previous, changes
