"""Processes stored messages: in arrival order within a conversation, conversations in parallel."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from bot.dialogue.engine import Engine
from bot.errors import Unavailable
from bot.messages import PendingMessage, utcnow
from bot.notifier import Notifier, connect_redis
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

    With a `holder` name, several processors (in other processes or on other hosts) may share one
    store: a processor works on a conversation only while it holds the store's lease on it
    (`lease_seconds`, renewed every `sweep_seconds` while it works), and a turn whose lease another
    processor took over meanwhile is not stored. Every `sweep_seconds` each one also takes up the
    conversations with messages waiting that nobody holds: a dead processor's within
    `lease_seconds` + `sweep_seconds`. A conversation taken over from dead workers `max_takeovers` times
    in a row (a message that kills whoever answers it) has its next message handed to a person without
    the bot's turn. Without a holder the processor is alone and takes no leases.
    """

    def __init__(self, store: ConversationStore, engine: Engine, threads: int = 4, max_attempts: int = 3,
                 retry_delays: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0), meter: Meter = NO_METER,
                 holder: str | None = None, lease_seconds: float = 10.0, sweep_seconds: float = 2.0,
                 quiet: SharedQuiet | None = None, max_takeovers: int = 3) -> None:
        self._store = store
        self._max_takeovers = max_takeovers
        self._shared_quiet = quiet
        self._holder = holder
        self._lease_seconds = lease_seconds
        self._sweep_seconds = sweep_seconds
        self._stopping = threading.Event()
        self._sweeper: threading.Thread | None = None
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
        """Resume every conversation with messages stored but not yet processed (that nobody holds)."""
        self.sweep()
        if self._holder is not None and self._sweeper is None:
            self._sweeper = threading.Thread(target=self._sweep, name="switchboard-leases", daemon=True)
            self._sweeper.start()

    def sweep(self) -> None:
        """Take up every conversation with messages waiting that no processor holds."""
        for conversation_id in self._store.conversations_with_pending(unleased=self._holder is not None):
            self.notify(conversation_id)

    def _sweep(self) -> None:
        while not self._stopping.wait(self._sweep_seconds):
            try:
                with self._lock:
                    working = bool(self._active)
                if working:
                    self._store.renew_leases(str(self._holder), self._lease_seconds)
                self.sweep()
            except Unavailable:
                log.warning("the store cannot be reached to renew leases; trying again in %g s", self._sweep_seconds)

    def stop(self) -> None:
        """Finish the turns in progress and stop; turns waiting for a retry resume on the next start."""
        self._stopping.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout=10)
            self._sweeper = None
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
                if self._holder is None:
                    self._turns(conversation_id)
                else:
                    self._leased_turns(conversation_id, self._holder)
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

    def _leased_turns(self, conversation_id: str, holder: str) -> None:
        """Take the conversation's turns under its lease, if a message waits and no other processor holds it."""
        takeovers = self._store.lease(conversation_id, holder, self._lease_seconds)
        if takeovers is None:
            return  # nothing waits (answered already), or another processor answers it
        try:
            drained = self._turns(conversation_id, poisoned=takeovers >= self._max_takeovers)
        finally:
            waiting = self._store.release(conversation_id, holder)
        if drained and waiting:
            # Came in after the last look, while another processor's try for the lease met this one's.
            with self._lock:
                self._again.add(conversation_id)

    def _turns(self, conversation_id: str, poisoned: bool = False) -> bool:
        """Take the conversation's turns while it has messages; True if none is left waiting. `poisoned`: workers
        died on the conversation again and again, so its next message goes to a person without the bot's turn."""
        while (pending := self._store.next_pending(conversation_id)) is not None:
            if pending.throttled and not pending.followed and self._flooding(conversation_id):
                return False  # the flood goes on: its last message is answered once it stops
            if poisoned:
                poisoned = False
                log.error("workers stopped %d times on conversation %s: its message %d goes to a person "
                          "without the bot's turn", self._max_takeovers, conversation_id, pending.inbound_id)
                conversation = self._store.get_conversation(conversation_id)
                outcome = self._engine.hand_off(conversation, "processing_error")
                stored = self._store.complete_turn(pending, outcome, self._holder)
            else:
                stored = self._process(pending)
            if not stored and self._holder is not None:
                return True  # another processor took the conversation over: it answers from here
            if not pending.followed:
                # Nothing waited behind it when it was read: a message stored since is announced, and the
                # announcement, finding the conversation in hand, has it drained again (`notify`).
                return True
        return True

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
            if conversation_id in self._quiet:
                return True
        return self._shared_quiet is not None and self._shared_quiet.held(conversation_id)

    def _quiet_over(self, conversation_id: str) -> None:
        with self._lock:
            self._quiet.pop(conversation_id, None)
        self.notify(conversation_id)

    def _process(self, pending: PendingMessage) -> bool:
        """Take one turn; False if it was not stored (taken already, or the lease was lost)."""
        if pending.throttled and pending.followed:
            # A flood: stored for agents to read, but the bot answers only the last message of it.
            return self._store.complete_turn(pending, Outcome(message_data={"skipped": "flood"}), self._holder)
        for attempt in range(1, self._max_attempts + 1):
            conversation = self._store.get_conversation(pending.conversation_id)
            try:
                outcome = self._engine.respond(conversation, pending.text, pending.channel, pending.event_seq,
                                               media=pending.media, link=pending.link, rated=pending.rated,
                                               language=pending.language)
                break
            except Unavailable:
                raise  # the store, not the turn: tried again as a whole once it recovers
            except Exception:
                log.exception("turn failed for conversation %s (attempt %d of %d)",
                              pending.conversation_id, attempt, self._max_attempts)
        else:
            # The customer must not be left unanswered: a person takes over.
            outcome = self._engine.hand_off(conversation, "processing_error")
        if not self._store.complete_turn(pending, outcome, self._holder):
            return False
        waited = (utcnow() - pending.received_at).total_seconds() if pending.received_at else None
        self._meter.turn_done(pending.channel, outcome, waited)
        return True


