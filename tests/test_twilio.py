"""SMS and WhatsApp through Twilio: signed webhooks in, the real twilio client out to a loopback stub."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from twilio.request_validator import RequestValidator
from werkzeug.test import TestResponse

from bot.messages import Author, Button, ConversationStatus, InboundMessage, Reply
from bot.outcome import Outcome
from switchboard.app import services_of
from tests.conftest import settle
from tests.servers import wait_for
from tests.test_console import AgentBrowser
from tests.twilio_stub import ACCOUNT_SID, AUTH_TOKEN, Failure, TwilioStub

PUBLIC = "https://switchboard.example.com"
SMS_NUMBER = "+15005550006"
WHATSAPP_NUMBER = "+14155238886"
CUSTOMER = "+4915123456789"


@pytest.fixture
def stub() -> Iterator[TwilioStub]:
    server = TwilioStub()
    yield server
    server.close()


@pytest.fixture
def app(make_app: Callable[..., Flask], stub: TwilioStub) -> Flask:
    return make_app(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, twilio_sms_number=SMS_NUMBER,
                    twilio_whatsapp_number=WHATSAPP_NUMBER, twilio_api_url=stub.url, public_url=PUBLIC,
                    email_sender="off")


def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, params))


def post(client: FlaskClient, path: str, params: dict[str, str], signature: str | None = None) -> TestResponse:
    headers = {"X-Twilio-Signature": sign(PUBLIC + path, params) if signature is None else signature}
    return client.post(path, data=params, headers=headers)


def inbound(text: str, sender: str = CUSTOMER, channel: str = "sms", **extra: str) -> dict[str, str]:
    prefix = "whatsapp:" if channel == "whatsapp" else ""
    to = WHATSAPP_NUMBER if channel == "whatsapp" else SMS_NUMBER
    return {"MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": ACCOUNT_SID, "From": prefix + sender,
            "To": prefix + to, "Body": text, "NumMedia": "0", **extra}


def stored_messages(app: Flask) -> int:
    store = services_of(app).store
    return sum(1 for c in store.list_conversations(list(ConversationStatus))
               for e in store.transcript(c.conversation_id) if e.kind == "message_in")


def test_an_sms_is_stored_answered_with_empty_twiml_and_the_reply_goes_out_by_the_rest_api(
        app: Flask, stub: TwilioStub) -> None:
    response = post(app.test_client(), "/webhooks/twilio/sms", inbound("how much is shipping"))
    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    assert response.get_data(as_text=True) == '<?xml version="1.0" encoding="UTF-8"?><Response />'
    (sent,) = wait_for(lambda: stub.messages)
    assert sent["To"] == CUSTOMER and sent["From"] == SMS_NUMBER
    assert "4.95" in sent["Body"]
    assert sent["StatusCallback"] == PUBLIC + "/webhooks/twilio/status"
    store = services_of(app).store
    (entry,) = wait_for(lambda: store.outbox_for("sms", CUSTOMER, "sent"))
    assert entry.parts_sent == 1 and entry.receipt == "sent"


@pytest.mark.parametrize("case", ["missing", "forged", "other token", "altered body", "other url"])
def test_a_request_without_a_valid_signature_is_refused_and_nothing_is_stored(app: Flask, case: str) -> None:
    params = inbound("hello")
    signature = {
        "missing": "",
        "forged": "dGhpcyBpcyBub3QgYSBzaWduYXR1cmU=",
        "other token": sign(PUBLIC + "/webhooks/twilio/sms", params, token="someone-elses-token"),
        "altered body": sign(PUBLIC + "/webhooks/twilio/sms", {**params, "Body": "something else"}),
        "other url": sign("https://attacker.example.com/webhooks/twilio/sms", params),
    }[case]
    response = post(app.test_client(), "/webhooks/twilio/sms", params, signature)
    assert response.status_code == 403
    assert stored_messages(app) == 0


def test_a_valid_signature_behind_a_proxy_with_a_query_string_is_accepted(app: Flask) -> None:
    # The app is reached at http://localhost/..., but Twilio signed the public https URL with its query.
    path = "/webhooks/twilio/sms?tenant=puffin&x=1"
    params = inbound("hello")
    response = app.test_client().post(path, data=params, headers={"X-Twilio-Signature": sign(PUBLIC + path, params),
                                                                   "X-Forwarded-Proto": "http"})
    assert response.status_code == 200
    settle(app)
    assert stored_messages(app) == 1


def test_the_same_webhook_three_times_is_stored_and_answered_once(app: Flask, stub: TwilioStub) -> None:
    params = inbound("how much is shipping")
    client = app.test_client()
    for _ in range(3):
        assert post(client, "/webhooks/twilio/sms", params).status_code == 200
    settle(app)
    wait_for(lambda: stub.messages)
    time.sleep(0.3)  # a second send, if there were one, would have happened by now
    assert stored_messages(app) == 1 and len(stub.messages) == 1


def test_sms_and_whatsapp_from_one_number_are_one_customer_in_one_conversation(app: Flask, stub: TwilioStub) -> None:
    client = app.test_client()
    post(client, "/webhooks/twilio/sms", inbound("how much is shipping"))
    settle(app)
    post(client, "/webhooks/twilio/whatsapp", inbound("and do you ship to Norway?", sender="+49 151 23456789",
                                                      channel="whatsapp", ProfileName="Anna Berg"))
    settle(app)
    store = services_of(app).store
    (conversation,) = store.list_conversations([ConversationStatus.BOT])
    customer = store.get_customer(conversation.customer_id)
    assert customer.identities == (("sms", CUSTOMER), ("whatsapp", CUSTOMER))
    assert customer.display_name == "Anna Berg"
    assert conversation.last_channel == "whatsapp"
    sent = wait_for(lambda: len(stub.messages) == 2 and stub.messages)
    assert sent[1]["To"] == f"whatsapp:{CUSTOMER}" and sent[1]["From"] == f"whatsapp:{WHATSAPP_NUMBER}"


def test_media_is_stored_as_typed_links_and_never_fetched(app: Flask, stub: TwilioStub) -> None:
    params = inbound("", channel="whatsapp", NumMedia="2", MediaUrl0="https://api.twilio.com/media/ME1",
                     MediaContentType0="image/jpeg", MediaUrl1="http://127.0.0.1:1/secret",
                     MediaContentType1="audio/ogg")
    assert post(app.test_client(), "/webhooks/twilio/whatsapp", params).status_code == 200
    settle(app)
    store = services_of(app).store
    (conversation,) = store.list_conversations(list(ConversationStatus))
    (message,) = [e for e in store.transcript(conversation.conversation_id) if e.kind == "message_in"]
    assert message.text == "[image/jpeg, audio/ogg]"
    assert message.data["attachments"] == ["image/jpeg https://api.twilio.com/media/ME1",
                                           "audio/ogg http://127.0.0.1:1/secret"]
    assert stub.requests <= 1  # the bot's reply at most; no fetch of either URL


def test_agents_see_media_as_links_on_the_ticket_and_other_schemes_as_text(app: Flask) -> None:
    params = inbound("the zip is broken, see photo", channel="whatsapp", NumMedia="2",
                     MediaUrl0="https://api.twilio.com/media/ME1", MediaContentType0="image/jpeg",
                     MediaUrl1="javascript:alert(1)", MediaContentType1="text/html")
    assert post(app.test_client(), "/webhooks/twilio/whatsapp", params).status_code == 200
    settle(app)
    (conversation,) = services_of(app).store.list_conversations(list(ConversationStatus))
    ann = AgentBrowser(app, "ann@example.com")
    page = ann.client.get(f"/console/conversations/{conversation.conversation_id}").get_data(as_text=True)
    assert ('<a href="https://api.twilio.com/media/ME1" target="_blank" rel="noopener noreferrer">image/jpeg</a>'
            in page)
    assert 'href="javascript:' not in page and "text/html <bdi>javascript:alert(1)</bdi>" in page


@pytest.mark.parametrize(("params", "status"), [
    ({"Body": "hi"}, 400),
    ({"MessageSid": "SM1", "From": "not a number", "Body": "hi"}, 400),
    ({"MessageSid": "SM1", "From": "+1", "Body": "hi"}, 400),
])
def test_malformed_messages_get_a_clear_400_and_store_nothing(app: Flask, params: dict[str, str],
                                                                status: int) -> None:
    response = post(app.test_client(), "/webhooks/twilio/sms", params)
    assert response.status_code == status
    assert response.get_json()["error"] == "invalid_message"
    assert stored_messages(app) == 0


def test_an_oversized_body_is_413_before_anything_is_parsed(app: Flask) -> None:
    params = inbound("x" * 70_000)
    assert post(app.test_client(), "/webhooks/twilio/sms", params).status_code == 413
    assert stored_messages(app) == 0


def test_without_twilio_configured_the_webhook_says_so(make_app: Callable[..., Flask]) -> None:
    response = make_app().test_client().post("/webhooks/twilio/sms", data=inbound("hi"))
    assert response.status_code == 503
    assert "SWITCHBOARD_TWILIO_AUTH_TOKEN" in response.get_data(as_text=True)


def test_status_callbacks_move_the_receipt_forward_only(app: Flask, stub: TwilioStub) -> None:
    client = app.test_client()
    post(client, "/webhooks/twilio/sms", inbound("how much is shipping"))
    (sent,) = wait_for(lambda: stub.messages)
    store = services_of(app).store
    wait_for(lambda: store.outbox_for("sms", CUSTOMER, "sent"))
    for state in ["delivered", "sent", "queued", "delivered", "sending"]:  # shuffled and repeated
        response = post(client, "/webhooks/twilio/status", {"MessageSid": sent["Sid"], "MessageStatus": state})
        assert response.status_code == 204
    (entry,) = store.outbox_for("sms", CUSTOMER, "sent")
    assert entry.receipt == "delivered"
    unsigned = client.post("/webhooks/twilio/status", data={"MessageSid": sent["Sid"], "MessageStatus": "failed"})
    assert unsigned.status_code == 403
    assert store.outbox_for("sms", CUSTOMER, "sent")[0].receipt == "delivered"


def test_a_failed_delivery_receipt_keeps_its_error_code(app: Flask, stub: TwilioStub) -> None:
    client = app.test_client()
    post(client, "/webhooks/twilio/sms", inbound("how much is shipping"))
    (sent,) = wait_for(lambda: stub.messages)
    store = services_of(app).store
    wait_for(lambda: store.outbox_for("sms", CUSTOMER, "sent"))
    post(client, "/webhooks/twilio/status", {"MessageSid": sent["Sid"], "MessageStatus": "undelivered",
                                             "ErrorCode": "30003"})
    (entry,) = store.outbox_for("sms", CUSTOMER, "sent")
    assert (entry.receipt, entry.error) == ("undelivered", "Twilio error 30003")


def test_a_number_typed_back_chooses_that_option_of_the_last_reply(app: Flask, stub: TwilioStub) -> None:
    store = services_of(app).store
    # A reply with buttons, as an action would send ("which order?"), stored for this customer.
    accepted = store.accept(InboundMessage("sms", CUSTOMER, "SM-first", "where is my order"))
    pending = store.next_pending(accepted.conversation_id)
    assert pending is not None
    options = (Button("PO-2610427", "PO-2610427"), Button("PO-2610438", "PO-2610438"))
    store.complete_turn(pending, Outcome(replies=(Reply(accepted.conversation_id, "Which order?", Author.BOT,
                                                        options),), fallback_streak=0))
    (sent,) = wait_for(lambda: stub.messages)
    assert sent["Body"] == "Which order?\n\n1) PO-2610427\n2) PO-2610438\nReply with a number."
    post(app.test_client(), "/webhooks/twilio/sms", inbound(" 2 "))
    post(app.test_client(), "/webhooks/twilio/sms", inbound("7"))  # no such option: kept as typed
    settle(app)
    texts = [e.text for e in store.transcript(accepted.conversation_id) if e.kind == "message_in"]
    assert texts == ["where is my order", "PO-2610438", "7"]


def test_stop_start_and_help_on_sms(app: Flask, stub: TwilioStub) -> None:
    client = app.test_client()
    store = services_of(app).store
    post(client, "/webhooks/twilio/sms", inbound("how much is shipping"))
    wait_for(lambda: len(stub.messages) == 1)
    post(client, "/webhooks/twilio/sms", inbound("Stop"))
    settle(app)
    (conversation,) = store.list_conversations([ConversationStatus.BOT])
    agent = store.add_agent("ana@example.com", "Ana", "agent", "hash")
    store.claim(conversation.conversation_id, agent.agent_id)
    blocked = store.agent_reply(conversation.conversation_id, agent.agent_id, "Are you still there?")
    entry = wait_for(lambda: store.get_outbox_entry(blocked.reply_id).status == "failed"
                     and store.get_outbox_entry(blocked.reply_id))
    assert "opted out (STOP)" in (entry.error or "")
    store.return_to_bot(conversation.conversation_id, agent.agent_id)
    post(client, "/webhooks/twilio/sms", inbound("START"))
    settle(app)
    post(client, "/webhooks/twilio/sms", inbound("help"))
    sent = wait_for(lambda: len(stub.messages) == 2 and stub.messages)
    assert sent[1]["Body"].startswith("Puffin Outdoor customer service:") and "Reply STOP" in sent[1]["Body"]
    messages = [e for e in store.transcript(conversation.conversation_id) if e.kind == "message_in"]
    assert [(e.text, e.data.get("keyword")) for e in messages] == [
        ("how much is shipping", None), ("Stop", "STOP"), ("START", "START"), ("help", "HELP")]


def test_agents_see_each_replys_delivery_and_why_one_failed(app: Flask, stub: TwilioStub) -> None:
    client = app.test_client()
    stub.failures = [Failure(400, 21211, "The 'To' number is not a valid phone number.")]
    post(client, "/webhooks/twilio/sms", inbound("how much is shipping"))
    store = services_of(app).store
    (conversation,) = store.list_conversations([ConversationStatus.BOT])
    wait_for(lambda: [e.status for e in store.outbox_of(conversation.conversation_id)] == ["failed"])
    post(client, "/webhooks/twilio/sms", inbound("do you ship to Norway"))
    (sent,) = wait_for(lambda: stub.messages)
    wait_for(lambda: [e.status for e in store.outbox_of(conversation.conversation_id)] == ["failed", "sent"])
    post(client, "/webhooks/twilio/status", {"MessageSid": sent["Sid"], "MessageStatus": "delivered"})
    agent = AgentBrowser(app, "ann@example.com")
    page = agent.client.get(f"/console/conversations/{conversation.conversation_id}").get_data(as_text=True)
    assert '<span class="delivery failed"' in page
    assert "Not delivered: Twilio answered 400 (error 21211): Unable to create record: The &#39;To&#39; number" in page
    assert '<span class="delivery sent" title="">sent, delivered</span>' in page


def test_the_same_webhook_three_times_at_once_is_stored_once(app: Flask, stub: TwilioStub) -> None:
    params = inbound("how much is shipping")
    statuses: list[int] = []

    def deliver() -> None:
        statuses.append(post(app.test_client(), "/webhooks/twilio/sms", params).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    settle(app)
    wait_for(lambda: stub.messages)
    time.sleep(0.3)
    assert statuses == [200, 200, 200]
    assert stored_messages(app) == 1 and len(stub.messages) == 1
