"""Sign-in attempts are rate-limited per account and per client address, console and API alike."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from switchboard.app import services_of

PASSWORD = "correct horse battery staple"


def test_api_logins_at_one_account_are_limited_and_others_still_work(make_app: Callable[..., Flask]) -> None:
    app = make_app(login_limit_per_account="3 per minute")
    services_of(app).agents.add("ann@example.com", "Ann", "agent", PASSWORD)
    services_of(app).agents.add("bob@example.com", "Bob", "agent", PASSWORD)
    client = app.test_client()
    statuses = [client.post("/api/agent/login", json={"email": "ann@example.com", "password": "guess number 1"})
                .status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    limited = client.post("/api/agent/login", json={"email": "ANN@example.com", "password": PASSWORD})
    assert limited.status_code == 429 and limited.get_json()["error"] == "too_many_requests"
    assert client.post("/api/agent/login", json={"email": "bob@example.com", "password": PASSWORD}).status_code == 200


def test_console_logins_from_one_address_are_limited(make_app: Callable[..., Flask]) -> None:
    app = make_app(login_limit_per_address="4 per minute")
    app.config["WTF_CSRF_ENABLED"] = False
    client = app.test_client()
    statuses = [client.post("/console/login", data={"email": f"user{i}@example.com", "password": "nope nope nope"})
                .status_code for i in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    assert client.get("/console/login").status_code == 200  # looking at the page is never limited
    other = app.test_client()
    assert other.post("/console/login", data={"email": "x@example.com", "password": "nope nope nope"},
                      environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 200
