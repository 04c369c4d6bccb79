"""The web chat API: sessions, bad input, polling and what is stored."""

from __future__ import annotations

import hashlib
import html
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient

from bot.errors import SwitchboardError
from bot.messages import ConversationStatus, utcnow
from connectors.web import DEFAULT_WORDS, WIDGET_WORDS, load_widget_words
from switchboard.app import services_of
from tests.conftest import ROOT, WebChat, settle


def stored_messages(app: Flask) -> int:
    database = services_of(app).store.database
    return int(database.connection().execute("SELECT COUNT(*) FROM events WHERE kind = 'message_in'").fetchone()[0])


def test_a_session_gives_a_token_that_expires(client: FlaskClient) -> None:
    body = client.post("/api/web/sessions").get_json()
    assert len(body["token"]) >= 40
    assert body["expires_at"] > utcnow().isoformat()


def test_accepted_message_is_answered_202(customer: WebChat) -> None:
    response = customer.send("hello")
    assert response.status_code == 202
    assert response.get_json() == {"status": "accepted", "duplicate": False}


@pytest.mark.parametrize("kwargs, status, code", [
    ({"data": "{not json", "content_type": "application/json"}, 400, "invalid_message"),
    ({"data": "text=hello", "content_type": "application/x-www-form-urlencoded"}, 400, "invalid_message"),
    ({"json": ["a", "list"]}, 400, "invalid_message"),
    ({"json": {"client_message_id": "1"}}, 400, "invalid_message"),
    ({"json": {"text": "hi"}}, 400, "invalid_message"),
    ({"json": {"text": 5, "client_message_id": "1"}}, 400, "invalid_message"),
    ({"json": {"text": "   ", "client_message_id": "1"}}, 400, "invalid_message"),
    ({"json": {"text": "hi", "client_message_id": "x" * 101}}, 400, "invalid_message"),
    ({"json": {"text": "hi", "client_message_id": "1", "name": ["Anna"]}}, 400, "invalid_message"),
    ({"json": {"text": "hi", "client_message_id": "1", "name": "A" * 101}}, 400, "invalid_message"),
    ({"data": b'{"text": "\xff\xfe", "client_message_id": "1"}', "content_type": "application/json"},
     400, "invalid_message"),
])
def test_bad_message_bodies_get_a_clear_4xx_and_store_nothing(
        customer: WebChat, app: Flask, kwargs: dict[str, Any], status: int, code: str) -> None:
    response = customer.client.post("/api/web/messages", headers=customer.auth, **kwargs)
    assert response.status_code == status
    body = response.get_json()
    assert body["error"] == code and body["message"]
    assert stored_messages(app) == 0


def test_a_name_from_the_embedding_page_goes_to_the_profile_and_the_greeting(customer: WebChat, app: Flask) -> None:
    response = customer.client.post("/api/web/messages", headers=customer.auth,
                                    json={"text": "hello", "client_message_id": "1", "name": "Anna Berg"})
    assert response.status_code == 202
    settle(app)
    replies = [e for e in customer.events() if e["kind"] == "message_out"]
    assert replies[0]["text"].startswith("Hi Anna!")
    store = services_of(app).store
    (conversation,) = store.list_conversations([ConversationStatus.BOT])
    assert store.get_customer(conversation.customer_id).display_name == "Anna Berg"


def test_the_chat_opens_with_a_welcome_and_quick_replies_in_the_browsers_language(client: FlaskClient) -> None:
    english = client.get("/").get_data(as_text=True)
    assert '<html lang="en">' in english and "Ask me anything, or pick a topic" in english
    german = client.get("/", headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}).get_data(as_text=True)
    assert '<html lang="de">' in german
    welcome = json.loads(html.unescape(re.search(r'data-welcome="([^"]+)"', german).group(1)))  # type: ignore[union-attr]
    assert welcome["text"].startswith("Hallo! Ich bin der Assistent von Puffin Outdoor.")
    assert [b["payload"] for b in welcome["buttons"]] == [
        "/order_status", "Was kostet der Versand?", "Wie schicke ich etwas zurück?", "/request_human"]


def test_the_chats_own_words_are_in_the_pages_language_and_every_language_has_them_all(
        client: FlaskClient, tmp_path: Path) -> None:
    german = client.get("/", headers={"Accept-Language": "de"}).get_data(as_text=True)
    assert "<header class=\"sb-header\">Schreiben Sie uns</header>" in german
    assert 'placeholder="Ihre Frage"' in german and ">Senden</button>" in german
    thai = client.get("/", headers={"Accept-Language": "th-TH"}).get_data(as_text=True)
    assert 'placeholder="พิมพ์คำถามของคุณ"' in thai
    words = load_widget_words(ROOT / "data" / "widget.yml")
    assert {language: sorted(own) for language, own in words.items()} == {
        language: sorted(WIDGET_WORDS) for language in ("en", "de", "bg", "zh", "zh-TW", "th")}
    raw = yaml.safe_load((ROOT / "data" / "widget.yml").read_text(encoding="utf-8"))
    assert all(sorted(own) == sorted(WIDGET_WORDS) for own in raw.values())  # translated, not English fill-ins
    broken = tmp_path / "widget.yml"
    broken.write_text("en:\n  header: Hi\n  sned: Send\n", encoding="utf-8")
    with pytest.raises(SwitchboardError, match="unknown words sned"):
        load_widget_words(broken)
    # Without the file the chat still opens, in plain English naming no business.
    assert load_widget_words(tmp_path / "none.yml") == {"en": DEFAULT_WORDS}
    only_german = tmp_path / "de.yml"
    only_german.write_text("de:\n  send: Senden\n", encoding="utf-8")
    assert load_widget_words(only_german)["de"] == {**DEFAULT_WORDS, "send": "Senden"}


