"""Editing article files for the console: validated ids, paths kept inside the KB, atomic writes; and, where
hosts share no directory, the edits not yet published kept in the store for every host's working copy."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import yaml

from bot.errors import Conflict, InvalidMessage, NotFound
from kb_index.articles import AUDIENCES, KNOWN_CHANNELS, VALID_ID, Article, load_articles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArticleDraft:
    """What an editor submits for one article."""

    article_id: str
    title: str
    url: str
    tags: tuple[str, ...]
    body: str
    lang: str = ""
    channels: tuple[str, ...] = ()
    audience: str = "customers"
    questions: tuple[str, ...] = ()
    translation_of: str = ""

    @classmethod
    def of(cls, article: Article) -> ArticleDraft:
        """The draft that rewrites an article unchanged."""
        return cls(article.article_id, article.title, article.url, article.tags, article.body, article.lang,
                   article.channels, article.audience, article.questions, article.translation_of)

    def validate(self, max_chars: int = 50_000) -> None:
        """Raise InvalidMessage saying what to fix."""
        if not VALID_ID.fullmatch(self.article_id):
            raise InvalidMessage("the id may use only letters, digits, '.', '_' and '-', and must start with a "
                                 "letter or digit")
        if not self.title.strip():
            raise InvalidMessage("the article needs a title")
        if self.url and not self.url.startswith(("https://", "http://")):
            raise InvalidMessage("the url must start with https:// or http://")
        unknown = [c for c in self.channels if c not in KNOWN_CHANNELS]
        if unknown:
            raise InvalidMessage(f"unknown channel(s) {', '.join(unknown)}; use {', '.join(KNOWN_CHANNELS)}")
        if self.audience not in AUDIENCES:
            raise InvalidMessage(f"the audience must be one of {', '.join(AUDIENCES)}")
        if self.translation_of and not self.lang:
            raise InvalidMessage("a translation needs its language (e.g. de)")
        if self.translation_of == self.article_id:
            raise InvalidMessage("an article cannot be a translation of itself")
        if not self.body.strip():
            raise InvalidMessage("the article needs some text")
        if len(self.body) > max_chars:
            raise InvalidMessage(f"the article is longer than {max_chars:,} characters; split it")

    def render(self) -> str:
        """The article file: YAML front matter (safely quoted) and the Markdown body."""
        meta: dict[str, object] = {"id": self.article_id, "title": self.title.strip()}
        if self.url:
            meta["url"] = self.url
        if self.tags:
            meta["tags"] = list(self.tags)
        if self.lang:
            meta["lang"] = self.lang
        if self.translation_of:
            meta["translation_of"] = self.translation_of
        if self.channels:
            meta["channels"] = list(self.channels)
        if self.audience != "customers":
            meta["audience"] = self.audience
        if self.questions:
            meta["questions"] = list(self.questions)
        front = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False)
        return f"---\n{front}---\n{self.body.strip()}\n"


class EditShelf(Protocol):
    """Where the edits not yet published are kept: the store (bot.stores.kb_snapshots)."""

    def record_kb_edit(self, path: str, text: str | None) -> int: ...

    def kb_edits(self) -> list[tuple[int, str, str | None]]: ...

    def forget_kb_edits(self, through: int | None = None) -> None: ...


class SharedEdits:
    """The working copy of hosts that share no directory (`SWITCHBOARD_KB_SNAPSHOTS=store`): every article file
    an editor saves or deletes on any host is kept in the store until a publish takes it (or a rollback undoes
    it), and each host writes those edits into its own KB directory before it reads it, in the order they were
    saved, so the last save of a file wins, as on one host."""

    def __init__(self, shelf: EditShelf, kb_dir: Path) -> None:
        self._shelf = shelf
        self._kb_dir = kb_dir
        self._lock = threading.Lock()

    def record(self, path: Path, text: str | None) -> None:
        """An article file saved here (`text` None: deleted)."""
        self._shelf.record_kb_edit(path.resolve().relative_to(self._kb_dir.resolve()).as_posix(), text)

    def catch_up(self) -> int:
        """Write the edits saved on any host into this KB directory; the number of the last (0: none)."""
        return self.apply(self._shelf.kb_edits())

    def apply(self, edits: list[tuple[int, str, str | None]]) -> int:
        """Write `edits` (as the store lists them, oldest first) into this KB directory; the number of the last."""
        latest = {relative: text for _, relative, text in edits}  # a file saved twice is written once, as last saved
        with self._lock:
            for relative, text in latest.items():
                path = self._kb_dir / relative
                if not path.resolve().is_relative_to(self._kb_dir.resolve()) or path.suffix != ".md":
                    log.error("left out the stored edit of %r: it is no article file of the knowledge base", relative)
                elif text is None:
                    path.unlink(missing_ok=True)
                elif not path.is_file() or path.read_text(encoding="utf-8") != text:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write_atomically(path, text)
        return edits[-1][0] if edits else 0

    def forget(self, through: int | None = None) -> None:
        """Let go of the edits up to number `through`, which a publish took, or of all of them."""
        self._shelf.forget_kb_edits(through)


class ArticleFiles:
    """The working copy of the knowledge base: what editors change before they publish; with `shared`, the
    edits saved on every host (see `SharedEdits`)."""

    def __init__(self, kb_dir: Path, shared: SharedEdits | None = None) -> None:
        self._kb_dir = kb_dir
        self._shared = shared

    @property
    def kb_dir(self) -> Path:
        """The directory of article files."""
        return self._kb_dir

    def articles(self) -> list[Article]:
        """Every article, by title."""
        return sorted(self._load(), key=lambda a: a.title.lower())

    def get(self, article_id: str) -> Article:
        """The article with this id, or NotFound."""
        return self._find(self._by_id(), article_id)

    def create(self, draft: ArticleDraft) -> Path:
        """Write a new article as `<id>.md`; the id must be new."""
        draft.validate()
        articles = self._by_id()
        self._check_original(draft, articles)
        if draft.article_id in articles:
            raise Conflict(f"an article with the id {draft.article_id!r} exists already")
        path = self._inside(self._kb_dir / f"{draft.article_id}.md")
        if path.exists():
            raise Conflict(f"the file {path.name} exists already")
        self._save(path, draft.render())
        return path

    def update(self, article_id: str, draft: ArticleDraft) -> Path:
        """Rewrite an existing article in its own file; its id cannot change."""
        draft.validate()
        if draft.article_id != article_id:
            raise InvalidMessage("an article's id cannot change; create a new article instead")
        articles = self._by_id()
        self._check_original(draft, articles)
        path = self._inside(self._find(articles, article_id).path)
        self._save(path, draft.render())
        return path

    def delete(self, article_id: str) -> None:
        """Remove an article's file; an original with translations stays until they are removed."""
        articles = self._by_id()
        translations = [a.article_id for a in articles.values() if a.translation_of == article_id]
        if translations:
            raise Conflict(f"{article_id!r} has translations ({', '.join(translations)}); delete them first")
        path = self._inside(self._find(articles, article_id).path)
        path.unlink()
        if self._shared is not None:
            self._shared.record(path, None)

    def _load(self) -> list[Article]:
        """The articles as they are now, with the edits saved on other hosts where those are shared."""
        if self._shared is not None:
            self._shared.catch_up()
        return load_articles(self._kb_dir)

    def _save(self, path: Path, text: str) -> None:
        write_atomically(path, text)
        if self._shared is not None:
            self._shared.record(path, text)

    def _by_id(self) -> dict[str, Article]:
        """The articles by id; where two files share an id, the first by path, as `get` has always found."""
        articles: dict[str, Article] = {}
        for article in self._load():
            articles.setdefault(article.article_id, article)
        return articles

    @staticmethod
    def _find(articles: Mapping[str, Article], article_id: str) -> Article:
        if article_id not in articles:
            raise NotFound(f"no article {article_id!r}")
        return articles[article_id]

    def _check_original(self, draft: ArticleDraft, articles: Mapping[str, Article]) -> None:
        """A translation's original must exist and be an original; an original with translations stays one."""
        if draft.translation_of:
            original = articles.get(draft.translation_of)
            if original is None:
                raise InvalidMessage(f"there is no article {draft.translation_of!r} to translate")
            if original.translation_of:
                raise InvalidMessage(f"{draft.translation_of!r} is itself a translation; name its original, "
                                     f"{original.translation_of!r}")
            if any(a.translation_of == draft.article_id for a in articles.values()):
                raise InvalidMessage(f"{draft.article_id!r} has translations of its own, so it stays an original")

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self._kb_dir.resolve()) or path.is_symlink():
            raise InvalidMessage(f"{path.name} lies outside the knowledge-base directory")
        return resolved


def write_atomically(path: Path, text: str) -> None:
    """Write a file so that a reader sees the old text or the new, never half of it."""
    handle, staging = tempfile.mkstemp(prefix=".edit-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
