"""Open event streams are bounded in total, per client address and per holder, and end after a while."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from bot.errors import TooManyRequests, Unavailable
from connectors.streams import StreamSlots
from tests.conftest import WebChat


def test_streams_beyond_the_total_or_a_clients_share_are_refused_until_one_closes() -> None:
    slots = StreamSlots(total=3, per_client=2, per_holder=3, max_seconds=60)
    first, second = slots.open("10.0.0.1", "a"), slots.open("10.0.0.1", "b")
    with pytest.raises(TooManyRequests, match="at most 2"):
        slots.open("10.0.0.1", "c")
    third = slots.open("10.0.0.2", "d")
    with pytest.raises(Unavailable, match="poll instead"):
        slots.open("10.0.0.3", "e")
    first.release()
    first.release()  # idempotent: the place is given back once
    assert slots.count() == 2
    slots.open("10.0.0.3", "e")
    assert second.live() and third.live()


def test_a_holders_newer_stream_replaces_its_oldest_but_still_counts_until_it_ends() -> None:
    slots = StreamSlots(total=10, per_client=3, per_holder=2, max_seconds=60)
    oldest, middle = slots.open("c", "session"), slots.open("c", "session")
    newest = slots.open("c", "session")
    assert not oldest.live() and middle.live() and newest.live()
    with pytest.raises(TooManyRequests):  # replacing is no way past the client's share
        slots.open("c", "session")
    oldest.release()
    slots.open("c", "session")
    assert not middle.live()


def test_a_stream_runs_its_time() -> None:
    slot = StreamSlots(total=1, per_client=1, per_holder=1, max_seconds=0).open("c", "h")
    assert not slot.live() and slot.remaining() == 0


def test_the_web_stream_is_refused_with_429_past_the_addresss_share_and_ends_after_its_time(
        make_app: Callable[..., Flask]) -> None:
    app = make_app(streams_per_client=1, stream_max_seconds=1.0, stream_heartbeat=0.2)
    customer, other = WebChat(app, app.test_client()), WebChat(app, app.test_client())
    first = customer.client.get("/api/web/stream", query_string={"token": customer.token}, buffered=False)
    assert first.status_code == 200
    refused = other.client.get("/api/web/stream", query_string={"token": other.token})
    assert refused.status_code == 429 and "poll GET /api/web/events" in refused.get_json()["message"]
    body = b"".join(first.response)  # ends by itself after stream_max_seconds
    assert body.startswith(b"retry: 3000")
    first.close()
    again = other.client.get("/api/web/stream", query_string={"token": other.token}, buffered=False)
    assert again.status_code == 200
    again.close()
