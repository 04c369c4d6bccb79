"""Server-Sent Events of conversation changes, shared by the console pages and the agent API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from flask import Response, stream_with_context

from bot.notifier import Notifier


def change_stream(notifier: Notifier, state: Callable[[], dict[str, Any]], heartbeat: float,
                 event: str = "queue") -> Response:
    """`event: <event>` with `state()` now and after every change of conversations; keep-alives between."""

    def events() -> Iterator[str]:
        yield "retry: 3000\n\n"
        while not notifier.closed:
            seen = notifier.version("conversations")
            yield f"event: {event}\ndata: {json.dumps(state())}\n\n"
            while notifier.wait("conversations", seen, heartbeat) == seen and not notifier.closed:
                yield ": keep-alive\n\n"

    return Response(stream_with_context(events()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