# The notifier key that tells worker processes a message is waiting (`switchboard web` publishes it).
WORK_WAITING = "inbox"


class SharedQuiet:
    """Conversations whose sender floods, waiting for them to stop, as every process sees them: a Redis key
    per conversation that each new message of the flood sets again and that expires once the sender has
    been quiet long enough. If Redis cannot be reached, nobody waits: the bot answers rather than hangs."""

    def __init__(self, url: str, prefix: str) -> None:
        self._redis, self._errors = connect_redis(url, timeout=2)
        self._prefix = prefix

    def hold(self, conversation_id: str, seconds: float) -> None:
        try:
            self._redis.set(f"{self._prefix}:quiet:{conversation_id}", 1, px=max(1, int(seconds * 1000)))
        except self._errors as exc:
            log.warning("a flood's quiet period cannot be kept in Redis (%s): its messages are answered", exc)

    def held(self, conversation_id: str) -> bool:
        try:
            return bool(self._redis.exists(f"{self._prefix}:quiet:{conversation_id}"))
        except self._errors:
            return False


class WorkerProcessors:
    """The processors of `switchboard worker` processes, as a web process sees them: a stored message is
    announced on the (shared) notifier, and whichever worker gets the conversation's lease answers it.
    A worker that missed the announcement finds the message on its next sweep. A flood's conversation is
    held quiet in Redis (`quiet`) until its sender stops, then announced."""

    def __init__(self, notifier: Notifier, quiet: SharedQuiet | None = None) -> None:
        self._notifier = notifier
        self._quiet = quiet

    def notify(self, conversation_id: str) -> None:
        # Named, so that a worker takes that conversation up at once instead of looking for it in the store.
        self._notifier.publish(WORK_WAITING, conversation_id)

    def notify_after(self, conversation_id: str, seconds: float) -> None:
        if self._quiet is not None:
            self._quiet.hold(conversation_id, seconds)
        timer = threading.Timer(seconds + 0.05, self._notifier.publish, (WORK_WAITING,))
        timer.daemon = True
        timer.start()

    def start(self) -> None:
        """Nothing to start: the workers run elsewhere."""

    def stop(self) -> None:
        """Nothing to stop."""
