"""Serving the Flask application from gunicorn's asyncio worker: requests on threads, waiting on the
loop.

Flask is a WSGI application, so each request runs on a thread of a pool, as under a threaded server.
Responses that would hold a thread while they wait (a Server-Sent Events stream, for minutes; a
synchronous REST request, until the bot has answered) are finished on the event loop instead: the view
does what every view does (signs in, stores, takes a stream's place, sets the headers) and leaves an
object that serves the rest in the request's environ (`connectors.on_loop`); this module sends what it
writes and runs its blocking reads on the pool. An open stream costs a socket and a few kilobytes, not a
thread's stack.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask

from bot.errors import SwitchboardError, Unavailable
from connectors.http import RETRY_AFTER_SECONDS
from connectors.on_loop import ENVIRON_KEY, SERVER_KEY, ServedOnLoop

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


class FlaskOnAsyncio:
    """An ASGI application serving `app`, whose views run on `threads` threads at most."""

    def __init__(self, app: Flask, threads: int) -> None:
        self.flask = app
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="switchboard-http")
        # A body longer than the app accepts is not read further: the app answers 413 from what was read.
        self._max_body = int(app.config.get("MAX_CONTENT_LENGTH") or 1 << 30)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:  # a WebSocket: Switchboard has none
            await send({"type": "websocket.close", "code": 1000})

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive, self._max_body)
        if body is None:
            return  # the client left before it finished sending
        loop = asyncio.get_running_loop()
        environ = _environ(scope, body)
        environ[SERVER_KEY] = True
        status, headers, chunks, served = await loop.run_in_executor(self._pool, self._call, environ)
        if served is None:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b"".join(chunks)})
            return
        try:
            await self._serve(served, status, headers, send)
        finally:
            _close(chunks)  # gives a stream's place back

    def _call(self, environ: dict[str, Any]) -> tuple[int, Headers, Iterable[bytes], ServedOnLoop | None]:
        """Run the view on this thread: its status, headers and whole body, or what it left to be served on
        the loop (then its body is left unread, and closed when the serving ends)."""
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [int(status.split(" ", 1)[0]),
                          [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]]
            return _no_write

        body = self.flask(environ, start_response)
        served = environ.get(ENVIRON_KEY)
        if served is not None and started and started[0] == 200:
            # The length of the body a thread would have sent says nothing of what `served` will write.
            return started[0], [h for h in started[1] if h[0] != b"content-length"], body, served
        try:
            chunks = list(body)
        finally:
            _close(body)
        return started[0], started[1], chunks, None

    async def _serve(self, served: ServedOnLoop, status: int, headers: Headers, send: Send) -> None:
        # A client that left: gunicorn cancels this task a few seconds after the connection is lost
        # (asgi_disconnect_grace_period), and ignores what is written meanwhile. Under a server that raises
        # instead, a write fails (a keep-alive at the latest), as on a thread.
        loop = asyncio.get_running_loop()
        started = False

        async def write(data: str | bytes) -> None:
            nonlocal started
            if not started:  # the status goes out with the first bytes: a failure before them can still say so
                await send({"type": "http.response.start", "status": status, "headers": headers})
                started = True
            await send({"type": "http.response.body", "body": data.encode() if isinstance(data, str) else data,
                        "more_body": True})

        async def run(function: Callable[[], Any]) -> Any:
            return await loop.run_in_executor(self._pool, function)

        try:
            await served.serve(write, run)
            if not started:
                await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
        except SwitchboardError as exc:
            if started:
                raise  # the response is cut off: its status is gone already
            await _send_error(send, exc)
        except OSError:
            pass  # the client went away while something was on its way


async def _send_error(send: Send, exc: SwitchboardError) -> None:
    """The JSON error every API answers with (connectors.http), for a failure after the view returned."""
    headers = [(b"content-type", b"application/json")]
    if isinstance(exc, Unavailable):
        headers.append((b"retry-after", str(RETRY_AFTER_SECONDS).encode()))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps({"error": exc.code, "message": str(exc)}).encode()})


def _no_write(chunk: bytes) -> None:
    raise NotImplementedError("Switchboard's views return their bodies; write() is not supported")


def _close(body: Iterable[bytes]) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        close()


async def _lifespan(receive: Receive, send: Send) -> None:
    # Nothing to start or stop here: the app is built before the worker serves, and gunicorn's worker_exit
    # hook closes its services.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request's body, or its first `limit` + 1 bytes when it is longer; None if the client left."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > limit:
            return bytes(body[:limit + 1])
        if not message.get("more_body"):
            return bytes(body)


def _environ(scope: Scope, body: bytes) -> dict[str, Any]:
    """The WSGI environ of an ASGI HTTP request (PEP 3333: text as latin-1 strings of the bytes)."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode().decode("latin-1"),
        "PATH_INFO": scope["path"].encode().decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": str(client[0]),
        "REMOTE_PORT": str(client[1]),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name == "CONTENT_LENGTH":
            continue  # the body read, which a longer body's 413 relies on
        key = name if name == "CONTENT_TYPE" else f"HTTP_{name}"
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ
