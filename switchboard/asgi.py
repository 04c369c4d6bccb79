"""Serving the Flask application from gunicorn's asyncio worker: requests on threads, event streams on
the loop.

Flask is a WSGI application, so each request runs on a thread of a pool, as under a threaded server.
The one kind of response that would hold a thread for minutes, a Server-Sent Events stream, is served
on the event loop instead: its view does what every view does (signs in, takes one of the stream
places, sets the headers) and leaves its `EventStream` in the request's environ; this module sends the
headers, then the stream's frames, and waits for changes without a thread. An open stream costs a
socket and a few kilobytes, not a thread's stack.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask

from connectors.streams import ENVIRON_KEY, EventStream

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
        status, headers, chunks, stream = await loop.run_in_executor(self._pool, self._call, environ)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if stream is None:
            await send({"type": "http.response.body", "body": b"".join(chunks)})
            return
        try:
            await self._serve_stream(stream, receive, send)
        finally:
            _close(chunks)  # gives the stream's place back

    def _call(self, environ: dict[str, Any]) -> tuple[int, Headers, Iterable[bytes], EventStream | None]:
        """Run the view on this thread: its status, headers and whole body, or its open event stream
        (then the body is left unread, to be closed when the stream ends)."""
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [int(status.split(" ", 1)[0]),
                          [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]]
            return _no_write

        body = self.flask(environ, start_response)
        stream = environ.get(ENVIRON_KEY)
        if isinstance(stream, EventStream) and started and started[0] == 200:
            return started[0], started[1], body, stream
        try:
            chunks = list(body)
        finally:
            _close(body)
        return started[0], started[1], chunks, None

    async def _serve_stream(self, stream: EventStream, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        gone: asyncio.Future[object] = asyncio.ensure_future(_disconnected(receive))

        async def write(frame: str) -> None:
            await send({"type": "http.response.body", "body": frame.encode(), "more_body": True})

        async def read() -> list[str]:
            return await loop.run_in_executor(self._pool, stream.read)

        try:
            await stream.serve(write, read, gone)
            if not gone.done():
                await send({"type": "http.response.body", "body": b""})
        except OSError:
            pass  # the client went away while a frame was on its way
        finally:
            gone.cancel()


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


async def _disconnected(receive: Receive) -> object:
    while (await receive())["type"] != "http.disconnect":
        pass
    return None


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
