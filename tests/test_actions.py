"""Custom actions over the Rasa action server protocol: in this process, and on a real rasa-sdk
action server on a loopback port; the example order actions; timeouts and errors."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bot.messages import ConversationStatus
from tests.conftest import ROOT
from tests.dialogue import RecordingChannel
from tests.servers import free_port, wait_until_up


@pytest.fixture(scope="module")
def action_server() -> Iterator[str]:
    """A real rasa-sdk action server running the example actions, as a team would deploy it."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "rasa_sdk", "--actions", "actions.shop", "--port", str(port)],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    wait_until_up(f"{base}/health", process, 60, lambda: "the action server did not start: "
                  + (process.stderr.read().decode()[-2000:] if process.stderr else ""))
    yield f"{base}/webhook"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(params=["in-process", "action-server"])
def shop(request: pytest.FixtureRequest, make_chat: Callable[..., RecordingChannel]) -> RecordingChannel:
    """The sample shop with its actions run either way; both must behave the same."""
    if request.param == "in-process":
        return make_chat()
    return make_chat(action_endpoint=request.getfixturevalue("action_server"))


def test_order_status_asks_for_the_number_validates_it_and_answers(shop: RecordingChannel) -> None:
    assert "What's your order number?" in shop.say("where is my order")[0]
    assert shop.conversation().dialogue.active_loop == "action_order_status"
    assert "doesn't look like an order number" in shop.say("it's 12345")[0]
    assert "can't find order PO-9999999" in shop.say("PO-9999999")[0]
    reply = shop.say("sorry, it is po 2610427")[0]
    assert reply == ("Order PO-2610427 is on its way with DHL (tracking number 00340434161094042611) and should "
                     "arrive by 2026-11-26.")
    dialogue = shop.conversation().dialogue
    assert dialogue.active_loop is None
    assert dialogue.slots["order_number"] == "PO-2610427" and dialogue.slots["order_attempts"] is None
    # The action remembered the order on the customer's profile; the next call sees it.
    customer = shop.store.get_customer(shop.conversation().customer_id)
    assert customer.attributes == {"last_order": "PO-2610427"}


def test_an_order_number_in_the_question_is_used_at_once(shop: RecordingChannel) -> None:
    reply = shop.say("where is order PO-2610421")[0]
    assert reply.startswith("Order PO-2610421 was delivered on 2026-11-02.")


def test_a_new_question_while_the_bot_waits_for_a_number_is_answered_instead(shop: RecordingChannel) -> None:
    shop.say("where is my order")
    reply = shop.say("how long does a refund take?")[0]
    assert "refund" in reply.lower() and "order number" not in reply
    assert shop.conversation().dialogue.active_loop is None


def test_three_unknown_numbers_hand_off_with_the_action_reason(shop: RecordingChannel) -> None:
    shop.say("track my order")
    shop.say("1234567")
    shop.say("7654321")
    replies = shop.say("1111111")
    conversation = shop.conversation()
    assert conversation.status == ConversationStatus.QUEUED and conversation.handoff_reason == "action"
    assert replies[0] == "I still can't find that order, so I'll ask a colleague to look into it."
    assert conversation.reference in replies[1]
    detail = shop.handoff_event().data
    assert detail["action"] == "action_order_status"
    assert detail["why"] == "order number not recognised after 3 tries"


def test_cancelling_an_order_not_yet_shipped_is_handed_to_a_person(shop: RecordingChannel) -> None:
    replies = shop.say("please cancel order PO-2610433")
    assert "hasn't shipped yet" in replies[0]
    assert shop.conversation().handoff_reason == "action"
    assert shop.handoff_event().data["why"] == "cancel PO-2610433 before it ships"


def test_cancelling_a_shipped_order_is_explained_without_a_person(shop: RecordingChannel) -> None:
    assert "already shipped with DPD" in shop.say("I want to cancel my order 2610438")[0]
    assert shop.conversation().status == ConversationStatus.BOT


class SlowOrBrokenActionServer(BaseHTTPRequestHandler):
    delay = 0.0
    status = 200
    body = b'{"events": [], "responses": []}'

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.delay)
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub_server() -> Iterator[Callable[..., str]]:
    servers: list[ThreadingHTTPServer] = []

    def start(**behaviour: object) -> str:
        handler = type("Handler", (SlowOrBrokenActionServer,), behaviour)
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/webhook"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


POLITE = "Sorry, I can't look that up right now. Please try again in a few minutes, or ask for a person."


