"""Telegram through python-telegram-bot: a webhook (or long polling) in, the Bot API out.

The webhook requires the secret token Telegram echoes in `X-Telegram-Bot-Api-Secret-Token`
(compared in constant time; 403 and nothing stored otherwise). Repeated updates are
stored once (by `update_id`). Text, `/start` with its deep-link payload, button taps
(inline keyboard callbacks, answered in the webhook response itself) and non-text
messages (shown to agents as what they are) become messages; edited messages are ignored.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar

from flask import Blueprint, Response, abort, jsonify, request
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest, Forbidden, InvalidToken, RetryAfter, TelegramError

from bot.delivery.worker import DeliveryError
from bot.errors import InvalidMessage
from bot.messages import Button, InboundMessage, OutboxEntry, Profile
from bot.pipeline.inbox import Inbox
from connectors.http import answer_errors_as_json, json_object, option_number

log = logging.getLogger(__name__)

CHANNEL = "telegram"
DEFAULT_API_URL = "https://api.telegram.org/bot"
_CALLBACK_LIMIT = 64  # bytes of callback_data Telegram keeps
_MEDIA = ("photo", "sticker", "voice", "video", "video_note", "audio", "document", "animation", "location",
          "contact", "venue", "poll", "dice")
T = TypeVar("T")


class TelegramClient:
    """A python-telegram-bot `Bot` on its own event loop thread, for Switchboard's threads to call."""

    def __init__(self, token: str, api_url: str = "") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="switchboard-telegram", daemon=True)
        self._thread.start()
        self.bot = Bot(token, base_url=api_url or DEFAULT_API_URL)

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def close(self) -> None:
        try:
            self.call(self.bot.shutdown(), timeout=5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)


class TelegramSender:
    """Sends replies with the Bot API; buttons become an inline keyboard.

    Telegram allows about one message a second per chat: parts of one reply are spaced by
    `min_interval`. A 429 is retried after the `retry_after` Telegram asks for.
    """

    def __init__(self, client: TelegramClient, min_interval: float = 1.0) -> None:
        self._client = client
        self._min_interval = min_interval
        self._last_sent: dict[str, float] = {}

    def send(self, entry: OutboxEntry, text: str, buttons: tuple[Button, ...]) -> str:
        wait = self._last_sent.get(entry.external_id, 0.0) + self._min_interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        markup = InlineKeyboardMarkup([[InlineKeyboardButton(b.title, callback_data=callback_data(b, i))]
                                       for i, b in enumerate(buttons, 1)]) if buttons else None
        try:
            message = self._client.call(self._client.bot.send_message(
                chat_id=int(entry.external_id), text=text, reply_markup=markup))
        except RetryAfter as exc:
            after = exc.retry_after
            seconds = after.total_seconds() if isinstance(after, timedelta) else float(after)
            raise DeliveryError(f"Telegram rate limit; retry after {seconds:g} s", permanent=False,
                                retry_after=seconds) from exc
        except (Forbidden, BadRequest, InvalidToken) as exc:
            raise DeliveryError(f"Telegram refused the message: {exc.message}", permanent=True) from exc
        except (TelegramError, TimeoutError) as exc:
            raise DeliveryError(f"Telegram could not be reached: {exc}", permanent=False) from exc
        finally:
            self._last_sent[entry.external_id] = time.monotonic()
        return f"{message.chat_id}:{message.message_id}"


def callback_data(button: Button, number: int) -> str:
    """The payload itself when Telegram can carry it, else `#n` for the reply's n-th button."""
    return button.payload if len(button.payload.encode()) <= _CALLBACK_LIMIT else f"#{number}"


def parse_update(body: dict[str, Any], last_buttons: Callable[[str, str], tuple[Button, ...]]) \
        -> tuple[InboundMessage | None, str | None]:
    """The message an update carries (None for updates Switchboard ignores), and the id of a button
    tap to acknowledge. An update that is not shaped as Telegram's raises InvalidMessage."""
    try:
        return _parse_update(body, last_buttons)
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
        # python-telegram-bot trusts Telegram's shapes; anything else posted here is refused, not a crash.
        raise InvalidMessage(f"not a Telegram update: {type(exc).__name__}: {exc}") from exc


def _parse_update(body: dict[str, Any], last_buttons: Callable[[str, str], tuple[Button, ...]]) \
        -> tuple[InboundMessage | None, str | None]:
    if not isinstance(body.get("update_id"), int):
        raise InvalidMessage("not a Telegram update: 'update_id' must be an integer")
    update = Update.de_json(body, None)
    provider_id = f"update:{update.update_id}"
    if update.callback_query is not None:
        query = update.callback_query
        if query.message is None or not isinstance(query.data, str):
            return None, query.id
        chat = _chat_id(query.message)
        choice = query.data
        option = option_number(choice[1:]) if choice.startswith("#") else None
        if option is not None:
            options = last_buttons(CHANNEL, chat)
            choice = options[option - 1].payload if 1 <= option <= len(options) else choice
        return InboundMessage(CHANNEL, chat, provider_id, choice, profile=_profile(query.from_user),
                              data={"button": True}), query.id
    message = update.message
    if message is None:  # edited messages, channel posts, ...: nothing for the bot to answer
        return None, None
    return _inbound(message, provider_id), None


