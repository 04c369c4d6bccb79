"""What the loopback stubs of outside APIs (Telegram, Twilio, Meta's Graph API) share: an HTTP server on a
free port of 127.0.0.1, on a thread of its own, that answers in JSON."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StubServer:
    """Serves from the moment it is made: a subclass sets up what it records first, then calls this
    `__init__` with the path its API lives under, and answers requests in `post` and `get`."""

    def __init__(self, path: str = "") -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                stub.post(self)

            def do_GET(self) -> None:
                stub.get(self)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}{path}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def post(self, handler: BaseHTTPRequestHandler) -> None:
        self.answer(handler, 405, {"error": "POST is not served here"})

    def get(self, handler: BaseHTTPRequestHandler) -> None:
        self.answer(handler, 405, {"error": "GET is not served here"})

    @staticmethod
    def answer(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any],
               headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
