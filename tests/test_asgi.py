"""The ASGI side of the server: Flask views run on threads, waiting responses are finished on the loop.

The whole server is tested over real HTTP in test_server.py; these call the ASGI application directly,
to reach what a real client cannot time: a failure after the view has returned, a client that leaves."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from flask import Flask, jsonify, request

from bot.errors import Unavailable
from bot.notifier import Notifier
from connectors.on_loop import Deferred, Run, on_event_loop, served_on_loop
from connectors.streams import EventStream, StreamSlots, event_stream_response
from switchboard.asgi import FlaskOnAsyncio


def app() -> tuple[Flask, Notifier, StreamSlots]:
    flask = Flask(__name__)
    flask.config["MAX_CONTENT_LENGTH"] = 100
    notifier = Notifier()
    slots = StreamSlots(total=5, per_client=5, per_holder=5, max_seconds=60, heartbeat=0.05)

    @flask.post("/echo")
    def echo() -> Any:
        return jsonify({"body": request.get_json(), "args": request.args, "client": request.remote_addr,
                        "header": request.headers.get("X-Thing"), "loop": on_event_loop()})

    @flask.get("/late-failure")
    def late_failure() -> Any:
        async def wait(run: Run) -> None:
            await asyncio.sleep(0)

        def body() -> bytes:
            raise Unavailable("the store went away after the view returned")

        return served_on_loop(Deferred(wait, body), (), "application/json")

    @flask.get("/stream")
    def stream() -> Any:
        count = 0

        def read() -> list[str]:
            nonlocal count
            count += 1
            return [f"data: read {count}\n\n"]

        return event_stream_response(EventStream(notifier, "k", read, slots.open("c", "h"), slots.heartbeat))

    return flask, notifier, slots


def call(asgi: FlaskOnAsyncio, method: str, path: str, body: bytes = b"", query: bytes = b"",
         during: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None,
         writes_fail: bool = False) -> list[dict[str, Any]]:
    """One request through the ASGI application; what it sent. `during` runs beside it; then the client
    leaves. Then, as gunicorn does, what is sent is dropped and the call is cancelled shortly after; or, with
    `writes_fail`, as other servers do, sending raises."""
    sent: list[dict[str, Any]] = []
    disconnect = asyncio.Event()
    left = False

    async def scenario() -> None:
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            await disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if not left:
                sent.append(message)
            elif writes_fail:
                raise ConnectionResetError("the client has gone")

        scope = {"type": "http", "method": method, "path": path, "query_string": query, "http_version": "1.1",
                 "headers": [(b"x-thing", b"yes"), (b"content-type", b"application/json")],
                 "client": ("10.1.2.3", 5000), "server": ("127.0.0.1", 8000), "scheme": "http"}
        served = asyncio.ensure_future(asgi(scope, receive, send))
        if during is not None:
            await during(sent)
            nonlocal left
            left = True
            disconnect.set()
            if not writes_fail:
                await asyncio.sleep(0.2)  # gunicorn's asgi_disconnect_grace_period, shortened
                served.cancel()
        try:
            await asyncio.wait_for(served, 10)
        except asyncio.CancelledError:
            assert not writes_fail and left

    asyncio.run(scenario())
    return sent


def test_a_view_gets_its_request_and_its_response_goes_out_whole() -> None:
    flask, _, _ = app()
    sent = call(FlaskOnAsyncio(flask, threads=2), "POST", "/echo", b'{"a": 1}', b"x=%C3%A9")
    assert sent[0]["status"] == 200
    assert json.loads(sent[1]["body"]) == {"body": {"a": 1}, "args": {"x": "é"}, "client": "10.1.2.3",
                                           "header": "yes", "loop": True}


def test_a_body_longer_than_the_app_takes_is_not_read_further_and_is_413() -> None:
    flask, _, _ = app()
    sent = call(FlaskOnAsyncio(flask, threads=2), "POST", "/echo", b'{"a": "' + b"x" * 500 + b'"}')
    assert sent[0]["status"] == 413


def test_a_failure_after_the_view_returned_is_still_answered_with_its_status() -> None:
    flask, _, _ = app()
    sent = call(FlaskOnAsyncio(flask, threads=2), "GET", "/late-failure")
    assert sent[0]["status"] == 503 and (b"retry-after", b"5") in sent[0]["headers"]
    assert json.loads(sent[1]["body"]) == {"error": "unavailable",
                                           "message": "the store went away after the view returned"}


@pytest.mark.parametrize("writes_fail", [False, True], ids=["cancelled", "write-fails"])
def test_a_stream_sends_on_every_change_and_stops_once_the_client_left(writes_fail: bool) -> None:
    # gunicorn cancels a call whose client left; another server may raise at the next write instead.
    flask, notifier, slots = app()

    async def change_then_leave(sent: list[dict[str, Any]]) -> None:
        async def until(text: bytes) -> None:
            while not any(text in m.get("body", b"") for m in sent):
                await asyncio.sleep(0.01)

        await until(b"read 1")
        notifier.publish("k")
        await until(b"read 2")

    sent = call(FlaskOnAsyncio(flask, threads=2), "GET", "/stream", during=change_then_leave, writes_fail=writes_fail)
    assert sent[0]["status"] == 200 and (b"content-type", b"text/event-stream; charset=utf-8") in sent[0]["headers"]
    bodies = [m["body"] for m in sent[1:]]
    assert bodies[:2] == [b"retry: 3000\n\n", b"data: read 1\n\n"]  # then keep-alives, until the change
    assert b"data: read 2\n\n" in bodies
    assert not notifier.waited_keys()  # the stream stopped waiting once its client had left
    assert slots.count() == 0  # and gave its place back
