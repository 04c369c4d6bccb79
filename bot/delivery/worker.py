"""The delivery worker: drains the outbox to the push channels (SMS, WhatsApp, Telegram).

Each reply is fitted to its channel (`bot.delivery.capabilities.fit_reply`) and sent part by part;
each part's provider id is recorded as soon as the provider has it, so a retry continues
after the last part that went out. Transient failures (5xx, timeouts, rate limits) are
retried with exponential backoff and jitter, or after the provider's `retry_after`;
permanent ones (an invalid number, a customer who opted out) are not. A reply that never
goes out is marked `failed` with the reason, for the agents to see. A worker that stops
mid-send leaves replies `sending`; the next start marks them `unknown` rather than risk
sending them twice.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bot.delivery.capabilities import CAPABILITIES, fit_reply
from bot.errors import SwitchboardError
from bot.messages import Button, OutboxEntry, utcnow
from bot.notifier import Notifier
from bot.ports import NO_METER, Meter

# The notifier key that says replies were queued (the store publishes it with every reply it stores).
OUTBOX_CHANGED = "outbox"

log = logging.getLogger(__name__)


class DeliveryError(SwitchboardError):
    """A send failed; `permanent` ones are not retried, `retry_after` is the provider's wish."""

    code = "delivery_failed"

    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class Sender(Protocol):
    """Sends one message of a reply on one channel; returns the provider's id for it."""

    def send(self, entry: OutboxEntry, text: str, buttons: tuple[Button, ...]) -> str: ...


class DeliveryStore(Protocol):
    def claim_deliveries(self, channels: list[str], now: datetime, limit: int = 20) -> list[OutboxEntry]: ...

    def delivery_progress(self, reply_id: str, parts_sent: int, provider_id: str) -> None: ...

    def delivery_done(self, reply_id: str, now: datetime) -> None: ...

    def delivery_retry(self, reply_id: str, at: datetime, error: str) -> None: ...

    def delivery_failed(self, reply_id: str, error: str, status: str = "failed") -> None: ...

    def recover_interrupted_deliveries(self, older_than: timedelta | None = None) -> list[str]: ...


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 1.0     # seconds before the second attempt
    max_delay: float = 300.0

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Exponential backoff with full jitter in its upper half: attempt n waits up to base * 2^(n-1)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempts - 1))
        return rng.uniform(ceiling / 2, ceiling)


# A reply still `sending` this long after it was taken was left by a worker that died (a send takes seconds).
STALE_SEND = timedelta(minutes=2)


class DeliveryWorker:
    """One thread that sends every push channel's replies, in order per customer.

    `shared`: other processes' workers send from the same store. Then only replies left `sending` for
    longer than STALE_SEND are taken for a dead worker's, at start and every minute after.
    """

    def __init__(self, store: DeliveryStore, senders: Mapping[str, Sender], notifier: Notifier,
                 retry: RetryPolicy | None = None, clock: Callable[[], datetime] = utcnow,
                 rng: random.Random | None = None, poll_seconds: float = 1.0, meter: Meter = NO_METER,
                 shared: bool = False) -> None:
        self._store = store
        self._shared = shared
        self._recovered_at = 0.0
        self._meter = meter
        self._senders = dict(senders)
        self._notifier = notifier
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._rng = rng or random.Random()
        self._poll = poll_seconds
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def channels(self) -> list[str]:
        return sorted(self._senders)

    def start(self) -> None:
        """Mark what a stopped worker left mid-send, then send in the background. With no push channel set
        up there is nothing to send, and no thread is started to wake for every reply."""
        self._recover()
        if not self._senders:
            return
        self._thread = threading.Thread(target=self._run, name="switchboard-delivery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._notifier.publish(OUTBOX_CHANGED)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def run_once(self) -> int:
        """Send every reply due now; return how many were tried."""
        if not self._senders:
            return 0
        entries = self._store.claim_deliveries(self.channels, self._clock())
        for entry in entries:
            self._deliver(entry)
        return len(entries)

    def _recover(self) -> None:
        self._recovered_at = time.monotonic()
        for reply_id in self._store.recover_interrupted_deliveries(STALE_SEND if self._shared else None):
            log.warning("reply %s was being sent when its worker stopped; marked unknown for an agent", reply_id)

    def _run(self) -> None:
        seen = self._notifier.version(OUTBOX_CHANGED)
        while not self._stopping.is_set():
            try:
                if self._shared and time.monotonic() - self._recovered_at > 60:
                    self._recover()
                if self.run_once():
                    continue
            except Exception:
                log.exception("delivery round failed; trying again")
            seen = self._notifier.wait(OUTBOX_CHANGED, seen, self._poll)

    def _deliver(self, entry: OutboxEntry) -> None:
        fitted = fit_reply(entry.text, entry.buttons, CAPABILITIES[entry.channel])
        sender = self._senders[entry.channel]
        try:
            for index in range(entry.parts_sent, len(fitted.parts)):
                last = index == len(fitted.parts) - 1
                provider_id = sender.send(entry, fitted.parts[index], fitted.buttons if last else ())
                self._store.delivery_progress(entry.reply_id, index + 1, provider_id)
        except DeliveryError as exc:
            self._failed(entry, str(exc), exc.permanent, exc.retry_after)
            return
        except Exception as exc:  # an SDK surprise: retried like a transient failure, and logged
            log.exception("sending reply %s on %s failed unexpectedly", entry.reply_id, entry.channel)
            self._failed(entry, f"{type(exc).__name__}: {exc}", permanent=False, retry_after=None)
            return
        self._store.delivery_done(entry.reply_id, self._clock())
        self._meter.delivery(entry.channel, "sent")

    def _failed(self, entry: OutboxEntry, error: str, permanent: bool, retry_after: float | None) -> None:
        if permanent:
            log.warning("reply %s on %s failed for good: %s", entry.reply_id, entry.channel, error)
            self._store.delivery_failed(entry.reply_id, error)
            self._meter.delivery(entry.channel, "failed")
        elif entry.attempts >= self._retry.max_attempts:
            log.warning("reply %s on %s failed %d times; giving up: %s", entry.reply_id, entry.channel,
                        entry.attempts, error)
            self._store.delivery_failed(entry.reply_id, f"gave up after {entry.attempts} attempts: {error}")
            self._meter.delivery(entry.channel, "failed")
        else:
            delay = retry_after if retry_after is not None else self._retry.delay(entry.attempts, self._rng)
            log.info("reply %s on %s: %s; retrying in %.1f s", entry.reply_id, entry.channel, error, delay)
            self._store.delivery_retry(entry.reply_id, self._clock() + timedelta(seconds=delay), error)
            self._meter.delivery(entry.channel, "retry")
