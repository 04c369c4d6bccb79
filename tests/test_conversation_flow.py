"""The bot's side of a conversation, driven through the web chat API."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from flask import Flask

from bot.analytics.gaps import collect_gaps
from bot.messages import ConversationStatus, EventKind
from bot.ports import Encoder
from kb_index.snapshot import build_snapshot
from switchboard.app import services_of
from tests.conftest import ROOT, WebChat, settle
from tests.test_console import AgentBrowser


def only_conversation(app: Flask):
    store = services_of(app).store
    open_ones = store.list_conversations(list(ConversationStatus))
    assert len(open_ones) == 1
    return open_ones[0]


def test_kb_question_is_answered_with_the_right_article(customer: WebChat, app: Flask) -> None:
    replies = customer.say("How do I reset my password?")
    assert len(replies) == 1
    text = replies[0]["text"]
    assert "Forgot password" in text
    assert "https://help.puffin-outdoor.example/account/password-reset" in text
    assert replies[0]["author"] == "bot"
    transcript = services_of(app).store.transcript(only_conversation(app).conversation_id)
    tried = [e for e in transcript if e.kind == "kb_answer"]
    assert tried[0].data["answered"] is True
    assert tried[0].data["passages"][0]["article_id"] == "password-reset"


def test_answer_quotes_whole_sentences(customer: WebChat) -> None:
    text = customer.say("when will my refund arrive")[0]["text"]
    quote = text.split("\n\n")[0]
    assert quote.startswith("We refund your return within 5 working days")
    assert quote.endswith(".")


def test_greeting_is_answered_from_the_domain(customer: WebChat) -> None:
    domain = yaml.safe_load((ROOT / "data" / "domain.yml").read_text(encoding="utf-8"))
    greetings = {variation["text"] for variation in domain["responses"]["utter_greet"]}
    assert customer.say("hello")[0]["text"] in greetings


def test_an_ok_is_acknowledged_not_searched_for_and_not_a_gap(customer: WebChat, app: Flask) -> None:
    for text in ("ok", "cool", "lol"):
        (reply,) = customer.say(text)
        assert reply["text"] == "Anything else I can help with?"
    assert collect_gaps(services_of(app).store) == []


def test_explicit_request_for_a_person_is_handed_off(customer: WebChat, app: Flask) -> None:
    replies = customer.say("I want to talk to a person")
    conversation = only_conversation(app)
    assert conversation.status == ConversationStatus.QUEUED
    assert conversation.handoff_reason == "customer_request"
    assert conversation.reference in replies[0]["text"]


def test_two_fallbacks_in_a_row_are_handed_off(customer: WebChat, app: Flask) -> None:
    first = customer.say("purple elephants dance on the moon")
    assert "other words" in first[0]["text"]
    assert only_conversation(app).status == ConversationStatus.BOT
    second = customer.say("what's the weather in Paris")
    conversation = only_conversation(app)
    assert conversation.status == ConversationStatus.QUEUED
    assert conversation.handoff_reason == "repeated_fallback"
    assert conversation.reference in second[0]["text"]


def test_an_answer_in_between_resets_the_fallback_count(customer: WebChat, app: Flask) -> None:
    customer.say("purple elephants dance on the moon")
    customer.say("how much is shipping")
    customer.say("what's the weather in Paris")
    assert only_conversation(app).status == ConversationStatus.BOT


def test_repeated_client_message_id_is_stored_and_answered_once(customer: WebChat, app: Flask) -> None:
    for _ in range(3):
        response = customer.send("how much is shipping", client_message_id="same-id")
        assert response.status_code == 202
    assert response.get_json()["duplicate"] is True
    customer.say("thanks")
    events = customer.events() or []
    transcript = services_of(app).store.transcript(only_conversation(app).conversation_id)
    incoming = [e.text for e in transcript if e.kind == "message_in"]
    outgoing = [e for e in transcript if e.kind == "message_out"]
    assert incoming == ["how much is shipping", "thanks"]
    assert len(outgoing) == 2
    assert events == []


def test_messages_of_one_customer_join_one_conversation(customer: WebChat, app: Flask) -> None:
    customer.say("hello")
    customer.say("how much is shipping")
    conversation = only_conversation(app)
    kinds = [e.kind.value for e in services_of(app).store.transcript(conversation.conversation_id)]
    assert kinds == ["message_in", "message_out", "message_in", "kb_answer", "message_out"]


def test_a_published_article_is_answered_without_a_restart(
        tmp_path: Path, encoder: Encoder, make_app: Callable[..., Flask]) -> None:
    kb, index = tmp_path / "kb", tmp_path / "index"
    shutil.copytree(ROOT / "data" / "kb", kb)
    build_snapshot(kb, index, encoder, model="test")
    app = make_app(kb_dir=kb, index_dir=index)
    customer = WebChat(app, app.test_client())
    assert "other words" in customer.say("do you rent out snowshoes")[0]["text"]

    (kb / "snowshoe-rental.md").write_text(
        "---\nid: snowshoe-rental\ntitle: Snowshoe rental\nurl: https://help.puffin-outdoor.example/rental\n---\n"
        "## Renting snowshoes\nOur Edinburgh and Leeds stores rent out snowshoes from December to March "
        "for 12 a day, poles included.\n", encoding="utf-8")
    published = build_snapshot(kb, index, encoder, model="test")
    retriever = services_of(app).retriever
    retriever.search("snowshoes", k=1)
    deadline = time.monotonic() + 10
    while retriever.snapshot.path != published:
        assert time.monotonic() < deadline, "the running app did not load the published snapshot"
        time.sleep(0.01)
    assert "rent out snowshoes from December" in customer.say("do you rent out snowshoes")[0]["text"]


def test_a_flood_from_one_sender_is_stored_whole_and_answered_once_it_stops(make_app: Callable[..., Flask]) -> None:
    app = make_app(sender_burst=3)
    flooder, other = WebChat(app, app.test_client()), WebChat(app, app.test_client())
    for n in range(12):
        assert flooder.send(f"message number {n}").status_code == 202
    assert [e["kind"] for e in other.say("how much is shipping")] == ["message_out"]  # others are answered
    settle(app)
    events = flooder.events()
    assert [e["text"] for e in events if e["kind"] == "message_in"] == [f"message number {n}" for n in range(12)]
    store = services_of(app).store
    (transcript,) = [t for t in map(store.transcript, (c.conversation_id for c in
                                                        store.list_conversations(list(ConversationStatus))))
                     if any(e.text == "message number 0" for e in t)]
    last_in = max(e.seq for e in transcript if e.kind == EventKind.MESSAGE_IN)
    assert transcript[-1].seq > last_in and transcript[-1].kind == EventKind.MESSAGE_OUT  # the last one is answered
    flagged = [e for e in transcript if e.kind == EventKind.MESSAGE_IN and e.data.get("throttled")]
    assert len(flagged) == 9 and sum(bool(e.data.get("skipped")) for e in flagged) == 8  # all but the last
    # Agents are told on their queue page.
    queue = AgentBrowser(app, "ann@example.com").client.get("/console/").get_data(as_text=True)
    reference = store.get_conversation(transcript[0].conversation_id).reference
    assert "Flooding in the last hour" in queue and f">{reference}</a>" in queue
