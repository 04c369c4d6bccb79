"""The agent JSON API: tokens, tickets, every action and its authorisation rules, the queue stream."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bot.analytics.csat import Rating, read_rating
from bot.messages import ConversationStatus, utcnow
from switchboard.app import services_of
from tests.conftest import WebChat

PASSWORD = "correct horse battery staple"


class ApiAgent:
    def __init__(self, app: Flask, email: str, role: str = "agent") -> None:
        services_of(app).agents.add(email, email.split("@")[0].title(), role, PASSWORD)
        self.client: FlaskClient = app.test_client()
        response = self.client.post("/api/agent/login", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.get_json()
        self.token = response.get_json()["token"]

    def get(self, path: str) -> Any:
        return self.client.get(f"/api/agent{path}", headers={"Authorization": f"Bearer {self.token}"})

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.client.post(f"/api/agent{path}", json=body if body is not None else {},
                                headers={"Authorization": f"Bearer {self.token}"})


def handed_off(app: Flask, customer: WebChat) -> str:
    customer.say("how much is shipping")
    customer.say("I want to talk to a person")
    (conversation,) = services_of(app).store.list_conversations([ConversationStatus.QUEUED])
    return conversation.conversation_id


@pytest.mark.parametrize(("body", "status"), [
    ({"email": "ann@example.com", "password": "wrong password!!"}, 401),
    ({"email": "nobody@example.com", "password": PASSWORD}, 401),
    ({"email": "ann@example.com"}, 400),
    (["not", "an", "object"], 400),
])
def test_login_refuses_bad_credentials_with_json(app: Flask, body: Any, status: int) -> None:
    services_of(app).agents.add("ann@example.com", "Ann", "agent", PASSWORD)
    response = app.test_client().post("/api/agent/login", json=body)
    assert response.status_code == status
    assert response.get_json()["error"] in ("not_authenticated", "invalid_message")


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc"])
def test_requests_without_a_valid_token_are_401(app: Flask, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = app.test_client().get("/api/agent/tickets", headers=headers)
    assert response.status_code == 401
    assert "POST /api/agent/login" in response.get_json()["message"]


def test_a_disabled_agents_token_stops_working(app: Flask) -> None:
    ann = ApiAgent(app, "ann@example.com")
    assert ann.get("/tickets").status_code == 200
    services_of(app).agents.disable("ann@example.com")
    assert ann.get("/tickets").status_code == 401


def test_the_queue_and_a_ticket_with_profile_summary_transcript_and_kb_tries(app: Flask, customer: WebChat) -> None:
    conversation_id = handed_off(app, customer)
    ann = ApiAgent(app, "ann@example.com")
    (ticket,) = ann.get("/tickets?status=queued").get_json()["tickets"]
    assert ticket["id"] == conversation_id and ticket["reason"] == "customer_request"
    assert ticket["status"] == "queued" and ticket["channel"] == "web"
    detail = ann.get(f"/tickets/{conversation_id}").get_json()
    assert detail["summary"]["wants"] == "how much is shipping"
    assert "4.95" in detail["summary"]["bot_answered"]
    assert detail["summary"]["why"] == "the customer asked for a person"
    assert detail["handoff"]["reason"] == "customer_request" and detail["handoff"]["language"] == "en"
    assert detail["kb_tries"][0]["passages"][0]["title"] == "Shipping costs"
    assert [e["kind"] for e in detail["transcript"]][:3] == ["message_in", "kb_answer", "message_out"]
    assert detail["customer"]["identities"][0] == {**detail["customer"]["identities"][0], "channel": "web",
                                                   "reachable": True}
    assert detail["customer"]["attributes"] == {} and detail["reply_to"]["channel"] == "web"
    assert detail["customer"]["email"] is None and "language" in detail["customer"]
    assert detail["suggestions"][0]["title"] == "Shipping costs" and "4.95" in detail["suggestions"][0]["text"]
    assert detail["canned"][0] == {"title": "Greeting", "text": detail["canned"][0]["text"], "language": None,
                                   "translations": ["bg", "de", "th", "zh", "zh-TW"]}
    assert detail["canned"][0]["text"].startswith("Hi, this is Ann from")
    assert ann.get("/tickets?status=everything").status_code == 400
    assert ann.get("/tickets/nope").status_code == 404


def test_claim_reply_note_and_close_with_a_resolution(app: Flask, customer: WebChat) -> None:
    conversation_id = handed_off(app, customer)
    customer.events()
    ann = ApiAgent(app, "ann@example.com")
    assert ann.post(f"/tickets/{conversation_id}/claim").get_json()["status"] == "assigned"
    assert [t["id"] for t in ann.get("/tickets?status=mine").get_json()["tickets"]] == [conversation_id]
    sent = ann.post(f"/tickets/{conversation_id}/reply", {"text": "Hi, Ann here. Shipping is 4.95."})
    assert sent.status_code == 201
    note = ann.post(f"/tickets/{conversation_id}/note", {"text": "VIP customer, be quick"})
    assert note.status_code == 201 and note.get_json()["kind"] == "note"
    texts = [e["text"] for e in customer.events()]
    assert "Hi, Ann here. Shipping is 4.95." in texts and "VIP customer, be quick" not in texts
    closed = ann.post(f"/tickets/{conversation_id}/close", {"resolution": "answered"})
    assert closed.get_json()["status"] == "closed"
    detail = ann.get(f"/tickets/{conversation_id}").get_json()
    (closed_event,) = [e for e in detail["transcript"] if e["kind"] == "closed"]
    assert closed_event["data"]["resolution"] == "answered"
    assert [t["id"] for t in ann.get("/tickets?status=closed").get_json()["tickets"]] == [conversation_id]


def test_only_the_holder_or_an_admin_acts_and_a_transfer_moves_the_ticket(app: Flask, customer: WebChat) -> None:
    conversation_id = handed_off(app, customer)
    ann, bob = ApiAgent(app, "ann@example.com"), ApiAgent(app, "bob@example.com")
    admin = ApiAgent(app, "cy@example.com", role="admin")
    ann.post(f"/tickets/{conversation_id}/claim")
    second = bob.post(f"/tickets/{conversation_id}/claim")
    assert second.status_code == 409 and second.get_json()["error"] == "conflict"
    for action, body in [("reply", {"text": "sneaky"}), ("return", {}), ("close", {}),
                         ("transfer", {"agent_email": "bob@example.com"})]:
        refused = bob.post(f"/tickets/{conversation_id}/{action}", body)
        assert refused.status_code == 403, action
        assert "another agent holds this conversation" in refused.get_json()["message"]
    assert admin.post(f"/tickets/{conversation_id}/reply", {"text": "Admin here."}).status_code == 201
    moved = ann.post(f"/tickets/{conversation_id}/transfer", {"agent_email": "bob@example.com"})
    assert moved.get_json()["assignee"]["email"] == "bob@example.com"
    assert ann.post(f"/tickets/{conversation_id}/reply", {"text": "still me?"}).status_code == 403
    assert bob.post(f"/tickets/{conversation_id}/reply", {"text": "Bob here."}).status_code == 201
    assert bob.post(f"/tickets/{conversation_id}/transfer", {"agent_email": "x@example.com"}).status_code == 404
    assert bob.post(f"/tickets/{conversation_id}/return").get_json()["status"] == "bot"


def test_bad_action_bodies_get_400(app: Flask, customer: WebChat) -> None:
    conversation_id = handed_off(app, customer)
    ann = ApiAgent(app, "ann@example.com")
    ann.post(f"/tickets/{conversation_id}/claim")
    assert ann.post(f"/tickets/{conversation_id}/reply", {"text": "  "}).status_code == 400
    assert ann.post(f"/tickets/{conversation_id}/reply", {"text": "x" * 5000}).status_code == 400
    assert ann.post(f"/tickets/{conversation_id}/close", {"resolution": 5}).status_code == 400
    assert ann.post(f"/tickets/{conversation_id}/transfer", {}).status_code == 400
    for to in ["web", {"channel": "sms", "external_id": "+447700900123"}, {"channel": "web"},
               {"channel": "rest", "external_id": "not-this-customer"}]:
        refused = ann.post(f"/tickets/{conversation_id}/reply", {"text": "hello", "to": to})
        assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_message", to
    web = ann.get(f"/tickets/{conversation_id}").get_json()["reply_to"]
    assert ann.post(f"/tickets/{conversation_id}/reply", {"text": "hello", "to": web}).status_code == 201


def test_the_stream_tells_of_queue_changes(app: Flask, client: FlaskClient) -> None:
    ann = ApiAgent(app, "ann@example.com")
    response = ann.client.get(f"/api/agent/stream?token={ann.token}", buffered=False)
    assert response.mimetype == "text/event-stream"
    chunks = iter(response.response)
    assert next(chunks).startswith(b"retry:")
    first = next(chunks).decode()
    assert first.startswith("event: queue") and json.loads(first.split("data: ", 1)[1]) == {"queued": 0, "mine": 0}
    WebChat(app, client).say("agent please")
    second = next(chunks).decode()
    while second.startswith(": keep-alive"):
        second = next(chunks).decode()
    assert json.loads(second.split("data: ", 1)[1])["queued"] == 1
    response.close()


def closed_by_an_agent(app: Flask, customer: WebChat, conversation_id: str) -> tuple[ApiAgent, dict[str, Any]]:
    """An agent claims and closes the conversation; returns the agent and the rating question the customer got."""
    ann = ApiAgent(app, "ann@example.com")
    ann.post(f"/tickets/{conversation_id}/claim")
    customer.events()
    ann.post(f"/tickets/{conversation_id}/close", {"resolution": "answered"})
    (question,) = [e for e in customer.events() if e["kind"] == "message_out"]
    return ann, question


def test_closing_asks_the_customer_for_a_rating_and_the_answer_is_stored(app: Flask, customer: WebChat) -> None:
    conversation_id = handed_off(app, customer)
    ann, question = closed_by_an_agent(app, customer, conversation_id)
    assert question["text"].startswith("Thanks for contacting Puffin Outdoor! How happy are you")
    assert [b["payload"] for b in question["buttons"]] == ["1", "2", "3", "4", "5"]
    (thanks,) = customer.say("4")
    assert thanks["text"].startswith("Thank you for your rating!")
    store = services_of(app).store
    assert store.get_conversation(conversation_id).csat == 4
    assert store.list_conversations([ConversationStatus.BOT]) == []  # the rating opened no new conversation
    assert ann.get(f"/tickets/{conversation_id}").get_json()["csat"] == 4
    assert ann.get(f"/tickets/{conversation_id}").get_json()["transcript"][-2]["kind"] == "csat"
    # An old button tapped again: the first rating stands, the customer is told so, and no new
    # conversation opens (nor does "5" reach the gaps report as an unanswered question).
    (again,) = customer.say("5")
    assert again["text"].startswith("We already have your rating for that conversation")
    assert store.get_conversation(conversation_id).csat == 4
    assert store.list_conversations([ConversationStatus.BOT]) == []
    repeat = [e for e in ann.get(f"/tickets/{conversation_id}").get_json()["transcript"] if e["kind"] == "csat"][-1]
    assert repeat["data"]["csat"] == {"score": 5, "comment": None, "repeat": True}


@pytest.mark.parametrize(("text", "rating"), [
    ("4", Rating(4, None)), (" 5/5 ", Rating(5, None)), ("3 of 5", Rating(3, None)), ("2 stars", Rating(2, None)),
    ("5!", Rating(5, None)), ("4 - quick but it took long", Rating(4, "quick but it took long")),
    ("1: never again", Rating(1, "never again")),
    ("2 pairs of boots never arrived", None), ("4.5", None), ("42", None), ("0", None), ("six", None),
])
def test_what_reads_as_a_rating(text: str, rating: Rating | None) -> None:
    assert read_rating(text) == rating


def test_a_rating_with_words_keeps_them_as_feedback(app: Flask, customer: WebChat) -> None:
    conversation_id = handed_off(app, customer)
    closed_by_an_agent(app, customer, conversation_id)
    (thanks,) = customer.say("4 - quick but my parcel is still missing")
    assert thanks["text"].startswith("Thank you for your rating!")
    conversation = services_of(app).store.get_conversation(conversation_id)
    assert (conversation.csat, conversation.csat_comment) == (4, "quick but my parcel is still missing")
    assert services_of(app).store.list_conversations([ConversationStatus.BOT]) == []
    # A number followed by plain words is a new message, not a rating.
    customer.say("2 pairs of boots never arrived")
    (opened,) = services_of(app).store.list_conversations([ConversationStatus.BOT])
    assert opened.conversation_id != conversation_id


def test_closing_keeps_who_handled_the_ticket_and_why(app: Flask, customer: WebChat) -> None:
    conversation_id = handed_off(app, customer)
    ann, _ = closed_by_an_agent(app, customer, conversation_id)
    customer.say("5")
    (ticket,) = ann.get("/tickets?status=closed").get_json()["tickets"]
    assert ticket["assignee"]["name"] == "Ann" and ticket["reason"] == "customer_request" and ticket["csat"] == 5
    conversation = services_of(app).store.get_conversation(conversation_id)
    assert conversation.assignee_id == ticket["assignee"]["id"] and conversation.closed_at is not None
    assert ann.get("/tickets?status=mine").get_json()["tickets"] == []  # no longer theirs to act on


def test_presence_through_the_api(app: Flask) -> None:
    ann = ApiAgent(app, "ann@example.com")
    store = services_of(app).store
    assert ann.post("/presence", {"status": "away"}).get_json() == {"status": "away"}
    assert store.agents_online(utcnow() - timedelta(minutes=1)) == 0
    assert ann.post("/presence", {"status": "busy"}).status_code == 400
    assert ann.post("/presence", {"status": "online"}).status_code == 200
    assert store.agents_online(utcnow() - timedelta(minutes=1)) == 1


def test_a_new_password_ends_the_agents_api_tokens(app: Flask) -> None:
    ann = ApiAgent(app, "ann@example.com")
    assert ann.get("/tickets").status_code == 200
    services_of(app).agents.reset_password("ann@example.com", "a brand new password")
    refused = ann.get("/tickets")
    assert refused.status_code == 401 and refused.get_json()["error"] == "not_authenticated"


def test_signing_out_ends_the_token(app: Flask) -> None:
    ann = ApiAgent(app, "ann@example.com")
    assert ann.post("/logout").get_json() == {"status": "signed_out"}
    assert ann.get("/tickets").status_code == 401
