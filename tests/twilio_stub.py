"""A loopback server speaking Twilio's Messages REST API, for the real twilio client to talk to."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "twilio-test-token"


@dataclass
class Failure:
    status: int
    code: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


class TwilioStub:
    """Records each message created; answers with scripted failures first, if any."""

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []
        self.failures: list[Failure] = []
        self.requests = 0
        self.delay = 0.0  # seconds to wait before answering a create
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                stub._create(self)

            def do_GET(self) -> None:  # Switchboard must never fetch anything from here
                stub._answer(self, 404, {"code": 20404, "message": "not found", "status": 404})

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _create(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", "0"))
        form = {k: v[0] for k, v in parse_qs(handler.rfile.read(length).decode()).items()}
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if handler.path != f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json":
            return self._answer(handler, 404, {"code": 20404, "message": "not found", "status": 404})
        if handler.headers.get("Authorization") != expected:
            return self._answer(handler, 401, {"code": 20003, "message": "Authenticate", "status": 401})
        time.sleep(self.delay)
        with self._lock:
            self.requests += 1
            failure = self.failures.pop(0) if self.failures else None
            if failure is None:
                sid = "SM" + uuid.uuid4().hex
                self.messages.append({**form, "Sid": sid})
        if failure is not None:
            return self._answer(handler, failure.status, {"code": failure.code, "message": failure.message,
                                                          "more_info": "", "status": failure.status},
                                failure.headers)
        return self._answer(handler, 201, {
            "sid": sid, "account_sid": ACCOUNT_SID, "to": form.get("To"), "from": form.get("From"),
            "body": form.get("Body"), "status": "queued", "num_segments": "1", "direction": "outbound-api",
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
        })

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any],
                headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
