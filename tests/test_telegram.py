"""Telegram: the webhook with its secret token, updates of every kind, and replies through
python-telegram-bot to a loopback stub of the Bot API."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from werkzeug.test import TestResponse

from bot.delivery.worker import DeliveryWorker
from bot.errors import SwitchboardError
from bot.messages import Author, Button, ConversationStatus, EventKind, InboundMessage, Reply
from bot.notifier import Notifier
from bot.outcome import Outcome
from bot.stores.conversations import ConversationStore
from connectors.telegram import TelegramClient, TelegramSender
from switchboard.app import services_of
from switchboard.cli import main
from tests.conftest import OPEN_HOURS, settle
from tests.dialogue import Clock
from tests.servers import wait_for
from tests.telegram_stub import TOKEN, TelegramStub

SECRET = "telegram-webhook-secret"
CHAT = 777001


@pytest.fixture
def stub() -> Iterator[TelegramStub]:
    server = TelegramStub()
    yield server
    server.close()


@pytest.fixture
def app(make_app: Callable[..., Flask], stub: TelegramStub) -> Flask:
    return make_app(telegram_token=TOKEN, telegram_webhook_secret=SECRET, telegram_api_url=stub.url)


def user(first_name: str = "Anna") -> dict[str, Any]:
    return {"id": CHAT, "is_bot": False, "first_name": first_name, "language_code": "en"}


def message(update_id: int, **content: Any) -> dict[str, Any]:
    return {"update_id": update_id, "message": {"message_id": update_id, "date": 1_700_000_000,
                                                "chat": {"id": CHAT, "type": "private"}, "from": user(),
                                                **content}}


def send(app: Flask, update: dict[str, Any], secret: str | None = SECRET) -> TestResponse:
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    return app.test_client().post("/webhooks/telegram", json=update, headers=headers)


def customer_messages(app: Flask) -> list[Any]:
    store = services_of(app).store
    return [e for c in store.list_conversations(list(ConversationStatus))
            for e in store.transcript(c.conversation_id) if e.kind == EventKind.MESSAGE_IN]


def test_a_text_message_is_answered_through_the_bot_api_with_the_customers_name(
        app: Flask, stub: TelegramStub) -> None:
    response = send(app, message(1, text="hello"))
    assert response.status_code == 200 and response.get_json() == {}
    (sent,) = wait_for(lambda: stub.sent)
    assert sent["chat_id"] == CHAT and sent["text"].startswith("Hi Anna!")
    store = services_of(app).store
    (conversation,) = store.list_conversations([ConversationStatus.BOT])
    assert store.get_customer(conversation.customer_id).display_name == "Anna"
    wait_for(lambda: store.outbox_of(conversation.conversation_id)[0].status == "sent")


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", SECRET + "x"])
def test_a_missing_or_wrong_secret_token_is_refused_and_nothing_is_stored(app: Flask, secret: str | None) -> None:
    assert send(app, message(1, text="hello"), secret).status_code == 403
    settle(app)
    assert customer_messages(app) == []


def test_without_a_secret_configured_the_webhook_says_so(make_app: Callable[..., Flask]) -> None:
    response = make_app().test_client().post("/webhooks/telegram", json=message(1, text="hi"))
    assert response.status_code == 503 and "SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET" in response.get_data(as_text=True)


def test_a_repeated_update_is_stored_and_answered_once(app: Flask, stub: TelegramStub) -> None:
    for _ in range(3):
        assert send(app, message(5, text="how much is shipping")).status_code == 200
    wait_for(lambda: stub.sent)
    settle(app)
    time.sleep(0.3)
    assert len(customer_messages(app)) == 1 and len(stub.sent) == 1


def test_start_keeps_its_deep_link_payload_and_is_greeted(app: Flask, stub: TelegramStub) -> None:
    send(app, message(7, text="/start link-4821"))
    (sent,) = wait_for(lambda: stub.sent)
    assert sent["text"].startswith("Hi Anna!")
    (received,) = customer_messages(app)
    assert received.text == "/start" and received.data["start_payload"] == "link-4821"


@pytest.mark.parametrize(("content", "shown", "kind"), [
    ({"photo": [{"file_id": "p1", "file_unique_id": "u1", "width": 90, "height": 90}]}, "[photo]", "photo"),
    ({"sticker": {"file_id": "s1", "file_unique_id": "u2", "width": 512, "height": 512, "is_animated": False,
                  "is_video": False, "type": "regular", "emoji": "\U0001F44D"}}, "[sticker \U0001F44D]", "sticker"),
    ({"voice": {"file_id": "v1", "file_unique_id": "u3", "duration": 67}}, "[voice message 1:07]", "voice"),
    ({"location": {"latitude": 52.520008, "longitude": 13.404954}}, "[location 52.52001, 13.40495]", "location"),
])
def test_non_text_messages_are_answered_politely_and_shown_as_what_they_are(
        app: Flask, stub: TelegramStub, content: dict[str, Any], shown: str, kind: str) -> None:
    send(app, message(9, **content))
    (sent,) = wait_for(lambda: stub.sent)
    assert sent["text"].startswith(f"Thanks for the {kind}! I can only read text")
    (received,) = customer_messages(app)
    assert received.text == shown and received.data["media"] == kind
    (conversation,) = services_of(app).store.list_conversations([ConversationStatus.BOT])
    assert conversation.fallback_streak == 0


def test_a_photo_with_a_caption_is_read_as_its_caption(app: Flask, stub: TelegramStub) -> None:
    send(app, message(11, caption="my parcel arrived damaged",
                      photo=[{"file_id": "p1", "file_unique_id": "u1", "width": 90, "height": 90}]))
    (sent,) = wait_for(lambda: stub.sent)
    assert "Thanks for the photo" not in sent["text"]
    assert customer_messages(app)[0].text == "my parcel arrived damaged [photo]"


def test_edited_messages_are_ignored(app: Flask, stub: TelegramStub) -> None:
    update = message(12, text="hello")
    update["edited_message"] = update.pop("message") | {"edit_date": 1_700_000_100}
    assert send(app, update).status_code == 200
    settle(app)
    assert customer_messages(app) == [] and stub.sent == []


@pytest.mark.parametrize("body", [{"no": "update"}, {"update_id": "x", "message": "nope"}])
def test_a_malformed_update_gets_a_400(app: Flask, body: dict[str, Any]) -> None:
    response = send(app, body)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_message"


def reply_with_buttons(store: ConversationStore, buttons: tuple[Button, ...]) -> str:
    accepted = store.accept(InboundMessage("telegram", str(CHAT), uuid.uuid4().hex, "where is my order"))
    pending = store.next_pending(accepted.conversation_id)
    assert pending is not None
    store.complete_turn(pending, Outcome(replies=(Reply(accepted.conversation_id, "Which order?", Author.BOT,
                                                        buttons),), fallback_streak=0))
    return accepted.conversation_id


def test_buttons_are_an_inline_keyboard_and_a_tap_is_the_customers_choice(app: Flask, stub: TelegramStub) -> None:
    store = services_of(app).store
    long_payload = "I would like to hear about order PO-2610438 and its delivery date, please"
    conversation_id = reply_with_buttons(store, (Button("PO-2610427", "PO-2610427"), Button("The other", long_payload)))
    (sent,) = wait_for(lambda: stub.sent)
    assert sent["reply_markup"] == {"inline_keyboard": [[{"text": "PO-2610427", "callback_data": "PO-2610427"}],
                                                        [{"text": "The other", "callback_data": "#2"}]]}
    for update_id, data in ((20, "PO-2610427"), (21, "#2")):
        tap = {"update_id": update_id, "callback_query": {
            "id": f"cb{update_id}", "from": user(), "chat_instance": "ci", "data": data,
            "message": {"message_id": 1, "date": 1_700_000_000, "chat": {"id": CHAT, "type": "private"}}}}
        response = send(app, tap)
        assert response.get_json() == {"method": "answerCallbackQuery", "callback_query_id": f"cb{update_id}"}
    settle(app)
    texts = [e.text for e in store.transcript(conversation_id) if e.kind == EventKind.MESSAGE_IN]
    assert texts == ["where is my order", "PO-2610427", long_payload]


@pytest.fixture
def telegram_worker(tmp_path: Path, stub: TelegramStub) -> Iterator[tuple[ConversationStore, DeliveryWorker,
                                                                          Clock]]:
    store = ConversationStore(tmp_path / "switchboard.db")
    client = TelegramClient(TOKEN, stub.url)
    clock = Clock(OPEN_HOURS)
    yield store, DeliveryWorker(store, {"telegram": TelegramSender(client, min_interval=0)}, Notifier(),
                                clock=clock), clock
    client.close()
    store.close()


def test_a_429_is_retried_after_the_retry_after_telegram_asks_for(
        telegram_worker: tuple[ConversationStore, DeliveryWorker, Clock], stub: TelegramStub) -> None:
    store, worker, clock = telegram_worker
    stub.rate_limited, stub.retry_after = 1, 7
    conversation_id = reply_with_buttons(store, ())
    worker.run_once()
    (entry,) = store.outbox_of(conversation_id)
    assert entry.status == "pending" and "retry after 7 s" in (entry.error or "")
    clock.now += timedelta(seconds=6)
    assert worker.run_once() == 0
    clock.now += timedelta(seconds=1)
    assert worker.run_once() == 1
    assert store.outbox_of(conversation_id)[0].status == "sent" and len(stub.sent) == 1


def test_a_customer_who_blocked_the_bot_is_a_permanent_failure(
        telegram_worker: tuple[ConversationStore, DeliveryWorker, Clock], stub: TelegramStub) -> None:
    store, worker, clock = telegram_worker
    accepted = store.accept(InboundMessage("telegram", "403", "u1", "hi"))
    pending = store.next_pending(accepted.conversation_id)
    assert pending is not None
    store.complete_turn(pending, Outcome(replies=(Reply(accepted.conversation_id, "Hello!", Author.BOT),)))
    worker.run_once()
    clock.now += timedelta(hours=1)
    assert worker.run_once() == 0
    (entry,) = store.outbox_of(accepted.conversation_id)
    assert entry.status == "failed" and "blocked by the user" in (entry.error or "")


def test_set_webhook_registers_the_public_url_and_the_secret(stub: TelegramStub,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"TELEGRAM_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_SECRET": SECRET, "TELEGRAM_API_URL": stub.url,
                        "PUBLIC_URL": "https://support.example.com"}.items():
        monkeypatch.setenv(f"SWITCHBOARD_{name}", value)
    result = CliRunner().invoke(main, ["telegram", "set-webhook"])
    assert result.exit_code == 0, result.output
    assert stub.webhook["url"] == "https://support.example.com/webhooks/telegram"
    assert stub.webhook["secret_token"] == SECRET
    assert "https://support.example.com/webhooks/telegram" in result.stdout


def test_set_webhook_explains_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("SWITCHBOARD_PUBLIC_URL", "http://127.0.0.1:8000")
    result = CliRunner().invoke(main, ["telegram", "set-webhook"])
    assert result.exit_code == 1
    assert "SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET" in result.stderr


def test_long_polling_handles_updates_like_the_webhook(make_app: Callable[..., Flask], stub: TelegramStub) -> None:
    stub.webhook = {"url": "https://old.example.com/webhooks/telegram"}
    stub.updates = [message(30, text="hello"), {"update_id": 31, "callback_query": {
        "id": "cb31", "from": user(), "chat_instance": "ci", "data": "how much is shipping",
        "message": {"message_id": 1, "date": 1_700_000_000, "chat": {"id": CHAT, "type": "private"}}}}]
    app = make_app(telegram_token=TOKEN, telegram_api_url=stub.url, telegram_mode="polling")
    sent = wait_for(lambda: len(stub.sent) == 2 and stub.sent)
    assert stub.webhook == {}  # polling needs the webhook removed
    assert sent[0]["text"].startswith("Hi Anna!") and "4.95" in sent[1]["text"]
    assert stub.answered_callbacks == ["cb31"]
    time.sleep(1.5)  # later polls return the same updates until confirmed; they are not stored again
    assert [m.text for m in customer_messages(app)] == ["hello", "how much is shipping"]


def test_an_unknown_telegram_mode_is_refused(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(SwitchboardError, match="use webhook or polling"):
        make_app(telegram_mode="push")
