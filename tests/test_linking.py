"""One customer across channels: link codes, Telegram deep links, quoted references, merges."""

from __future__ import annotations

import re
import threading
import uuid
from datetime import timedelta

import pytest

from bot.messages import ConversationStatus, EventKind, InboundMessage, utcnow
from bot.stores.conversations import OPEN_STATUSES
from tests.conftest import both_databases  # noqa: F401 (runs each test on both databases)
from tests.dialogue import RecordingChannel

PHONE = "+4915112345678"


def code_from(replies: list[str]) -> str:
    match = re.search(r"LINK ([0-9A-Z]{6})", " ".join(replies))
    assert match, f"no link code in {replies}"
    return match.group(1)


def customer_of(chat: RecordingChannel, channel: str, external_id: str) -> str:
    (conversation,) = [c for c in chat.store.list_conversations(OPEN_STATUSES)
                       if (channel, external_id) in chat.store.get_customer(c.customer_id).identities]
    return conversation.customer_id


def test_a_link_code_joins_two_channels_into_one_customer_and_one_conversation(chat: RecordingChannel) -> None:
    whatsapp = chat.on("whatsapp")
    chat.say("how much is shipping", "web-1")
    whatsapp.say("hello", PHONE)
    code = code_from(chat.say("I wrote to you before on WhatsApp", "web-1"))

    replies = whatsapp.say(f"link {code[:3]}-{code[3:].lower()}", PHONE)  # as people type it
    assert replies == ["Done: your chats are connected. Your earlier conversations are with us here now, "
                       "so you don't need to repeat anything."]
    assert "web-1" not in replies[0]  # the other identity is never named
    customer = chat.store.get_customer(customer_of(chat, "whatsapp", PHONE))
    assert set(customer.identities) == {("web", "web-1"), ("whatsapp", PHONE)}
    (conversation,) = chat.store.list_conversations(OPEN_STATUSES)
    texts = [e.text for e in chat.store.transcript(conversation.conversation_id) if e.kind == EventKind.MESSAGE_IN]
    assert texts == ["how much is shipping", "hello", "I wrote to you before on WhatsApp", f"link {code[:3]}-"
                     f"{code[3:].lower()}"]
    seqs = [e.seq for e in chat.store.transcript(conversation.conversation_id)]
    assert seqs == list(range(1, len(seqs) + 1))
    merged = [e for e in chat.store.transcript(conversation.conversation_id) if e.kind == EventKind.MERGED]
    assert merged and merged[0].data["how"] == "link_code"
    # Both channels now reach the one conversation.
    chat.say("and returns?", "web-1")
    assert [c.conversation_id for c in chat.store.list_conversations(OPEN_STATUSES)] == [
        conversation.conversation_id]


def test_wrong_used_and_expired_codes_and_the_limit_on_guessing(chat: RecordingChannel) -> None:
    telegram = chat.on("telegram")
    code = code_from(chat.say("link my accounts", "web-1"))
    assert "doesn't match" in telegram.say("LINK ZZZ9ZZ", "tg-1")[0]
    assert chat.say(f"LINK {code}", "web-1")[0] == "These chats are already connected."
    assert "expired or was used already" in chat.say(f"LINK {code}", "web-1")[0]  # single use

    code = code_from(chat.say("link my accounts", "web-1"))
    with chat.store._write() as db:  # ten minutes pass
        db.execute("UPDATE link_codes SET expires_at = ?", ((utcnow() - timedelta(seconds=1)).isoformat(),))
    assert "expired" in telegram.say(f"LINK {code}", "tg-1")[0]

    code = code_from(chat.say("link my accounts", "web-1"))
    for guess in ("AAAAA1", "BBBBB2", "CCCCC3", "DDDDD4"):
        assert "doesn't match" in telegram.say(f"LINK {guess}", "tg-1")[0]
    assert "Too many wrong codes" in telegram.say(f"LINK {code}", "tg-1")[0]  # even the right one, now
    assert chat.store.get_customer(customer_of(chat, "telegram", "tg-1")).identities == (("telegram", "tg-1"),)
    assert "doesn't match" in telegram.say("LINK AAAAA1", "tg-2")[0]  # the limit is per identity


def test_a_telegram_deep_link_carries_the_code(chat: RecordingChannel) -> None:
    code = code_from(chat.say("I already contacted you on Telegram", "web-1"))
    telegram = chat.on("telegram")
    assert "connected" in telegram.say("/start", "tg-1", data={"start_payload": code})[0]
    assert customer_of(chat, "telegram", "tg-1") == customer_of(chat, "web", "web-1")
    # A campaign's deep link is no code and no wrong try.
    telegram.say("/start", "tg-2", data={"start_payload": "summer-sale-2026"})
    assert chat.store.get_conversation(chat.conversation("tg-2").conversation_id).status == ConversationStatus.BOT


