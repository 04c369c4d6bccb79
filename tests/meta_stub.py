"""A loopback server speaking the Graph API's shapes that Switchboard uses: the Send API
(`POST /me/messages`) and a user's profile (`GET /<id>?fields=...`)."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.stub_server import StubServer

PAGE_TOKEN = "EAAB-page-token"


@dataclass
class GraphFailure:
    status: int
    code: int
    message: str
    subcode: int | None = None


class GraphStub(StubServer):
    """Records each message sent and each profile read; answers with scripted failures first, if any."""

    def __init__(self, profiles: dict[str, dict[str, str]] | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.profile_reads: list[str] = []
        self.failures: list[GraphFailure] = []
        self.profiles = profiles or {}
        self._lock = threading.Lock()
        super().__init__("/v21.0")

    def _authorised(self, handler: BaseHTTPRequestHandler) -> bool:
        token = parse_qs(urlsplit(handler.path).query).get("access_token", [""])[0]
        if token != PAGE_TOKEN:
            self._error(handler, GraphFailure(400, 190, "Invalid OAuth access token."))
            return False
        return True

    def post(self, handler: BaseHTTPRequestHandler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers.get("Content-Length", "0"))) or b"{}")
        if urlsplit(handler.path).path != "/v21.0/me/messages":
            return self._error(handler, GraphFailure(404, 803, "Unknown path"))
        if not self._authorised(handler):
            return None
        with self._lock:
            if self.failures:
                return self._error(handler, self.failures.pop(0))
            if body.get("messaging_type") not in ("RESPONSE", "UPDATE", "MESSAGE_TAG") \
                    or not isinstance(body.get("recipient", {}).get("id"), str) \
                    or (body["messaging_type"] == "MESSAGE_TAG") != ("tag" in body):
                return self._error(handler, GraphFailure(400, 100, "(#100) Invalid parameter"))
            self.sent.append(body)
        return self.answer(handler, 200, {"recipient_id": body["recipient"]["id"],
                                          "message_id": f"m_{uuid.uuid4().hex}"})

    def get(self, handler: BaseHTTPRequestHandler) -> None:
        if not self._authorised(handler):
            return None
        user = urlsplit(handler.path).path.rsplit("/", 1)[-1]
        fields = parse_qs(urlsplit(handler.path).query).get("fields", [""])[0].split(",")
        with self._lock:
            self.profile_reads.append(user)
        profile = self.profiles.get(user)
        if profile is None:
            return self._error(handler, GraphFailure(400, 100, "(#100) Unsupported get request."))
        return self.answer(handler, 200, {"id": user, **{k: v for k, v in profile.items() if k in fields}})

    def _error(self, handler: BaseHTTPRequestHandler, failure: GraphFailure) -> None:
        error: dict[str, Any] = {"message": failure.message, "type": "OAuthException", "code": failure.code,
                                 "fbtrace_id": uuid.uuid4().hex[:11]}
        if failure.subcode is not None:
            error["error_subcode"] = failure.subcode
        self.answer(handler, failure.status, {"error": error})
