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

DHL = "https://www.dhl.com/de-en/home/tracking/tracking-parcel.html?submit=1&tracking-id="


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
def make_shop(request: pytest.FixtureRequest,
              make_chat: Callable[..., RecordingChannel]) -> Callable[..., RecordingChannel]:
    """The sample shop with its actions run either way; both must behave the same."""
    where = {} if request.param == "in-process" else {"action_endpoint": request.getfixturevalue("action_server")}
    return lambda **overrides: make_chat(**where, **overrides)


@pytest.fixture
def shop(make_shop: Callable[..., RecordingChannel]) -> RecordingChannel:
    return make_shop()


def test_order_status_asks_for_the_number_validates_it_and_answers(shop: RecordingChannel) -> None:
    assert "What's your order number?" in shop.say("where is my order")[0]
    assert shop.conversation().dialogue.active_loop == "action_order_status"
    assert "doesn't look like an order number" in shop.say("it's 12345")[0]
    assert "can't find order PO-9999999" in shop.say("PO-9999999")[0]
    reply = shop.say("sorry, it is po 2610427")[0]
    assert reply == ("Order PO-2610427 is on its way with DHL and should arrive by 26 November 2026. Track it here: "
                     f"{DHL}00340434161094042611")
    dialogue = shop.conversation().dialogue
    assert dialogue.active_loop is None
    assert dialogue.slots["order_number"] == "PO-2610427" and dialogue.slots["order_attempts"] is None
    # The action remembered the order on the customer's profile; the next call sees it.
    customer = shop.store.get_customer(shop.conversation().customer_id)
    assert customer.attributes == {"last_order": "PO-2610427"}


def test_an_order_number_in_the_question_is_used_at_once(shop: RecordingChannel) -> None:
    reply = shop.say("where is order PO-2610421")[0]
    assert reply.startswith("Order PO-2610421 was delivered on 2 November 2026.")


def test_a_late_order_says_so_and_what_happens_next(make_shop: Callable[..., RecordingChannel]) -> None:
    # PO-2610427 (shipped with DHL) was due on Thursday 2026-11-26; 5 working days later is 2026-12-03.
    shop = make_shop(now=datetime(2026, 12, 2, 10, tzinfo=UTC))
    assert shop.say("where is my order PO-2610427")[0] == (
        "Order PO-2610427 is late: it should have arrived by 26 November 2026. It is with DHL; track it here: "
        f"{DHL}00340434161094042611. If it has not arrived by 3 December 2026, write to us: we will open a trace "
        "with DHL and send a replacement or a full refund if it is lost.")
    assert shop.conversation().status == ConversationStatus.BOT
    # Not shipped and past its date (2026-11-29): a person checks on it.
    replies = shop.say("and PO-2610433?")
    assert replies[0].startswith("Order PO-2610433 is late: it should have arrived by 29 November 2026, and it "
                                 "has not left")
    assert shop.conversation().handoff_reason == "action"
    assert shop.handoff_event().data["why"] == "PO-2610433 is late and not shipped yet"


def test_an_order_late_by_five_working_days_goes_to_a_person_for_a_trace(
        make_shop: Callable[..., RecordingChannel]) -> None:
    shop = make_shop(now=datetime(2026, 12, 3, 9, tzinfo=UTC))
    replies = shop.say("my parcel PO-2610427 still hasn't come")
    assert replies[0].startswith("Order PO-2610427 should have arrived by 26 November 2026, and it is now more than 5 "
                                 "working days late. I'm passing this to a colleague, who will open a trace with DHL")
    assert shop.handoff_event().data["why"] == "PO-2610427 is 5+ working days late: trace with DHL"


def test_dates_in_answers_are_written_as_the_customers_language_writes_them(shop: RecordingChannel) -> None:
    # Intents are English only: a German customer reaches the order status by its quick reply.
    shop.say("Hallo, ich habe eine Frage zu meiner Bestellung")
    assert shop.say("/order_status")[0].startswith("Gern. Wie lautet Ihre Bestellnummer?")
    assert "bis 26. November 2026 ankommen" in shop.say("PO-2610427")[0]
    shop.say("我想查一下我的订单状态", "customer-2")
    shop.say("/order_status", "customer-2")
    assert "预计 2026年11月26日 前送达" in shop.say("PO-2610427", "customer-2")[0]


def test_a_follow_up_about_another_order_is_answered_and_a_bare_question_asks_which(
        shop: RecordingChannel) -> None:
    assert shop.say("where is my order PO-2610427")[0].startswith("Order PO-2610427 ")
    assert shop.say("what about PO-2610433")[0].startswith("Order PO-2610433 ")
    assert shop.messages_in()[-1].data["follow_up"] == "action_order_status"
    shop.say("how much is shipping")  # another subject in between: the next question is not assumed
    reply = shop.say("where is my order")[0]
    assert reply.startswith("Which order do you mean? Tap PO-2610433, or type another order number")
    assert shop.last_outcome is not None
    assert [(b.title, b.payload) for b in shop.last_outcome.replies[0].buttons] == [("PO-2610433", "PO-2610433")]
    assert shop.say("PO-2610421")[0].startswith("Order PO-2610421 was delivered")


def test_a_number_without_an_order_question_before_it_is_not_taken_for_one(shop: RecordingChannel) -> None:
    shop.say("how much is shipping")
    shop.say("PO-2610433 arrived with a torn strap")
    assert "follow_up" not in shop.messages_in()[-1].data


def test_a_name_given_in_the_chat_fills_the_profile(shop: RecordingChannel) -> None:
    assert shop.say("my name is anna schmidt") == ["Nice to meet you, Anna! How can I help?"]
    assert shop.store.get_customer(shop.conversation().customer_id).display_name == "Anna Schmidt"
    assert shop.conversation().fallback_streak == 0  # not a miss: no step towards a handoff
    shop.say("hi, I am looking for a tent")  # a lead-in without a name changes nothing
    assert shop.store.get_customer(shop.conversation().customer_id).display_name == "Anna Schmidt"


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
    with caplog.at_level(logging.WARNING, logger="bot.dialogue.engine"):
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
    with caplog.at_level(logging.WARNING, logger="bot.dialogue.engine"):
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
