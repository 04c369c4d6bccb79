"""`switchboard worker`: answers stored messages and sends replies, beside `switchboard web` processes.

Any number of workers may share a store and a Redis. Each takes a conversation's lease before it answers
(see `ConversationProcessor`), so one conversation is answered by one worker at a time, in order; a
worker that dies leaves its leases to run out, and the others take its conversations up.
"""

from __future__ import annotations

import logging
import signal
import threading

from bot.errors import Unavailable
from bot.pipeline.processor import WORK_WAITING, ConversationProcessor
from switchboard.app import build_services, start_work
from switchboard.settings import Settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings, stop: threading.Event | None = None) -> None:
    """Work until `stop` is set, or SIGTERM / SIGINT arrive (when called from the main thread)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    services = build_services(settings, role="worker")
    try:
        start_work(services)
        log.info("Switchboard worker ready (store %s)", settings.store_url)
        notifier, processor = services.notifier, services.processor
        assert isinstance(processor, ConversationProcessor)
        seen = notifier.version(WORK_WAITING)
        while not stop.is_set():
            seen = notifier.wait(WORK_WAITING, seen, timeout=1.0)
            try:
                processor.sweep()
            except Unavailable as exc:
                log.warning("the store cannot be reached (%s); trying again", exc)
    finally:
        log.info("Switchboard worker stopping: finishing the turns in progress")
        services.close()
