"""Open event streams, bounded so that they can never take every server thread.

Each open Server-Sent Events stream holds a server thread while it waits. Without bounds, anyone
could open web-chat sessions and streams until webhooks and `/healthz` found no thread left. So
streams are limited in total (below the thread pool, leaving threads for everything else), per
client address, and per holder (a web session or an agent), where a new stream replaces the
holder's oldest (a reloaded tab) instead of being refused. Every stream ends after `max_seconds`;
EventSource reconnects by itself, so a dead client's thread is freed in bounded time. A refused
stream is told to poll instead (the widget does).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from flask import Response

from bot.errors import TooManyRequests, Unavailable


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


def stream_limit(server_threads: int, configured: int = 0) -> int:
    """How many streams may be open at once: `configured`, or what leaves a quarter of the threads (at
    least 4) for webhooks, pages and `/healthz`."""
    if configured > 0:
        return configured
    return max(1, server_threads - max(4, server_threads // 4))


def event_stream_response(events: Iterable[str], slot: StreamSlot) -> Response:
    """The text/event-stream response; its place is given back when the server closes it, whether or
    not the stream ever started."""
    response = Response(events, mimetype="text/event-stream", headers={"Cache-Control": "no-cache",
                                                                      "X-Accel-Buffering": "no"})
    response.call_on_close(slot.release)
    return response
