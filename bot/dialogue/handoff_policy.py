"""When the bot hands a conversation to a person, and what it tells the customer then.

Every trigger is a rule of one file (`data/handoff.yml` in the sample) and is recorded as
the handoff's reason: an explicit request, repeated fallbacks, negative sentiment, a
sensitive intent, a keyword, an action's decision. Business hours and the agents online
decide what the customer is told about the wait.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from babel.dates import format_datetime

from bot.dialogue.domain import Warn, load_yaml
from bot.errors import SwitchboardError
from bot.language import babel_locale, written_without_spaces

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TOP_KEYS = {"explicit_request", "repeated_fallback", "sentiment", "sensitive_intents", "keywords",
             "business_hours", "average_handling_minutes", "answer_while_queued"}
_WORD = re.compile(r"\w+(?:'\w+)?")


def normalise(text: str) -> str:
    """Casefold, drop accents and punctuation: "Parler à QUELQU'UN !" -> "parler a quelqu'un"."""
    text = unicodedata.normalize("NFKD", text.replace("\u2019", "'").casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(_WORD.findall(text))


def _finder(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    """One pattern finding any of the normalised phrases in a normalised, space-padded text: as whole words,
    or anywhere for a phrase in a script written without spaces."""
    if not phrases:
        return None
    return re.compile("|".join(
        re.escape(phrase) if any(written_without_spaces(c) for c in phrase) else re.escape(f" {phrase} ")
        for phrase in sorted(phrases, key=len, reverse=True)))


@dataclass(frozen=True)
class ExplicitRequest:
    """Phrases that ask for a person anywhere in a message; single words only in short messages."""

    phrases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)   # language -> phrases
    keywords: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # language -> words
    short_message_words: int = 4

    @functools.cached_property
    def _finders(self) -> tuple[dict[str, re.Pattern[str] | None], dict[str, re.Pattern[str] | None]]:
        """Each language's phrases and words as one pattern, compiled on first use."""
        return ({language: _finder(phrases) for language, phrases in self.phrases.items()},
                {language: _finder(words) for language, words in self.keywords.items()})

    def language_of_request(self, text: str) -> str | None:
        """The language of the request phrase or word found in the text, if any. In Chinese and Thai,
        written without spaces, a phrase counts anywhere in the text, and a word in a message of at most
        two characters a word allowed elsewhere ("转人工", "ติดต่อเจ้าหน้าที่")."""
        words = normalise(text)
        padded = f" {words} "
        phrases, keywords = self._finders
        for language, finder in phrases.items():
            if finder is not None and finder.search(padded):
                return language
        unspaced = sum(1 for character in words if written_without_spaces(character))
        if len(words.split()) <= self.short_message_words and unspaced <= 2 * self.short_message_words:
            for language, finder in keywords.items():
                if finder is not None and finder.search(padded):
                    return language
        return None


@dataclass(frozen=True)
class SentimentRule:
    handoff_at: float = -0.6           # one message this negative hands off
    frustrated_at: float = -0.3        # ... or this many negative messages in a row
    frustrated_messages: int = 2
    lexicon: Mapping[str, float] = field(default_factory=dict)

    def triggered(self, score: float, negative_streak: int) -> bool:
        return score <= self.handoff_at or negative_streak >= self.frustrated_messages


@dataclass(frozen=True)
class BusinessHours:
    """Weekly opening hours in one time zone, less closed dates and public holidays."""

    zone: ZoneInfo
    weekly: Mapping[int, tuple[tuple[time, time], ...]]  # weekday (0 = Monday) -> open intervals
    closed_on: frozenset[date] = frozenset()
    public_holidays: Any = None  # a `holidays` calendar, or None

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(self.zone)
        if self._closed_all_day(local.date()):
            return False
        return any(start <= local.time() < end for start, end in self.weekly.get(local.weekday(), ()))

    def next_opening(self, now: datetime) -> datetime | None:
        """When the business next opens (in its own time zone), or None if not within 30 days."""
        local = now.astimezone(self.zone)
        for offset in range(31):
            day = local.date() + timedelta(days=offset)
            if self._closed_all_day(day):
                continue
            for start, _end in sorted(self.weekly.get(day.weekday(), ())):
                opening = datetime.combine(day, start, self.zone)
                if opening > local:
                    return opening
        return None

    def _closed_all_day(self, day: date) -> bool:
        return day in self.closed_on or (self.public_holidays is not None and day in self.public_holidays)


@dataclass(frozen=True)
class HandoffNotice:
    """What the customer is told when handed off: a domain response and its values."""

    response: str
    values: dict[str, str]
    detail: dict[str, Any]


