"""Processes stored messages: in arrival order within a conversation, conversations in parallel."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from bot.engine import Engine
from bot.messages import PendingMessage
from bot.ports import ConversationStore

log = logging.getLogger(__name__)


class ConversationProcessor:
    """Drains each conversation's unprocessed messages on a thread pool, one turn at a time.

    At most one thread works on a conversation at once, and it always takes the oldest
    unprocessed message from the store, so order is the store's order and a restart
    resumes where the last commit left off.
    """

    def __init__(self, store: ConversationStore, engine: Engine, threads: int = 4,
                 max_attempts: int = 3) -> None:
        self._store = store
        self._engine = engine
        self._max_attempts = max_attempts
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="switchboard-processor")
        self._lock = threading.Lock()
        self._active: set[str] = set()
        self._again: set[str] = set()

    def start(self) -> None:
        """Resume every conversation with messages stored but not yet processed."""
        for conversation_id in self._store.conversations_with_pending():
            self.notify(conversation_id)

    def stop(self) -> None:
        """Finish the turns in progress and stop."""
        self._pool.shutdown(wait=True)

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
                    self._process(pending)
            except Exception:
                log.exception("processing stopped for conversation %s; it resumes on the next message "
                              "or restart", conversation_id)
            with self._lock:
                if conversation_id not in self._again:
                    self._active.discard(conversation_id)
                    return
                self._again.discard(conversation_id)

    def _process(self, pending: PendingMessage) -> None:
        for attempt in range(1, self._max_attempts + 1):
            conversation = self._store.get_conversation(pending.conversation_id)
            try:
                outcome = self._engine.respond(conversation, pending.text, pending.channel, pending.event_seq,
                                               media=pending.media, link=pending.link)
                break
            except Exception:
                log.exception("turn failed for conversation %s (attempt %d of %d)",
                              pending.conversation_id, attempt, self._max_attempts)
        else:
            # The customer must not be left unanswered: a person takes over.
            outcome = self._engine.hand_off(conversation, "processing_error")
        self._store.complete_turn(pending, outcome)
