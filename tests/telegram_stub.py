"""A loopback server speaking the Telegram Bot API (getMe, sendMessage, setWebhook, deleteWebhook,
getUpdates), for python-telegram-bot to talk to."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from tests.stub_server import StubServer

TOKEN = "123456:telegram-test-token"


class TelegramStub(StubServer):
    """Records sent messages and webhook settings; `rate_limited` answers that many sends with 429."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.webhook: dict[str, Any] = {}
        self.updates: list[dict[str, Any]] = []
        self.rate_limited = 0
        self.answered_callbacks: list[str] = []
        self.retry_after = 2
        self._lock = threading.Lock()
        super().__init__("/bot")

    def post(self, handler: BaseHTTPRequestHandler) -> None:
        prefix = f"/bot{TOKEN}/"
        if not handler.path.startswith(prefix):
            return self.answer(handler, 401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        method = handler.path[len(prefix):].split("?")[0]
        length = int(handler.headers.get("Content-Length", "0"))
        raw = handler.rfile.read(length).decode()
        if handler.headers.get("Content-Type", "").startswith("application/json"):
            params = json.loads(raw or "{}")
        else:  # python-telegram-bot posts form fields holding JSON values
            params = {k: _json_or_text(v[0]) for k, v in parse_qs(raw).items()}
        with self._lock:
            answer = self._method(method, params)
        self.answer(handler, 200 if answer.get("ok") else answer["error_code"], answer)

    get = post  # the Bot API takes either

    def _method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "getMe":
            return {"ok": True, "result": {"id": 123456, "is_bot": True, "first_name": "Puffin",
                                           "username": "puffin_outdoor_bot"}}
        if method == "sendMessage":
            if self.rate_limited:
                self.rate_limited -= 1
                return {"ok": False, "error_code": 429, "description": f"Too Many Requests: retry after "
                        f"{self.retry_after}", "parameters": {"retry_after": self.retry_after}}
            if str(params.get("chat_id")) == "403":
                return {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}
            self.sent.append(params)
            return {"ok": True, "result": {"message_id": len(self.sent), "date": int(time.time()),
                                           "chat": {"id": int(params["chat_id"]), "type": "private"},
                                           "text": params.get("text", "")}}
        if method == "setWebhook":
            self.webhook = params
            return {"ok": True, "result": True, "description": "Webhook was set"}
        if method == "deleteWebhook":
            self.webhook = {}
            return {"ok": True, "result": True}
        if method == "answerCallbackQuery":
            self.answered_callbacks.append(str(params["callback_query_id"]))
            return {"ok": True, "result": True}
        if method == "getUpdates":
            offset = int(params.get("offset", 0) or 0)
            return {"ok": True, "result": [u for u in self.updates if u["update_id"] >= offset]}
        return {"ok": False, "error_code": 404, "description": "Not Found: method not found"}


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value