def test_quoting_a_reference_sends_a_code_to_its_own_channel(chat: RecordingChannel) -> None:
    chat.say("my tent has a hole", "web-1")
    reference = chat.conversation("web-1").reference
    telegram = chat.on("telegram")
    (offer,) = telegram.say(f"Hi, about {reference.lower()}", "tg-1")
    assert f"If {reference} is one of your conversations" in offer
    (notice,) = [e.text for e in chat.store.outbox_for("web", "web-1", "pending") if "Someone asked" in e.text]
    assert "tg-1" not in notice and "telegram" not in notice.lower()
    # Asking again does not send a second code while the first works.
    telegram.say(f"about {reference}", "tg-1")
    assert len([e for e in chat.store.outbox_for("web", "web-1", "pending") if "Someone asked" in e.text]) == 1
    assert "connected" in telegram.say(f"LINK {code_from([notice])}", "tg-1")[0]
    assert customer_of(chat, "telegram", "tg-1") == customer_of(chat, "web", "web-1")


def test_an_unknown_or_own_reference_reveals_nothing(chat: RecordingChannel) -> None:
    (offer,) = chat.say("about SB-ZZZZZ", "web-1")
    assert "If SB-ZZZZZ is one of your conversations" in offer
    assert not chat.store.outbox_for("web", "web-1", "pending") or all(
        "Someone asked" not in e.text for e in chat.store.outbox_for("web", "web-1", "pending"))
    own = chat.conversation("web-1").reference
    assert "If" not in chat.say(f"what about shipping for {own}", "web-1")[0]


def test_an_agent_merge_joins_open_conversations_in_time_order_and_unmerge_restores_them(
        chat: RecordingChannel) -> None:
    telegram = chat.on("telegram")
    chat.say("first on the web", "web-1")
    telegram.say("first on telegram", "tg-1")
    chat.say("I want to talk to a person", "web-1")
    telegram.say("second on telegram", "tg-1")
    web_customer, tg_customer = customer_of(chat, "web", "web-1"), customer_of(chat, "telegram", "tg-1")
    web_conversation = chat.conversation("web-1")
    tg_conversation = chat.conversation("tg-1")
    chat.store.set_attributes(tg_customer, {"plan": "gold"})

    merge_id = chat.store.merge_customers(web_customer, tg_customer, "agent-1")
    (joined,) = chat.store.list_conversations(OPEN_STATUSES)
    assert joined.conversation_id == web_conversation.conversation_id
    assert joined.status == ConversationStatus.QUEUED  # the furthest state of the two
    texts = [e.text for e in chat.store.transcript(joined.conversation_id) if e.kind == EventKind.MESSAGE_IN]
    assert texts == ["first on the web", "first on telegram", "I want to talk to a person", "second on telegram"]
    assert chat.store.get_customer(web_customer).attributes == {"plan": "gold"}
    assert chat.store.merges_of(web_customer)[0]["agent_id"] == "agent-1"

    chat.store.unmerge(merge_id, "agent-2")
    assert chat.store.get_customer(web_customer).identities == (("web", "web-1"),)
    assert chat.store.get_customer(tg_customer).identities == (("telegram", "tg-1"),)
    assert chat.store.get_customer(web_customer).attributes == {}
    web_texts = [e.text for e in chat.store.transcript(web_conversation.conversation_id)
                 if e.kind == EventKind.MESSAGE_IN]
    tg_texts = [e.text for e in chat.store.transcript(tg_conversation.conversation_id)
                if e.kind == EventKind.MESSAGE_IN]
    assert web_texts == ["first on the web", "I want to talk to a person"]
    assert tg_texts == ["first on telegram", "second on telegram"]
    assert chat.store.get_conversation(tg_conversation.conversation_id).status == ConversationStatus.BOT
    assert chat.store.get_conversation(web_conversation.conversation_id).status == ConversationStatus.QUEUED
    assert chat.store.merges_of(web_customer)[0]["undone_by"] == "agent-2"
    # Both keep answering on their own.
    assert telegram.say("how much is shipping", "tg-1")


def test_merge_refuses_nonsense(chat: RecordingChannel) -> None:
    from bot.errors import Conflict, NotFound
    chat.say("hello", "web-1")
    customer = customer_of(chat, "web", "web-1")
    with pytest.raises(Conflict):
        chat.store.merge_customers(customer, customer, "agent-1")
    with pytest.raises(NotFound):
        chat.store.merge_customers(customer, "nobody", "agent-1")
    with pytest.raises(NotFound):
        chat.store.unmerge("nothing", "agent-1")


def test_two_channels_of_one_customer_writing_at_once_land_in_one_conversation_in_order(
        chat: RecordingChannel) -> None:
    store = chat.store
    store.accept(InboundMessage("sms", PHONE, "sms-0", "hi by sms"))
    store.accept(InboundMessage("whatsapp", PHONE, "wa-0", "hi on whatsapp"))  # same number: same customer
    barrier = threading.Barrier(2)

    def send(channel: str) -> None:
        barrier.wait()
        for i in range(50):
            store.accept(InboundMessage(channel, PHONE, f"{channel}-{i + 1}-{uuid.uuid4().hex[:4]}",
                                        f"{channel} {i + 1}"))

    threads = [threading.Thread(target=send, args=(channel,)) for channel in ("sms", "whatsapp")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (conversation,) = store.list_conversations(OPEN_STATUSES)
    events = [e for e in store.transcript(conversation.conversation_id) if e.kind == EventKind.MESSAGE_IN]
    assert len(events) == 102
    for channel in ("sms", "whatsapp"):
        numbers = [int(e.text.split()[1]) for e in events if e.channel == channel and e.text[-1].isdigit()]
        assert numbers == list(range(1, 51))
