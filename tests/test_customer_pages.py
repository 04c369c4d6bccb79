"""Customers in the console: agents merge and unmerge; admins export and erase."""

from __future__ import annotations

import json
import re

from flask import Flask
from flask.testing import FlaskClient

from bot.messages import ConversationStatus, InboundMessage, Profile
from switchboard.app import services_of
from tests.conftest import (
    WebChat,
    both_databases,  # noqa: F401 (runs each test on both databases)
)
from tests.test_accounts_pages import admin_of
from tests.test_console import AgentBrowser, handed_off


def other_customer(app: Flask) -> str:
    accepted = services_of(app).store.accept(InboundMessage("telegram", "tg-77", "m-1", "my tent pole snapped",
                                                            profile=Profile("Rosalind")))
    return accepted.customer_id


def test_an_agent_merges_another_customer_into_the_ticket_and_undoes_it(app: Flask, customer: WebChat) -> None:
    conversation = handed_off(app, customer)
    other = other_customer(app)
    ann = AgentBrowser(app, "ann@example.com", "Ann")
    ticket = f"/console/conversations/{conversation.conversation_id}"
    search = f"/console/customers/{conversation.customer_id}/merge?conversation={conversation.conversation_id}"
    page = ann.client.get(search + "&q=rosalind").get_data(as_text=True)
    assert "<bdi>Rosalind</bdi>" in page and 'name="other" value="' + other in page
    assert "No other customer matches" in ann.client.get(search + "&q=nobody").get_data(as_text=True)

    response = ann.client.post(f"/console/customers/{conversation.customer_id}/merge", data={
        "csrf_token": ann.csrf(ticket), "other": other, "conversation": conversation.conversation_id},
        follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Merged:" in page and "telegram: <bdi>tg-77</bdi>" in page
    assert "my tent pole snapped" in page  # the other conversation joined this one
    assert "merged with another customer's channels and conversations by Ann" in page
    store = services_of(app).store
    assert len(store.list_conversations([ConversationStatus.BOT, ConversationStatus.QUEUED])) == 1

    merge_id = store.merges_of(conversation.customer_id)[0]["merge_id"]
    page = ann.client.post(f"/console/customers/merges/{merge_id}/undo", data={
        "csrf_token": ann.csrf(ticket), "conversation": conversation.conversation_id},
        follow_redirects=True).get_data(as_text=True)
    assert "The merge is undone" in page and "tg-77" not in page.split("Transcript")[0]
    assert "a merge was undone by Ann" in page
    assert store.get_customer(other).identities == (("telegram", "tg-77"),)
    again = ann.client.post(f"/console/customers/merges/{merge_id}/undo", data={"csrf_token": ann.csrf(ticket)},
                            follow_redirects=True)
    assert "undone already" in again.get_data(as_text=True)


def test_export_and_erase_are_for_admins_and_erase_needs_confirming(app: Flask, customer: WebChat,
                                                                    client: FlaskClient) -> None:
    customer.say("my card 4111 1111 1111 1111 and my name is Perpetua Oyelaran")
    conversation = handed_off(app, customer)
    path = f"/console/customers/{conversation.customer_id}"
    ann = AgentBrowser(app, "ann@example.com")
    assert ann.client.get(f"{path}/export").status_code == 403
    assert ann.client.post(f"{path}/erase", data={"csrf_token": ann.csrf("/console/"),
                                                  "confirm": "erase"}).status_code == 403
    assert "Privacy (admin)" not in ann.client.get(
        f"/console/conversations/{conversation.conversation_id}").get_data(as_text=True)

    admin = admin_of(app)
    exported = admin.client.get(f"{path}/export")
    assert exported.headers["Content-Disposition"].startswith("attachment;")
    assert "Perpetua Oyelaran" in json.dumps(exported.get_json())
    assert "4111 1111" not in exported.get_data(as_text=True)  # masked on arrival, never stored

    ticket = f"/console/conversations/{conversation.conversation_id}"
    page = admin.client.post(f"{path}/erase", data={"csrf_token": admin.csrf(ticket), "confirm": "yes",
                                                    "conversation": conversation.conversation_id},
                             follow_redirects=True).get_data(as_text=True)
    assert "Nothing erased: type erase to confirm." in page and "Perpetua" in page
    page = admin.client.post(f"{path}/erase", data={"csrf_token": admin.csrf(ticket), "confirm": "Erase"},
                             follow_redirects=True).get_data(as_text=True)
    assert re.search(r"Erased 1 customer record: no message, name or identity is kept", page)
    tombstone = admin.client.get(ticket).get_data(as_text=True)
    assert "Perpetua" not in tombstone and "Removed: the customer was erased" in tombstone and ">None<" not in tombstone
    assert not services_of(app).store.find_customers("Perpetua")
    assert admin.client.get("/console/customers/missing/export").status_code == 404


def test_the_ticket_shows_the_profile(app: Flask, customer: WebChat) -> None:
    conversation = handed_off(app, customer)
    store = services_of(app).store
    with store._write() as db:
        db.execute("UPDATE customers SET email = 'kim@example.com', language = 'de' WHERE customer_id = ?",
                   (conversation.customer_id,))
    page = AgentBrowser(app, "ann@example.com").client.get(
        f"/console/conversations/{conversation.conversation_id}").get_data(as_text=True)
    assert "<dt>Email</dt><dd><bdi>kim@example.com</bdi></dd>" in page and "<dt>Language</dt><dd>de</dd>" in page
