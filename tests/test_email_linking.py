"""A web chat customer proves their email with a one-time code and is linked to the customer
who has that address; codes go out through the log (development) or SMTP."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bot.customers.email import SmtpEmailSender, email_sender
from bot.errors import SwitchboardError, Unavailable
from bot.messages import InboundMessage, Profile
from switchboard.app import services_of
from tests.conftest import (
    WebChat,
    both_databases,  # noqa: F401 (runs each test on both databases)
)
from tests.servers import free_port
from tests.smtp_stub import smtp_stub


def emailed_code(caplog: pytest.LogCaptureFixture) -> str:
    codes = re.findall(r"Your code is (\d{6})", caplog.text)
    assert codes, "no code in the log"
    return codes[-1]


def test_a_verified_email_links_the_chat_to_the_customer_with_that_address(
        app: Flask, customer: WebChat, caplog: pytest.LogCaptureFixture) -> None:
    store = services_of(app).store
    # The shop's CRM knows Ana; she wrote by SMS from the number it has.
    known, _ = store.import_customer({"email": "ana@example.com", "phone": "+4915100000001", "name": "Ana",
                                      "plan": "gold"})
    services_of(app).inbox.accept(InboundMessage("sms", "+4915100000001", "sms-1", "my order is late",
                                                 profile=Profile("Ana")))
    customer.say("hi, I wrote by SMS before")

    caplog.set_level(logging.WARNING, logger="bot.customers.email")
    sent = customer.client.post("/api/web/email", headers=customer.auth, json={"email": "Ana@Example.com "})
    assert sent.status_code == 202 and sent.get_json()["expires_in"] == 600
    code = emailed_code(caplog)
    assert "ana@example.com" in caplog.text.lower()

    wrong = customer.client.post("/api/web/email/verify", headers=customer.auth, json={"code": "000000"})
    assert wrong.status_code == 400 and "not right" in wrong.get_json()["message"]
    done = customer.client.post("/api/web/email/verify", headers=customer.auth, json={"code": code})
    assert done.status_code == 200 and done.get_json() == {"result": "linked"}
    linked = store.get_customer(store.current_customer(known))
    assert {channel for channel, _ in linked.identities} == {"web", "sms"}
    assert linked.email == "ana@example.com" and linked.attributes == {"plan": "gold"}
    again = customer.client.post("/api/web/email/verify", headers=customer.auth, json={"code": code})
    assert again.status_code == 409 and "used already" in again.get_json()["message"]


def test_an_unknown_address_is_verified_and_kept(app: Flask, client: FlaskClient,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.customers.email")
    chat = WebChat(app, client)  # no message yet: verifying comes first
    assert chat.client.post("/api/web/email", headers=chat.auth, json={"email": "new@example.com"}).status_code == 202
    result = chat.client.post("/api/web/email/verify", headers=chat.auth, json={"code": emailed_code(caplog)})
    assert result.get_json() == {"result": "verified"}
    (found,) = services_of(app).store.find_customers("new@example.com")
    assert found.email == "new@example.com" and found.identities[0][0] == "web"


def test_bad_requests_and_the_limits(app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    chat = WebChat(app, client)
    assert client.post("/api/web/email", json={"email": "a@example.com"}).status_code == 401
    for body in ({"email": "not an address"}, {"email": ""}, {}, {"email": "x" * 300 + "@example.com"}):
        assert chat.client.post("/api/web/email", headers=chat.auth, json=body).status_code == 400, body
    for _ in range(3):
        assert chat.client.post("/api/web/email", headers=chat.auth, json={"email": "a@example.com"}).status_code == 202
    limited = chat.client.post("/api/web/email", headers=chat.auth, json={"email": "a@example.com"})
    assert limited.status_code == 429 and limited.get_json()["error"] == "rate_limited"
    for _ in range(5):
        chat.client.post("/api/web/email/verify", headers=chat.auth, json={"code": "123123"})
    guessed = chat.client.post("/api/web/email/verify", headers=chat.auth, json={"code": emailed_code(caplog)})
    assert guessed.status_code == 429  # after five wrong codes even the right one waits


def test_codes_go_out_by_smtp() -> None:
    with smtp_stub() as server:
        sender = email_sender(f"smtp://chat%40shop.example:s3cret@127.0.0.1:{server.server_address[1]}",
                              "Shop <help@shop.example>")
        sender.send("ana@example.com", "Your chat verification code", "Your code is 123456.")
        (message,) = server.messages
    assert message["to"] == ["<ana@example.com>"] and message["from"] == "<help@shop.example>"
    assert "Subject: Your chat verification code" in str(message["data"])
    assert "Your code is 123456." in str(message["data"]) and message["auth"]


def test_smtp_trouble_is_a_clear_error() -> None:
    with pytest.raises(SwitchboardError, match="use log, smtp://"):
        email_sender("ftp://example.com", "x@example.com")
    with pytest.raises(Unavailable, match="could not be sent"):
        SmtpEmailSender(f"smtp://127.0.0.1:{free_port()}", "x@example.com", timeout=2).send("a@example.com", "s", "b")


def test_free_sessions_cannot_flood_one_mailbox_or_send_without_end_from_one_network(app: Flask) -> None:
    def request_code(address: str, client_address: str) -> int:
        chat = WebChat(app, app.test_client())  # a new session each time, as a flooder would
        return chat.client.post("/api/web/email", headers=chat.auth, json={"email": address},
                                environ_base={"REMOTE_ADDR": client_address}).status_code

    # Eight sessions from eight networks, one mailbox: three codes, then the address's limit.
    answers = [request_code("victim@example.com", f"203.0.113.{n}") for n in range(8)]
    assert answers == [202] * 3 + [429] * 5
    # One network, many addresses: ten codes an hour.
    answers = [request_code(f"person{n}@example.com", "198.51.100.7") for n in range(12)]
    assert answers == [202] * 10 + [429] * 2
    chat = WebChat(app, app.test_client())
    refused = chat.client.post("/api/web/email", headers=chat.auth, json={"email": "other@example.com"},
                               environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert refused.status_code == 429 and "your network" in refused.get_json()["message"]


def test_the_log_sender_is_refused_for_a_public_https_service_and_off_answers_403(
        make_app: Callable[..., Flask]) -> None:
    with pytest.raises(SwitchboardError, match="SWITCHBOARD_EMAIL_SENDER=log writes verification codes"):
        make_app(public_url="https://support.example.com")
    app = make_app(public_url="https://support.example.com", email_sender="off")
    chat = WebChat(app, app.test_client())
    refused = chat.client.post("/api/web/email", headers=chat.auth, json={"email": "ana@example.com"})
    assert refused.status_code == 403 and "email verification is off" in refused.get_json()["message"]
