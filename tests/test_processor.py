"""Processing order, failure handling and restart, with a plain fake engine."""

from __future__ import annotations

import threading
import time

import pytest

from bot.messages import Author, Conversation, InboundMessage, Reply
from bot.outcome import Outcome
from bot.pipeline.processor import ConversationProcessor
from bot.stores import open_store
from bot.stores.conversations import ConversationStore
from bot.stores.database import WRITE_LOCK
from tests.conftest import both_databases  # noqa: F401 (runs each test on both databases)
from tests.servers import wait_for


class RecordingEngine:
    """Answers every message with its own text, slowly; fails on demand."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.seen: list[str] = []
        self.delay = delay
        self.fail_on = fail_on
        self.busy: dict[str, int] = {}  # turns in progress, by conversation
        self.max_concurrent_per_conversation = 0
        self._lock = threading.Lock()

    def respond(self, conversation: Conversation, text: str, channel: str | None = None,
                seq: int | None = None, *, media: str | None = None, link: str | None = None,
                rated: str | None = None, language: str | None = None) -> Outcome:
        key = conversation.conversation_id
        with self._lock:
            self.busy[key] = self.busy.get(key, 0) + 1
            self.max_concurrent_per_conversation = max(self.max_concurrent_per_conversation, self.busy[key])
        try:
            time.sleep(self.delay)
            if text == self.fail_on:
                raise RuntimeError("engine failure")
            self.seen.append(text)
            return Outcome(replies=(Reply(conversation.conversation_id, f"re: {text}", Author.BOT),),
                           fallback_streak=0)
        finally:
            with self._lock:
                self.busy[key] -= 1

    def hand_off(self, conversation: Conversation, reason: str) -> Outcome:
        return Outcome(replies=(Reply(conversation.conversation_id, "a person will help", Author.BOT),),
                       handoff_reason=reason, fallback_streak=0)


def wait_until_processed(store: ConversationStore) -> None:
    deadline = time.monotonic() + 20
    while store.conversations_with_pending():
        assert time.monotonic() < deadline, "processing did not finish"
        time.sleep(0.01)


def test_messages_of_one_conversation_are_processed_in_arrival_order(store_url: str) -> None:
    store = open_store(store_url)
    engine = RecordingEngine(delay=0.01)
    processor = ConversationProcessor(store, engine, threads=4)  # type: ignore[arg-type]
    texts = [f"message {i}" for i in range(10)]
    for i, text in enumerate(texts):
        accepted = store.accept(InboundMessage("web", "u1", f"m{i}", text))
        processor.notify(accepted.conversation_id)
    wait_until_processed(store)
    processor.stop()
    assert engine.seen == texts
    assert engine.max_concurrent_per_conversation == 1
    replies = [e.text for e in store.outbox_for("web", "u1", "pending")]
    assert replies == [f"re: {t}" for t in texts]


def test_a_failing_turn_hands_off_instead_of_leaving_the_customer_unanswered(store_url: str) -> None:
    store = open_store(store_url)
    processor = ConversationProcessor(store, RecordingEngine(fail_on="boom"), threads=1)  # type: ignore[arg-type]
    accepted = store.accept(InboundMessage("web", "u1", "m1", "boom"))
    processor.notify(accepted.conversation_id)
    wait_until_processed(store)
    processor.stop()
    conversation = store.get_conversation(accepted.conversation_id)
    assert conversation.status == "queued" and conversation.handoff_reason == "processing_error"
    assert [e.text for e in store.outbox_for("web", "u1", "pending")] == ["a person will help"]


def test_messages_stored_before_a_restart_are_processed_after_it(store_url: str) -> None:
    store = open_store(store_url)
    for i in range(3):
        store.accept(InboundMessage("web", f"u{i}", f"m{i}", f"hello {i}"))
    # No processor ran: the process "died" after acknowledging. A new one starts.
    engine = RecordingEngine()
    processor = ConversationProcessor(open_store(store_url), engine)  # type: ignore[arg-type]
    processor.start()
    wait_until_processed(store)
    processor.stop()
    assert sorted(engine.seen) == ["hello 0", "hello 1", "hello 2"]


def test_a_message_arriving_during_shutdown_is_kept_for_the_next_start(store_url: str) -> None:
    store = open_store(store_url)
    processor = ConversationProcessor(store, RecordingEngine())  # type: ignore[arg-type]
    processor.stop()
    accepted = store.accept(InboundMessage("web", "u1", "m1", "late"))
    processor.notify(accepted.conversation_id)  # does not raise
    assert store.conversations_with_pending() == [accepted.conversation_id]


def test_two_workers_sharing_a_store_answer_each_message_once_and_in_order(store_url: str) -> None:
    stores = [open_store(store_url), open_store(store_url)]
    engine = RecordingEngine(delay=0.002)  # shared, so it sees whether two workers ever overlap on a conversation
    workers = [ConversationProcessor(store, engine, threads=3, holder=f"worker-{n}", sweep_seconds=0.2)  # type: ignore[arg-type]
               for n, store in enumerate(stores)]
    for worker in workers:
        worker.start()
    for i in range(6):
        for c in range(10):
            accepted = stores[c % 2].accept(InboundMessage("web", f"u{c}", f"m{c}-{i}", f"c{c} message {i}"))
            for worker in workers:  # both are woken, as a shared notifier wakes every worker
                worker.notify(accepted.conversation_id)
    wait_until_processed(stores[0])
    for worker in workers:
        worker.stop()
    assert sorted(engine.seen) == sorted(f"c{c} message {i}" for c in range(10) for i in range(6))  # each once
    assert engine.max_concurrent_per_conversation == 1
    for c in range(10):
        replies = [e.text for e in stores[0].outbox_for("web", f"u{c}", "pending")]
        assert replies == [f"re: c{c} message {i}" for i in range(6)]
    for store in stores:
        store.dispose()


def test_a_lease_taken_over_from_a_dead_worker_keeps_its_late_turn_out(store_url: str) -> None:
    store = open_store(store_url)
    accepted = store.accept(InboundMessage("web", "u1", "m1", "hello"))
    conversation_id = accepted.conversation_id
    assert store.lease(conversation_id, "worker-a", 30) == 0  # taken from nobody
    assert store.lease(conversation_id, "worker-b", 30) is None  # live: nobody else takes it
    assert store.conversations_with_pending(unleased=True) == []
    pending = store.next_pending(conversation_id)
    assert pending is not None
    store.lease(conversation_id, "worker-a", -1)  # worker-a stopped renewing: its lease ran out
    assert store.conversations_with_pending(unleased=True) == [conversation_id]
    assert store.lease(conversation_id, "worker-b", 30) == 1  # taken over once
    late = Outcome(replies=(Reply(conversation_id, "late answer", Author.BOT),))
    assert store.complete_turn(pending, late, holder="worker-a") is False  # worker-a woke up too late
    assert store.next_pending(conversation_id) is not None  # nothing was stored for it
    answer = Outcome(replies=(Reply(conversation_id, "answer", Author.BOT),))
    assert store.complete_turn(pending, answer, holder="worker-b") is True
    store.release(conversation_id, "worker-b")
    assert [e.text for e in store.outbox_for("web", "u1", "pending")] == ["answer"]
    store.dispose()


def test_a_dead_workers_conversation_is_taken_up_by_the_survivors_sweep(store_url: str) -> None:
    store = open_store(store_url)
    accepted = store.accept(InboundMessage("web", "u1", "m1", "hello"))
    store.lease(accepted.conversation_id, "dead-worker", 0.5)  # it took the conversation, then died
    survivor = ConversationProcessor(open_store(store_url), RecordingEngine(), holder="survivor",  # type: ignore[arg-type]
                                     sweep_seconds=0.1)
    survivor.start()  # nothing to take yet: the dead worker's lease is live for half a second
    wait_until_processed(store)
    survivor.stop()
    assert [e.text for e in store.outbox_for("web", "u1", "pending")] == ["re: hello"]
    store.dispose()


def test_a_worker_that_lost_its_lease_mid_turn_stops_and_leaves_the_conversation(store_url: str) -> None:
    store = open_store(store_url)
    accepted = store.accept(InboundMessage("web", "u1", "m1", "hello"))

    class TakenOverMidTurn(RecordingEngine):
        def respond(self, conversation: Conversation, text: str, *args: object, **kwargs: object) -> Outcome:
            # While this worker thinks, it is taken for dead and another one takes the conversation.
            store.lease(conversation.conversation_id, "worker-a", -1)
            assert store.lease(conversation.conversation_id, "worker-b", 30) is not None
            return super().respond(conversation, text)

    engine = TakenOverMidTurn()
    worker = ConversationProcessor(open_store(store_url), engine, holder="worker-a",  # type: ignore[arg-type]
                                   sweep_seconds=60)
    worker.notify(accepted.conversation_id)
    wait_for(lambda: not worker._active)
    worker.stop()
    assert engine.seen == ["hello"]  # it thought once, and did not try again
    assert store.next_pending(accepted.conversation_id) is not None  # its turn was not stored: worker-b answers
    assert store.lease(accepted.conversation_id, "worker-c", 30) is None  # worker-b still holds it
    store.dispose()


def test_a_message_that_kills_every_worker_goes_to_a_person_after_three_takeovers(store_url: str) -> None:
    store = open_store(store_url)
    accepted = store.accept(InboundMessage("web", "u1", "m1", "a message that crashes whoever answers it"))
    store.accept(InboundMessage("web", "u1", "m2", "and one after it"))
    for dead in ("worker-a", "worker-b", "worker-c"):  # each took the conversation and died on its message
        store.lease(accepted.conversation_id, dead, -1)
    engine = RecordingEngine()
    worker = ConversationProcessor(open_store(store_url), engine, holder="worker-d",  # type: ignore[arg-type]
                                   sweep_seconds=60)
    worker.notify(accepted.conversation_id)
    wait_until_processed(store)
    worker.stop()
    assert engine.seen == ["and one after it"]  # the bot never ran on the poisoned message
    conversation = store.get_conversation(accepted.conversation_id)
    assert conversation.status == "queued" and conversation.handoff_reason == "processing_error"
    assert [e.text for e in store.outbox_for("web", "u1", "pending")] == ["a person will help", "re: and one after it"]
    # Released cleanly: the next worker starts counting from nothing.
    store.accept(InboundMessage("web", "u1", "m3", "hello again"))
    assert store.lease(accepted.conversation_id, "worker-e", 30) == 0
    store.dispose()


class CountingLeases:
    """A store that counts the leases asked for and taken on it."""

    def __init__(self, store: ConversationStore) -> None:
        self._store = store
        self.asked = self.taken = 0

    def lease(self, conversation_id: str, holder: str, seconds: float) -> int | None:
        self.asked += 1
        takeovers = self._store.lease(conversation_id, holder, seconds)
        self.taken += takeovers is not None
        return takeovers

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


def test_a_conversation_offered_with_nothing_waiting_takes_no_lease(store_url: str) -> None:
    # A sweep and a wake-up offer the same conversation at once: the second offer finds it answered.
    store = open_store(store_url)
    accepted = store.accept(InboundMessage("web", "u1", "m1", "hello"))
    counting = CountingLeases(store)
    worker = ConversationProcessor(counting, RecordingEngine(), holder="worker-a")  # type: ignore[arg-type]
    worker.notify(accepted.conversation_id)
    wait_until_processed(store)
    worker.notify(accepted.conversation_id)  # answered already (or being answered: then it is looked at again)
    worker.stop()  # waits for both
    assert counting.asked == 2 and counting.taken == 1
    assert [e.text for e in store.outbox_for("web", "u1", "pending")] == ["re: hello"]
    store.dispose()


def test_a_lease_is_taken_only_where_a_message_waits_and_its_release_tells_of_a_new_one(store_url: str) -> None:
    store = open_store(store_url)
    accepted = store.accept(InboundMessage("web", "u1", "m1", "hello"))
    conversation_id = accepted.conversation_id
    assert store.lease(conversation_id, "worker-a", 30) == 0
    pending = store.next_pending(conversation_id)
    assert pending is not None and not pending.followed
    assert store.complete_turn(pending, Outcome(replies=(Reply(conversation_id, "hi", Author.BOT),)), "worker-a")
    assert store.release(conversation_id, "worker-a") is False  # nothing came meanwhile
    assert store.lease(conversation_id, "worker-a", 30) is None  # nothing waits: no lease
    assert store.conversations_with_pending(unleased=True) == []

    assert store.lease(store.accept(InboundMessage("web", "u1", "m2", "one")).conversation_id, "worker-a", 30) == 0
    store.accept(InboundMessage("web", "u1", "m3", "two"))  # stored while worker-a answers "one"
    pending = store.next_pending(conversation_id)
    assert pending is not None and pending.followed  # worker-a reads that another waits behind it
    assert store.release(conversation_id, "worker-b") is False  # not worker-b's to give up: it stays worker-a's
    assert store.lease(conversation_id, "worker-b", 30) is None
    assert store.release(conversation_id, "worker-a") is True  # given up with a message waiting
    store.dispose()


def test_leases_do_not_queue_behind_the_deployments_writes(postgres_database: str) -> None:
    # Every write that appends events takes one lock, so that events get their ids in commit order; a worker's
    # lease, taken and given up around every turn, is one statement and needs no place in that order.
    import psycopg

    store = open_store(postgres_database)
    accepted = store.accept(InboundMessage("web", "u1", "m1", "hello"))
    with psycopg.connect(postgres_database) as writer:
        writer.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))  # a long write elsewhere holds the lock
        taken = threading.Thread(target=lambda: store.lease(accepted.conversation_id, "worker-a", 30))
        taken.start()
        taken.join(timeout=10)
        assert not taken.is_alive(), "the lease waited for the other write"
        assert store.conversations_with_pending(unleased=True) == []
        store.renew_leases("worker-a", 30)
        store.release(accepted.conversation_id, "worker-a")
        assert store.conversations_with_pending(unleased=True) == [accepted.conversation_id]
        writer.rollback()
    store.dispose()


class CountingLooks:
    """A store that counts the looks for a conversation's next message."""

    def __init__(self, store: ConversationStore) -> None:
        self._store = store
        self.looks = 0

    def next_pending(self, conversation_id: str) -> object:
        self.looks += 1
        return self._store.next_pending(conversation_id)

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


@pytest.mark.parametrize("holder", [None, "worker-a"])
def test_a_message_stored_during_a_turn_is_answered_next_and_each_costs_one_look(
        store_url: str, holder: str | None) -> None:
    store = open_store(store_url)
    counting = CountingLooks(store)
    processor: ConversationProcessor

    class StoresAnotherMidTurn(RecordingEngine):
        def respond(self, conversation: Conversation, text: str, *args: object, **kwargs: object) -> Outcome:
            if text == "first":  # the customer writes again while the bot answers, as the inbox stores it
                processor.notify(store.accept(InboundMessage("web", "u1", "m2", "second")).conversation_id)
            return super().respond(conversation, text)

    engine = StoresAnotherMidTurn()
    processor = ConversationProcessor(counting, engine, holder=holder, sweep_seconds=60)  # type: ignore[arg-type]
    processor.notify(store.accept(InboundMessage("web", "u1", "m1", "first")).conversation_id)
    wait_until_processed(store)
    wait_for(lambda: not processor._active)
    processor.stop()
    assert engine.seen == ["first", "second"]
    assert [e.text for e in store.outbox_for("web", "u1", "pending")] == ["re: first", "re: second"]
    assert counting.looks == 2  # no look that finds nothing after each turn
    store.dispose()
