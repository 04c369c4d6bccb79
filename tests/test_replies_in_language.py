"""Customers are answered in their language: the `language` slot, filled from each message, selects the
response variations of the Rasa domain (`condition` on the slot), and a request for a person is heard in
every language the sample serves."""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from bot.dialogue.domain import load_domain
from bot.errors import SwitchboardError
from bot.messages import ConversationStatus, EventKind
from handoff.assist import load_canned
from switchboard.app import services_of
from tests.conftest import ROOT, WebChat
from tests.dialogue import RecordingChannel
from tests.test_agent_api import ApiAgent, closed_by_an_agent

LANGUAGES = ("de", "bg", "zh", "zh-TW", "th")
# Rendered without the conversation's slots: it goes to the *other* conversation of a quoted reference,
# whose owner's language the requester must not choose. The passage alone has nothing to translate.
NOT_TRANSLATED = {"utter_reference_notice", "utter_kb_answer_no_link"}


def _placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def _payloads(variation: dict[str, Any]) -> tuple[str, ...]:
    """A variation's button payloads: intents and their entities as they are; a question sent as text
    (a quick reply's "How much is shipping?") is asked in each language's own words."""
    return tuple(b["payload"] if b["payload"].startswith("/") or b["payload"].isdigit() else "<question>"
                 for b in variation.get("buttons") or ())


def test_every_response_has_each_language_with_the_same_placeholders_and_buttons() -> None:
    domain = load_domain(ROOT / "data" / "domain.yml")
    assert "language" in domain.slots
    for name, variations in domain.responses.items():
        english = [v for v in variations if not v.get("condition")]
        allowed = set().union(*(_placeholders(v["text"]) for v in english))
        payloads = {_payloads(v) for v in english}
        for language in LANGUAGES:
            own = [v for v in variations if v.get("condition") == [{"type": "slot", "name": "language",
                                                                     "value": language}]]
            if name in NOT_TRANSLATED:
                assert not own
                continue
            assert own, f"{name} has no {language} variation"
            for variation in own:
                assert _placeholders(variation["text"]) <= allowed, (name, language)
                assert _payloads(variation) in payloads, (name, language)


def test_a_chinese_question_is_answered_in_chinese(make_chat: Callable[..., RecordingChannel]) -> None:
    chat = make_chat()
    replies = chat.say("运费多少")  # "how much is shipping": the sample KB has this article in Chinese
    assert _kb_event(chat)["decision"] == "answer"
    assert replies[0].startswith("标准配送运费为 4.95")
    assert replies[-1].endswith("这对您有帮助吗？")
    assert chat.last_outcome is not None and chat.last_outcome.dialogue.slots["language"] == "zh"
    assert [b.title for b in chat.last_outcome.replies[-1].buttons] == ["有帮助", "没有"]
    assert chat.say("/kb_helpful") == ["很高兴能帮到您！"]  # the tapped payload has no language of its own
    (answer,) = chat.say("忘记密码了怎么重置")  # no Chinese version of this one
    assert answer.startswith("这篇文章目前只有英文版：\n\n")


def test_choices_are_offered_in_chinese(make_chat: Callable[..., RecordingChannel]) -> None:
    chat = make_chat()
    replies = chat.say("寄到国外运费多少")  # "how much is shipping abroad": two articles come close
    assert _kb_event(chat)["decision"] == "choices"
    assert replies[0].startswith("我不太确定")
    assert chat.last_outcome is not None and chat.last_outcome.replies[0].buttons[-1].title == "都不是"
    assert chat.say("/kb_none")[0].startswith("抱歉")


def test_a_german_customer_who_is_not_understood_hears_it_in_german(
        make_chat: Callable[..., RecordingChannel]) -> None:
    chat = make_chat()
    assert chat.say("Können Sie mir bitte etwas über den Mondkalender erzählen?") == [
        "Entschuldigung, das habe ich nicht ganz verstanden. Können Sie es anders formulieren? Sie können auch "
        "nach einem Mitarbeiter fragen."]


def test_a_message_too_short_to_tell_keeps_the_language(make_chat: Callable[..., RecordingChannel]) -> None:
    chat = make_chat()
    chat.say("Как да върна якето, което купих онлайн?")
    replies = chat.say("ok")
    assert chat.last_outcome is not None and chat.last_outcome.dialogue.slots["language"] == "bg"
    assert all(not reply.isascii() for reply in replies)


def test_a_short_question_is_searched_in_the_conversations_language(
        make_chat: Callable[..., RecordingChannel]) -> None:
    chat = make_chat()
    chat.say("Hallo, ich habe eine Frage zu meiner Bestellung")
    chat.say("versandkosten?")  # too short to tell: the conversation is in German
    kb = _kb_event(chat)
    assert kb["language"] == "de" and kb["encoder"] == "multilingual"


