"""Malformed input gets a 4xx that says what is wrong, never a 500, and a customer's message is never
lost to an odd character: the cases a probe found, then property-based tests over every public
endpoint and field."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from bot.messages import ConversationStatus, EventKind
from bot.ports import Encoder
from switchboard.app import create_app, services_of
from tests.conftest import ROOT, WebChat, test_settings

TWILIO_TOKEN = "twilio-auth-token-for-input-tests"
TELEGRAM_SECRET = "telegram-secret-for-input-tests"
PUBLIC = "http://switchboard.test"
PASSWORD = "correct horse battery staple"
NESTED = '{"text":' * 1000 + '"x"' + "}" * 1000


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, index_dir: Path, encoder: Encoder) -> Iterator[Flask]:
    settings_ = test_settings(tmp_path_factory.mktemp("input"), index_dir, twilio_auth_token=TWILIO_TOKEN,
                              telegram_webhook_secret=TELEGRAM_SECRET, public_url=PUBLIC,
                              login_limit_per_account="1000 per minute", login_limit_per_address="1000 per minute")
    app = create_app(settings_, encoder=encoder)
    app.config["TESTING"] = True
    yield app
    services_of(app).close()


@pytest.fixture(scope="module")
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="module")
def web(app: Flask, client: FlaskClient) -> WebChat:
    return WebChat(app, client)


@pytest.fixture(scope="module")
def agent_token(app: Flask, client: FlaskClient) -> str:
    services_of(app).agents.add("ann@example.com", "Ann", "admin", PASSWORD)
    response = client.post("/api/agent/login", json={"email": "ann@example.com", "password": PASSWORD})
    return str(response.get_json()["token"])


@pytest.fixture(scope="module")
def ticket(app: Flask, client: FlaskClient, agent_token: str) -> str:
    customer = WebChat(app, client)
    customer.say("I want to talk to a person")
    queued = services_of(app).store.list_conversations([ConversationStatus.QUEUED])
    conversation_id = queued[0].conversation_id
    claimed = client.post(f"/api/agent/tickets/{conversation_id}/claim",
                          headers={"Authorization": f"Bearer {agent_token}"})
    assert claimed.status_code == 200
    return conversation_id


def twilio_post(client: FlaskClient, path: str, params: dict[str, str]) -> Any:
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC + path, params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})


def sms(body: str, sender: str = "+4915123456789") -> dict[str, str]:
    return {"MessageSid": "SM" + uuid.uuid4().hex, "From": sender, "To": "+15005550006", "Body": body,
            "NumMedia": "0"}


def telegram_post(client: FlaskClient, update: Any) -> Any:
    return client.post("/webhooks/telegram", data=json.dumps(update), content_type="application/json",
                       headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET})


def telegram_message(update_id: int, **fields: Any) -> dict[str, Any]:
    message = {"message_id": update_id, "date": 1_700_000_000, "chat": {"id": 4242, "type": "private"},
               "from": {"id": 4242, "is_bot": False, "first_name": "Anna"}, "text": "hello", **fields}
    return {"update_id": update_id, "message": {k: v for k, v in message.items() if v is not None}}


def stored_texts(app: Flask) -> list[str]:
    store = services_of(app).store
    return [e.text or "" for c in store.list_conversations(list(ConversationStatus))
            for e in store.transcript(c.conversation_id) if e.kind == EventKind.MESSAGE_IN]


# -- what the probe found ----------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["²", "¹", "³", "9" * 3000, "٣", "\uff11"])  # Arabic-Indic three, full-width one
def test_an_sms_of_digits_in_any_script_is_stored_and_acknowledged(app: Flask, client: FlaskClient,
                                                                   body: str) -> None:
    response = twilio_post(client, "/webhooks/twilio/sms", sms(body))
    assert response.status_code == 200
    assert body in stored_texts(app)


def test_an_sms_of_more_digits_than_a_message_may_have_is_413(client: FlaskClient) -> None:
    response = twilio_post(client, "/webhooks/twilio/sms", sms("9" * 4400))
    assert response.status_code == 413 and "longer than" in response.get_json()["message"]


@pytest.mark.parametrize("after", ["²", "-1", "1e3", "9" * 30, " 1"])
@pytest.mark.parametrize("path", ["/api/web/events", "/api/web/stream"])
def test_a_cursor_that_is_not_a_plain_number_is_400(web: WebChat, path: str, after: str) -> None:
    response = web.client.get(path, query_string={"after": after}, headers=web.auth)
    assert response.status_code == 400
    assert "non-negative integer" in response.get_json()["message"]


def test_a_telegram_tap_on_a_superscript_option_is_stored_as_typed(app: Flask, client: FlaskClient) -> None:
    update = {"update_id": 91_000, "callback_query": {
        "id": "cb-sup", "chat_instance": "1", "data": "#²", "from": {"id": 4242, "is_bot": False, "first_name": "A"},
        "message": {"message_id": 1, "date": 1_700_000_000, "chat": {"id": 4242, "type": "private"}}}}
    response = telegram_post(client, update)
    assert response.status_code == 200
    assert "#²" in stored_texts(app)


@pytest.mark.parametrize("field", ["text", "date", "chat", "location", "from"])
def test_a_malformed_telegram_update_is_400(client: FlaskClient, field: str) -> None:
    bad = {"text": {"text": 5}, "date": {"date": 1e20}, "chat": {"chat": None},
           "location": {"text": None, "location": {"latitude": "north", "longitude": "x"}},
           "from": {"from": {"id": "x", "first_name": 7}}}[field]
    response = telegram_post(client, telegram_message(92_000 + len(field), **bad))
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"] == "invalid_message"


def test_lone_surrogates_in_any_field_are_no_500(app: Flask, client: FlaskClient, web: WebChat, agent_token: str,
                                                 ticket: str) -> None:
    bad = "\ud800"
    agent = {"Authorization": f"Bearer {agent_token}"}
    requests = [
        ("/api/web/messages", {"text": "hi", "client_message_id": bad, "name": f"Anna {bad}"}, web.auth),
        ("/api/web/email", {"email": f"a{bad}@example.com"}, web.auth),
        ("/api/web/email/verify", {"code": bad}, web.auth),
        ("/webhooks/rest/webhook", {"sender": f"s{bad}", "message": "hello"}, {}),
        ("/api/agent/login", {"email": f"ann{bad}@example.com", "password": bad}, {}),
        (f"/api/agent/tickets/{ticket}/reply", {"text": f"on it {bad}"}, agent),
        (f"/api/agent/tickets/{ticket}/reply", {"text": "on it", "to": {"channel": bad, "external_id": bad}}, agent),
        (f"/api/agent/tickets/{ticket}/transfer", {"email": f"bob{bad}@example.com"}, agent),
        (f"/api/agent/tickets/{ticket}/note", {"text": bad}, agent),
    ]
    for path, body, headers in requests:
        response = client.post(path, data=json.dumps(body), content_type="application/json", headers=headers)
        assert response.status_code < 500, (path, response.get_data(as_text=True))
    update = telegram_message(93_000, **{"from": {"id": 4242, "is_bot": False, "first_name": bad}})
    assert telegram_post(client, update).status_code == 200


@pytest.mark.parametrize("path", ["/api/web/sessions", "/api/web/messages", "/api/web/email", "/api/web/email/verify",
                                  "/webhooks/rest/webhook", "/webhooks/telegram", "/api/agent/login",
                                  "/api/agent/presence"])
def test_deeply_nested_json_is_400_on_every_json_endpoint(client: FlaskClient, web: WebChat, agent_token: str,
                                                          path: str) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET} if "telegram" in path else {}
    if path.startswith("/api/web/") and path != "/api/web/sessions":
        headers = web.auth
    if path == "/api/agent/presence":
        headers = {"Authorization": f"Bearer {agent_token}"}
    response = client.post(path, data=NESTED, content_type="application/json", headers=headers)
    assert response.status_code < 500
    if path != "/api/web/sessions":  # takes no body
        assert response.status_code == 400, response.get_data(as_text=True)


# -- every public endpoint and field, with hypothesis ------------------------------------------------

# Any text, lone surrogates and control characters included; a URL's query cannot carry lone surrogates.
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
query_text = st.one_of(st.sampled_from(["²", "1", "-1", "1e3", "9" * 5000, "", " ", "\u202e"]),
                       st.text(max_size=40))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=12)


# Values that broke endpoints before: digits that are not ASCII, a number too long for int(), a lone
# surrogate, NUL, bidi controls, an option reference.
NASTY = ["²", "#²", "0", "1", "-1", "1e3", "9" * 5000, "", " ", "\x00", "\ud800", "a\udfffb", "\u202e", "#1",
         "/start ²", "LINK ²²²²²²", "+", "whatsapp:", "https://127.0.0.1/x", "SB-²"]


def field_values() -> st.SearchStrategy[Any]:
    """What a client might put in a field: the known nasty values, text of every kind, or another JSON type."""
    return st.one_of(st.sampled_from(NASTY), any_text, json_values)


def body_for(valid: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A valid body with one or two of its fields given any value, or a body of any JSON at all."""
    names = sorted(valid)
    broken = st.builds(lambda changes: {**valid, **changes},
                       st.dictionaries(st.sampled_from(names), field_values(), min_size=1, max_size=2))
    return st.one_of(broken, broken, broken, json_values)