def test_a_quick_reply_naming_an_intent_is_that_intent_in_the_pages_language(customer: WebChat, app: Flask) -> None:
    response = customer.client.post("/api/web/messages", headers=customer.auth,
                                    json={"text": "/order_status", "client_message_id": "1", "language": "de"})
    assert response.status_code == 202
    settle(app)
    (reply,) = [e for e in customer.events() if e["kind"] == "message_out"]
    assert reply["text"].startswith("Gern. Wie lautet Ihre Bestellnummer?")
    store = services_of(app).store
    (conversation,) = store.list_conversations([ConversationStatus.BOT])
    assert store.get_customer(conversation.customer_id).language == "de"  # the page's language, as a hint
    customer.client.post("/api/web/messages", headers=customer.auth,
                         json={"text": "hello", "client_message_id": "2", "language": "xx-invalid"})
    settle(app)
    assert store.get_customer(conversation.customer_id).language == "de"  # an unknown code is ignored


def test_text_over_the_configured_limit_is_413(make_app: Any) -> None:
    app = make_app(max_text_length=50)
    customer = WebChat(app, app.test_client())
    response = customer.send("x" * 51)
    assert response.status_code == 413
    assert "50 characters" in response.get_json()["message"]
    assert stored_messages(app) == 0


def test_body_over_max_content_length_is_413_json(customer: WebChat, app: Flask) -> None:
    huge = "x" * (services_of(app).settings.max_content_length + 1)
    response = customer.client.post("/api/web/messages", headers=customer.auth,
                                    json={"text": huge, "client_message_id": "1"})
    assert response.status_code == 413
    assert response.get_json()["error"] == "request_entity_too_large"
    assert stored_messages(app) == 0


@pytest.mark.parametrize("header", [None, "Bearer not-a-token", "Basic abc", "Bearer "])
def test_missing_or_unknown_token_is_401(client: FlaskClient, app: Flask, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.post("/api/web/messages", headers=headers, json={"text": "hi", "client_message_id": "1"})
    assert response.status_code == 401
    assert "POST /api/web/sessions" in response.get_json()["message"]
    assert client.get("/api/web/events", headers=headers).status_code == 401
    assert client.get("/api/web/stream", headers=headers).status_code == 401
    assert stored_messages(app) == 0


def test_expired_token_is_401(client: FlaskClient, app: Flask) -> None:
    token = "an-expired-token"
    services_of(app).store.add_web_session(hashlib.sha256(token.encode()).hexdigest(), "w-old",
                                           utcnow() - timedelta(seconds=1))
    response = client.post("/api/web/messages", headers={"Authorization": f"Bearer {token}"},
                           json={"text": "hi", "client_message_id": "1"})
    assert response.status_code == 401
    assert stored_messages(app) == 0


def test_nul_lone_surrogate_and_bidi_text_is_stored_without_error(customer: WebChat, app: Flask) -> None:
    response = customer.client.post(
        "/api/web/messages", headers=customer.auth, content_type="application/json",
        data='{"text": "hi \\u0000 there \\ud800 \\u202e\\u05e9\\u05dc\\u05d5\\u05dd \\ud83d\\ude00", '
             '"client_message_id": "1"}')
    assert response.status_code == 202
    settle(app)
    first = customer.events()[0]["text"]
    assert "\x00" not in first and "\ud800" not in first
    assert "\u202e" in first and "\U0001f600" in first


def test_one_session_cannot_read_another_sessions_messages(app: Flask, client: FlaskClient) -> None:
    alice, mallory = WebChat(app, client), WebChat(app, client)
    alice.say("how do I reset my password")
    assert mallory.events() == []


def test_events_after_a_cursor_return_only_newer_ones(customer: WebChat) -> None:
    customer.say("hello")
    first_cursor = customer.cursor
    customer.say("thanks")
    newer = customer.client.get(f"/api/web/events?after={first_cursor}", headers=customer.auth).get_json()
    assert [e["kind"] for e in newer["events"]] == ["message_in", "message_out"]
    assert customer.client.get("/api/web/events?after=-1", headers=customer.auth).status_code == 400


def test_delivered_replies_are_marked_sent_in_the_outbox(customer: WebChat, app: Flask) -> None:
    customer.say("hello")
    store = services_of(app).store
    assert store.outbox_for("web", _external_id(app), "pending") == []
    assert len(store.outbox_for("web", _external_id(app), "sent")) == 1


def test_unknown_api_path_and_method_answer_json(client: FlaskClient) -> None:
    assert client.get("/api/web/nope").get_json()["error"] == "not_found"
    assert client.get("/api/web/messages").get_json()["error"] == "method_not_allowed"


def test_pages_send_a_content_security_policy(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert b"<script>" not in response.data  # no inline scripts


def _external_id(app: Flask) -> str:
    (conversation,) = services_of(app).store.list_conversations(list(ConversationStatus))
    return conversation.last_external_id