def test_the_language_detected_when_a_message_was_stored_is_its_turns(
        make_chat: Callable[..., RecordingChannel]) -> None:
    # The inbox detects a message's language as it stores it; the turn takes it from there rather than
    # detecting it again (what it says wins even where the text alone would read otherwise).
    chat = make_chat()
    chat.say("where is my parcel", data={"language": "de"})
    outcome = chat.last_outcome
    assert outcome is not None and outcome.dialogue is not None
    assert outcome.dialogue.slots["language"] == "de"


def test_english_customers_get_the_english_responses(make_chat: Callable[..., RecordingChannel]) -> None:
    chat = make_chat()
    assert chat.say("tell me about the lunar calendar please")[0].startswith("Sorry, I'm not sure I understood")


@pytest.mark.parametrize(("text", "language"), [
    ("转人工", "zh"),
    ("ขอคุยกับเจ้าหน้าที่ค่ะ", "th"),
    ("Искам да говоря с човек", "bg"),
    ("Ich möchte mit einem Mitarbeiter sprechen", "de"),
])
def test_a_request_for_a_person_is_heard_and_answered_in_the_language(
        make_chat: Callable[..., RecordingChannel], text: str, language: str) -> None:
    chat = make_chat()
    (reply,) = chat.say(text)
    handoff = chat.handoff_event()
    assert handoff.data["reason"] == "customer_request" and handoff.data["language"] == language
    domain = load_domain(ROOT / "data" / "domain.yml")
    openings = [v["text"].split("{")[0] for name in ("utter_handoff", "utter_handoff_no_agents", "utter_handoff_closed")
                for v in domain.responses[name] if v.get("condition", [{}])[0].get("value") == language]
    assert any(reply.startswith(opening) for opening in openings), reply


def test_not_every_message_mentioning_customer_service_is_a_request_for_a_person(
        make_chat: Callable[..., RecordingChannel]) -> None:
    chat = make_chat()
    chat.say("客服电话是多少")  # "what is the customer service phone number"
    assert [e for e in chat.store.transcript(chat.conversation().conversation_id) if e.kind == EventKind.HANDOFF] == []


def test_the_rating_question_on_close_is_in_the_customers_language(app: Flask, customer: WebChat) -> None:
    customer.say("我想和真人说话，转人工")
    (conversation,) = services_of(app).store.list_conversations([ConversationStatus.QUEUED])
    conversation_id = conversation.conversation_id
    _, question = closed_by_an_agent(app, customer, conversation_id)
    assert question["text"].startswith("感谢您联系 Puffin Outdoor")
    assert [b["payload"] for b in question["buttons"]] == ["1", "2", "3", "4", "5"]
    assert services_of(app).store.get_conversation(conversation_id).dialogue.slots["language"] == "zh"


def _kb_event(chat: RecordingChannel) -> dict[str, Any]:
    events = chat.store.transcript(chat.conversation().conversation_id)
    return [e.data for e in events if e.kind == EventKind.KB_ANSWER][-1]


def test_agents_get_canned_responses_and_suggestions_in_the_customers_language(app: Flask,
                                                                                customer: WebChat) -> None:
    customer.say("运费多少")  # "how much is shipping"
    customer.say("还是想问一下运费，转人工")
    (conversation,) = services_of(app).store.list_conversations([ConversationStatus.QUEUED])
    ann = ApiAgent(app, "ann@example.com")
    ann.post(f"/tickets/{conversation.conversation_id}/claim")
    detail = ann.get(f"/tickets/{conversation.conversation_id}").get_json()
    assert detail["customer"]["language"] == "zh"
    greeting = detail["canned"][0]
    assert greeting["language"] == "zh" and greeting["text"] == (
        "您好，我是 Puffin Outdoor 团队的 Ann。我已经看过您和智能助手的对话，您不用再重复了。")
    assert detail["suggestions"][0]["article_id"] == "shipping-costs.zh"  # the article's Chinese version


def test_a_canned_file_with_broken_translations_is_reported(tmp_path: Path) -> None:
    canned = tmp_path / "canned.yml"
    canned.write_text("- title: Hi\n  text: Hello\n  translations: [de, Hallo]\n", encoding="utf-8")
    with pytest.raises(SwitchboardError, match="maps language codes to texts"):
        load_canned(canned)
    canned.write_text("- title: Hi\n  text: Hello {customer}\n  translations: {de: Hallo}\n", encoding="utf-8")
    (hello,) = load_canned(canned)
    assert hello.for_ticket("Anna", "Ben", "de-AT").text == "Hallo"
    assert hello.for_ticket("Anna", "Ben", "fr").text == "Hello Anna"
