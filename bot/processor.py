"""Processes stored messages: in arrival order within a conversation, conversations in parallel."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from bot.engine import Engine
from bot.errors import Unavailable
from bot.messages import PendingMessage, utcnow
from bot.outcome import Outcome
from bot.ports import NO_METER, ConversationStore, Meter

log = logging.getLogger(__name__)


class ConversationProcessor:
    """Drains each conversation's unprocessed messages on a thread pool, one turn at a time.

    At most one thread works on a conversation at once, and it always takes the oldest
    unprocessed message from the store, so order is the store's order and a restart
    resumes where the last commit left off. A turn that could not be stored (the store
    could not write) is tried again after `retry_delays` (the last one repeating), so the
    customer is answered once the store recovers without having to write again.
    """

    def __init__(self, store: ConversationStore, engine: Engine, threads: int = 4, max_attempts: int = 3,
                 retry_delays: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0), meter: Meter = NO_METER) -> None:
        self._store = store
        self._meter = meter
        self._engine = engine
        self._max_attempts = max_attempts
        self._retry_delays = retry_delays
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="switchboard-processor")
        self._lock = threading.Lock()
        self._active: set[str] = set()
        self._again: set[str] = set()
        self._failures: dict[str, int] = {}
        self._retries: dict[str, threading.Timer] = {}
        self._quiet: dict[str, threading.Timer] = {}  # floods waiting for the sender to stop

    def start(self) -> None:
        """Resume every conversation with messages stored but not yet processed."""
        for conversation_id in self._store.conversations_with_pending():
            self.notify(conversation_id)

    def stop(self) -> None:
        """Finish the turns in progress and stop; turns waiting for a retry resume on the next start."""
        with self._lock:
            timers = [*self._retries.values(), *self._quiet.values()]
            self._retries, self._quiet = {}, {}
        for timer in timers:
            timer.cancel()
        self._pool.shutdown(wait=True)

    def retrying(self, conversation_id: str) -> bool:
        """Whether the conversation waits to try a turn again after a failure."""
        with self._lock:
            return conversation_id in self._retries

    def notify(self, conversation_id: str) -> None:
        """Tell the processor a conversation has a new stored message."""
        with self._lock:
            if conversation_id in self._active:
                self._again.add(conversation_id)
                return
            self._active.add(conversation_id)
        try:
            self._pool.submit(self._drain, conversation_id)
        except RuntimeError:
            # Shutting down: the message is stored, and the next start resumes it.
            log.info("processor stopping; conversation %s resumes on the next start", conversation_id)

    def _drain(self, conversation_id: str) -> None:
        while True:
            try:
                while (pending := self._store.next_pending(conversation_id)) is not None:
                    if pending.throttled and not pending.followed and self._flooding(conversation_id):
                        break  # the flood goes on: its last message is answered once it stops
                    self._process(pending)
            except Exception:
                self._retry_later(conversation_id)
            else:
                with self._lock:
                    self._failures.pop(conversation_id, None)
            with self._lock:
                if conversation_id not in self._again:
                    self._active.discard(conversation_id)
                    return
                self._again.discard(conversation_id)

    def _retry_later(self, conversation_id: str) -> None:
        with self._lock:
            failures = self._failures.get(conversation_id, 0)
            self._failures[conversation_id] = failures + 1
            delay = self._retry_delays[min(failures, len(self._retry_delays) - 1)]
            if conversation_id in self._retries:
                return
            timer = threading.Timer(delay, self._retry, (conversation_id,))
            timer.daemon = True
            self._retries[conversation_id] = timer
        log.exception("processing stopped for conversation %s; trying again in %g s", conversation_id, delay)
        timer.start()

    def _retry(self, conversation_id: str) -> None:
        with self._lock:
            if self._retries.pop(conversation_id, None) is None:
                return  # stopped meanwhile
        self.notify(conversation_id)

    def notify_after(self, conversation_id: str, seconds: float) -> None:
        """Process the conversation once no new message came for `seconds` (a flood's end)."""
        with self._lock:
            waiting = self._quiet.pop(conversation_id, None)
            timer = threading.Timer(seconds, self._quiet_over, (conversation_id,))
            timer.daemon = True
            self._quiet[conversation_id] = timer
        if waiting is not None:
            waiting.cancel()
        timer.start()

    def _flooding(self, conversation_id: str) -> bool:
        with self._lock:
            return conversation_id in self._quiet

    def _quiet_over(self, conversation_id: str) -> None:
        with self._lock:
            self._quiet.pop(conversation_id, None)
        self.notify(conversation_id)

    def _process(self, pending: PendingMessage) -> None:
        if pending.throttled and pending.followed:
            # A flood: stored for agents to read, but the bot answers only the last message of it.
            self._store.complete_turn(pending, Outcome(message_data={"skipped": "flood"}))
            return
        for attempt in range(1, self._max_attempts + 1):
            conversation = self._store.get_conversation(pending.conversation_id)
            try:
                outcome = self._engine.respond(conversation, pending.text, pending.channel, pending.event_seq,
                                               media=pending.media, link=pending.link, rated=pending.rated)
                break
            except Unavailable:
                raise  # the store, not the turn: tried again as a whole once it recovers
            except Exception:
                log.exception("turn failed for conversation %s (attempt %d of %d)",
                              pending.conversation_id, attempt, self._max_attempts)
        else:
            # The customer must not be left unanswered: a person takes over.
            outcome = self._engine.hand_off(conversation, "processing_error")
        if self._store.complete_turn(pending, outcome):
            waited = (utcnow() - pending.received_at).total_seconds() if pending.received_at else None
            self._meter.turn_done(pending.channel, outcome, waited)