@dataclass(frozen=True)
class HandoffPolicy:
    explicit_request: ExplicitRequest = field(default_factory=ExplicitRequest)
    repeated_fallback: int = 2
    sentiment: SentimentRule = field(default_factory=SentimentRule)
    sensitive_intents: Mapping[str, float] = field(default_factory=dict)  # intent -> lowest confidence
    keywords: tuple[str, ...] = ()
    business_hours: BusinessHours | None = None
    average_handling_minutes: float = 6.0
    answer_while_queued: bool = True  # the bot answers KB questions while the customer waits for a person

    def sensitive(self, intent: str | None, confidence: float) -> bool:
        """True when the best-guess intent is sensitive and at least as confident as its rule asks."""
        return intent is not None and intent in self.sensitive_intents \
            and confidence >= self.sensitive_intents[intent]

    def keyword_in(self, text: str) -> str | None:
        padded = f" {normalise(text)} "
        return next((k for k in self.keywords if f" {k} " in padded), None)

    def notice(self, now: datetime, queued_ahead: int, agents_online: int,
               language: str | None = None) -> HandoffNotice:
        """Choose what to tell the customer about the wait: closed (when the team is back, written in
        `language`: "Monday 08:00", "Montag 08:00"), nobody online, or an estimate."""
        hours = self.business_hours
        if hours is not None and not hours.is_open(now):
            opening = hours.next_opening(now)
            opens = format_datetime(opening, "EEEE HH:mm", locale=babel_locale(language)) \
                + f" ({hours.zone.key})" if opening else "soon"
            return HandoffNotice("utter_handoff_closed", {"opens": opens},
                                 {"open": False, "opens_at": opening.isoformat() if opening else None})
        if agents_online == 0:
            return HandoffNotice("utter_handoff_no_agents", {}, {"open": True, "agents_online": 0})
        minutes = max(1, math.ceil((queued_ahead + 1) * self.average_handling_minutes / agents_online))
        return HandoffNotice("utter_handoff", {"wait": str(minutes)},
                             {"open": True, "agents_online": agents_online, "expected_wait_minutes": minutes})


def load_handoff_policy(path: Path, warn: Warn) -> HandoffPolicy:
    """Read the handoff policy file; unknown keys are reported, bad values are errors naming the key."""
    document = load_yaml(path, "handoff policy")
    for key in document:
        if key not in _TOP_KEYS:
            warn(f"{path}: unknown key '{key}' is ignored")
    try:
        return _policy(document)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise SwitchboardError(f"{path}: {exc}") from exc


def _policy(document: dict[str, Any]) -> HandoffPolicy:
    request = document.get("explicit_request") or {}
    sentiment = document.get("sentiment") or {}
    return HandoffPolicy(
        explicit_request=ExplicitRequest(
            phrases=_by_language(request.get("phrases")),
            keywords=_by_language(request.get("keywords")),
            short_message_words=int(request.get("short_message_words", 4)),
        ),
        repeated_fallback=_positive("repeated_fallback", document.get("repeated_fallback", 2)),
        sentiment=SentimentRule(
            handoff_at=float(sentiment.get("handoff_at", -0.6)),
            frustrated_at=float(sentiment.get("frustrated_at", -0.3)),
            frustrated_messages=_positive("sentiment.frustrated_messages",
                                          sentiment.get("frustrated_messages", 2)),
            lexicon={str(w): float(v) for w, v in (sentiment.get("lexicon") or {}).items()},
        ),
        sensitive_intents={str(i): float(c) for i, c in (document.get("sensitive_intents") or {}).items()},
        keywords=tuple(normalise(str(k)) for k in document.get("keywords") or ()),
        business_hours=_business_hours(document.get("business_hours")),
        average_handling_minutes=float(document.get("average_handling_minutes", 6)),
        answer_while_queued=_flag("answer_while_queued", document.get("answer_while_queued", True)),
    )


def _flag(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"'{key}' must be true or false, not {value!r}")
    return value


def _positive(key: str, value: object) -> int:
    number = int(str(value))
    if number < 1:
        raise ValueError(f"'{key}' must be 1 or more, not {value}")
    return number


def _by_language(raw: object) -> dict[str, tuple[str, ...]]:
    if not raw:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("'explicit_request' phrases and keywords are lists under a language code, e.g. en:")
    return {str(language): tuple(normalise(str(p)) for p in items or ()) for language, items in raw.items()}


def _business_hours(raw: object) -> BusinessHours | None:
    if not raw:
        return None
    if not isinstance(raw, dict):
        raise ValueError("'business_hours' needs 'timezone' and 'open'")
    try:
        zone = ZoneInfo(str(raw.get("timezone", "UTC")))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"business_hours.timezone: unknown time zone {raw.get('timezone')!r}") from exc
    weekly: dict[int, list[tuple[time, time]]] = {}
    for days, spans in (raw.get("open") or {}).items():
        for day in _days(str(days)):
            for span in str(spans).split(","):
                start, _, end = span.strip().partition("-")
                opening, closing = time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
                if closing <= opening:
                    raise ValueError(f"business_hours.open.{days}: '{span.strip()}' closes before it opens")
                weekly.setdefault(day, []).append((opening, closing))
    calendar = None
    if raw.get("public_holidays"):
        country, _, subdivision = str(raw["public_holidays"]).partition("-")
        try:
            calendar = holidays.country_holidays(country, subdiv=subdivision or None)
        except NotImplementedError as exc:
            raise ValueError(f"business_hours.public_holidays: {exc}") from exc
    closed = frozenset(d if isinstance(d, date) else date.fromisoformat(str(d)) for d in raw.get("closed_on") or ())
    return BusinessHours(zone, {d: tuple(spans) for d, spans in weekly.items()}, closed, calendar)


def _days(spec: str) -> list[int]:
    """'mon-fri' -> [0..4]; 'sat' -> [5]; 'mon,wed' -> [0, 2]."""
    days: list[int] = []
    for part in spec.casefold().split(","):
        first, _, last = part.strip().partition("-")
        if first not in _DAYS or (last and last not in _DAYS):
            raise ValueError(f"business_hours.open: '{spec}' is not a day or range like mon-fri")
        start, end = _DAYS.index(first), _DAYS.index(last or first)
        days.extend(range(start, end + 1))
    return days
