"""Sign-in attempts are rate-limited per account and per client address, console and API alike."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from switchboard.app import services_of

PASSWORD = "correct horse battery staple"


def test_failed_api_logins_at_one_account_are_limited_without_locking_its_owner_out(
        make_app: Callable[..., Flask]) -> None:
    app = make_app(login_limit_per_account="3 per minute")
    services_of(app).agents.add("ann@example.com", "Ann", "agent", PASSWORD)
    services_of(app).agents.add("bob@example.com", "Bob", "agent", PASSWORD)
    guesser = app.test_client()
    statuses = [guesser.post("/api/agent/login", json={"email": "ann@example.com", "password": "guess number 1"},
                             environ_base={"REMOTE_ADDR": "203.0.113.66"}).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    limited = guesser.post("/api/agent/login", json={"email": "ANN@example.com", "password": PASSWORD},
                           environ_base={"REMOTE_ADDR": "203.0.113.66"})
    assert limited.status_code == 429 and limited.get_json()["error"] == "too_many_requests"
    assert guesser.post("/api/agent/login", json={"email": "bob@example.com", "password": PASSWORD},
                        environ_base={"REMOTE_ADDR": "203.0.113.66"}).status_code == 200
    # Ann, at her own desk, signs in as often as she likes: successes do not count.
    ann = app.test_client()
    for _ in range(5):
        assert ann.post("/api/agent/login", json={"email": "ann@example.com", "password": PASSWORD}).status_code == 200


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


def test_failed_console_logins_lock_out_the_guesser_not_the_owner(make_app: Callable[..., Flask]) -> None:
    app = make_app(login_limit_per_account="3 per minute")
    app.config["WTF_CSRF_ENABLED"] = False
    services_of(app).agents.add("ann@example.com", "Ann", "agent", PASSWORD)
    guesser, owner = app.test_client(), app.test_client()
    wrong = {"email": "ann@example.com", "password": "not her password"}
    statuses = [guesser.post("/console/login", data=wrong, environ_base={"REMOTE_ADDR": "203.0.113.66"}).status_code
                for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    signed_in = owner.post("/console/login", data={"email": "ann@example.com", "password": PASSWORD})
    assert signed_in.status_code == 302
