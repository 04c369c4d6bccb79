"""Messenger and Instagram: Meta's signed webhooks in, the Send API out to a loopback stub of the Graph API."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from bot.delivery.capabilities import CAPABILITIES, fit_reply
from bot.delivery.worker import DeliveryError
from bot.messages import Author, Button, ConversationStatus, OutboxEntry, utcnow
from connectors.meta import GraphClient, MetaSender
from switchboard.app import services_of
from tests.conftest import settle
from tests.meta_stub import PAGE_TOKEN, GraphFailure, GraphStub
from tests.servers import running_server, wait_for
from tests.test_console import AgentBrowser

APP_SECRET = "meta-app-secret"
VERIFY_TOKEN = "verify-me"
PAGE = "106000000000001"
CUSTOMER = "7100000000000001"
INSTAGRAM_CUSTOMER = "17840000000000002"


@pytest.fixture
def graph() -> Iterator[GraphStub]:
    stub = GraphStub({CUSTOMER: {"first_name": "Anna", "last_name": "Schmidt"},
                      INSTAGRAM_CUSTOMER: {"name": "Bo Lindqvist", "username": "bo.hikes"}})
    yield stub
    stub.close()


@pytest.fixture
def app(make_app: Callable[..., Flask], graph: GraphStub) -> Flask:
    return make_app(meta_app_secret=APP_SECRET, meta_verify_token=VERIFY_TOKEN, meta_page_token=PAGE_TOKEN,
                    meta_graph_url=graph.url, email_sender="off")


def event(text: str | None = None, sender: str = CUSTOMER, mid: str | None = None, **message: Any) -> dict[str, Any]:
    body = {"mid": mid or f"m_{uuid.uuid4().hex}", **({"text": text} if text is not None else {}), **message}
    return {"sender": {"id": sender}, "recipient": {"id": PAGE}, "timestamp": 1764800000000, "message": body}


def webhook(*events: dict[str, Any], kind: str = "page") -> bytes:
    return json.dumps({"object": kind, "entry": [{"id": PAGE, "time": 1764800000000,
                                                  "messaging": list(events)}]}).encode()


def post(client: FlaskClient, raw: bytes, signature: str | None = None) -> TestResponse:
    if signature is None:
        signature = "sha256=" + hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return client.post("/webhooks/meta", data=raw, content_type="application/json",
                       headers={"X-Hub-Signature-256": signature})


def messages_in(app: Flask) -> list[Any]:
    store = services_of(app).store
    return [e for c in store.list_conversations(list(ConversationStatus)) for e in store.transcript(c.conversation_id)
            if e.kind == "message_in"]


def test_the_subscription_handshake_echoes_the_challenge_only_for_our_token(app: Flask,
                                                                          make_app: Callable[..., Flask]) -> None:
    client = app.test_client()
    ok = client.get(f"/webhooks/meta?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444")
    assert ok.status_code == 200 and ok.get_data(as_text=True) == "1158201444"
    assert client.get("/webhooks/meta?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1").status_code == 403
    unconfigured = make_app(email_sender="off").test_client()
    answer = unconfigured.get(f"/webhooks/meta?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1")
    assert answer.status_code == 503 and "SWITCHBOARD_META_APP_SECRET" in answer.get_data(as_text=True)


@pytest.mark.parametrize("signature", ["", "sha256=" + "0" * 64, "sha1=abc", "forged"])
def test_a_forged_webhook_is_refused_and_nothing_is_stored(app: Flask, graph: GraphStub, signature: str) -> None:
    response = post(app.test_client(), webhook(event("where is my order")), signature=signature)
    assert response.status_code == 403
    settle(app)
    assert messages_in(app) == [] and graph.sent == []
    # Signed with another app's secret: refused too.
    raw = webhook(event("hello"))
    other = "sha256=" + hmac.new(b"another-secret", raw, hashlib.sha256).hexdigest()
    assert post(app.test_client(), raw, signature=other).status_code == 403


def test_a_messenger_message_is_answered_through_the_send_api_with_the_customers_name(
        app: Flask, graph: GraphStub) -> None:
    assert post(app.test_client(), webhook(event("how much is shipping"))).status_code == 200
    (sent,) = wait_for(lambda: graph.sent)
    assert sent["recipient"] == {"id": CUSTOMER} and sent["messaging_type"] == "RESPONSE" and "tag" not in sent
    assert "4.95" in sent["message"]["text"]
    # "Did this help?" as quick replies, which a tap sends back as their payload.
    assert [q["payload"] for q in sent["message"]["quick_replies"]] == ["/kb_helpful", "/kb_unhelpful"]
    post(app.test_client(), webhook(event("Yes", quick_reply={"payload": "/kb_helpful"})))
    wait_for(lambda: len(graph.sent) == 2)
    store = services_of(app).store
    (conversation,) = store.list_conversations(list(ConversationStatus))
    assert conversation.last_channel == "messenger"
    assert store.get_customer(conversation.customer_id).display_name == "Anna Schmidt"
    assert graph.profile_reads == [CUSTOMER]  # fetched once, not for every message
    assert [e.text for e in messages_in(app)] == ["how much is shipping", "/kb_helpful"]


def test_the_same_message_three_times_is_stored_and_answered_once(app: Flask, graph: GraphStub) -> None:
    raw = webhook(event("how much is shipping", mid="m_repeat"))
    assert [post(app.test_client(), raw).status_code for _ in range(3)] == [200, 200, 200]
    settle(app)
    wait_for(lambda: graph.sent)
    assert len(messages_in(app)) == 1 and len(graph.sent) == 1


def test_attachments_are_typed_links_never_fetched_and_echoes_are_ignored(app: Flask, graph: GraphStub) -> None:
    photo = event(attachments=[{"type": "image", "payload": {"url": "https://scontent.example/p.jpg"}}])
    echo = event("our own reply", is_echo=True)
    read = {"sender": {"id": CUSTOMER}, "recipient": {"id": PAGE}, "read": {"watermark": 1764800000000}}
    assert post(app.test_client(), webhook(photo, echo, read)).status_code == 200
    settle(app)
    (message,) = messages_in(app)
    assert message.text == "[image]" and message.data["attachments"] == ["image https://scontent.example/p.jpg"]
    (sent,) = wait_for(lambda: graph.sent)
    assert "text" in sent["message"]  # the bot says it reads only text
    assert graph.profile_reads == [CUSTOMER]  # the Graph API is asked for the name, never for the photo


def test_an_instagram_conversation_goes_bot_handoff_agent_reply_customer(app: Flask, graph: GraphStub) -> None:
    client = app.test_client()
    post(client, webhook(event("I want to talk to a person", sender=INSTAGRAM_CUSTOMER), kind="instagram"))
    (notice,) = wait_for(lambda: graph.sent)
    assert notice["recipient"] == {"id": INSTAGRAM_CUSTOMER}
    store = services_of(app).store
    (conversation,) = store.list_conversations([ConversationStatus.QUEUED])
    assert conversation.last_channel == "instagram"
    assert store.get_customer(conversation.customer_id).display_name == "Bo Lindqvist"
    agent = AgentBrowser(app, "ann@example.com")
    agent.act(conversation, "claim")
    agent.act(conversation, "reply", text="Hi Bo, Ann here. How can I help?")
    wait_for(lambda: len(graph.sent) == 2)
    assert graph.sent[1]["message"] == {"text": "Hi Bo, Ann here. How can I help?"}
    assert graph.sent[1]["messaging_type"] == "RESPONSE"  # within 24 hours: no tag needed
    page = agent.client.get(f"/console/conversations/{conversation.conversation_id}").get_data(as_text=True)
    assert "instagram" in page and '<span class="delivery sent"' in page


def test_a_send_api_failure_is_retried_like_every_channel_and_a_refusal_is_kept(app: Flask,
                                                                               graph: GraphStub) -> None:
    graph.failures = [GraphFailure(500, 2, "Service temporarily unavailable")]
    post(app.test_client(), webhook(event("how much is shipping")))
    wait_for(lambda: graph.sent, timeout=30)  # the second attempt
    graph.failures = [GraphFailure(400, 551, "This person isn't available right now.")]
    post(app.test_client(), webhook(event("do you ship to Norway")))
    store = services_of(app).store
    (conversation,) = store.list_conversations(list(ConversationStatus))
    entries = wait_for(lambda: [e for e in store.outbox_of(conversation.conversation_id) if e.status == "failed"])
    assert "code 551" in (entries[0].error or "") and len(graph.sent) == 1


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"object": "whatsapp_business_account", "entry": []}',
                                 b'{"object": "page", "entry": {}}',
                                 b'{"object": "page", "entry": [{"messaging": [{"sender": {"id": "x"}}]}]}',
                                 b'{"object": "page", "entry": [{"messaging": [{"sender": {"id": "1"}, '
                                 b'"message": {"text": "no mid"}}]}]}'])
def test_malformed_bodies_get_a_clear_400_and_store_nothing(app: Flask, raw: bytes) -> None:
    response = post(app.test_client(), raw)
    assert response.status_code == 400 and response.is_json
    assert messages_in(app) == []


def test_an_oversized_body_is_413(app: Flask) -> None:
    assert post(app.test_client(), b"{" + b" " * 2_000_000 + b"}").status_code == 413


def test_the_24_hour_window_tags_agents_replies_and_keeps_the_bot_from_writing_late(graph: GraphStub) -> None:
    now = utcnow()
    last: dict[str, Any] = {}
    sender = MetaSender(GraphClient(PAGE_TOKEN, graph.url), "messenger", lambda channel, who: last.get(who),
                        clock=lambda: now)

    def reply(author: Author, wrote_ago: timedelta | None, buttons: tuple[Button, ...] = ()) -> str:
        last[CUSTOMER] = None if wrote_ago is None else now - wrote_ago
        entry = OutboxEntry("r1", "c1", "messenger", CUSTOMER, "Hello", author, buttons, "sending", None, 1, now)
        return sender.send(entry, "Hello", buttons)

    assert reply(Author.BOT, timedelta(hours=23), (Button("Yes", "/affirm"),)).startswith("m_")
    assert graph.sent[-1]["messaging_type"] == "RESPONSE"
    assert graph.sent[-1]["message"]["quick_replies"] == [{"content_type": "text", "title": "Yes",
                                                           "payload": "/affirm"}]
    reply(Author.AGENT, timedelta(days=2))
    assert graph.sent[-1]["messaging_type"] == "MESSAGE_TAG" and graph.sent[-1]["tag"] == "HUMAN_AGENT"
    for author, ago in ((Author.BOT, timedelta(days=2)), (Author.AGENT, timedelta(days=8)), (Author.AGENT, None)):
        with pytest.raises(DeliveryError, match="outside Meta's 24-hour messaging window") as refused:
            reply(author, ago)
        assert refused.value.permanent
    assert len(graph.sent) == 2  # nothing went out after the window


def test_up_to_13_buttons_are_quick_replies_and_more_are_numbered_options() -> None:
    thirteen = tuple(Button(f"Option {n}", f"/pick{n}") for n in range(1, 14))
    fitted = fit_reply("Choose one", thirteen, CAPABILITIES["messenger"])
    assert fitted.buttons == thirteen and fitted.parts == ("Choose one",)
    fourteen = (*thirteen, Button("Option 14", "/pick14"))
    fitted = fit_reply("Choose one", fourteen, CAPABILITIES["instagram"])
    assert fitted.buttons == () and "14) Option 14" in fitted.parts[0]
    assert fit_reply("x " * 800, (), CAPABILITIES["instagram"]).parts[0].count("x") <= 500  # 1,000 characters


def test_a_messenger_conversation_over_real_http_bot_handoff_agent_reply(tmp_path: Path, index_dir: Path,
                                                                         graph: GraphStub) -> None:
    """`switchboard run` as deployed: Meta's signed POSTs over HTTP, the agent in the console over HTTP."""
    with running_server(tmp_path, index_dir, SWITCHBOARD_META_APP_SECRET=APP_SECRET,
                        SWITCHBOARD_META_VERIFY_TOKEN=VERIFY_TOKEN, SWITCHBOARD_META_PAGE_TOKEN=PAGE_TOKEN,
                        SWITCHBOARD_META_GRAPH_URL=graph.url) as (base, output, _):
        def meta_posts(raw: bytes, signature: str | None = None) -> int:
            signed = "sha256=" + hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
            return requests.post(f"{base}/webhooks/meta", data=raw, timeout=10,
                                 headers={"Content-Type": "application/json",
                                          "X-Hub-Signature-256": signature or signed}).status_code

        assert requests.get(f"{base}/webhooks/meta", timeout=10, params={
            "hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "42"}).text == "42"
        assert meta_posts(webhook(event("how much is shipping")), signature="sha256=" + "1" * 64) == 403
        assert meta_posts(webhook(event("how much is shipping"))) == 200
        (answer,) = wait_for(lambda: graph.sent, timeout=30)
        assert "4.95" in answer["message"]["text"]
        assert meta_posts(webhook(event("I want to talk to a person"))) == 200
        wait_for(lambda: len(graph.sent) == 2, timeout=30)

        email, password = re.search(r"demo agent:\s+(\S+) / (\S+)", output).groups()  # type: ignore[union-attr]
        agent = requests.Session()

        def csrf(path: str) -> str:
            page = agent.get(f"{base}{path}", timeout=10).text
            return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]

        agent.post(f"{base}/console/login", timeout=10,
                   data={"email": email, "password": password, "csrf_token": csrf("/console/login")})
        queue = agent.get(f"{base}/console/", timeout=10).text
        conversation = re.search(r'href="/console/conversations/([0-9a-f]+)"', queue).group(1)  # type: ignore[union-attr]
        path = f"/console/conversations/{conversation}"
        for action, form in (("claim", {}), ("reply", {"text": "Hi Anna, Ann here. How can I help?"})):
            response = agent.post(f"{base}{path}/{action}", timeout=10, data={"csrf_token": csrf(path), **form})
            assert response.status_code == 200, action
        wait_for(lambda: len(graph.sent) == 3, timeout=30)
        assert graph.sent[2]["recipient"] == {"id": CUSTOMER}
        assert graph.sent[2]["message"]["text"] == "Hi Anna, Ann here. How can I help?"
