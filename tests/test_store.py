"""The store, on SQLite and on PostgreSQL: storing first, deduplication, atomic turns, concurrency."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.errors import Conflict, NotAllowed, NotFound
from bot.messages import Author, Button, DialogueState, EventKind, InboundMessage, Profile, Reply, utcnow
from bot.outcome import Outcome
from bot.stores import open_store
from bot.stores.conversations import ConversationStore
from tests.conftest import both_databases  # noqa: F401 (runs each test on both databases)
from tests.servers import wait_for


@pytest.fixture
def store(make_store: Callable[..., ConversationStore]) -> ConversationStore:
    return make_store()


def message(text: str = "hi", mid: str = "m1", external_id: str = "u1", channel: str = "web") -> InboundMessage:
    return InboundMessage(channel=channel, external_id=external_id, provider_message_id=mid, text=text,
                          profile=Profile(display_name="Ada"))


def test_store_url_picks_sqlite_and_rejects_unknown_schemes(tmp_path: Path) -> None:
    assert isinstance(open_store(f"sqlite:///{tmp_path}/a.db"), ConversationStore)
    with pytest.raises(Exception, match="unsupported store URL"):
        open_store("mysql://localhost/db")


def test_accept_stores_identity_customer_conversation_and_message(store: ConversationStore) -> None:
    accepted = store.accept(message())
    conversation = store.get_conversation(accepted.conversation_id)
    assert conversation.reference.startswith("SB-") and len(conversation.reference) == 8
    customer = store.get_customer(accepted.customer_id)
    assert customer.display_name == "Ada" and customer.identities == (("web", "u1"),)
    (event,) = store.transcript(accepted.conversation_id)
    assert (event.kind, event.author, event.text, event.seq) == (EventKind.MESSAGE_IN, Author.CUSTOMER, "hi", 1)


def test_repeats_of_a_provider_message_id_are_stored_once(store: ConversationStore) -> None:
    first = store.accept(message())
    again = store.accept(message())
    assert again.duplicate and again.inbound_id == first.inbound_id
    assert len(store.transcript(first.conversation_id)) == 1


def test_concurrent_repeats_and_writers_never_fail_or_duplicate(store: ConversationStore) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(12)

    copies: list[Any] = []

    def send(i: int) -> None:
        barrier.wait()
        try:
            copies.append(store.accept(message(mid="same")))        # 12 copies of one webhook
            store.accept(message(mid=f"own-{i}", external_id=f"u{i}"))  # 12 different customers
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(not c.duplicate for c in copies) == 1 and len({c.inbound_id for c in copies}) == 1
    assert len(store.conversations_with_pending()) == 12
    first = store.accept(message(mid="same"))
    assert [e.text for e in store.transcript(first.conversation_id)].count("hi") == 2  # "same" + "own-1"


def test_a_turn_is_stored_once_even_if_processed_twice(store: ConversationStore) -> None:
    accepted = store.accept(message())
    pending = store.next_pending(accepted.conversation_id)
    assert pending is not None
    outcome = Outcome(replies=(Reply(accepted.conversation_id, "hello", Author.BOT),), fallback_streak=0)
    assert store.complete_turn(pending, outcome) is True
    second = Outcome(replies=(Reply(accepted.conversation_id, "hello again", Author.BOT),), fallback_streak=0)
    assert store.complete_turn(pending, second) is False
    texts = [e.text for e in store.transcript(accepted.conversation_id) if e.kind == EventKind.MESSAGE_OUT]
    assert texts == ["hello"]
    (entry,) = store.outbox_for("web", "u1", "pending")
    assert entry.text == "hello" and entry.in_reply_to == pending.event_seq
    assert store.next_pending(accepted.conversation_id) is None


def test_a_turns_events_replies_and_state_are_stored_in_order_and_its_next_message_numbers_after_them(
        store: ConversationStore) -> None:
    accepted = store.accept(message("do you ship to norway"))
    conversation_id = accepted.conversation_id
    pending = store.next_pending(conversation_id)
    assert pending is not None
    outcome = Outcome(
        events=((EventKind.KB_ANSWER, {"decision": "answer"}), (EventKind.KB_ANSWER, {"decision": "feedback"})),
        replies=(Reply(conversation_id, "Yes, in 3-5 days.", Author.BOT, (Button("Did this help?", "/yes"),)),
                 Reply(conversation_id, "Anything else?", Author.BOT)),
        fallback_streak=2, dialogue=DialogueState(slots={"country": "norway"}), message_data={"intent": "shipping"})
    assert store.complete_turn(pending, outcome)
    after = store.accept(message("thanks", mid="m2"))
    events = store.transcript(conversation_id)
    assert [(e.seq, e.kind, e.text) for e in events] == [
        (1, EventKind.MESSAGE_IN, "do you ship to norway"), (2, EventKind.KB_ANSWER, None),
        (3, EventKind.KB_ANSWER, None), (4, EventKind.MESSAGE_OUT, "Yes, in 3-5 days."),
        (5, EventKind.MESSAGE_OUT, "Anything else?"), (6, EventKind.MESSAGE_IN, "thanks")]
    assert after.event_seq == 6
    assert events[0].data["intent"] == "shipping" and events[2].data == {"decision": "feedback"}
    assert events[3].data["buttons"] == [{"title": "Did this help?", "payload": "/yes"}]
    queued = store.outbox_for("web", "u1", "pending")
    assert [(e.text, e.event_seq, e.in_reply_to) for e in queued] == [
        ("Yes, in 3-5 days.", 4, 1), ("Anything else?", 5, 1)]
    assert [e.data["reply_id"] for e in events[3:5]] == [e.reply_id for e in queued]
    conversation = store.get_conversation(conversation_id)
    assert conversation.fallback_streak == 2 and conversation.dialogue.slots == {"country": "norway"}


def test_a_turn_commits_without_waiting_for_the_disk_and_a_reply_leaves_only_after_a_commit_that_waits(
        store: ConversationStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # A turn can be taken again after a crash of the machine (its message was stored durably when accepted),
    # so its commit does not wait for the disk; accepting a message and claiming a reply for sending do, and
    # their commit carries every turn before it to the disk (the log is written in order).
    database = store._db
    write = database.write
    waits: list[bool] = []

    @contextmanager
    def observed(redoable: bool = False) -> Iterator[Any]:
        with write(redoable) as db:
            if database.dialect == "sqlite":
                waits.append(db.execute("PRAGMA synchronous").fetchone()[0] == 2)  # FULL, not NORMAL (1)
            else:
                waits.append(db.execute("SHOW synchronous_commit").fetchone()[0] == "on")
            yield db

    monkeypatch.setattr(database, "write", observed)
    accepted = store.accept(message("where is my parcel", channel="telegram"))
    assert waits == [True]
    pending = store.next_pending(accepted.conversation_id)
    assert pending is not None
    waits.clear()
    assert store.complete_turn(pending, Outcome(replies=(Reply(accepted.conversation_id, "It left today",
                                                               Author.BOT),)))
    assert waits == [False]
    waits.clear()
    (claimed,) = store.claim_deliveries(["telegram"], utcnow())
    assert claimed.text == "It left today" and waits == [True]  # the setting was the turn's transaction's only


def test_replies_taken_for_an_answer_are_handed_to_one_request_only(store: ConversationStore) -> None:
    # The REST channel hands the replies waiting for a sender over in its answer: two requests of one sender
    # at once (a retry beside its original) must not both carry the same reply.
    first = store.accept(message("where is my parcel", mid="m1", channel="rest"))
    pending = store.next_pending(first.conversation_id)
    assert pending is not None
    store.complete_turn(pending, Outcome(replies=(Reply(first.conversation_id, "It left today", Author.BOT),
                                                  Reply(first.conversation_id, "Anything else?", Author.BOT))))
    store.claim(first.conversation_id, "ann")
    store.agent_reply(first.conversation_id, "ann", "Ann here: it arrives tomorrow")
    answers_only = store.take_replies("rest", "u1", (first.conversation_id, pending.event_seq))
    assert [e.text for e in answers_only] == ["It left today", "Anything else?"]  # not the agent's
    results: list[list[str]] = []
    barrier = threading.Barrier(4)

    def take() -> None:
        barrier.wait()
        results.append([e.text for e in store.take_replies("rest", "u1")])

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [[], [], [], ["Ann here: it arrives tomorrow"]]
    assert store.outbox_for("rest", "u1", "pending") == []
    assert [e.text for e in store.outbox_for("rest", "u1", "sent")] == [
        "It left today", "Anything else?", "Ann here: it arrives tomorrow"]


def test_handoff_queues_the_conversation_with_its_reason(store: ConversationStore) -> None:
    accepted = store.accept(message())
    pending = store.next_pending(accepted.conversation_id)
    assert pending is not None
    store.complete_turn(pending, Outcome(handoff_reason="customer_request", fallback_streak=0))
    conversation = store.get_conversation(accepted.conversation_id)
    assert conversation.status == "queued" and conversation.handoff_reason == "customer_request"
    assert store.transcript(accepted.conversation_id)[-1].data == {"reason": "customer_request"}


def test_agent_actions_need_the_conversation_held(store: ConversationStore) -> None:
    accepted = store.accept(message())
    with pytest.raises(NotAllowed):
        store.agent_reply(accepted.conversation_id, "ann", "hi")
    store.claim(accepted.conversation_id, "ann")
    with pytest.raises(Conflict):
        store.claim(accepted.conversation_id, "bob")
    with pytest.raises(NotAllowed):
        store.close_conversation(accepted.conversation_id, "bob")
    with pytest.raises(NotFound):
        store.claim("missing", "ann")
    reply = store.agent_reply(accepted.conversation_id, "ann", "hi from Ann")
    assert store.outbox_for("web", "u1", "pending")[0].reply_id == reply.reply_id


def test_agent_reply_goes_to_the_channel_the_customer_last_used(store: ConversationStore) -> None:
    store.accept(message(mid="a", channel="web", external_id="u1"))
    accepted = store.accept(message(mid="b", channel="web", external_id="u1"))
    store.claim(accepted.conversation_id, "ann")
    store.agent_reply(accepted.conversation_id, "ann", "on the web")
    assert [e.text for e in store.outbox_for("web", "u1", "pending")] == ["on the web"]


def test_whether_the_customer_wrote_before_a_message_is_told_by_the_messages_before_it(
        store: ConversationStore) -> None:
    first = store.accept(message("hello", mid="m1"))
    conversation_id = first.conversation_id
    assert not store.wrote_before(conversation_id, first.event_seq)
    pending = store.next_pending(conversation_id)
    assert pending is not None
    store.complete_turn(pending, Outcome(replies=(Reply(conversation_id, "Hi! How can I help?", Author.BOT),)))
    assert store.wrote_before(conversation_id, first.event_seq + 1)
    second = store.accept(message("where is my parcel", mid="m2"))
    assert store.wrote_before(conversation_id, second.event_seq)
    assert not store.wrote_before("no-such-conversation", 10)


def test_a_customers_name_and_language_are_written_when_they_change_not_with_every_message(
        store: ConversationStore) -> None:
    # Counted by a trigger: every message of a returning customer rewrote their row (a page of the log each).
    database = store._db
    with database.write() as db:
        db.execute("CREATE TABLE customer_writes (n INTEGER NOT NULL)")
        db.execute("INSERT INTO customer_writes VALUES (0)")
        if database.dialect == "sqlite":
            db.execute("CREATE TRIGGER count_customer_writes AFTER UPDATE ON customers "
                       "BEGIN UPDATE customer_writes SET n = n + 1; END")
        else:
            db.execute("CREATE FUNCTION count_customer_writes() RETURNS trigger AS $$ BEGIN "
                       "UPDATE customer_writes SET n = n + 1; RETURN NEW; END $$ LANGUAGE plpgsql")
            db.execute("CREATE TRIGGER count_customer_writes AFTER UPDATE ON customers FOR EACH ROW "
                       "EXECUTE FUNCTION count_customer_writes()")

    def writes() -> int:
        return int(store._connection().execute("SELECT n FROM customer_writes").fetchone()[0])

    def send(mid: str, language: str, name: str = "Ada", phone: str | None = None) -> str:
        return store.accept(InboundMessage("web", "u1", mid, "hallo", profile=Profile(display_name=name, phone=phone),
                                           data={"language": language})).customer_id

    customer_id = send("m1", "de")
    first = writes()
    send("m2", "de")
    send("m3", "de")
    assert writes() == first  # nothing changed, nothing written
    send("m4", "en")
    send("m5", "en", name="Ada L.", phone="+4915112345678")
    assert writes() == first + 2
    customer = store.get_customer(customer_id)
    assert (customer.language, customer.display_name, customer.phone) == ("en", "Ada L.", "+4915112345678")


def test_a_closed_conversation_is_not_reused(store: ConversationStore) -> None:
    first = store.accept(message(mid="a"))
    store.claim(first.conversation_id, "ann")
    store.close_conversation(first.conversation_id, "ann")
    second = store.accept(message(mid="b"))
    assert second.conversation_id != first.conversation_id
    assert second.customer_id == first.customer_id


def test_change_notifications_follow_commits(make_store: Callable[..., ConversationStore]) -> None:
    keys: list[str] = []
    store = make_store(on_change=keys.append)
    store.accept(message())
    assert keys == ["web:u1", "conversations"]
    store.accept(message())  # a repeat changes nothing
    assert keys == ["web:u1", "conversations"]


def test_a_new_database_and_its_journal_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "new" / "switchboard.db")
    store.accept(InboundMessage("web", "w-1", "m-1", "hello"))
    for name in ("switchboard.db", "switchboard.db-wal", "switchboard.db-shm"):
        assert (tmp_path / "new" / name).stat().st_mode & 0o777 == 0o600, name
    store.close()


def test_background_checkpoints_keep_them_off_the_requests_threads(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "switchboard.db")
    store.checkpoint_in_background(interval=0.05)
    database = tmp_path / "switchboard.db"
    size_before = database.stat().st_size
    settings: list[int] = []

    def request(n: int) -> None:  # a request's thread opens its own connection
        for i in range(50):
            store.accept(InboundMessage("web", f"w-{n}-{i}", f"m-{n}-{i}", "hello " * 50))
        settings.append(store._connection().execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        store.close()

    threads = [threading.Thread(target=request, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert settings == [0, 0, 0]  # no request ever runs a checkpoint
    # Yet the new pages reach the database file: the store's own thread copies them out of the WAL.
    wait_for(lambda: database.stat().st_size > size_before)
    store.stop_checkpoints()
    store.close()