@pytest.mark.parametrize(("behaviour", "logged"), [
    ({"delay": 2.0}, "did not answer 'action_order_status' within 0.3 s"),
    ({"status": 500, "body": b'{"error": "KeyError: orders"}'}, "with HTTP 500: KeyError: orders"),
    ({"status": 404, "body": b'{"error": "No registered action", "action_name": "x"}'}, "with HTTP 404"),
    ({"body": b"[1, 2]"}, "returned a reply that is not {events, responses}"),
    ({"body": b"<html>gateway</html>"}, "returned a reply that is not {events, responses}"),
])
def test_a_failing_action_server_gets_the_customer_a_polite_fallback_and_is_logged(
        make_chat: Callable[..., RecordingChannel], stub_server: Callable[..., str], caplog: pytest.LogCaptureFixture,
        behaviour: dict[str, object], logged: str) -> None:
    chat = make_chat(action_endpoint=stub_server(**behaviour), action_timeout=0.3)
    with caplog.at_level(logging.WARNING, logger="bot.engine"):
        assert chat.say("where is my order") == [POLITE]
    conversation = chat.conversation()
    failure = [r.getMessage() for r in caplog.records if conversation.conversation_id in r.getMessage()]
    assert len(failure) == 1 and logged in failure[0]
    assert chat.messages_in()[0].data["action_error"]["action"] == "action_order_status"
    # A failure counts as a fallback: the next one hands off rather than loop.
    chat.say("where is my order")
    assert chat.conversation().handoff_reason == "repeated_fallback"


def test_an_unreachable_action_server_is_a_polite_fallback(make_chat: Callable[..., RecordingChannel]) -> None:
    chat = make_chat(action_endpoint=f"http://127.0.0.1:{free_port()}/webhook")
    assert chat.say("where is my order") == [POLITE]


def test_an_action_that_raises_in_process_is_a_polite_fallback(
        make_chat: Callable[..., RecordingChannel], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SWITCHBOARD_ORDERS_FILE", str(tmp_path / "missing.csv"))
    chat = make_chat()
    with caplog.at_level(logging.WARNING, logger="bot.engine"):
        assert chat.say("where is order PO-2610427") == [POLITE]
    assert "raised FileNotFoundError" in caplog.text


def test_the_action_receives_the_tracker_and_domain_of_the_protocol(
        make_chat: Callable[..., RecordingChannel], stub_server: Callable[..., str]) -> None:
    received: list[dict[str, object]] = []

    class Recording(SlowOrBrokenActionServer):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = json.dumps({"events": [{"event": "slot", "name": "product", "value": "tent"},
                                          {"event": "customer_attributes", "attributes": {"tier": "gold"}}],
                               "responses": [{"text": "Checked.", "buttons": [{"title": "OK", "payload": "/ok"}]}]})
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recording)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        chat = make_chat(action_endpoint=f"http://127.0.0.1:{server.server_port}/webhook")
        chat.say("hello")
        assert chat.say("where is order PO-2610427") == ["Checked."]
    finally:
        server.shutdown()
        server.server_close()
    (call,) = received
    assert call["next_action"] == "action_order_status"
    tracker = call["tracker"]
    assert isinstance(tracker, dict)
    assert tracker["sender_id"] == chat.conversation().conversation_id
    assert tracker["latest_message"]["intent"]["name"] == "order_status"
    assert tracker["latest_message"]["entities"][0]["value"] == "PO-2610427"
    assert tracker["slots"]["order_number"] == "PO-2610427"
    assert [e["event"] for e in tracker["events"]] == ["user", "bot", "user"]
    assert tracker["latest_input_channel"] == "web"
    assert "utter_ask_order_number" in call["domain"]["responses"]  # type: ignore[index]
    assert chat.conversation().dialogue.slots["product"] == "tent"
    # Who the customer is travels with the call; what the action learnt lands on the profile.
    customer = tracker["latest_message"]["metadata"]["customer"]
    assert customer["channels"] == ["web"] and customer["attributes"] == {}
    assert chat.store.get_customer(chat.conversation().customer_id).attributes == {"tier": "gold"}


def test_out_of_hours_the_cancel_handoff_does_not_promise_a_colleague_right_away(
        make_chat: Callable[..., RecordingChannel]) -> None:
    sunday = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    chat = make_chat(now=sunday)
    replies = chat.say("please cancel order PO-2610433")
    assert len(replies) == 2 and "hasn't shipped yet" in replies[0]
    assert replies[1].startswith("Our team is away right now and back")
    assert "right away" not in replies[0]  # it said "right away" just before "our team is away"
