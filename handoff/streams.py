"""Server-Sent Events of conversation changes, shared by the console pages and the agent API."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Response, request

from bot.notifier import Notifier
from connectors.streams import EventStream, StreamSlots, event_stream_response


def change_stream(notifier: Notifier, state: Callable[[], dict[str, Any]], streams: StreamSlots, holder: str,
                  event: str = "queue") -> Response:
    """`event: <event>` with `state()` now and whenever it differs after a change of conversations (read
    again at every heartbeat too, in case a wake-up was lost); keep-alives between.

    The stream takes one of `streams`' places for `holder` (429/503 when there is none) and ends when
    it is replaced by the holder's newer stream or has run its time; EventSource then reconnects.
    """
    slot = streams.open(request.remote_addr or "", holder)
    sent = ""

    def read() -> list[str]:
        nonlocal sent
        frame = f"event: {event}\ndata: {json.dumps(state())}\n\n"
        if frame == sent:
            return []
        sent = frame
        return [frame]

    return event_stream_response(EventStream(notifier, "conversations", read, slot, streams.heartbeat))
