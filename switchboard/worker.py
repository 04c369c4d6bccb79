"""`switchboard worker`: answers stored messages and sends replies, beside `switchboard web` processes.

Any number of workers may share a store and a Redis. Each takes a conversation's lease before it answers
(see `ConversationProcessor`), so one conversation is answered by one worker at a time, in order; a
worker that dies leaves its leases to run out, and the others take its conversations up. The channels
Switchboard reads by asking (Telegram long polling, an IMAP mailbox) are read by one worker at a time,
the one holding their lease (`PullLease`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from contextlib import suppress

from redis.exceptions import LockError

from bot.errors import SwitchboardError, Unavailable
from bot.notifier import connect_redis
from bot.pipeline.processor import WORK_WAITING, ConversationProcessor
from switchboard.app import (
    build_services,
    freeze_startup_heap,
    pulls_messages,
    start_pulling,
    start_work,
    stop_pulling,
)
from switchboard.metrics import MetricsServer
from switchboard.settings import Settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings, stop: threading.Event | None = None,
               metrics: tuple[str, int] | None = None) -> None:
    """Work until `stop` is set, or SIGTERM / SIGINT arrive (when called from the main thread); serve the
    worker's /metrics on `metrics` (host, port) if given."""
    if metrics is not None and not settings.metrics_token:
        raise SwitchboardError("--metrics-port serves /metrics to scrapers that send SWITCHBOARD_METRICS_TOKEN; "
                               "set it (the same as the web servers')")
    stop = stop or threading.Event()
    own_process = threading.current_thread() is threading.main_thread()  # not a thread of a test or an embedder
    if own_process:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    services = build_services(settings, role="worker")
    if own_process:
        freeze_startup_heap()
    lease = None
    if pulls_messages(settings):
        lease = PullLease(settings.redis_url, f"{settings.redis_prefix}:pull-channels",
                          lambda: start_pulling(services), lambda: stop_pulling(services), settings.pull_lease_seconds)
    scraped = None
    try:
        if metrics is not None:
            scraped = MetricsServer(*metrics, settings.metrics_token, services.meter, services.store)
            scraped.start()
        start_work(services)
        log.info("Switchboard worker ready (store %s)", settings.store_url)
        notifier, processor = services.notifier, services.processor
        assert isinstance(processor, ConversationProcessor)
        # A web process names the conversation it stored a message for, and this one takes it up at once; the
        # sweeps below find the messages whose announcement was missed (Redis away, or a worker that died).
        notifier.hand_over(WORK_WAITING, processor.notify)
        seen = notifier.version(WORK_WAITING)
        while not stop.is_set():
            if lease is not None:
                lease.tick()
            seen = notifier.wait(WORK_WAITING, seen, timeout=1.0)
            try:
                processor.sweep()
            except Unavailable as exc:
                log.warning("the store cannot be reached (%s); trying again", exc)
    finally:
        log.info("Switchboard worker stopping: finishing the turns in progress")
        if lease is not None:
            lease.close()
        services.close()
        if scraped is not None:
            scraped.close()


class PullLease:
    """The channels Switchboard reads by asking (Telegram long polling, an IMAP mailbox) are read by one worker
    at a time: the one holding a Redis lock of `seconds` (redis-py's `Lock`), renewed every third of that.
    When that worker dies its lock runs out, and another worker starts reading within `seconds`. A worker
    that stalls past `seconds`, or whose lock Redis forgot (a restart), stops reading on its next renewal.
    A message read by two workers in a hand-over is stored once (by its update id, or its Message-ID).

    `tick` does the work, and is meant to be called about every second: it tries to take a free lease at most
    once a second, so a busy loop costs Redis nothing."""

    def __init__(self, url: str, key: str, start: Callable[[], None], stop: Callable[[], None],
                 seconds: float = 15.0, clock: Callable[[], float] = time.monotonic) -> None:
        client, self._errors = connect_redis(url, timeout=2)
        self._lock = client.lock(key, timeout=seconds, thread_local=False)
        self._start, self._stop = start, stop
        self._seconds = seconds
        self._clock = clock
        self._last = -float("inf")  # the last try to take the lease, or its last renewal
        self._not_before = -float("inf")  # after a failed start, this worker tries again from then
        self.reading = False

    def tick(self) -> None:
        """Take the lease if it is free, renew it if held, and start or stop reading to match."""
        now = self._clock()
        if now - self._last < (self._seconds / 3 if self.reading else min(1.0, self._seconds / 3)) \
                or (not self.reading and now < self._not_before):
            return
        self._last = now
        try:
            if self.reading:
                self._lock.reacquire()
            elif self._lock.acquire(blocking=False):
                self._begin()
        except LockError:
            log.warning("this worker lost the lease on the pull channels (Redis forgot it, or the worker stalled "
                        "for more than %g s): another worker reads them now", self._seconds)
            self._end()
        except self._errors as exc:
            # Nobody else can take the lease while Redis is away: reading on loses nothing.
            log.warning("the lease on the pull channels cannot be %s (%s); trying again",
                        "renewed, reading on" if self.reading else "taken", exc)

    def close(self) -> None:
        """Stop reading and free the lease at once, so another worker need not wait for it to run out."""
        if self.reading:
            self._end()
            with suppress(*self._errors):  # a LockError among them: then it runs out by itself
                self._lock.release()

    def _begin(self) -> None:
        try:
            self._start()
        except Exception:
            # Telegram or the mailbox cannot be reached: any other worker may try at once, this one after a lease.
            log.exception("this worker could not start reading the pull channels; it tries again in %g s",
                          self._seconds)
            self._not_before = self._clock() + self._seconds
            self._stop()
            with suppress(*self._errors):
                self._lock.release()
            return
        log.info("this worker reads the pull channels now (Telegram polling, IMAP)")
        self.reading = True

    def _end(self) -> None:
        self.reading = False
        self._stop()
