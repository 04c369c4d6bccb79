"""Rasa's REST channel protocol, answered synchronously."""

from __future__ import annotations

from flask.testing import FlaskClient


def test_rest_webhook_answers_like_rasa(client: FlaskClient) -> None:
    response = client.post("/webhooks/rest/webhook", json={"sender": "tester", "message": "how much is shipping"})
    assert response.status_code == 200
    body = response.get_json()
    assert len(body) == 1
    assert body[0]["recipient_id"] == "tester"
    assert "Standard delivery costs 4.95" in body[0]["text"]


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
    missing_sender = client.post("/webhooks/rest/webhook", json={"message": "hi"})
    assert missing_sender.status_code == 400
    assert "sender" in missing_sender.get_json()["message"]