# SWITCHBOARD_FUZZ_EXAMPLES=1000 for a deeper search than the suite's bounded one.
FUZZ = settings(max_examples=int(os.environ.get("SWITCHBOARD_FUZZ_EXAMPLES", "40")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def assert_answered(response: Any) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    if response.status_code >= 400 and response.mimetype == "application/json":
        assert response.get_json()["message"]


@FUZZ
@given(body=body_for({"text": "hello", "client_message_id": "c1", "name": "Anna"}))
def test_web_messages_never_fail_on_input(web: WebChat, body: dict[str, Any]) -> None:
    assert_answered(web.client.post("/api/web/messages", json=body, headers=web.auth))


@FUZZ
@given(body=st.one_of(body_for({"email": "anna@example.com"}), body_for({"code": "123456"})))
def test_web_email_endpoints_never_fail_on_input(web: WebChat, body: Any) -> None:
    for path in ("/api/web/email", "/api/web/email/verify"):
        assert_answered(web.client.post(path, data=json.dumps(body), content_type="application/json",
                                        headers=web.auth))


@FUZZ
@given(after=query_text, last_event_id=query_text.filter(lambda t: t.isascii() and t.isprintable()))
def test_web_cursors_never_fail_on_input(web: WebChat, after: str, last_event_id: str) -> None:
    assert_answered(web.client.get("/api/web/events", query_string={"after": after}, headers=web.auth))
    response = web.client.get("/api/web/stream", query_string={"after": after, "token": web.token},
                              headers={"Last-Event-ID": last_event_id}, buffered=False)
    assert response.status_code < 500
    response.close()


@FUZZ
@given(body=body_for({"sender": "s1", "message": "hello", "message_id": "m1"}))
def test_rest_channel_never_fails_on_input(client: FlaskClient, body: Any) -> None:
    if isinstance(body, dict) and body.get("message_id") == "m1":
        body["message_id"] = uuid.uuid4().hex  # a repeat would be answered from the first copy
    assert_answered(client.post("/webhooks/rest/webhook", data=json.dumps(body), content_type="application/json"))


@FUZZ
@given(body=body_for({"text": "where is my order PO-2610427"}))
def test_model_parse_never_fails_on_input(client: FlaskClient, body: Any) -> None:
    assert_answered(client.post("/model/parse", data=json.dumps(body), content_type="application/json"))


@FUZZ
@given(form=body_for({"MessageSid": "SM1", "From": "+4915123456780", "Body": "hello", "NumMedia": "1",
                      "ProfileName": "Anna", "MediaUrl0": "https://example.com/a.jpg", "MessageStatus": "sent",
                      "ErrorCode": "30003"}).filter(lambda form: isinstance(form, dict))
       .map(lambda form: {key: value if isinstance(value, str) else json.dumps(value) for key, value in form.items()}))
def test_twilio_webhooks_never_fail_on_signed_input(client: FlaskClient, form: dict[str, str]) -> None:
    # A form carries no lone surrogates (Werkzeug replaces what does not decode), so sign what will arrive.
    form = {key: value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "") for key, value in form.items()}
    if form.get("MessageSid") == "SM1":
        form["MessageSid"] = "SM" + uuid.uuid4().hex  # a repeat would be dropped before it is read
    for path in ("/webhooks/twilio/sms", "/webhooks/twilio/whatsapp", "/webhooks/twilio/status"):
        assert_answered(twilio_post(client, path, form))


@FUZZ
@given(update=st.one_of(
    json_values,
    st.builds(lambda update_id, fields: telegram_message(update_id, **fields),
              st.integers(min_value=0, max_value=2**40),
              st.fixed_dictionaries({}, optional={name: json_values for name in (
                  "text", "date", "chat", "from", "caption", "location", "sticker", "voice", "photo")})),
    st.builds(lambda update_id, data, message: {"update_id": update_id, "callback_query": {
        "id": "cb", "chat_instance": "1", "data": data, "from": {"id": 1, "is_bot": False, "first_name": "A"},
        "message": message}},
        st.integers(min_value=0, max_value=2**40), field_values(), json_values)))
def test_telegram_webhook_never_fails_on_input(client: FlaskClient, update: Any) -> None:
    assert_answered(telegram_post(client, update))


@FUZZ
@given(body=body_for({"email": "ann@example.com", "password": "wrong password"}))
def test_agent_login_never_fails_on_input(client: FlaskClient, body: Any) -> None:
    assert_answered(client.post("/api/agent/login", data=json.dumps(body), content_type="application/json"))


@FUZZ
@given(reply=body_for({"text": "on it", "to": {"channel": "web", "external_id": "w-1"}}),
       transfer=body_for({"email": "bob@example.com"}), note=body_for({"text": "a note"}),
       close=body_for({"resolution": "solved"}), presence=body_for({"status": "online"}), status=query_text)
def test_agent_actions_never_fail_on_input(client: FlaskClient, agent_token: str, ticket: str, reply: dict[str, Any],
                                           transfer: dict[str, Any], note: dict[str, Any], close: dict[str, Any],
                                           presence: dict[str, Any], status: str) -> None:
    headers = {"Authorization": f"Bearer {agent_token}"}
    for path, body in ((f"/api/agent/tickets/{ticket}/reply", reply), (f"/api/agent/tickets/{ticket}/note", note),
                       (f"/api/agent/tickets/{ticket}/transfer", transfer), ("/api/agent/presence", presence)):
        assert_answered(client.post(path, json=body, headers=headers))
    assert_answered(client.get("/api/agent/tickets", query_string={"status": status}, headers=headers))
    assert_answered(client.get(f"/api/agent/tickets/{status}", headers=headers))
    # A ticket that does not exist: closing the real one would end the ticket the other examples use.
    assert_answered(client.post("/api/agent/tickets/no-such-ticket/close", json=close, headers=headers))


# -- every console form ------------------------------------------------------------------------------

FORM_FIELDS = ("email", "password", "text", "to", "resolution", "presence", "agent_email", "role", "name", "other",
               "confirm", "conversation", "title", "url", "tags", "body", "article_id", "lang", "audience",
               "channels", "action", "csrf_token")
form_text = st.one_of(st.sampled_from(["", " ", "²", "\x00", "../../etc/passwd", "web:w-1", "erase", "admin",
                                       "9" * 5000, "\u202e"]), st.text(max_size=40))


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, index_dir: Path, encoder: Encoder) -> Iterator[
        tuple[Flask, FlaskClient, dict[str, list[str]]]]:
    """A signed-in admin's console (CSRF off) over copies of the KB and its index, and real values for
    every kind of path parameter."""
    tmp = tmp_path_factory.mktemp("console-input")
    shutil.copytree(ROOT / "data" / "kb", tmp / "kb")
    shutil.copytree(index_dir, tmp / "index")
    app = create_app(test_settings(tmp, tmp / "index", kb_dir=tmp / "kb",
                                   login_limit_per_account="1000 per minute",
                                   login_limit_per_address="1000 per minute"), encoder=encoder)
    app.config.update(TESTING=True, WTF_CSRF_ENABLED=False)
    directory = services_of(app).agents
    directory.add("root@example.com", "Root", "admin", PASSWORD)
    bob = directory.add("bob@example.com", "Bob", "agent", PASSWORD)
    client = app.test_client()
    assert client.post("/console/login", data={"email": "root@example.com", "password": PASSWORD}).status_code == 302
    customer = WebChat(app, app.test_client())
    customer.say("I want to talk to a person")
    (queued,) = services_of(app).store.list_conversations([ConversationStatus.QUEUED])
    values = {"conversation_id": [queued.conversation_id], "agent_id": [bob.agent_id],
              "customer_id": [queued.customer_id], "merge_id": ["no-such-merge"],
              "article_id": ["returns", "no-such-article"], "name": ["no-such-version"]}
    yield app, client, values
    services_of(app).close()


