"""Knowledge-base articles: Markdown files with front matter, chunked by heading."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import frontmatter
import yaml

from bot.errors import SwitchboardError

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass(frozen=True)
class Article:
    article_id: str
    title: str
    url: str
    tags: tuple[str, ...]
    body: str
    path: Path


@dataclass(frozen=True)
class Chunk:
    """One heading's section of an article, the unit the index stores and returns."""

    article_id: str
    title: str
    url: str
    heading: str
    text: str

    def embedding_text(self) -> str:
        """The text the encoder sees: title and heading give the section its context."""
        heading = f" - {self.heading}" if self.heading and self.heading != self.title else ""
        return f"{self.title}{heading}\n{self.text}"


def load_articles(kb_dir: Path) -> list[Article]:
    """Read every `*.md` article under a directory, sorted by path."""
    if not kb_dir.is_dir():
        raise SwitchboardError(f"knowledge-base directory {kb_dir} does not exist; set SWITCHBOARD_KB_DIR")
    articles = []
    for path in sorted(kb_dir.rglob("*.md")):
        try:
            post = frontmatter.load(path)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise SwitchboardError(f"{path}: cannot read the article's front matter: {exc}") from exc
        missing = [key for key in ("id", "title") if not post.get(key)]
        if missing:
            raise SwitchboardError(f"{path}: front matter lacks {', '.join(missing)}")
        tags = post.get("tags") or []
        articles.append(Article(
            article_id=str(post["id"]),
            title=str(post["title"]),
            url=str(post.get("url", "")),
            tags=tuple(str(t) for t in (tags if isinstance(tags, list) else [tags])),
            body=post.content,
            path=path,
        ))
    if not articles:
        raise SwitchboardError(f"no *.md articles in {kb_dir}")
    return articles


def chunk_article(article: Article) -> list[Chunk]:
    """Split an article into one chunk per heading section; text before any heading goes first."""
    chunks = []
    heading = article.title
    lines: list[str] = []

    def flush() -> None:
        text = "\n".join(lines).strip()
        if text:
            chunks.append(Chunk(article.article_id, article.title, article.url, heading, text))

    for line in article.body.splitlines():
        match = _HEADING.match(line)
        if match:
            flush()
            heading, lines = match.group(2), []
        else:
            lines.append(line)
    flush()
    return chunks
