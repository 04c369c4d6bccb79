"""The queue's Server-Sent Events, shared by the console page and the agent API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from flask import Response, stream_with_context

from bot.notifier import Notifier


def queue_stream(notifier: Notifier, state: Callable[[], dict[str, Any]], heartbeat: float) -> Response:
    """`event: queue` with `state()` now and after every change of conversations; keep-alives between."""

    def events() -> Iterator[str]:
        yield "retry: 3000\n\n"
        while not notifier.closed:
            seen = notifier.version("conversations")
            yield f"event: queue\ndata: {json.dumps(state())}\n\n"
            while notifier.wait("conversations", seen, heartbeat) == seen and not notifier.closed:
                yield ": keep-alive\n\n"

    return Response(stream_with_context(events()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
