"""Open Server-Sent Events streams: what each sends, and the bounds on how many are open.

A stream (`EventStream`) sends what its `read` finds now, then waits for its notifier key to change and
sends again, with keep-alives between. Served by `switchboard run` or `web` (gunicorn's asyncio worker,
`switchboard.asgi`), it waits on the event loop and holds no thread; served by a thread (Flask's test
client, any WSGI server) it holds that thread while it waits. Both ways run the loops below.

Streams are still bounded: each is a socket and some memory, and a client could open web-chat sessions
and streams without end. So they are limited in total, per client address, and per holder (a web
session or an agent), where a new stream replaces the holder's oldest (a reloaded tab) instead of
being refused. Every stream ends after `max_seconds`; EventSource reconnects by itself, so a dead
client's place is freed in bounded time. A refused stream is told to poll instead (the widget does).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from flask import Response

from bot.errors import TooManyRequests, Unavailable
from bot.notifier import Notifier
from connectors.on_loop import Run, Write, served_on_loop

RETRY = "retry: 3000\n\n"  # EventSource reconnects after 3 s when a stream ends
KEEP_ALIVE = ": keep-alive\n\n"


@dataclass(eq=False)
class StreamSlot:
    """One open stream's place; `live()` turns false when it is replaced or has run its time."""

    client: str
    holder: str
    deadline: float
    replaced: bool = False
    released: bool = False
    _slots: StreamSlots | None = field(default=None, repr=False)

    def live(self) -> bool:
        return not self.replaced and time.monotonic() < self.deadline

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def release(self) -> None:
        """Give the place back (idempotent; called when the response closes)."""
        if self._slots is not None:
            self._slots.release(self)


class StreamSlots:
    """Counts open streams and hands out places within the limits."""

    def __init__(self, total: int, per_client: int, per_holder: int, max_seconds: float,
                 heartbeat: float = 15.0) -> None:
        self.total = total
        self.per_client = per_client
        self.per_holder = per_holder
        self.max_seconds = max_seconds
        self.heartbeat = heartbeat  # seconds between keep-alives, which also find clients that left
        self._lock = threading.Lock()
        self._open: list[StreamSlot] = []
        self._by_client: defaultdict[str, int] = defaultdict(int)

    def open(self, client: str, holder: str) -> StreamSlot:
        """A place for a new stream; TooManyRequests (429) or Unavailable (503) when there is none."""
        with self._lock:
            # Replaced streams count until they end: replacing must not be a way past the limits.
            if self._by_client[client] >= self.per_client:
                raise TooManyRequests(f"too many open streams from this address (at most {self.per_client}); "
                                      "poll GET /api/web/events instead")
            if len(self._open) >= self.total:
                raise Unavailable(f"the server holds as many streams as it can ({self.total}); poll instead, "
                                  "or try the stream again in a minute")
            held = [slot for slot in self._open if slot.holder == holder and not slot.replaced]
            if len(held) >= self.per_holder:
                # A new tab or a reload: the holder's oldest stream ends at its next wake-up.
                held[0].replaced = True
            slot = StreamSlot(client, holder, time.monotonic() + self.max_seconds, _slots=self)
            self._open.append(slot)
            self._by_client[client] += 1
            return slot

    def release(self, slot: StreamSlot) -> None:
        with self._lock:
            if slot.released:
                return
            slot.released = True
            self._open.remove(slot)
            self._by_client[slot.client] -= 1
            if not self._by_client[slot.client]:
                del self._by_client[slot.client]

    def count(self) -> int:
        """How many streams are open now."""
        with self._lock:
            return len(self._open)


@dataclass(eq=False)
class EventStream:
    """One open stream: `read()` gives the frames to send now (it reads the store, so an asynchronous
    server runs it on a thread), sent at the start and after every change of `key` or heartbeat."""

    notifier: Notifier
    key: str
    read: Callable[[], list[str]]
    slot: StreamSlot
    heartbeat: float

    def ended(self) -> bool:
        return not self.slot.live() or self.notifier.closed

    def _timeout(self) -> float:
        return min(self.heartbeat, self.slot.remaining())

    def __iter__(self) -> Iterator[str]:
        """The stream served by a thread, which waits with it."""
        yield RETRY
        while not self.ended():
            seen = self.notifier.version(self.key)
            yield from self.read()
            if self.notifier.wait(self.key, seen, self._timeout()) == seen and not self.ended():
                yield KEEP_ALIVE

    async def serve(self, write: Write, run: Run) -> None:
        """The stream served on an event loop: `write` sends a frame, `run` runs `self.read` off the loop. When
        the client leaves, the server cancels this (gunicorn does) or `write` fails."""
        await write(RETRY)
        while not self.ended():
            seen = self.notifier.version(self.key)
            for frame in await run(self.read):
                await write(frame)
            if await self.notifier.wait_async(self.key, seen, self._timeout()) == seen and not self.ended():
                await write(KEEP_ALIVE)


def event_stream_response(stream: EventStream) -> Response:
    """The text/event-stream response of `stream`. Its body serves the stream on this thread; an
    asynchronous server finds the stream in the request's environ and serves it on its loop instead.
    Either way the stream's place is given back when the response is closed, whether or not it started.
    (No request context is kept for the body: `read` needs none, and an asynchronous server closes the
    body on another thread than the one that ran the view.)"""
    response = served_on_loop(stream, iter(stream), "text/event-stream",
                              {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    response.call_on_close(stream.slot.release)
    return response