def console_posts(app: Flask) -> list[str]:
    """Every console route that takes a form, signing out aside (it would end the test's sign-in)."""
    return sorted(rule.rule for rule in app.url_map.iter_rules()
                  if rule.rule.startswith("/console/") and "POST" in (rule.methods or ())
                  and rule.rule != "/console/logout")


@FUZZ
@given(data=st.data())
def test_console_forms_never_fail_on_input(console: tuple[Flask, FlaskClient, dict[str, list[str]]],
                                           data: st.DataObject) -> None:
    app, client, values = console
    routes = console_posts(app)
    assert len(routes) >= 20, routes
    rule = data.draw(st.sampled_from(routes))
    path = rule
    for name in re.findall(r"<(?:\w+:)?(\w+)>", rule):
        value = data.draw(st.one_of(st.sampled_from(values.get(name, ["x"])), st.text(
            # No lone surrogates: no client can put them in a URL (the test client itself refuses).
            st.characters(exclude_characters="/?#%", exclude_categories=("Cs",)), min_size=1, max_size=20)))
        # A function, not the string: a drawn backslash is part of the path, not a regex escape.
        path = re.sub(rf"<(?:\w+:)?{name}>", lambda _, drawn=value: drawn, path, count=1)
    form = data.draw(st.dictionaries(st.sampled_from(FORM_FIELDS), form_text, max_size=6))
    response = client.post(path, data=form)
    assert response.status_code < 500, (path, form, response.get_data(as_text=True)[:500])
