"""Privacy: card numbers masked on arrival, export of everything, erasure that leaves nothing
personal in any table or file, and transcript retention."""

from __future__ import annotations

import re
import threading
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask

from bot.customers.privacy import PrivacyPolicy, RetentionWorker, load_privacy, luhn_valid
from bot.errors import SwitchboardError
from bot.messages import ConversationStatus, EventKind, InboundMessage, Profile
from bot.stores.conversations import OPEN_STATUSES, ConversationStore
from switchboard.app import services_of
from tests.conftest import (
    ROOT,
    WebChat,
    both_databases,  # noqa: F401 (runs each test on both databases)
)
from tests.dialogue import RecordingChannel
from tests.test_console import AgentBrowser

PHONE = "+4915199887766"


@pytest.mark.parametrize(("text", "expected", "masked"), [
    ("my card is 4111 1111 1111 1111 thanks", "my card is [card number ending 1111] thanks", ["card number"]),
    ("4012-8888-8888-1881", "[card number ending 1881]", ["card number"]),
    ("amex 378282246310005", "amex [card number ending 0005]", ["card number"]),
    ("order 1234 5678 9012 3456", "order 1234 5678 9012 3456", []),       # fails the Luhn check
    ("call +49 151 12345678", "call +49 151 12345678", []),               # too short for a card
    ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN [IBAN removed] please", ["IBAN"]),
])
def test_card_numbers_and_configured_patterns_are_masked(text: str, expected: str, masked: list[str]) -> None:
    policy = load_privacy(ROOT / "data" / "privacy.yml")
    assert policy.mask(text) == (expected, masked)


def test_luhn() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")


def test_a_broken_privacy_file_says_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "privacy.yml"
    path.write_text("mask:\n  - name: broken\n    pattern: '(['\n")
    with pytest.raises(SwitchboardError, match=r"mask rule 1 \(broken\): bad pattern"):
        load_privacy(path)
    path.write_text("retention_days: -3\n")
    with pytest.raises(SwitchboardError, match="retention_days"):
        load_privacy(path)
    assert load_privacy(tmp_path / "missing.yml") == PrivacyPolicy()


def test_a_card_number_is_masked_before_it_is_stored_and_the_agent_sees_that(
        app: Flask, customer: WebChat, tmp_path: Path) -> None:
    customer.say("my card 4111 1111 1111 1111 was charged twice")
    customer.say("I want to talk to a person")
    store = services_of(app).store
    (conversation,) = store.list_conversations([ConversationStatus.QUEUED])
    (first, *_) = [e for e in store.transcript(conversation.conversation_id) if e.kind == EventKind.MESSAGE_IN]
    assert first.text == "my card [card number ending 1111] was charged twice"
    assert first.data["masked"] == ["card number"]
    page = AgentBrowser(app, "ann@example.com").client.get(
        f"/console/conversations/{conversation.conversation_id}").get_data(as_text=True)
    assert "masked: card number" in page and "4111 1111" not in page
    store.compact()
    assert not files_containing(tmp_path, "4111 1111 1111 1111")


def files_containing(directory: Path, *texts: str) -> list[str]:
    """Every file below `directory` that holds one of the texts (as UTF-8), with what it holds."""
    hits = []
    for path in directory.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            hits += [f"{path.name}: {text}" for text in texts if text.encode() in content]
    return hits


def rows_containing(store: ConversationStore, *texts: str) -> list[str]:
    """Every row of every table of the store's database that holds one of the texts."""
    database = store.database
    with database.snapshot() as db:
        tables = database.tables(db)
        rows = [(table, str(tuple(row))) for table in sorted(tables) for row in db.execute(f"SELECT * FROM {table}")]
    return [f"{table}: {text}" for table, row in rows for text in texts if text in row]


def person_on_four_channels(chat: RecordingChannel) -> str:
    chat.say("Hello, I am Zebulon Quackenbush from Wolverhampton", "web-zq", name="Zebulon")
    chat.on("sms").say("my parcel to Quackenbush Lane never arrived", PHONE)
    chat.on("whatsapp").say("writing again about Quackenbush Lane", PHONE)
    chat.on("telegram").say("telegram here, still Quackenbush", "tg-zq")
    customer = next(c.customer_id for c in chat.store.list_conversations(OPEN_STATUSES)
                    if ("web", "web-zq") in chat.store.get_customer(c.customer_id).identities)
    for channel, external_id in (("sms", PHONE), ("telegram", "tg-zq")):
        other = next(c.customer_id for c in chat.store.list_conversations(OPEN_STATUSES)
                     if (channel, external_id) in chat.store.get_customer(c.customer_id).identities)
        if other != customer:
            chat.store.merge_customers(customer, other, "agent-1")
    chat.store.set_attributes(customer, {"plan": "Quackenbush Gold"})
    assert len(chat.store.get_customer(customer).identities) == 4
    return customer


def test_export_holds_everything_about_the_person(chat: RecordingChannel) -> None:
    customer = person_on_four_channels(chat)
    exported = chat.store.export_customer(customer)
    text = str(exported)
    for expected in ("Zebulon", "Wolverhampton", "Quackenbush Lane", "still Quackenbush", PHONE, "tg-zq",
                     "Quackenbush Gold", "Nice to meet you, Zebulon"):
        assert expected in text, expected
    records = exported["records"]
    assert {(i["channel"]) for r in records for i in r["identities"]} == {"web", "sms", "whatsapp", "telegram"}
    assert sum(len(c["transcript"]) for r in records for c in r["conversations"]) > 4
    assert any(r["merges"] for r in records)


