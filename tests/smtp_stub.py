"""A loopback SMTP server that speaks just enough of RFC 5321 to take messages, and keeps them."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Session(socketserver.StreamRequestHandler):
    server: _Server

    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self) -> None:
        self.reply("220 stub ESMTP")
        envelope: dict[str, object] = {"to": []}
        while line := self.rfile.readline().decode("utf-8", "replace"):
            command = line.strip().upper()
            if command.startswith(("EHLO", "HELO")):
                self.reply("250-stub")
                self.reply("250 AUTH PLAIN")
            elif command.startswith("AUTH PLAIN"):
                envelope["auth"] = line.strip().split(" ", 2)[2]
                self.reply("235 ok")
            elif command.startswith("MAIL FROM"):
                envelope["from"] = line.strip()[10:]
                self.reply("250 ok")
            elif command.startswith("RCPT TO"):
                envelope["to"].append(line.strip()[8:])  # type: ignore[attr-defined]
                self.reply("250 ok")
            elif command == "DATA":
                self.reply("354 go on")
                body = []
                while (data := self.rfile.readline().decode("utf-8", "replace")) not in (".\r\n", ""):
                    body.append(data)
                envelope["data"] = "".join(body)
                self.server.messages.append(envelope)
                envelope = {"to": []}
                self.reply("250 queued")
            elif command == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 ok")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    messages: list[dict[str, object]]


@contextmanager
def smtp_stub() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Session)
    server.messages = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
