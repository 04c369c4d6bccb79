"""The agent console: sign-in, the queue, and acting on a handed-off conversation."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from bot.messages import Conversation, ConversationStatus, InboundMessage, utcnow
from switchboard.app import services_of
from tests.conftest import WebChat, settle

PASSWORD = "correct horse battery staple"


class AgentBrowser:
    """An agent using the console through a cookie-keeping test client."""

    def __init__(self, app: Flask, email: str, name: str = "Agent") -> None:
        services_of(app).agents.add(email, name, "agent", PASSWORD)
        self.client = app.test_client()
        self.email = email
        assert self.sign_in(PASSWORD).status_code == 302

    def csrf(self, path: str = "/console/login") -> str:
        page = self.client.get(path).get_data(as_text=True)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def sign_in(self, password: str) -> TestResponse:
        return self.client.post("/console/login", data={
            "email": self.email, "password": password, "csrf_token": self.csrf()})

    def act(self, conversation: Conversation, action: str, **form: str) -> str:
        path = f"/console/conversations/{conversation.conversation_id}"
        response = self.client.post(f"{path}/{action}", data={"csrf_token": self.csrf(path), **form},
                                    follow_redirects=True)
        assert response.status_code == 200
        return response.get_data(as_text=True)


def handed_off(app: Flask, customer: WebChat) -> Conversation:
    customer.say("I want to talk to a person")
    (conversation,) = services_of(app).store.list_conversations([ConversationStatus.QUEUED])
    return conversation


def current(app: Flask, conversation: Conversation) -> Conversation:
    return services_of(app).store.get_conversation(conversation.conversation_id)


def test_console_requires_sign_in(app: Flask) -> None:
    response = app.test_client().get("/console/")
    assert response.status_code == 302
    assert "/console/login" in response.headers["Location"]


def test_wrong_password_is_refused(app: Flask) -> None:
    agent = AgentBrowser(app, "ann@example.com")
    agent.client.post("/console/logout", data={"csrf_token": agent.csrf("/console/")})
    page = agent.sign_in("wrong password").get_data(as_text=True)
    assert "Wrong email or password" in page
    assert 'name="email" autocomplete="username" required value="ann@example.com"' in page  # not typed again
    assert agent.client.get("/console/").status_code == 302


def test_passwords_are_stored_hashed(app: Flask) -> None:
    AgentBrowser(app, "ann@example.com")
    _, password_hash = services_of(app).store.agent_credentials("ann@example.com") or (None, "")
    assert PASSWORD not in password_hash and password_hash.startswith(("scrypt:", "pbkdf2:"))


def test_forms_without_csrf_token_are_refused(app: Flask, customer: WebChat) -> None:
    conversation = handed_off(app, customer)
    agent = AgentBrowser(app, "ann@example.com")
    response = agent.client.post(f"/console/conversations/{conversation.conversation_id}/claim")
    assert response.status_code == 400
    assert current(app, conversation).status == ConversationStatus.QUEUED


def test_queue_and_ticket_show_the_handoff_with_reason_and_transcript(app: Flask, customer: WebChat) -> None:
    customer.say("how much is shipping")
    conversation = handed_off(app, customer)
    agent = AgentBrowser(app, "ann@example.com")
    queue = agent.client.get("/console/").get_data(as_text=True)
    assert conversation.reference in queue and "customer request" in queue
    ticket = agent.client.get(f"/console/conversations/{conversation.conversation_id}").get_data(as_text=True)
    assert "how much is shipping" in ticket
    assert "Standard delivery costs EUR 4.95" in ticket
    assert "Shipping costs (" in ticket  # the article the bot tried, with its score
    assert "I want to talk to a person" in ticket


def test_the_ticket_shows_each_message_rated_and_why_it_was_handed_off(app: Flask, customer: WebChat) -> None:
    customer.say("thanks, that was really helpful")
    customer.say("This is the worst service ever, I am furious!!!")
    (conversation,) = services_of(app).store.list_conversations([ConversationStatus.QUEUED])
    agent = AgentBrowser(app, "ann@example.com")
    ticket = agent.client.get(f"/console/conversations/{conversation.conversation_id}").get_data(as_text=True)
    assert re.search(r'class="sentiment positive"[^>]*>sentiment \+0\.\d\d<', ticket)
    assert re.search(r'class="sentiment negative"[^>]*>sentiment -0\.\d\d<', ticket)
    assert "handoff: negative sentiment" in ticket and "negative messages <bdi>1</bdi>" in ticket


def test_an_agent_using_the_console_counts_as_online(app: Flask) -> None:
    store = services_of(app).store
    before = utcnow() - timedelta(seconds=1)
    assert store.agents_online(before) == 0
    AgentBrowser(app, "ann@example.com").client.get("/console/")
    assert store.agents_online(before) == 1



def test_the_ticket_opens_with_a_summary_and_lists_earlier_conversations(app: Flask, customer: WebChat) -> None:
    first = handed_off(app, customer)
    ann = AgentBrowser(app, "ann@example.com")
    ann.act(first, "claim")
    ann.act(first, "close")
    customer.say("how much is shipping")
    customer.say("I want to talk to a person")
    (second,) = services_of(app).store.list_conversations([ConversationStatus.QUEUED])
    page = ann.client.get(f"/console/conversations/{second.conversation_id}").get_data(as_text=True)
    assert "<dt>The customer wants</dt><dd><bdi>how much is shipping</bdi></dd>" in page
    assert "<dt>The bot answered</dt><dd><bdi>Standard delivery costs EUR 4.95" in page
    assert "<dt>Handed off because</dt><dd>the customer asked for a person</dd>" in page
    assert f">{first.reference}</a>" in page and "closed" in page


def test_the_summary_is_the_question_that_led_to_the_handoff_and_the_bot_reply_to_it(
        app: Flask, customer: WebChat) -> None:
    customer.say("hi")
    customer.say("where is my order PO-2610421")
    customer.say("how much is shipping")
    customer.say("I want to talk to a person")
    (conversation,) = services_of(app).store.list_conversations([ConversationStatus.QUEUED])
    page = AgentBrowser(app, "ann@example.com").client.get(
        f"/console/conversations/{conversation.conversation_id}").get_data(as_text=True)
    assert "<dt>The customer wants</dt><dd><bdi>how much is shipping</bdi></dd>" in page
    assert "<dt>The bot answered</dt><dd><bdi>Standard delivery costs EUR 4.95" in page  # not the order's answer


def test_claim_reply_reaches_the_web_chat_and_the_bot_stays_silent(app: Flask, customer: WebChat) -> None:
    conversation = handed_off(app, customer)
    customer.events()
    agent = AgentBrowser(app, "ann@example.com")
    agent.act(conversation, "claim")
    assert current(app, conversation).status == ConversationStatus.ASSIGNED

    assert customer.say("hello? is anyone there?") == []  # the bot stays silent
    agent.act(conversation, "reply", text="Hi, I'm Ann. How can I help?")
    (reply,) = [e for e in customer.events() if e["kind"] == "message_out"]
    assert reply == {**reply, "author": "agent", "text": "Hi, I'm Ann. How can I help?"}
    outbox = services_of(app).store.outbox_for("web", conversation.last_external_id, "sent")
    assert [entry.text for entry in outbox][-1] == "Hi, I'm Ann. How can I help?"


def test_a_second_claim_is_refused(app: Flask, customer: WebChat) -> None:
    conversation = handed_off(app, customer)
    ann, bob = AgentBrowser(app, "ann@example.com"), AgentBrowser(app, "bob@example.com")
    ann.act(conversation, "claim")
    page = bob.act(conversation, "claim")
    assert "cannot be claimed" in page
    assert current(app, conversation).assignee_id == services_of(app).store.agent_credentials(
        "ann@example.com")[0].agent_id  # type: ignore[index]


def test_concurrent_claims_give_the_ticket_to_exactly_one_agent(app: Flask, customer: WebChat) -> None:
    conversation = handed_off(app, customer)
    store = services_of(app).store
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def claim(agent_id: str) -> None:
        barrier.wait()
        try:
            store.claim(conversation.conversation_id, agent_id)
            outcomes.append("won")
        except Exception as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=claim, args=(f"agent-{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["Conflict"] * 7 + ["won"]


def test_an_agent_cannot_act_on_a_ticket_another_agent_holds(app: Flask, customer: WebChat) -> None:
    conversation = handed_off(app, customer)
    ann, bob = AgentBrowser(app, "ann@example.com"), AgentBrowser(app, "bob@example.com")
    ann.act(conversation, "claim")
    for action, form in [("reply", {"text": "sneaky"}), ("return", {}), ("close", {})]:
        page = bob.act(conversation, action, **form)
        assert "another agent holds this conversation" in page
    assert current(app, conversation).status == ConversationStatus.ASSIGNED
    assert not [e for e in customer.events() if e.get("text") == "sneaky"]


def test_unknown_conversation_is_404(app: Flask) -> None:
    agent = AgentBrowser(app, "ann@example.com")
    assert agent.client.get("/console/conversations/nope").status_code == 404
    response = agent.client.post("/console/conversations/nope/claim",
                                 data={"csrf_token": agent.csrf("/console/")})
    assert response.status_code == 404


def test_return_to_bot_lets_the_bot_answer_again(app: Flask, customer: WebChat) -> None:
    conversation = handed_off(app, customer)
    agent = AgentBrowser(app, "ann@example.com")
    agent.act(conversation, "claim")
    customer.events()
    assert "the customer is told" in agent.act(conversation, "return")
    assert current(app, conversation).status == ConversationStatus.BOT
    (told,) = [e for e in customer.events() if e["kind"] == "message_out"]
    assert told["text"].startswith("You're chatting with the Puffin Outdoor assistant again.")
    replies = customer.say("how much is shipping")
    assert "4.95" in replies[-1]["text"]


def test_close_ends_the_conversation_and_the_next_message_opens_a_new_one(app: Flask, customer: WebChat) -> None:
    conversation = handed_off(app, customer)
    agent = AgentBrowser(app, "ann@example.com")
    agent.act(conversation, "claim")
    agent.act(conversation, "close")
    assert current(app, conversation).status == ConversationStatus.CLOSED
    customer.say("hello again")
    store = services_of(app).store
    (reopened,) = store.list_conversations([ConversationStatus.BOT])
    assert reopened.conversation_id != conversation.conversation_id
    assert reopened.customer_id == conversation.customer_id


def test_links_in_the_transcript_are_clickable_and_nothing_else_is(app: Flask, customer: WebChat) -> None:
    customer.say("how much is shipping")
    customer.say('see https://example.com/a?b=1&c=2, and "><script>alert(1)</script>')
    conversation = handed_off(app, customer)
    ticket = AgentBrowser(app, "ann@example.com").client.get(
        f"/console/conversations/{conversation.conversation_id}").get_data(as_text=True)
    assert ('<a href="https://help.puffin-outdoor.example/shipping/costs" target="_blank" '
            'rel="noopener noreferrer">https://help.puffin-outdoor.example/shipping/costs</a>') in ticket
    assert '<a href="https://example.com/a?b=1&amp;c=2" target="_blank"' in ticket  # the comma is not the link's
    assert "<script>alert(1)" not in ticket and "&lt;script&gt;alert(1)" in ticket


@pytest.mark.parametrize("payload", ['<img src=x onerror=alert(1)>', '<script>alert("x")</script>'])
def test_customer_text_is_rendered_inert(app: Flask, customer: WebChat, payload: str) -> None:
    customer.say(payload)
    conversation = handed_off(app, customer)
    agent = AgentBrowser(app, "ann@example.com")
    ticket = agent.client.get(f"/console/conversations/{conversation.conversation_id}").get_data(as_text=True)
    assert payload not in ticket
    assert "&lt;" in ticket


def test_demo_agent_is_created_once_with_a_hashed_random_password(app: Flask) -> None:
    agents = services_of(app).agents
    login = agents.ensure_demo_agent()
    assert login is not None
    email, password = login
    assert agents.authenticate(email, password) is not None
    assert agents.ensure_demo_agent() is None


def test_the_queue_shows_name_channels_sentiment_and_the_waiting_count_in_the_title(
        app: Flask, client: FlaskClient) -> None:
    chat = WebChat(app, client)
    chat.client.post("/api/web/messages", headers=chat.auth,
                     json={"text": "This is the worst service ever!!!", "client_message_id": "1",
                           "name": "<b>Eve</b>"})
    settle(app)
    agent = AgentBrowser(app, "ann@example.com")
    page = agent.client.get("/console/").get_data(as_text=True)
    assert "<title>(1) Queue - Switchboard</title>" in page
    assert "<bdi>&lt;b&gt;Eve&lt;/b&gt;</bdi>" in page and "<b>Eve</b>" not in page
    assert 'class="channel channel-web"' in page and 'class="sentiment negative"' in page
    assert "negative sentiment" in page


def test_queue_views_and_the_fragment_the_live_page_reloads(app: Flask, customer: WebChat) -> None:
    conversation = handed_off(app, customer)
    agent = AgentBrowser(app, "ann@example.com")
    assert conversation.reference in agent.client.get("/console/?view=unassigned").get_data(as_text=True)
    assert conversation.reference not in agent.client.get("/console/?view=mine").get_data(as_text=True)
    agent.act(conversation, "claim")
    assert conversation.reference in agent.client.get("/console/?view=mine").get_data(as_text=True)
    agent.act(conversation, "close")
    assert conversation.reference in agent.client.get("/console/?view=closed").get_data(as_text=True)
    fragment = agent.client.get("/console/?view=closed&fragment=1").get_data(as_text=True)
    assert conversation.reference in fragment and "<html" not in fragment
    assert agent.client.get("/console/?view=everything").status_code == 404


def test_the_console_and_the_api_agree_on_views_and_an_agent_steps_into_a_bot_conversation(
        app: Flask, client: FlaskClient) -> None:
    WebChat(app, client).say("how much is shipping")  # with the bot
    handed_off(app, WebChat(app, app.test_client()))  # waiting for an agent
    agent = AgentBrowser(app, "ann@example.com", "Ann")
    api_token = agent.client.post("/api/agent/login", json={"email": "ann@example.com", "password": PASSWORD})
    headers = {"Authorization": f"Bearer {api_token.get_json()['token']}"}
    for view, api_view, count in (("all", "all", 2), ("bot", "bot", 1), ("unassigned", "queued", 1)):
        page = agent.client.get(f"/console/?view={view}").get_data(as_text=True)
        listed = agent.client.get(f"/api/agent/tickets?status={api_view}", headers=headers).get_json()["tickets"]
        assert len(listed) == count and all(t["reference"] in page for t in listed)
        assert re.search(rf"<h2>[^<]*\({count}\)</h2>", page), view
    (with_bot,) = agent.client.get("/api/agent/tickets?status=bot", headers=headers).get_json()["tickets"]
    bot_conversation = services_of(app).store.get_conversation(with_bot["id"])
    ticket = agent.client.get(f"/console/conversations/{with_bot['id']}").get_data(as_text=True)
    assert "Step in (take over from the bot)" in ticket
    agent.act(bot_conversation, "claim")
    assert current(app, bot_conversation).status == ConversationStatus.ASSIGNED


def test_the_closed_view_shows_who_handled_it_why_the_rating_and_when_it_closed(
        app: Flask, customer: WebChat) -> None:
    conversation = handed_off(app, customer)
    ann = AgentBrowser(app, "ann@example.com", "Ann")
    ann.act(conversation, "claim")
    ann.act(conversation, "close", resolution="answered")
    customer.say("2 - slow, and my parcel is still missing")
    page = ann.client.get("/console/?view=closed").get_data(as_text=True)
    row = page[page.index(conversation.reference):page.index("</tr>", page.index(conversation.reference))]
    closed_at = current(app, conversation).closed_at
    assert closed_at is not None
    assert "customer request" in row and "<td>Ann</td>" in row and "2/5" in row
    assert 'title="slow, and my parcel is still missing"' in row and " min<" not in row
    assert closed_at.strftime("%Y-%m-%d %H:%M") in row
    ticket = ann.client.get(f"/console/conversations/{conversation.conversation_id}").get_data(as_text=True)
    assert "<dt>Handled by</dt><dd>Ann</dd>" in ticket and "Handed off because" in ticket
    assert "2 of 5: <q><bdi>slow, and my parcel is still missing</bdi></q>" in ticket


def test_the_queue_shows_the_lowest_sentiment_so_earlier_anger_is_not_hidden(
        app: Flask, customer: WebChat) -> None:
    customer.say("This is the worst service ever, I am furious!!!")
    customer.say("I want to talk to a person")
    customer.say("thanks, that is great")
    page = AgentBrowser(app, "ann@example.com").client.get("/console/").get_data(as_text=True)
    assert 'class="sentiment negative"' in page and 'class="trend"' in page


def test_search_finds_customers_by_what_they_wrote_or_a_reference_and_says_what_matched(
        app: Flask, customer: WebChat) -> None:
    customer.client.post("/api/web/messages", headers=customer.auth, json={
        "text": "my tent pole snapped in Tarragona", "client_message_id": "1", "name": "Ximena Ruiz"})
    settle(app)
    conversation = handed_off(app, customer)
    agent = AgentBrowser(app, "ann@example.com")
    by_text = agent.client.get("/console/customers/?q=tarragona").get_data(as_text=True)
    assert "Ximena Ruiz" in by_text and "<td>a message</td>" in by_text and conversation.reference in by_text
    assert "<td>name</td>" in agent.client.get("/console/customers/?q=ximena").get_data(as_text=True)
    by_reference = agent.client.get(f"/console/customers/?q={conversation.reference.lower()}").get_data(as_text=True)
    assert f"<td>conversation {conversation.reference}</td>" in by_reference
    assert "No customer or conversation matches" in agent.client.get("/console/customers/?q=nobody-here").get_data(
        as_text=True)
    page = agent.client.get(f"/console/customers/{conversation.customer_id}").get_data(as_text=True)
    assert "Conversations (1)" in page and conversation.reference in page and "Ximena Ruiz" in page
    assert agent.client.get("/console/customers/no-such-customer").status_code == 404


def test_a_closed_ticket_is_reopened_unless_the_customer_is_talking_elsewhere(app: Flask, customer: WebChat) -> None:
    conversation = handed_off(app, customer)
    ann = AgentBrowser(app, "ann@example.com", "Ann")
    ann.act(conversation, "claim")
    ann.act(conversation, "close", resolution="answered")
    page = ann.act(conversation, "reopen")
    assert "Reopened: you hold this conversation" in page and "reopened by Ann" in page
    reopened = current(app, conversation)
    assert reopened.status == ConversationStatus.ASSIGNED and reopened.closed_at is None
    assert "only a closed conversation can be reopened" in ann.act(conversation, "reopen")
    ann.act(conversation, "close")
    customer.say("hello again")  # a new conversation opens with the bot
    assert "the customer is in another open conversation" in ann.act(conversation, "reopen")
    assert current(app, conversation).status == ConversationStatus.CLOSED


def test_tags_label_a_ticket_and_snooze_hides_it_until_the_customer_writes(
        app: Flask, customer: WebChat, client: FlaskClient) -> None:
    conversation = handed_off(app, customer)
    ann = AgentBrowser(app, "ann@example.com", "Ann")
    ann.act(conversation, "claim")
    page = ann.act(conversation, "tags", tags="Refund, VIP , refund")
    assert "Tags saved." in page and current(app, conversation).tags == ("refund", "vip")
    assert '<span class="tag">vip</span>' in ann.client.get("/console/?view=mine").get_data(as_text=True)
    assert "Snoozed for 4 hours" in ann.act(conversation, "snooze", hours="4")
    mine = ann.client.get("/console/?view=mine").get_data(as_text=True)
    assert "<h2>Yours (0)</h2>" in mine and conversation.reference in mine  # under "Snoozed"
    assert "<h2>Yours (0)</h2>" in ann.client.get("/console/").get_data(as_text=True)
    customer.say("any news?")  # the customer writing wakes it
    assert current(app, conversation).snoozed_until is None
    assert "<h2>Yours (1)</h2>" in ann.client.get("/console/?view=mine").get_data(as_text=True)
    assert "Choose how long to snooze." in ann.act(conversation, "snooze", hours="999")
    token = client.post("/api/agent/login", json={"email": "ann@example.com", "password": PASSWORD})
    api = {"Authorization": f"Bearer {token.get_json()['token']}"}
    snoozed = client.post(f"/api/agent/tickets/{conversation.conversation_id}/snooze", json={"minutes": 30},
                          headers=api).get_json()
    assert snoozed["snoozed_until"] is not None
    assert [t["id"] for t in client.get("/api/agent/tickets?status=snoozed", headers=api).get_json()["tickets"]] \
        == [conversation.conversation_id]
    assert client.post(f"/api/agent/tickets/{conversation.conversation_id}/snooze", json={"minutes": -1},
                       headers=api).status_code == 400
    assert client.post(f"/api/agent/tickets/{conversation.conversation_id}/tags", json={"tags": "vip"},
                       headers=api).status_code == 400
    assert client.post(f"/api/agent/tickets/{conversation.conversation_id}/tags", json={"tags": ["x" * 41]},
                       headers=api).status_code == 400


def test_the_console_stream_tells_the_page_when_the_queue_changes(app: Flask, client: FlaskClient) -> None:
    agent = AgentBrowser(app, "ann@example.com")
    response = agent.client.get("/console/stream", buffered=False)
    assert response.mimetype == "text/event-stream"
    chunks = iter(response.response)
    assert next(chunks).startswith(b"retry:")
    assert next(chunks).decode() == 'event: queue\ndata: {"waiting": 0}\n\n'
    WebChat(app, client).say("agent please")
    event = next(chunks).decode()
    while event.startswith(": keep-alive"):
        event = next(chunks).decode()
    assert event == 'event: queue\ndata: {"waiting": 1}\n\n'
    response.close()
    assert app.test_client().get("/console/stream").status_code == 302  # signed out: to the sign-in page


def test_notes_transfer_and_close_with_a_resolution_from_the_console(app: Flask, customer: WebChat) -> None:
    conversation = handed_off(app, customer)
    ann, bob = AgentBrowser(app, "ann@example.com", "Ann"), AgentBrowser(app, "bob@example.com", "Bob")
    ann.act(conversation, "claim")
    customer.events()
    page = ann.act(conversation, "note", text="<i>Prefers email</i> - VIP")
    assert "Note added; only agents see it." in page
    assert "<strong>note</strong> by Ann: <bdi>&lt;i&gt;Prefers email&lt;/i&gt; - VIP</bdi>" in page
    assert '<li class="event note"><strong>note</strong> by Ann' in page  # marked out from the events
    assert not [e for e in customer.events() if "VIP" in (e.get("text") or "")]
    page = ann.act(conversation, "transfer", agent_email="bob@example.com")
    assert "Transferred to Bob." in page and "assigned to Bob by Ann" in page
    assert "another agent holds this conversation" in ann.act(conversation, "reply", text="me again")
    page = bob.act(conversation, "close", resolution="answered")
    assert "closed by Bob (answered)" in page
    assert current(app, conversation).status == ConversationStatus.CLOSED


def test_an_admin_may_act_on_a_ticket_another_agent_holds(app: Flask, customer: WebChat) -> None:
    conversation = handed_off(app, customer)
    AgentBrowser(app, "ann@example.com").act(conversation, "claim")
    services_of(app).agents.add("root@example.com", "Root", "admin", PASSWORD)
    admin = AgentBrowser.__new__(AgentBrowser)
    admin.client, admin.email = app.test_client(), "root@example.com"
    admin.sign_in(PASSWORD)
    page = admin.act(conversation, "reply", text="An admin answers.")
    assert "Reply sent." in page
    assert re.search(r'<li class="msg agent">\s*<span class="meta">Root · web', page)  # who answered, on record
    assert "An admin answers." in [e.get("text") for e in customer.events()]
    # The console offers an admin what the API allows: return, close and transfer (to themselves too).
    assert all(f">{action}</button>" in page for action in ("Return to bot", "Close", "Transfer"))
    assert '<option value="root@example.com">Root</option>' in page
    assert "Transferred to Root." in admin.act(conversation, "transfer", agent_email="root@example.com")
    admin.act(conversation, "close", resolution="answered")
    assert current(app, conversation).status == ConversationStatus.CLOSED


def test_an_agent_who_goes_away_no_longer_counts_as_available(app: Flask) -> None:
    store = services_of(app).store
    before = utcnow() - timedelta(seconds=1)
    ann = AgentBrowser(app, "ann@example.com")
    page = ann.client.get("/console/").get_data(as_text=True)
    assert '<span class="online">Online</span>' in page and store.agents_online(before) == 1
    response = ann.client.post("/console/presence", data={"presence": "away", "csrf_token": ann.csrf("/console/")},
                               follow_redirects=True)
    assert '<span class="away">Away</span>' in response.get_data(as_text=True)
    assert store.agents_online(before) == 0
    ann.client.post("/console/presence", data={"presence": "online", "csrf_token": ann.csrf("/console/")})
    assert store.agents_online(before) == 1


def test_the_ticket_shows_the_customers_attributes_and_what_the_bot_noted(app: Flask, customer: WebChat) -> None:
    customer.say("where is my order PO-2610421")
    conversation = handed_off(app, customer)
    services_of(app).store.set_attributes(conversation.customer_id, {"plan": "<b>Gold</b>", "city": "Leeds"})
    page = AgentBrowser(app, "ann@example.com").client.get(
        f"/console/conversations/{conversation.conversation_id}").get_data(as_text=True)
    assert "<dt>plan</dt><dd><bdi>&lt;b&gt;Gold&lt;/b&gt;</bdi></dd>" in page
    assert "<dt>city</dt><dd><bdi>Leeds</bdi></dd>" in page
    assert "<dt>order number</dt><dd><bdi>PO-2610421</bdi></dd>" in page


def test_suggested_replies_answer_the_latest_question_not_the_request_for_a_person(
        app: Flask, customer: WebChat) -> None:
    customer.say("how much is shipping")
    conversation = handed_off(app, customer)
    ann = AgentBrowser(app, "ann@example.com", "Ann")
    path = f"/console/conversations/{conversation.conversation_id}"
    assert 'class="suggestions"' not in ann.client.get(path).get_data(as_text=True)  # not theirs to answer yet
    page = ann.act(conversation, "claim")
    suggestions = page[page.index('class="suggestions"'):]
    assert "for <q><bdi>how much is shipping</bdi></q>" in suggestions
    assert re.search(r'data-insert="[^"]*Standard delivery costs EUR 4\.95', suggestions)
    # Canned responses are filled in for this ticket; the customer gave no name.
    assert 'data-insert="Hi, this is Ann from the Puffin Outdoor team.' in page
    assert 'data-insert="Thanks for your patience. I am looking into this now' in page


def test_canned_responses_follow_the_file_and_a_broken_file_is_reported(
        make_app: Callable[..., Flask], tmp_path: Path) -> None:
    canned = tmp_path / "canned.yml"
    canned.write_text("- title: Hello\n  text: Hello {customer}!\n")
    app = make_app(canned_path=canned)
    customer = WebChat(app, app.test_client())
    conversation = handed_off(app, customer)
    ann = AgentBrowser(app, "ann@example.com")
    assert 'data-insert="Hello!"' in ann.act(conversation, "claim")
    canned.write_text("- title: Hello\n  text: Welcome back!\n- title: Bye\n  text: Bye now.\n")
    page = ann.client.get(f"/console/conversations/{conversation.conversation_id}").get_data(as_text=True)
    assert 'data-insert="Welcome back!"' in page and 'data-insert="Bye now."' in page
    canned.write_text("- title: no text here\n")
    page = ann.client.get(f"/console/conversations/{conversation.conversation_id}").get_data(as_text=True)
    assert "Canned responses unavailable:" in page and "response 1 needs a non-empty `title` and `text`" in page


def test_a_reply_can_go_to_another_identity_of_the_customer(make_app: Callable[..., Flask]) -> None:
    app = make_app(rest_token="crm-token")  # agents answer on the REST channel only when it is authenticated
    customer = WebChat(app, app.test_client())
    conversation = handed_off(app, customer)
    store = services_of(app).store
    store.accept(InboundMessage("rest", "crm-42", "m-1", "ticket from the CRM"))
    crm_customer = store.get_customer(store.get_conversation(
        store.list_conversations([ConversationStatus.BOT])[0].conversation_id).customer_id)
    # Two identities of one person (linking is its own feature; here the store is told directly).
    with store._write() as db:
        db.execute("UPDATE identities SET customer_id = ? WHERE customer_id = ?",
                   (conversation.customer_id, crm_customer.customer_id))
    ann = AgentBrowser(app, "ann@example.com")
    page = ann.act(conversation, "claim")
    assert '<option value="web:' in page and "web chat (last used)" in page
    assert '<option value="rest:crm-42">rest crm-42</option>' in page
    assert "Reply sent on rest." in ann.act(conversation, "reply", text="Answered here too", to="rest:crm-42")
    assert [e.text for e in store.outbox_for("rest", "crm-42", "pending")] == ["Answered here too"]
    assert "not an identity of this conversation" in ann.act(conversation, "reply", text="x", to="rest:someone")
    assert "Replies cannot reach sms here" in ann.act(conversation, "reply", text="x", to="sms:+447700900123")


def test_the_live_fragment_and_the_ticket_stream_follow_the_conversation(app: Flask, customer: WebChat) -> None:
    conversation = handed_off(app, customer)
    ann = AgentBrowser(app, "ann@example.com")
    path = f"/console/conversations/{conversation.conversation_id}"
    response = ann.client.get(f"{path}/stream", buffered=False)
    chunks = (chunk.decode() for chunk in response.response if not chunk.startswith(b": keep-alive"))
    assert next(chunks).startswith("retry:")
    first = json.loads(next(chunks).removeprefix("event: ticket\ndata: "))
    assert first["status"] == "queued" and first["assignee"] is None
    ann.act(conversation, "claim")
    claimed = json.loads(next(chunks).removeprefix("event: ticket\ndata: "))
    assert claimed["status"] == "assigned" and claimed["seq"] > first["seq"]
    response.close()
    customer.say("my tent has a hole")
    fragment = ann.client.get(f"{path}?fragment=live").get_data(as_text=True)
    assert "my tent has a hole" in fragment and "<html" not in fragment
    assert ann.client.get("/console/conversations/nope/stream").status_code == 404


def copied_cookie_client(app: Flask, agent: AgentBrowser) -> FlaskClient:
    """Another browser holding a copy of the agent's session cookie (as a thief would)."""
    thief = app.test_client()
    cookie = agent.client.get_cookie("session")
    assert cookie is not None
    thief.set_cookie("session", cookie.value)
    return thief


def test_a_copied_session_cookie_stops_working_once_the_agent_signs_out(app: Flask) -> None:
    ann = AgentBrowser(app, "ann@example.com")
    thief = copied_cookie_client(app, ann)
    assert thief.get("/console/").status_code == 200
    ann.client.post("/console/logout", data={"csrf_token": ann.csrf("/console/")})
    assert thief.get("/console/").status_code == 302
    assert ann.client.get("/console/").status_code == 302


def test_a_new_password_ends_every_sign_in_of_that_agent(app: Flask) -> None:
    ann = AgentBrowser(app, "ann@example.com")
    thief = copied_cookie_client(app, ann)
    services_of(app).agents.reset_password("ann@example.com", "a brand new password")
    assert thief.get("/console/").status_code == 302
    assert ann.client.get("/console/").status_code == 302
    assert ann.sign_in("a brand new password").status_code == 302
    assert ann.client.get("/console/").status_code == 200