def test_erase_leaves_nothing_personal_in_any_table_or_file(
        chat: RecordingChannel, tmp_path: Path) -> None:
    customer = person_on_four_channels(chat)
    rated = chat.conversation("web-zq").conversation_id  # closed, and rated with a few words
    chat.store.claim(rated, "agent-1")
    chat.store.close_conversation(rated, "agent-1", csat_question=("Rate us from 1 to 5", ()))
    chat.say("3 - fine, Quackenbush is grateful", "web-zq")
    assert chat.store.get_conversation(rated).csat_comment == "fine, Quackenbush is grateful"
    # A message in flight: stored, being answered, when the erasure comes.
    accepted = chat.store.accept(InboundMessage("telegram", "tg-zq", uuid.uuid4().hex,
                                                "in flight: Quackenbush again", profile=Profile("Zebulon")))
    conversations_before = len(chat.store.list_conversations(list(ConversationStatus)))
    pending = chat.store.next_pending(accepted.conversation_id)
    assert pending is not None
    outcome = chat.engine.respond(chat.store.get_conversation(pending.conversation_id), pending.text,
                                  pending.channel, pending.event_seq)

    assert chat.store.erase_customer(customer) == 3  # the person and the two customers merged into them
    assert chat.store.complete_turn(pending, outcome) is False  # the late turn stores nothing
    chat.store.compact()

    personal = ("Zebulon", "Quackenbush", "Wolverhampton", PHONE, "tg-zq", "web-zq")
    assert files_containing(tmp_path, *personal) == []
    assert rows_containing(chat.store, *personal) == []
    assert chat.store.find_customers("Quackenbush") == []
    tombstone = chat.store.get_customer(customer)
    assert tombstone.display_name is None and tombstone.identities == () and tombstone.attributes == {}
    # Metrics stay counted: the conversations and their events are still there, without content.
    assert len(chat.store.list_conversations(list(ConversationStatus))) == conversations_before
    assert (chat.store.get_conversation(rated).csat, chat.store.get_conversation(rated).csat_comment) == (3, None)
    assert chat.store.list_conversations(OPEN_STATUSES) == []  # no empty ticket left waiting
    events = [e for c in chat.store.list_conversations(list(ConversationStatus))
              for e in chat.store.transcript(c.conversation_id)]
    assert sum(e.kind == EventKind.MESSAGE_IN for e in events) >= 4
    assert all(e.text is None for e in events)
    # The person writing again is a new customer, nothing of the old one attached.
    chat.on("telegram").say("hello again", "tg-zq")
    fresh = chat.store.get_customer(chat.conversation("tg-zq").customer_id)
    assert fresh.customer_id != customer and fresh.identities == (("telegram", "tg-zq"),)


def test_retention_purges_old_closed_transcripts_only(chat: RecordingChannel, tmp_path: Path) -> None:
    chat.say("an old question about Quackenbush", "web-old")
    chat.say("a recent question about Wolverhampton", "web-new")
    old = chat.conversation("web-old")
    with chat.store._write() as db:  # the old conversation was closed two years ago
        db.execute("UPDATE conversations SET status = 'closed', updated_at = '2024-11-01T00:00:00+00:00', "
                   "csat = 4, csat_comment = 'Quackenbush was kind' WHERE conversation_id = ?",
                   (old.conversation_id,))
    assert chat.store.purge_transcripts(timedelta(days=365)) == 1
    assert chat.store.purge_transcripts(timedelta(days=365)) == 0
    assert all(e.text is None for e in chat.store.transcript(old.conversation_id))
    assert (chat.store.get_conversation(old.conversation_id).csat,
            chat.store.get_conversation(old.conversation_id).csat_comment) == (4, None)
    assert "a recent question about Wolverhampton" in [e.text for e in chat.store.transcript(
        chat.conversation("web-new").conversation_id)]
    assert files_containing(tmp_path, "Quackenbush") == []


def test_find_matches_names_identities_and_message_text(chat: RecordingChannel) -> None:
    customer = person_on_four_channels(chat)
    chat.say("something else entirely", "web-other", name="Ada")
    for query in ("zebulon", PHONE[-6:], "tg-zq", "parcel to quackenbush"):
        assert [c.customer_id for c in chat.store.find_customers(query)] == [customer], query
    assert re.fullmatch(r"[0-9a-f]{32}", chat.store.find_customers("Ada")[0].customer_id)


def test_the_server_purges_on_a_schedule_and_survives_a_failed_run() -> None:
    calls: list[timedelta] = []
    done = threading.Event()

    def purge(older_than: timedelta) -> int:
        calls.append(older_than)
        if len(calls) == 1:
            raise OSError("disk busy")  # logged; the next interval tries again
        done.set()
        return 2

    worker = RetentionWorker(purge, days=30, interval=timedelta(seconds=0.05), first_delay=0.01)
    worker.start()
    assert done.wait(10)
    worker.stop()
    assert calls[:2] == [timedelta(days=30)] * 2
    idle = RetentionWorker(purge, days=0)  # retention off: no thread at all
    idle.start()
    idle.stop()
