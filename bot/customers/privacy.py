"""What Switchboard must not keep: card numbers and other configured patterns, masked in every
customer message before it is stored, indexed or shown; and how long transcripts are kept."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import yaml

from bot.errors import SwitchboardError

log = logging.getLogger(__name__)

# 13 to 19 digits, single spaces or dashes allowed between them (as people type card numbers);
# not after a "+": that is a phone number.
_CARD = re.compile(r"(?<![\d+-])\d(?:[ -]?\d){12,18}(?![\d])")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


@dataclass(frozen=True)
class MaskRule:
    name: str
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class PrivacyPolicy:
    """Masking rules beyond card numbers, and the transcript retention (0: keep forever)."""

    rules: tuple[MaskRule, ...] = ()
    retention_days: int = 0

    def mask(self, text: str) -> tuple[str, list[str]]:
        """The text with card numbers and configured patterns replaced, and the names of what was masked."""
        masked: list[str] = []

        def card(match: re.Match[str]) -> str:
            digits = re.sub(r"\D", "", match.group(0))
            if not luhn_valid(digits):
                return match.group(0)
            masked.append("card number")
            return f"[card number ending {digits[-4:]}]"

        text = _CARD.sub(card, text)
        for rule in self.rules:
            text, count = rule.pattern.subn(f"[{rule.name} removed]", text)
            if count:
                masked.append(rule.name)
        return text, sorted(set(masked))


def load_privacy(path: Path) -> PrivacyPolicy:
    """Read `data/privacy.yml`; a missing file means card masking only and no retention limit."""
    if not path.exists():
        return PrivacyPolicy()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SwitchboardError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or set(raw) - {"retention_days", "mask"}:
        raise SwitchboardError(f"{path}: expected the keys retention_days and mask")
    days = raw.get("retention_days", 0)
    if not isinstance(days, int) or days < 0:
        raise SwitchboardError(f"{path}: retention_days must be a whole number of days, 0 to keep forever")
    rules = []
    for number, item in enumerate(raw.get("mask") or [], 1):
        if not (isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("pattern"), str)):
            raise SwitchboardError(f"{path}: mask rule {number} needs a `name` and a `pattern`")
        try:
            rules.append(MaskRule(item["name"], re.compile(item["pattern"])))
        except re.error as exc:
            raise SwitchboardError(f"{path}: mask rule {number} ({item['name']}): bad pattern: {exc}") from exc
    return PrivacyPolicy(tuple(rules), days)


class RetentionWorker:
    """Purges old transcripts in the background: once shortly after start, then every `interval`."""

    def __init__(self, purge: Callable[[timedelta], int], days: int, interval: timedelta = timedelta(hours=24),
                 first_delay: float = 60.0) -> None:
        self._purge = purge
        self._days = days
        self._interval = interval
        self._first_delay = first_delay
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._days <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="switchboard-retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def run_once(self) -> int:
        purged = self._purge(timedelta(days=self._days))
        if purged:
            log.info("retention: purged the transcripts of %d conversations closed more than %d days ago",
                     purged, self._days)
        return purged

    def _run(self) -> None:
        delay = self._first_delay
        while not self._stopping.wait(delay):
            try:
                self.run_once()
            except Exception:
                log.exception("retention run failed; it is tried again at the next interval")
            delay = self._interval.total_seconds()
