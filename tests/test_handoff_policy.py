"""The handoff policy: each trigger hands off with its reason, and the customer is told what happens next."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.dialogue.handoff_policy import load_handoff_policy
from bot.errors import SwitchboardError
from bot.messages import ConversationStatus
from tests.conftest import OPEN_HOURS, ROOT
from tests.dialogue import RecordingChannel


def handed_off(chat: RecordingChannel, reason: str) -> dict[str, object]:
    conversation = chat.conversation()
    assert conversation.status == ConversationStatus.QUEUED
    assert conversation.handoff_reason == reason
    # Whatever the trigger, the customer's last reply says what happens next and quotes the reference.
    assert conversation.reference in chat.sent[-1][1]
    return chat.handoff_event().data


@pytest.mark.parametrize(("text", "language"), [
    ("I want to talk to a human", "en"),
    ("agent please", "en"),
    ("Kann ich bitte mit einem Mitarbeiter sprechen?", "de"),
    ("Mitarbeiter bitte", "de"),
    ("Quiero hablar con una persona", "es"),
    ("humano por favor", "es"),
    ("Je veux parler à quelqu\u2019un", "fr"),
    ("CONSEILLÈRE !", "fr"),
])
def test_an_explicit_request_in_four_languages_hands_off(chat: RecordingChannel, text: str, language: str) -> None:
    chat.say(text)
    assert handed_off(chat, "customer_request")["language"] == language


def test_a_request_word_inside_a_longer_question_is_not_a_request(chat: RecordingChannel) -> None:
    replies = chat.say("the delivery agent left my parcel with a neighbour, is that normal?")
    assert chat.conversation().status == ConversationStatus.BOT
    assert replies


def test_the_request_human_intent_hands_off_too(chat: RecordingChannel) -> None:
    chat.say("I need to speak with a representative please")  # no phrase of the policy file
    assert handed_off(chat, "customer_request")["intent"] == "request_human"


def test_repeated_fallbacks_hand_off_after_the_configured_number(chat: RecordingChannel) -> None:
    assert "other words" in chat.say("purple elephants dance on the moon")[0]
    assert chat.conversation().status == ConversationStatus.BOT
    chat.say("zxq vrrk plomb")
    assert handed_off(chat, "repeated_fallback")["fallbacks"] == 2


def test_one_very_negative_message_hands_off_and_every_message_is_rated(chat: RecordingChannel) -> None:
    chat.say("how long do refunds take?")
    chat.say("This is the worst service ever, I am furious!!!")
    detail = handed_off(chat, "negative_sentiment")
    assert float(str(detail["sentiment"])) <= -0.6
    chat.say("still waiting")  # the agent sees this one rated too, though the bot stays silent
    scores = [e.data["sentiment"] for e in chat.messages_in()]
    assert len(scores) == 3
    assert scores[0] >= 0 and scores[1] <= -0.6


def test_mild_frustration_twice_in_a_row_hands_off(chat: RecordingChannel) -> None:
    chat.say("my parcel is late again, this is ridiculous")
    assert chat.conversation().status == ConversationStatus.BOT
    chat.say("the tracking page is useless")
    assert handed_off(chat, "negative_sentiment")["negative_messages"] == 2


def test_words_added_to_the_lexicon_rate_other_languages(chat: RecordingChannel) -> None:
    chat.say("Das ist eine Frechheit und eine Katastrophe")
    assert handed_off(chat, "negative_sentiment")


def test_a_sensitive_intent_hands_off(chat: RecordingChannel) -> None:
    chat.say("I would like to make a formal complaint")
    detail = handed_off(chat, "sensitive_intent")
    assert detail["intent"] == "complaint"


def test_a_keyword_hands_off_wherever_it_appears(chat: RecordingChannel) -> None:
    chat.say("My bank says I should do a chargeback for order 2610427")
    assert handed_off(chat, "keyword")["keyword"] == "chargeback"


def test_with_an_agent_online_the_customer_is_told_the_expected_wait(chat: RecordingChannel) -> None:
    agent = chat.store.add_agent("ana@example.com", "Ana", "agent", "hash")
    chat.store.touch_agent(agent.agent_id, OPEN_HOURS)
    reply = chat.say("human please")[-1]
    detail = handed_off(chat, "customer_request")
    assert detail["open"] is True and detail["agents_online"] == 1
    assert detail["expected_wait_minutes"] == 6
    assert "about 6 minutes" in reply


def test_in_hours_with_nobody_online_the_customer_is_told_it_may_take_a_while(chat: RecordingChannel) -> None:
    reply = chat.say("human please")[-1]
    assert handed_off(chat, "customer_request")["agents_online"] == 0
    assert "busy" in reply


def test_outside_business_hours_the_customer_is_told_when_the_team_is_back(
        make_chat: Callable[..., RecordingChannel]) -> None:
    sunday = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    chat = make_chat(now=sunday)
    reply = chat.say("human please")[-1]
    detail = handed_off(chat, "customer_request")
    assert detail["open"] is False
    assert detail["opens_at"] == "2026-11-30T08:00:00+01:00"
    assert "back Monday 08:00 (Europe/Berlin)" in reply
    # The ticket is kept for the team.
    assert chat.conversation().status == ConversationStatus.QUEUED


def test_when_the_team_is_back_is_written_in_the_customers_language(
        make_chat: Callable[..., RecordingChannel]) -> None:
    chat = make_chat(now=datetime(2026, 11, 29, 12, 0, tzinfo=UTC))  # a Sunday
    reply = chat.say("Ich möchte bitte mit einem Menschen sprechen")[-1]
    assert "wieder erreichbar: Montag 08:00 (Europe/Berlin)" in reply
    chat.say("我要人工", "customer-2")
    assert "星期一 08:00 (Europe/Berlin)" in chat.sent[-1][1]
    # A language the shop has no responses in is answered in the default, English, and so is its day.
    chat.say("¿Puedo hablar con una persona, por favor?", "customer-3")
    assert "back Monday 08:00 (Europe/Berlin)" in chat.sent[-1][1]


def test_while_waiting_for_a_person_the_bot_still_answers_from_the_knowledge_base(
        make_chat: Callable[..., RecordingChannel]) -> None:
    chat = make_chat(now=datetime(2026, 11, 29, 12, 0, tzinfo=UTC))  # a Sunday: the team is away
    chat.say("human please")
    assert chat.say("how much is shipping")[0].startswith("Standard delivery costs EUR 4.95")
    assert chat.say("hello? anyone there?") == []  # chit-chat waits for the person
    assert chat.say("do you rent kayaks") == []    # so does a question the KB cannot answer: no fallback
    assert chat.say("/kb_unhelpful") == []         # and a "no" to the answer
    conversation = chat.conversation()
    assert conversation.status == ConversationStatus.QUEUED and conversation.fallback_streak == 0
    assert len([e for e in chat.store.transcript(conversation.conversation_id) if e.kind == "handoff"]) == 1


def test_the_policy_can_keep_the_bot_silent_while_the_customer_waits(
        make_chat: Callable[..., RecordingChannel], tmp_path: Path) -> None:
    policy = tmp_path / "handoff.yml"
    policy.write_text((ROOT / "data" / "handoff.yml").read_text(encoding="utf-8").replace(
        "answer_while_queued: true", "answer_while_queued: false"), encoding="utf-8")
    chat = make_chat(handoff_policy_path=policy)
    chat.say("human please")
    assert chat.say("how much is shipping") == []


def test_public_holidays_count_as_closed(make_chat: Callable[..., RecordingChannel]) -> None:
    christmas_day = datetime(2026, 12, 25, 10, 0, tzinfo=UTC)  # a Friday
    chat = make_chat(now=christmas_day)
    chat.say("human please")
    # Boxing Day is a holiday in Germany too, and then comes the weekend.
    assert handed_off(chat, "customer_request")["opens_at"] == "2026-12-28T08:00:00+01:00"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "handoff.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_sample_policy_loads_without_warnings() -> None:
    warnings: list[str] = []
    policy = load_handoff_policy(ROOT / "data" / "handoff.yml", warnings.append)
    assert warnings == []
    assert set(policy.explicit_request.phrases) == {"en", "de", "es", "fr", "bg", "zh", "zh-TW", "th"}


def test_unknown_keys_are_reported_with_the_file(tmp_path: Path) -> None:
    warnings: list[str] = []
    path = write(tmp_path, "repeated_fallback: 3\nescalate_on_full_moon: true\n")
    assert load_handoff_policy(path, warnings.append).repeated_fallback == 3
    assert warnings == [f"{path}: unknown key 'escalate_on_full_moon' is ignored"]


@pytest.mark.parametrize(("text", "message"), [
    ("repeated_fallback: 0\n", "'repeated_fallback' must be 1 or more"),
    ("business_hours:\n  timezone: Mars/Olympus\n", "unknown time zone"),
    ("business_hours:\n  open:\n    weekdays: '09:00-17:00'\n", "is not a day or range like mon-fri"),
    ("business_hours:\n  open:\n    mon: '17:00-09:00'\n", "closes before it opens"),
    ("business_hours:\n  public_holidays: XX\n", "public_holidays"),
])
def test_bad_values_are_errors_that_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SwitchboardError, match=message):
        load_handoff_policy(write(tmp_path, text), lambda warning: None)


