"""Rasa's REST channel protocol, answered synchronously."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient

from bot.messages import ConversationStatus
from switchboard.app import services_of


def test_rest_webhook_answers_like_rasa(client: FlaskClient) -> None:
    response = client.post("/webhooks/rest/webhook", json={"sender": "tester", "message": "how much is shipping"})
    assert response.status_code == 200
    body = response.get_json()
    assert len(body) == 1
    assert body[0]["recipient_id"] == "tester"
    assert "Standard delivery costs EUR 4.95" in body[0]["text"]


def test_rest_health_answers_ok(client: FlaskClient) -> None:
    assert client.get("/webhooks/rest/").get_json() == {"status": "ok"}


def test_rest_sender_keeps_one_conversation(client: FlaskClient) -> None:
    client.post("/webhooks/rest/webhook", json={"sender": "s1", "message": "purple elephants on the moon"})
    second = client.post("/webhooks/rest/webhook", json={"sender": "s1", "message": "asdf qwer zxcv"}).get_json()
    assert "Your reference is SB-" in second[0]["text"]


def test_rest_repeated_message_id_is_answered_once(client: FlaskClient) -> None:
    payload = {"sender": "s2", "message": "hello", "message_id": "abc"}
    first = client.post("/webhooks/rest/webhook", json=payload).get_json()
    again = client.post("/webhooks/rest/webhook", json=payload).get_json()
    assert len(first) == 1 and again == []


def test_rest_bad_bodies_are_400(client: FlaskClient) -> None:
    assert client.post("/webhooks/rest/webhook", data="nope", content_type="application/json").status_code == 400
    assert client.post("/webhooks/rest/webhook", json={"sender": "x"}).status_code == 400
    assert client.post("/webhooks/rest/webhook", json={"sender": "", "message": "hi"}).status_code == 400
    assert client.post("/webhooks/rest/webhook", json={"sender": 7, "message": "hi"}).status_code == 400


def test_a_message_without_a_sender_is_the_default_senders_as_in_rasa(client: FlaskClient) -> None:
    answered = client.post("/webhooks/rest/webhook", json={"message": "how much is shipping"})
    assert answered.status_code == 200
    assert answered.get_json() and all(reply["recipient_id"] == "default" for reply in answered.get_json())


def test_rasas_version_status_and_parse(client: FlaskClient) -> None:
    version = client.get("/version").get_json()
    assert version["version"] and version["version"] == version["minimum_compatible_version"]
    status = client.get("/status").get_json()
    assert status["num_active_training_jobs"] == 0 and status["model_id"]
    parsed = client.post("/model/parse", json={"text": "where is my order PO-2610427"}).get_json()
    assert parsed["text"] == "where is my order PO-2610427"
    assert parsed["intent"]["name"] == "order_status" and parsed["intent_ranking"][0]["name"] == "order_status"
    assert {"entity": "order_number", "value": "PO-2610427"}.items() <= parsed["entities"][0].items()
    german = client.post("/model/parse", json={"text": "wo ist meine bestellung"}).get_json()
    assert german["intent"]["name"] == "order_status" and german["language"] == "de"
    unknown = client.post("/model/parse", json={"text": "purple elephants dance on the moon"}).get_json()
    assert unknown["intent"]["name"] == "nlu_fallback"
    assert client.post("/model/parse", json={"txt": "hello"}).status_code == 400


def test_rasas_http_api_takes_the_rest_token(make_app: Callable[..., Flask]) -> None:
    client = make_app(rest_token="s3cret-token").test_client()
    assert client.get("/status").status_code == 401
    assert client.post("/model/parse", json={"text": "hi"}, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/status?token=s3cret-token").status_code == 200


def test_a_rest_senders_tracker_is_read_with_the_token_only(make_app: Callable[..., Flask],
                                                            client: FlaskClient) -> None:
    assert client.get("/conversations/anyone/tracker").status_code == 403  # no token set: never open
    trusted = make_app(rest_token="s3cret-token").test_client()
    auth = {"Authorization": "Bearer s3cret-token"}
    trusted.post("/webhooks/rest/webhook", json={"sender": "crm-9", "message": "where is my order"}, headers=auth)
    trusted.post("/webhooks/rest/webhook", json={"sender": "crm-9", "message": "PO-2610427"}, headers=auth)
    tracker = trusted.get("/conversations/crm-9/tracker", headers=auth).get_json()
    assert tracker["sender_id"] == "crm-9" and tracker["slots"]["order_number"] == "PO-2610427"
    assert tracker["latest_message"]["text"] == "PO-2610427"
    assert [e["event"] for e in tracker["events"]][:2] == ["user", "bot"]
    assert tracker["events"][0]["text"] == "where is my order"
    assert trusted.get("/conversations/crm-9/tracker").status_code == 401
    assert trusted.get("/conversations/nobody/tracker", headers=auth).status_code == 404


def test_trigger_intent_runs_the_intent_as_a_turn_of_the_sender(make_app: Callable[..., Flask],
                                                                  client: FlaskClient) -> None:
    body = {"name": "order_status", "entities": {"order_number": "PO-2610427"}}
    assert client.post("/conversations/crm-9/trigger_intent", json=body).status_code == 403  # no token: never open
    trusted = make_app(rest_token="s3cret-token").test_client()
    auth = {"Authorization": "Bearer s3cret-token"}
    response = trusted.post("/conversations/crm-9/trigger_intent", json=body, headers=auth)
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    assert answer["messages"] and {m["recipient_id"] for m in answer["messages"]} == {"crm-9"}
    assert any("PO-2610427" in m["text"] for m in answer["messages"])  # the order's status, as if they had asked
    tracker = answer["tracker"]
    assert tracker["sender_id"] == "crm-9" and tracker["slots"]["order_number"] == "PO-2610427"
    assert tracker["latest_message"]["intent"]["name"] == "order_status"
    # Bad requests say what is wrong.
    assert trusted.post("/conversations/crm-9/trigger_intent", json=body).status_code == 401
    unknown = trusted.post("/conversations/crm-9/trigger_intent", json={"name": "book_flight"}, headers=auth)
    assert unknown.status_code == 404 and "'book_flight' is not in the domain" in unknown.get_json()["message"]
    garbled = trusted.post("/conversations/crm-9/trigger_intent", json={"name": "greet", "entities": [1]},
                           headers=auth)
    assert garbled.status_code == 400


def agent_answers(app: Flask, text: str) -> None:
    """An agent claims the queued conversation and replies."""
    directory = services_of(app).agents
    directory.add("ann@example.com", "Ann", "agent", "correct horse battery staple")
    ann = directory.authenticate("ann@example.com", "correct horse battery staple")
    assert ann is not None
    store = services_of(app).store
    (conversation,) = store.list_conversations([ConversationStatus.QUEUED])
    store.claim(conversation.conversation_id, ann.agent_id)
    store.agent_reply(conversation.conversation_id, ann.agent_id, text)


def test_an_open_rest_channel_gives_a_sender_only_the_answers_to_its_own_message(app: Flask,
                                                                                client: FlaskClient) -> None:
    client.post("/webhooks/rest/webhook", json={"sender": "alice", "message": "I want to talk to a person"})
    agent_answers(app, "Your refund of 120 EUR is on its way")
    # Whoever posts as "alice" next is not shown what the agent wrote.
    answered = client.post("/webhooks/rest/webhook", json={"sender": "alice", "message": "hello?"}).get_json()
    assert all("refund" not in reply["text"] for reply in answered)
    store = services_of(app).store
    assert [e.text for e in store.outbox_for("rest", "alice", "pending")] == ["Your refund of 120 EUR is on its way"]


def test_a_rest_token_is_required_once_set_and_then_trusts_the_caller_with_agents_replies(
        make_app: Callable[..., Flask]) -> None:
    app = make_app(rest_token="s3cret-token")
    client = app.test_client()
    payload = {"sender": "crm-7", "message": "how much is shipping"}
    assert client.post("/webhooks/rest/webhook", json=payload).status_code == 401
    wrong = client.post("/webhooks/rest/webhook?token=guess", json=payload)
    assert wrong.status_code == 401 and "token" in wrong.get_json()["message"]
    assert services_of(app).store.list_conversations(list(ConversationStatus)) == []  # nothing stored
    by_query = client.post("/webhooks/rest/webhook?token=s3cret-token", json=payload)
    assert by_query.status_code == 200 and "4.95" in by_query.get_json()[0]["text"]
    client.post("/webhooks/rest/webhook", json={"sender": "crm-7", "message": "I want to talk to a person"},
                headers={"Authorization": "Bearer s3cret-token"})
    agent_answers(app, "Hello from Ann")
    answered = client.post("/webhooks/rest/webhook", json={"sender": "crm-7", "message": "thanks"},
                           headers={"Authorization": "Bearer s3cret-token"}).get_json()
    assert "Hello from Ann" in [reply["text"] for reply in answered]