def _chat_id(message: Any) -> str:
    chat_id = getattr(getattr(message, "chat", None), "id", None)
    if not isinstance(chat_id, int) or isinstance(chat_id, bool):
        raise InvalidMessage("not a Telegram update: the message has no chat with an integer id")
    return str(chat_id)


def _profile(user: Any) -> Profile:
    if user is None:
        return Profile()
    name, language = user.first_name, user.language_code
    return Profile(display_name=name if isinstance(name, str) and name else None,
                   language=language if isinstance(language, str) and language else None)


def _inbound(message: Message, provider_id: str) -> InboundMessage:
    chat = _chat_id(message)
    profile = _profile(message.from_user)
    if message.text is not None:
        if not isinstance(message.text, str):
            raise InvalidMessage("not a Telegram update: the message's 'text' must be a string")
        text = message.text
        data: dict[str, Any] = {}
        if text == "/start" or text.startswith("/start "):
            payload = text[len("/start"):].strip()
            text = "/start"
            if payload:
                data["start_payload"] = payload  # kept for account linking
        return InboundMessage(CHANNEL, chat, provider_id, text, profile=profile, data=data)
    kind = next((name for name in _MEDIA if getattr(message, name, None)), "message")
    label = kind.replace("_", " ")
    if kind == "sticker" and message.sticker and message.sticker.emoji:
        label = f"sticker {message.sticker.emoji}"
    elif kind == "location" and message.location:
        label = f"location {message.location.latitude:.5f}, {message.location.longitude:.5f}"
    elif kind == "voice" and message.voice:
        seconds = message.voice.duration
        total = int(seconds.total_seconds()) if isinstance(seconds, timedelta) else int(seconds)
        label = f"voice message {total // 60}:{total % 60:02d}"
    caption = message.caption or ""
    return InboundMessage(CHANNEL, chat, provider_id, f"{caption} [{label}]".strip() if caption else f"[{label}]",
                          profile=profile, data={} if caption else {"media": kind.replace("_", " ")})


class TelegramPoller:
    """Long polling for development without a public HTTPS URL: `getUpdates` in a thread, each update
    handled as the webhook would. Telegram keeps an update until a later poll confirms it, and a
    repeat after a restart is dropped by its `update_id`."""

    def __init__(self, client: TelegramClient, inbox: Inbox, last_buttons: Callable[[str, str], tuple[Button, ...]],
                 timeout: int = 25, idle_seconds: float = 1.0) -> None:
        self._client = client
        self._inbox = inbox
        self._last_buttons = last_buttons
        self._timeout = timeout
        self._idle = idle_seconds
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="switchboard-telegram-poll", daemon=True)

    def start(self) -> None:
        # getUpdates works only while no webhook is set.
        self._client.call(self._client.bot.delete_webhook())
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=self._timeout + 5)

    def _run(self) -> None:
        offset: int | None = None
        while not self._stopping.is_set():
            try:
                updates = self._client.call(self._client.bot.get_updates(
                    offset=offset, timeout=self._timeout, allowed_updates=["message", "callback_query"]),
                    timeout=self._timeout + 10)
            except (TelegramError, TimeoutError) as exc:
                log.warning("Telegram getUpdates failed (%s); polling again shortly", exc)
                self._stopping.wait(5)
                continue
            for update in updates:
                self.handle(update.to_dict())
                offset = update.update_id + 1
            if not updates:
                self._stopping.wait(self._idle)

    def handle(self, body: dict[str, Any]) -> None:
        try:
            message, callback_id = parse_update(body, self._last_buttons)
            if message is not None:
                self._inbox.accept(message)
            if callback_id is not None:
                self._client.call(self._client.bot.answer_callback_query(callback_id))
        except Exception:
            log.exception("could not handle Telegram update %s", body.get("update_id"))


def create_telegram_blueprint(inbox: Inbox, secret: str,
                              last_buttons: Callable[[str, str], tuple[Button, ...]]) -> Blueprint:
    telegram = Blueprint("telegram", __name__)
    answer_errors_as_json(telegram)

    @telegram.post("/webhooks/telegram")
    def webhook() -> Response:
        if not secret:
            abort(Response("Telegram is not configured: set SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET\n", 503,
                           mimetype="text/plain"))
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            log.warning("refused a Telegram webhook with a missing or wrong secret token")
            abort(Response("invalid secret token\n", 403, mimetype="text/plain"))
        message, callback_id = parse_update(json_object(), last_buttons)
        if message is not None:
            inbox.accept(message)
        if callback_id is not None:
            # Answered in the response itself: no extra call, and the button stops spinning.
            return jsonify({"method": "answerCallbackQuery", "callback_query_id": callback_id})
        return jsonify({})

    return telegram
