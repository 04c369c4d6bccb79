"""Server-Sent Events of conversation changes, shared by the console pages and the agent API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from flask import Response, request, stream_with_context

from bot.notifier import Notifier
from connectors.streams import StreamSlots, event_stream_response


def change_stream(notifier: Notifier, state: Callable[[], dict[str, Any]], streams: StreamSlots, holder: str,
                  event: str = "queue") -> Response:
    """`event: <event>` with `state()` now and after every change of conversations; keep-alives between.

    The stream takes one of `streams`' places for `holder` (429/503 when there is none) and ends when
    it is replaced by the holder's newer stream or has run its time; EventSource then reconnects.
    """
    slot = streams.open(request.remote_addr or "", holder)

    def events() -> Iterator[str]:
        yield "retry: 3000\n\n"
        while slot.live() and not notifier.closed:
            seen = notifier.version("conversations")
            yield f"event: {event}\ndata: {json.dumps(state())}\n\n"
            while (notifier.wait("conversations", seen, min(streams.heartbeat, slot.remaining())) == seen
                   and slot.live() and not notifier.closed):
                yield ": keep-alive\n\n"

    return event_stream_response(stream_with_context(events()), slot)
