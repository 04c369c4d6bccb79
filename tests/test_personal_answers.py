"""Personal answers: the customer's name, and a returning customer's last question recalled."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from bot.messages import ConversationStatus, utcnow
from tests.dialogue import RecordingChannel


@pytest.fixture
def chat(make_chat: Callable[..., RecordingChannel]) -> RecordingChannel:
    # The store stamps conversations with the real time, so the engine's clock starts there too.
    return make_chat(now=utcnow())


def close(chat: RecordingChannel) -> None:
    """An agent takes the open conversation and closes it, as the console does."""
    conversation = chat.conversation()
    agent = chat.store.add_agent(f"{conversation.reference}@example.com", "Agent", "agent", "hash")
    chat.store.claim(conversation.conversation_id, agent.agent_id)
    chat.store.close_conversation(conversation.conversation_id, agent.agent_id)


def test_the_bot_greets_by_name_when_the_channel_gives_one(chat: RecordingChannel) -> None:
    assert chat.say("hello", external_id="anna", name="Anna Berg")[0].startswith("Hi Anna! I'm the Puffin")
    assert not chat.say("hello", external_id="someone")[0].startswith("Hi ")


def test_a_returning_customer_is_reminded_of_their_last_question(chat: RecordingChannel) -> None:
    chat.say("where is my order", name="Anna Berg")
    chat.say("2610427")
    close(chat)
    chat.clock.now += timedelta(days=3)
    replies = chat.say("hi")
    assert replies[0].startswith("Hi Anna!")
    assert replies[1] == ("Welcome back, Anna! 3 days ago you asked about \u201cwhere is my order (PO-2610427)\u201d. "
                          "Is this about that?")


def test_a_returning_customer_is_reminded_in_their_language_with_no_english_in_it(chat: RecordingChannel) -> None:
    chat.say("wo ist meine bestellung PO-2610427")
    close(chat)
    chat.clock.now += timedelta(days=3)
    replies = chat.say("hallo, ich bin wieder da")
    assert replies[-1] == ('Willkommen zur\u00fcck! Zuletzt haben Sie nach "wo ist meine bestellung PO-2610427" '
                           "gefragt. Geht es wieder darum?")


def test_a_returning_customer_whose_first_words_are_unclear_is_asked_about_last_time(chat: RecordingChannel) -> None:
    chat.say("how long does a refund take?")
    close(chat)
    replies = chat.say("about that thing from before")
    assert replies == ["Welcome back! Earlier today you asked about \u201chow long does a refund take?\u201d. "
                       "Is this about that?"]
    assert chat.conversation().status == ConversationStatus.BOT


def test_nothing_is_recalled_after_the_recall_window_or_mid_conversation(chat: RecordingChannel) -> None:
    chat.say("how long does a refund take?")
    close(chat)
    chat.clock.now += timedelta(days=31)
    assert len(chat.say("hello")) == 1
    assert len(chat.say("hello")) == 1


def test_a_first_time_customer_gets_no_recall(chat: RecordingChannel) -> None:
    assert "other words" in chat.say("about that thing from before")[0]
