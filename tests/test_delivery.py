"""The delivery worker: retries, backoff, permanent failures, order per customer, parts, crashes.

Replies are sent with the real twilio client to a loopback stub of Twilio's Messages API;
the worker runs round by round on a clock the test moves.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from bot.delivery.capabilities import CAPABILITIES, ButtonStyle, Capabilities, fit_reply, sms_segments
from bot.delivery.worker import DeliveryWorker, RetryPolicy
from bot.messages import Author, Button, InboundMessage, Reply
from bot.notifier import Notifier
from bot.outcome import Outcome
from bot.stores.conversations import ConversationStore
from connectors.twilio import TwilioSender, twilio_client
from tests.conftest import (
    OPEN_HOURS,
    both_databases,  # noqa: F401 (runs each test on both databases)
)
from tests.dialogue import Clock
from tests.twilio_stub import ACCOUNT_SID, AUTH_TOKEN, Failure, TwilioStub

CUSTOMER = "+4915123456789"


@pytest.fixture
def stub() -> Iterator[TwilioStub]:
    server = TwilioStub()
    yield server
    server.close()


@pytest.fixture
def store(make_store: Callable[..., ConversationStore]) -> ConversationStore:
    return make_store()


@pytest.fixture
def clock() -> Clock:
    return Clock(OPEN_HOURS)


def worker_for(store: ConversationStore, stub: TwilioStub, clock: Clock,
               max_attempts: int = 4) -> DeliveryWorker:
    sender = TwilioSender(twilio_client(ACCOUNT_SID, AUTH_TOKEN, stub.url), "sms", "+15005550006", None)
    return DeliveryWorker(store, {"sms": sender}, Notifier(), RetryPolicy(max_attempts=max_attempts),
                          clock=clock, rng=random.Random(1))


def queue_replies(store: ConversationStore, *texts: str, customer: str = CUSTOMER,
                  buttons: tuple[Button, ...] = ()) -> list[str]:
    """A customer writes by SMS and the bot answers with these replies, stored in the outbox."""
    accepted = store.accept(InboundMessage("sms", customer, uuid.uuid4().hex, "hello"))
    pending = store.next_pending(accepted.conversation_id)
    assert pending is not None
    replies = tuple(Reply(accepted.conversation_id, text, Author.BOT, buttons) for text in texts)
    store.complete_turn(pending, Outcome(replies=replies, fallback_streak=0))
    return [r.reply_id for r in replies]


def test_a_5xx_is_retried_with_backoff_and_the_reply_goes_out_once(
        store: ConversationStore, stub: TwilioStub, clock: Clock) -> None:
    (reply_id,) = queue_replies(store, "Your parcel ships today.")
    stub.failures = [Failure(500, 20500, "Internal Server Error"), Failure(503, 20503, "Service Unavailable")]
    worker = worker_for(store, stub, clock)
    assert worker.run_once() == 1
    first = store.get_outbox_entry(reply_id)
    assert (first.status, first.attempts) == ("pending", 1) and "500" in (first.error or "")
    assert worker.run_once() == 0  # not due yet
    clock.now += timedelta(seconds=1)  # backoff after attempt 1: between 0.5 and 1 s
    assert worker.run_once() == 1
    assert store.get_outbox_entry(reply_id).attempts == 2
    clock.now += timedelta(seconds=1)
    assert worker.run_once() == 0  # attempt 2 waits between 1 and 2 s
    clock.now += timedelta(seconds=1)
    assert worker.run_once() == 1
    done = store.get_outbox_entry(reply_id)
    assert (done.status, done.attempts, done.error) == ("sent", 3, None)
    assert [m["Body"] for m in stub.messages] == ["Your parcel ships today."]


def test_a_rate_limit_is_retried(store: ConversationStore, stub: TwilioStub, clock: Clock) -> None:
    (reply_id,) = queue_replies(store, "Thanks for waiting.")
    stub.failures = [Failure(429, 20429, "Too Many Requests")]
    worker = worker_for(store, stub, clock)
    worker.run_once()
    clock.now += timedelta(seconds=5)
    worker.run_once()
    assert store.get_outbox_entry(reply_id).status == "sent" and len(stub.messages) == 1


def test_a_provider_that_does_not_answer_in_time_is_retried(
        store: ConversationStore, stub: TwilioStub, clock: Clock) -> None:
    (reply_id,) = queue_replies(store, "Hello!")
    sender = TwilioSender(twilio_client(ACCOUNT_SID, AUTH_TOKEN, stub.url, timeout=0.2), "sms", "+15005550006", None)
    worker = DeliveryWorker(store, {"sms": sender}, Notifier(), clock=clock, rng=random.Random(1))
    stub.delay = 1.0
    worker.run_once()
    entry = store.get_outbox_entry(reply_id)
    assert entry.status == "pending" and "could not be reached" in (entry.error or "")


def test_a_permanent_error_is_not_retried_and_is_kept_for_the_agents(
        store: ConversationStore, stub: TwilioStub, clock: Clock) -> None:
    (reply_id,) = queue_replies(store, "Hello!")
    stub.failures = [Failure(400, 21211, "The 'To' number is not a valid phone number.")]
    worker = worker_for(store, stub, clock)
    worker.run_once()
    clock.now += timedelta(hours=1)
    assert worker.run_once() == 0
    failed = store.get_outbox_entry(reply_id)
    assert failed.status == "failed" and failed.attempts == 1
    assert failed.error == ("Twilio answered 400 (error 21211): Unable to create record: The 'To' number is not a "
                            "valid phone number.")
    assert stub.requests == 1


def test_after_the_last_attempt_the_reply_is_marked_failed(
        store: ConversationStore, stub: TwilioStub, clock: Clock) -> None:
    (reply_id,) = queue_replies(store, "Hello!")
    stub.failures = [Failure(500, 20500, "boom")] * 3
    worker = worker_for(store, stub, clock, max_attempts=3)
    for _ in range(3):
        worker.run_once()
        clock.now += timedelta(minutes=5)
    failed = store.get_outbox_entry(reply_id)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.startswith("gave up after 3 attempts: Twilio answered 500")
    assert worker.run_once() == 0 and stub.messages == []


def test_replies_reach_a_customer_in_order_even_when_the_first_waits_for_a_retry(
        store: ConversationStore, stub: TwilioStub, clock: Clock) -> None:
    first, second = queue_replies(store, "First.", "Second.")
    (other,) = queue_replies(store, "For someone else.", customer="+4915199999999")
    stub.failures = [Failure(500, 20500, "boom")]
    worker = worker_for(store, stub, clock)
    worker.run_once()  # the first fails; the other customer's reply is not held up
    assert store.get_outbox_entry(second).status == "pending"
    assert store.get_outbox_entry(other).status == "sent"
    clock.now += timedelta(seconds=1)
    worker.run_once()
    worker.run_once()
    assert [m["Body"] for m in stub.messages] == ["For someone else.", "First.", "Second."]
    assert store.get_outbox_entry(first).status == store.get_outbox_entry(second).status == "sent"


def test_a_long_reply_goes_out_in_sentence_parts_and_a_retry_resumes_after_the_last_sent_part(
        store: ConversationStore, stub: TwilioStub, clock: Clock) -> None:
    text = " ".join(f"Sentence number {i} of a long answer about returns and refunds." for i in range(40))
    (reply_id,) = queue_replies(store, text)
    expected = fit_reply(text, (), CAPABILITIES["sms"]).parts
    assert len(expected) >= 3
    stub.failures = []
    worker = worker_for(store, stub, clock)

    original_create = stub.post
    calls = {"n": 0}

    def fail_the_second(handler):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            stub.failures.append(Failure(503, 20503, "busy"))
        original_create(handler)

    stub.post = fail_the_second  # type: ignore[method-assign]
    worker.run_once()
    assert store.get_outbox_entry(reply_id).parts_sent == 1
    clock.now += timedelta(seconds=1)
    worker.run_once()
    entry = store.get_outbox_entry(reply_id)
    assert entry.status == "sent" and entry.parts_sent == len(expected)
    assert [m["Body"] for m in stub.messages] == list(expected)
    assert all(sms_segments(part) <= 4 and part.endswith(".") for part in expected)


def test_a_worker_stopped_mid_send_leaves_the_reply_unknown_not_sent_twice(
        store: ConversationStore, stub: TwilioStub, clock: Clock) -> None:
    (reply_id,) = queue_replies(store, "Hello!")
    store.claim_deliveries(["sms"], clock.now)  # claimed, then the process died before recording the send
    worker = worker_for(store, stub, clock)
    worker.start()
    worker.stop()
    entry = store.get_outbox_entry(reply_id)
    assert entry.status == "unknown" and "stopped while sending" in (entry.error or "")
    assert stub.requests == 0


def test_replies_stored_before_a_restart_are_sent_after_it(
        store: ConversationStore, stub: TwilioStub, clock: Clock) -> None:
    (reply_id,) = queue_replies(store, "Still here.")  # stored; the process died before any send
    worker = worker_for(store, stub, clock)
    worker.start()
    try:
        end = time.monotonic() + 10
        while store.get_outbox_entry(reply_id).status != "sent" and time.monotonic() < end:
            time.sleep(0.02)
    finally:
        worker.stop()
    assert store.get_outbox_entry(reply_id).status == "sent" and len(stub.messages) == 1


def test_without_a_push_channel_no_thread_wakes_for_each_reply(store: ConversationStore) -> None:
    # The web chat and the REST channel hand their replies over themselves: with no push channel set up, the
    # delivery worker has nothing to send and starts no thread that every stored reply would wake.
    before = {thread.name for thread in threading.enumerate()}
    worker = DeliveryWorker(store, {}, Notifier())
    worker.start()
    try:
        queue_replies(store, "Hello")
        assert "switchboard-delivery" not in {thread.name for thread in threading.enumerate()} - before
        assert worker.run_once() == 0
    finally:
        worker.stop()


def test_buttons_become_numbered_options_on_sms() -> None:
    fitted = fit_reply("Which order?", (Button("PO-2610427", "PO-2610427"), Button("PO-2610433", "PO-2610433")),
                       CAPABILITIES["sms"])
    assert fitted.parts == ("Which order?\n\n1) PO-2610427\n2) PO-2610433\nReply with a number.",)
    assert fitted.buttons == ()
    rating = fit_reply("Rate us from 1 to 3.", tuple(Button(str(n), str(n)) for n in (1, 2, 3)), CAPABILITIES["sms"])
    assert rating.parts == ("Rate us from 1 to 3.",) and rating.buttons == ()
    web = fit_reply("Which order?", (Button("A", "a"),), CAPABILITIES["web"])
    assert web.buttons == (Button("A", "a"),) and web.parts == ("Which order?",)


def test_sms_segments_follow_the_alphabet() -> None:
    assert sms_segments("a" * 160) == 1 and sms_segments("a" * 161) == 2 and sms_segments("a" * 306) == 2
    assert sms_segments("€" * 80) == 1 and sms_segments("€" * 81) == 2  # two septets each
    assert sms_segments("\u00e7a" * 35) == 1 and sms_segments("\u00e7a" * 36) == 2  # ç: not GSM-7 lowercase
    assert sms_segments("\U0001F600" * 35) == 1 and sms_segments("\U0001F600" * 36) == 2


def test_a_word_longer_than_a_message_is_cut() -> None:
    tiny = Capabilities(max_length=10, buttons=ButtonStyle.INLINE)
    assert fit_reply("abcdefghijklmnopqrstuvwxyz end.", (), tiny).parts == ("abcdefghij", "klmnopqrst", "uvwxyz",
                                                                          "end.")


def whatsapp_worker(store: ConversationStore, stub: TwilioStub, clock: Clock,
                    template_sid: str = "") -> DeliveryWorker:
    sender = TwilioSender(twilio_client(ACCOUNT_SID, AUTH_TOKEN, stub.url), "whatsapp", "+14155238886", None,
                          last_inbound=store.last_inbound_at, template_sid=template_sid, clock=clock)
    return DeliveryWorker(store, {"whatsapp": sender}, Notifier(), clock=clock)


def whatsapp_reply(store: ConversationStore, clock: Clock) -> str:
    accepted = store.accept(InboundMessage("whatsapp", CUSTOMER, uuid.uuid4().hex, "hello", received_at=clock.now))
    pending = store.next_pending(accepted.conversation_id)
    assert pending is not None
    reply = Reply(accepted.conversation_id, "Your refund was issued today.", Author.AGENT)
    store.complete_turn(pending, Outcome(replies=(reply,)))
    return reply.reply_id


def test_whatsapp_replies_within_24_hours_go_out_free_form(
        store: ConversationStore, stub: TwilioStub, clock: Clock) -> None:
    reply_id = whatsapp_reply(store, clock)
    clock.now += timedelta(hours=23)
    whatsapp_worker(store, stub, clock).run_once()
    assert store.get_outbox_entry(reply_id).status == "sent"
    assert stub.messages[0]["Body"] == "Your refund was issued today."


def test_after_24_hours_a_whatsapp_reply_is_not_sent_blindly(
        store: ConversationStore, stub: TwilioStub, clock: Clock) -> None:
    reply_id = whatsapp_reply(store, clock)
    clock.now += timedelta(hours=25)
    whatsapp_worker(store, stub, clock).run_once()
    entry = store.get_outbox_entry(reply_id)
    assert entry.status == "failed" and "outside WhatsApp's 24-hour window" in (entry.error or "")
    assert "SWITCHBOARD_TWILIO_WHATSAPP_TEMPLATE_SID" in (entry.error or "")
    assert stub.requests == 0


def test_after_24_hours_a_configured_template_carries_the_reply(
        store: ConversationStore, stub: TwilioStub, clock: Clock) -> None:
    reply_id = whatsapp_reply(store, clock)
    clock.now += timedelta(days=3)
    whatsapp_worker(store, stub, clock, template_sid="HX" + "1" * 32).run_once()
    assert store.get_outbox_entry(reply_id).status == "sent"
    (sent,) = stub.messages
    assert sent["ContentSid"] == "HX" + "1" * 32 and "Body" not in sent
    assert json.loads(sent["ContentVariables"]) == {"1": "Your refund was issued today."}
