"""Help for an agent writing a reply: knowledge-base passages for the customer's latest
message, and the team's canned responses."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bot.errors import SwitchboardError
from bot.language import with_fallback
from bot.messages import Event, Passage
from bot.ports import Retriever
from handoff.summary import latest_question

log = logging.getLogger(__name__)

SUGGESTION_MIN_SCORE = 0.35  # below the bot's own bar: an agent reads a suggestion before sending it
SUGGESTIONS = 3


@dataclass(frozen=True)
class Canned:
    """A canned response; `{customer}` and `{agent}` in its text are filled in for the ticket. It may have
    versions in other languages (`translations`, by BCP 47 code)."""

    title: str
    text: str
    translations: Mapping[str, str] = field(default_factory=dict)
    language: str | None = None  # for a ticket: the language of `text`, when it is a translation

    def for_ticket(self, customer_name: str | None, agent_name: str, language: str | None = None) -> Canned:
        """The response as this ticket's agent would send it: in the customer's language when it has that
        version (or the language without its region), with the names filled in."""
        chosen = next((code for code in with_fallback(language) if code in self.translations), None) \
            if language else None
        text = self.translations[chosen] if chosen else self.text
        # Without a name, "{customer}" goes with the comma or space before it: "Thanks for your patience."
        text = text.replace("{customer}", customer_name) if customer_name else _NAMELESS.sub("", text)
        return Canned(self.title, text.replace("{agent}", agent_name), self.translations, chosen)


_NAMELESS = re.compile(r"[ ,]*\{customer\}")


def suggestion_text(passage: Passage) -> str:
    """The passage as an agent would send it: its text, and the article's link if it has one."""
    return f"{passage.text}\n{passage.url}" if passage.url else passage.text


def load_canned(path: Path) -> tuple[Canned, ...]:
    """Read canned responses: a YAML list of `{title, text}`. A missing file means none."""
    if not path.exists():
        return ()
    try:
        items = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SwitchboardError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(items, list):
        raise SwitchboardError(f"{path}: expected a list of responses, each with a title and a text")
    canned = []
    for number, item in enumerate(items, 1):
        if not (isinstance(item, dict) and isinstance(item.get("title"), str) and isinstance(item.get("text"), str)
                and item["title"].strip() and item["text"].strip()):
            raise SwitchboardError(f"{path}: response {number} needs a non-empty `title` and `text`")
        translations = item.get("translations") or {}
        if not (isinstance(translations, dict) and all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                                       for k, v in translations.items())):
            raise SwitchboardError(f"{path}: response {number}: `translations` maps language codes to texts, "
                                   "e.g. {de: \"Hallo {customer}\"}")
        canned.append(Canned(item["title"].strip(), item["text"].strip(),
                             {code: text.strip() for code, text in translations.items()}))
    return tuple(canned)


class ReplyAssistant:
    """Suggested replies from the knowledge base and canned responses, for the console and the API.

    The canned file is read again when it changes, so edits show on the next ticket opened.
    """

    def __init__(self, retriever: Retriever, canned_path: Path, *, min_score: float = SUGGESTION_MIN_SCORE,
                 limit: int = SUGGESTIONS) -> None:
        self._retriever = retriever
        self._canned_path = canned_path
        self._min_score = min_score
        self._limit = limit
        self._lock = threading.Lock()
        self._canned: tuple[int | None, tuple[Canned, ...], str | None] = (-1, (), None)

    def suggestions(self, transcript: list[Event], channel: str, language: str | None = None) -> list[Passage]:
        """Customer-facing passages for the customer's latest question, on the channel the reply goes to, in
        the customer's language where the article has that translation."""
        question = latest_question(transcript)
        if not question:
            return []
        found = self._retriever.search(question, self._limit, channel=channel, language=language)
        return [self._retriever.translation(p, language) or p for p in found if p.score >= self._min_score]

    def canned(self) -> tuple[tuple[Canned, ...], str | None]:
        """The canned responses, and a message saying what is wrong with the file if it cannot be read."""
        try:
            stamp: int | None = self._canned_path.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._canned[0]:
                try:
                    self._canned = (stamp, load_canned(self._canned_path), None)
                except SwitchboardError as exc:
                    log.warning("canned responses not loaded: %s", exc)
                    self._canned = (stamp, (), str(exc))
            return self._canned[1], self._canned[2]
