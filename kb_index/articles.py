"""Knowledge-base articles: Markdown files with front matter, chunked by heading."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path

import frontmatter
import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

from bot.errors import SwitchboardError

_MARKDOWN = MarkdownIt("commonmark", {"html": False})
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_SPACE = re.compile(r"\s+")
_WORDS = re.compile(r"[^\W\d_]{3,}")
# Ids name files and URLs in the editor: no separators, no dot-dot, no hidden files.
VALID_ID = re.compile(r"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
KNOWN_KEYS = frozenset({"id", "title", "url", "tags", "lang", "translation_of", "channels", "audience", "questions"})
KNOWN_CHANNELS = ("web", "rest", "telegram", "sms", "whatsapp", "messenger", "instagram", "email")
AUDIENCES = ("customers", "agents")
_BOUNDARIES = ((_PARAGRAPH, "\n\n"), (_SENTENCE, " "), (_SPACE, " "))


@dataclass(frozen=True)
class Article:
    article_id: str
    title: str
    url: str
    tags: tuple[str, ...]
    body: str
    path: Path
    lang: str = ""
    channels: tuple[str, ...] = ()  # empty: every channel
    audience: str = "customers"     # "agents": internal, never answered to customers
    questions: tuple[str, ...] = ()  # customers' own words for it, indexed beside its sections
    translation_of: str = ""         # the id of the article this one translates (its `lang` says into what)


@dataclass(frozen=True)
class Chunk:
    """One heading's section of an article (or a part of a long one), the unit the index stores."""

    article_id: str
    title: str
    url: str
    heading: str
    text: str
    channels: tuple[str, ...] = ()
    audience: str = "customers"
    lang: str = ""
    question: str = ""  # an example question: indexed by it, answered with this section's text
    translation_of: str = ""
    # The example question is a labelled English question (SWITCHBOARD_KB_QUESTIONS), not one the article lists:
    # English questions meet it; the multilingual encoder learns the labelled questions through its map instead.
    labelled: bool = False

    def serves(self, channel: str | None, audience: str) -> bool:
        """Whether this chunk may answer this audience on this channel (None: any channel)."""
        return self.audience == audience and (not self.channels or channel is None or channel in self.channels)

    def embedding_text(self) -> str:
        """The text the encoder sees: title and heading give the section its context; an example
        question is seen as itself."""
        if self.question:
            return self.question
        heading = f" - {self.heading}" if self.heading and self.heading != self.title else ""
        return f"{self.title}{heading}\n{self.text}"

    def content_hash(self) -> str:
        """Identifies the embedded text, so an unchanged chunk can reuse its vector."""
        return hashlib.sha256(self.embedding_text().encode("utf-8")).hexdigest()


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
        if not VALID_ID.fullmatch(str(post["id"])):
            raise SwitchboardError(f"{path}: the id {post['id']!r} may use only letters, digits, '.', '_' and '-'")
        articles.append(Article(
            article_id=str(post["id"]),
            title=str(post["title"]),
            url=str(post.get("url", "")),
            tags=_strings(post.get("tags")),
            body=post.content,
            path=path,
            lang=str(post.get("lang") or ""),
            channels=_strings(post.get("channels")),
            audience=str(post.get("audience") or "customers"),
            questions=tuple(q.strip() for q in _strings(post.get("questions")) if q.strip()),
            translation_of=str(post.get("translation_of") or ""),
        ))
    if not articles:
        raise SwitchboardError(f"no *.md articles in {kb_dir}")
    check_translations(articles)
    return articles


def check_translations(articles: list[Article]) -> None:
    """A translation names an article that is not itself a translation, and says its language."""
    by_id = {article.article_id: article for article in articles}
    for article in articles:
        if not article.translation_of:
            continue
        original = by_id.get(article.translation_of)
        if original is None:
            raise SwitchboardError(f"{article.path}: translation_of names {article.translation_of!r}, "
                                   "which is not an article id")
        if original.translation_of:
            raise SwitchboardError(f"{article.path}: translation_of must name the original article, "
                                   f"{original.translation_of!r}, not another translation")
        if not article.lang:
            raise SwitchboardError(f"{article.path}: a translation needs `lang:` (e.g. lang: de)")


def _strings(value: object) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    return tuple(str(v) for v in (value if isinstance(value, list) else [value]))


def chunk_article(article: Article, max_chars: int = 1200) -> list[Chunk]:
    """Split an article into heading sections, and sections longer than `max_chars` into parts.

    Parts end at paragraph or, failing that, sentence boundaries.
    """
    chunks = []
    heading = article.title
    lines: list[str] = []

    def flush() -> None:
        for part in split_text(plain_text("\n".join(lines)), max_chars):
            chunks.append(Chunk(article.article_id, article.title, article.url, heading, part,
                                article.channels, article.audience, article.lang,
                                translation_of=article.translation_of))

    for line in article.body.splitlines():
        match = _HEADING.match(line)
        if match:
            flush()
            heading, lines = match.group(2), []
        else:
            lines.append(line)
    flush()
    if chunks:
        chunks += [replace(_section_for(question, chunks), question=question) for question in article.questions]
    return chunks


def _section_for(question: str, sections: list[Chunk]) -> Chunk:
    """The section that answers an example question: the one sharing most of its words (the first on a tie). A build
    answers an English one by the section nearest to it instead, once it is embedded (kb_index.snapshot)."""
    asked = set(_WORDS.findall(question.lower()))
    return max(sections, key=lambda c: len(asked & set(_WORDS.findall(f"{c.heading} {c.text}".lower()))))


def plain_text(markdown: str) -> str:
    """The words of a Markdown section without its markup: what customers read and the index sees.

    Paragraphs stay paragraphs; list items become lines starting with a bullet.
    """
    blocks: list[str] = []
    in_item = False
    for token in _MARKDOWN.parse(markdown):
        if token.type == "list_item_open":
            in_item = True
        elif token.type == "inline":
            text = "".join(_inline_text(child) for child in token.children or ())
            blocks.append(f"• {text}" if in_item else text)
            in_item = False
        elif token.type in ("fence", "code_block"):
            blocks.append(token.content.strip())
    return "\n\n".join(b.strip() for b in blocks if b.strip())


def _inline_text(token: Token) -> str:
    if token.type in ("text", "code_inline"):
        return token.content
    if token.type == "softbreak":
        return " "
    if token.type == "hardbreak":
        return "\n"
    if token.type == "image":
        return "".join(_inline_text(child) for child in token.children or ())
    return ""


def split_text(text: str, max_chars: int) -> list[str]:
    """Split text into parts of at most `max_chars`, at paragraphs, then sentences, then words."""
    if len(text) <= max_chars:
        return [text] if text else []
    for separator, glue in _BOUNDARIES:
        pieces = [p.strip() for p in separator.split(text) if p.strip()]
        if len(pieces) > 1:
            return _pack(pieces, glue, max_chars)
    return [text[i:i + max_chars] for i in range(0, len(text), max_chars)]


def _pack(pieces: list[str], glue: str, max_chars: int) -> list[str]:
    parts: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + len(glue) + len(piece) > max_chars:
            parts.append(current)
            current = piece
        else:
            current = f"{current}{glue}{piece}" if current else piece
    parts.append(current)
    # A single piece may still be too long: split it at the next finer boundary.
    return [p for part in parts for p in split_text(part, max_chars)]
