"""Editing article files for the console: validated ids, paths kept inside the KB, atomic writes."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot.errors import Conflict, InvalidMessage, NotFound
from kb_index.articles import AUDIENCES, KNOWN_CHANNELS, VALID_ID, Article, load_articles


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

    @classmethod
    def of(cls, article: Article) -> ArticleDraft:
        """The draft that rewrites an article unchanged."""
        return cls(article.article_id, article.title, article.url, article.tags, article.body, article.lang,
                   article.channels, article.audience, article.questions)

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
        if self.channels:
            meta["channels"] = list(self.channels)
        if self.audience != "customers":
            meta["audience"] = self.audience
        if self.questions:
            meta["questions"] = list(self.questions)
        front = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False)
        return f"---\n{front}---\n{self.body.strip()}\n"


class ArticleFiles:
    """The working copy of the knowledge base: what editors change before they publish."""

    def __init__(self, kb_dir: Path) -> None:
        self._kb_dir = kb_dir

    @property
    def kb_dir(self) -> Path:
        """The directory of article files."""
        return self._kb_dir

    def articles(self) -> list[Article]:
        """Every article, by title."""
        return sorted(load_articles(self._kb_dir), key=lambda a: a.title.lower())

    def get(self, article_id: str) -> Article:
        """The article with this id, or NotFound."""
        for article in load_articles(self._kb_dir):
            if article.article_id == article_id:
                return article
        raise NotFound(f"no article {article_id!r}")

    def create(self, draft: ArticleDraft) -> Path:
        """Write a new article as `<id>.md`; the id must be new."""
        draft.validate()
        if any(a.article_id == draft.article_id for a in load_articles(self._kb_dir)):
            raise Conflict(f"an article with the id {draft.article_id!r} exists already")
        path = self._inside(self._kb_dir / f"{draft.article_id}.md")
        if path.exists():
            raise Conflict(f"the file {path.name} exists already")
        self._write(path, draft.render())
        return path

    def update(self, article_id: str, draft: ArticleDraft) -> Path:
        """Rewrite an existing article in its own file; its id cannot change."""
        draft.validate()
        if draft.article_id != article_id:
            raise InvalidMessage("an article's id cannot change; create a new article instead")
        path = self._inside(self.get(article_id).path)
        self._write(path, draft.render())
        return path

    def delete(self, article_id: str) -> None:
        """Remove an article's file."""
        self._inside(self.get(article_id).path).unlink()

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self._kb_dir.resolve()) or path.is_symlink():
            raise InvalidMessage(f"{path.name} lies outside the knowledge-base directory")
        return resolved

    @staticmethod
    def _write(path: Path, text: str) -> None:
        handle, staging = tempfile.mkstemp(prefix=".edit-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(staging, path)
        finally:
            if os.path.exists(staging):
                os.unlink(staging)
