"""Responses that wait, finished by an asynchronous server on its event loop instead of on a thread.

Served by `switchboard run` or `web` (`switchboard.asgi`), a view that would wait a long time (an event
stream, a synchronous REST reply) does its work up to the wait, then leaves an object with an async
`serve` in the request's environ; the server sends the response's status and headers when `serve`
first writes, and the view's thread is free meanwhile. Under any other WSGI server the view waits on
its thread as before: `on_event_loop()` tells the two apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from flask import Response, request

ENVIRON_KEY = "switchboard.on_loop"        # the view's object to serve
SERVER_KEY = "switchboard.event_loop"      # set by a server that serves such objects

Run = Callable[[Callable[[], Any]], Awaitable[Any]]  # runs a blocking function on a thread, off the loop
Write = Callable[[str | bytes], Awaitable[None]]


class ServedOnLoop(Protocol):
    async def serve(self, write: Write, run: Run) -> None:
        """Write the body. When the client leaves, the server cancels this or a write fails (OSError)."""


def on_event_loop() -> bool:
    """Whether this request is served by a server that finishes waiting responses on its event loop."""
    return bool(request.environ.get(SERVER_KEY))


def served_on_loop(served: ServedOnLoop, body: Any, mimetype: str, headers: dict[str, str] | None = None) -> Response:
    """The response whose body `served` writes on the event loop; `body` is what a WSGI server without
    one sends instead, by iterating it on its thread."""
    request.environ[ENVIRON_KEY] = served
    return Response(body, mimetype=mimetype, headers=headers)


@dataclass(eq=False)
class Deferred:
    """A body sent once `wait` is over: `wait(run)` awaits (running its blocking checks with `run`), then
    `body()` builds the bytes on a thread, unless `wait` returned them, built on the thread of its last
    check (one hand-over fewer). It runs to the end even if the client has left, as a thread would: `body`
    may record that something was delivered."""

    wait: Callable[[Run], Awaitable[object]]
    body: Callable[[], bytes]

    async def serve(self, write: Write, run: Run) -> None:
        waited = await self.wait(run)
        await write(waited if isinstance(waited, bytes) else await run(self.body))
