"""A loopback server speaking Twilio's Messages REST API, for the real twilio client to talk to."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

from tests.stub_server import StubServer

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "twilio-test-token"


@dataclass
class Failure:
    status: int
    code: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


class TwilioStub(StubServer):
    """Records each message created; answers with scripted failures first, if any."""

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []
        self.failures: list[Failure] = []
        self.requests = 0
        self.delay = 0.0  # seconds to wait before answering a create
        self._lock = threading.Lock()
        super().__init__()

    def get(self, handler: BaseHTTPRequestHandler) -> None:  # Switchboard must never fetch anything from here
        self.answer(handler, 404, {"code": 20404, "message": "not found", "status": 404})

    def post(self, handler: BaseHTTPRequestHandler) -> None:  # a message created
        length = int(handler.headers.get("Content-Length", "0"))
        form = {k: v[0] for k, v in parse_qs(handler.rfile.read(length).decode()).items()}
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if handler.path != f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json":
            return self.answer(handler, 404, {"code": 20404, "message": "not found", "status": 404})
        if handler.headers.get("Authorization") != expected:
            return self.answer(handler, 401, {"code": 20003, "message": "Authenticate", "status": 401})
        time.sleep(self.delay)
        with self._lock:
            self.requests += 1
            failure = self.failures.pop(0) if self.failures else None
            if failure is None:
                sid = "SM" + uuid.uuid4().hex
                self.messages.append({**form, "Sid": sid})
        if failure is not None:
            return self.answer(handler, failure.status, {"code": failure.code, "message": failure.message,
                                                         "more_info": "", "status": failure.status},
                               failure.headers)
        return self.answer(handler, 201, {
            "sid": sid, "account_sid": ACCOUNT_SID, "to": form.get("To"), "from": form.get("From"),
            "body": form.get("Body"), "status": "queued", "num_segments": "1", "direction": "outbound-api",
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
        })
