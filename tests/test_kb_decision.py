"""The KB decision: answer a clear best article, offer close ones as choices, decline the rest; and the
"did you mean" buttons in a conversation."""

from __future__ import annotations

import pytest
from flask import Flask

from bot.analytics.gaps import ANSWERED_WRONGLY, NOT_ANSWERED, gap_questions
from bot.dialogue.kb_decision import OTHER_LANGUAGES, KbAction, KbPolicy, decide, parse_language_policies, policy_spec
from bot.errors import SwitchboardError
from bot.messages import ConversationStatus, Event, EventKind, Passage
from switchboard.app import services_of
from tests.conftest import WebChat
from tests.dialogue import RecordingChannel
from tests.test_console import AgentBrowser

POLICY = KbPolicy(answer_score=0.7, answer_margin=0.05, choice_score=0.5, choice_window=0.1, max_choices=3)


def passages(*scored: tuple[str, float]) -> list[Passage]:
    return [Passage(article, article.title(), "", "", "", score) for article, score in scored]


def test_a_clear_best_article_is_answered() -> None:
    decision = decide(passages(("returns", 0.82), ("returns", 0.8), ("refunds", 0.7)), POLICY)
    assert decision.action == KbAction.ANSWER and decision.article_ids == ("returns",)
    assert round(decision.margin, 2) == 0.12  # to the next article, not the next passage


def test_articles_too_close_to_tell_apart_are_offered_at_most_three() -> None:
    decision = decide(passages(("a", 0.8), ("b", 0.78), ("c", 0.74), ("d", 0.72), ("e", 0.6)), POLICY)
    assert decision.action == KbAction.CHOICES and decision.article_ids == ("a", "b", "c")


def test_a_weak_best_article_alone_is_declined() -> None:
    assert decide(passages(("a", 0.65), ("b", 0.4)), POLICY).action == KbAction.DECLINE
    assert decide(passages(("a", 0.45), ("b", 0.44)), POLICY).action == KbAction.DECLINE
    assert decide([], POLICY).action == KbAction.DECLINE


def test_a_question_naming_what_the_kb_never_mentions_is_declined_however_well_it_scores() -> None:
    decision = decide(passages(("password-reset", 0.9), ("account", 0.5)), POLICY, ["netflix"])
    assert (decision.action, decision.unknown_names, decision.score) == (KbAction.DECLINE, ("netflix",), 0.9)


def transcript(app: Flask) -> list[Event]:
    store = services_of(app).store
    (conversation,) = store.list_conversations(list(ConversationStatus))
    return store.transcript(conversation.conversation_id)


def buttons_of(reply: dict[str, object]) -> list[dict[str, str]]:
    return list(reply["buttons"])  # type: ignore[call-overload]


def test_did_you_mean_answers_the_article_chosen_and_keeps_the_choice(app: Flask, customer: WebChat) -> None:
    (offer,) = customer.say("how do i return something")
    buttons = buttons_of(offer)
    assert "which of these" in str(offer["text"])
    assert [b["title"] for b in buttons][-1] == "None of these"
    chosen = next(b for b in buttons if b["title"] == "How to send a return")
    (answer,) = customer.say(chosen["payload"])
    assert 'More in "How to send a return"' in str(answer["text"])  # the article chosen
    events = [e for e in transcript(app) if e.kind == EventKind.KB_ANSWER]
    assert events[-1].data["decision"] == "chosen" and events[-1].data["chosen"] == "returns-how"
    assert events[-1].data["question"] == "how do i return something"
    # Agents read the tap as the title the customer saw, not as its payload.
    page = AgentBrowser(app, "ann@example.com").client.get(
        f"/console/conversations/{events[-1].conversation_id}").get_data(as_text=True)
    assert "How to send a return</bdi> <span class=\"tapped\">(tapped a button)</span>" in page
    assert "/kb_article" not in page.split("Transcript", 1)[1].split("</ol>", 1)[0]


def test_none_of_these_is_a_miss_and_the_question_reaches_the_gaps(app: Flask, customer: WebChat) -> None:
    (offer,) = customer.say("how do i return something")
    (fallback,) = customer.say(buttons_of(offer)[-1]["payload"])
    assert "not sure I understood" in str(fallback["text"])
    gaps = gap_questions(transcript(app))
    assert [(g.text, g.reason) for g in gaps] == [("how do i return something", NOT_ANSWERED)]


def test_another_services_password_is_not_answered_from_ours_and_reaches_the_gaps(app: Flask,
                                                                                  customer: WebChat) -> None:
    (reply,) = customer.say("how do i reset my netflix password")
    assert "not sure I understood" in str(reply["text"])
    (event,) = [e for e in transcript(app) if e.kind == EventKind.KB_ANSWER]
    assert event.data["decision"] == "decline" and event.data["unknown_names"] == ["netflix"]
    assert event.data["passages"][0]["article_id"] == "password-reset"  # what it would have answered
    assert [g.text for g in gap_questions(transcript(app))] == ["how do i reset my netflix password"]
    (answer,) = customer.say("how do i reset my password")
    assert "Forgot password" in str(answer["text"])
    (answer,) = customer.say("hi, i'm sophie, how do i reset my password")  # her name is no topic
    assert "Forgot password" in str(answer["text"])


def test_a_choice_nobody_offered_is_read_as_any_message_and_kept_as_no_example(app: Flask,
                                                                               customer: WebChat) -> None:
    assert customer.say('/kb_article{"article_id": "gift-cards"}')
    assert all(e.data.get("decision") != "chosen" for e in transcript(app) if e.kind == EventKind.KB_ANSWER)


def test_a_no_to_did_this_help_is_a_miss_the_gaps_report_shows_as_answered_wrongly(
        app: Flask, customer: WebChat) -> None:
    (answer,) = customer.say("how much is shipping")
    assert str(answer["text"]).endswith("Did this help?")
    assert [b["title"] for b in buttons_of(answer)] == ["Yes", "No"]
    (sorry,) = customer.say(buttons_of(answer)[1]["payload"])
    assert "that was not it" in str(sorry["text"])
    assert [(g.text, g.reason) for g in gap_questions(transcript(app))] == [("how much is shipping",
                                                                              ANSWERED_WRONGLY)]
    (answer,) = customer.say("where can i download my invoice")
    (thanks,) = customer.say(buttons_of(answer)[0]["payload"])
    assert thanks["text"] == "Glad it helped!"
    assert len(gap_questions(transcript(app))) == 1


def test_answers_by_sms_ask_nothing_after_them(chat: RecordingChannel) -> None:
    chat.channel = "sms"
    (answer,) = chat.say("how much is shipping")
    assert "4.95" in answer and "Did this help" not in answer
    assert chat.last_outcome is not None and not chat.last_outcome.replies[0].buttons


def test_the_policies_of_other_languages_are_read_from_one_setting() -> None:
    assert parse_language_policies("") == OTHER_LANGUAGES
    policies = parse_language_policies("*=0.9/0.01/0.85/0.05, th=0.7/0.02/0.7/0.03")
    assert policies.get("de") == KbPolicy(answer_score=0.9, answer_margin=0.01, choice_score=0.85, choice_window=0.05)
    assert policies.get("th") == KbPolicy(answer_score=0.7, answer_margin=0.02, choice_score=0.7, choice_window=0.03)
    assert policies.get("bg") == OTHER_LANGUAGES.get("bg")  # what the setting leaves out keeps its default
    assert parse_language_policies(f"bg={policy_spec(OTHER_LANGUAGES.get('bg'))}") == OTHER_LANGUAGES


@pytest.mark.parametrize("spec", ["0.8/0.02/0.8/0.03", "*=0.8/0.02/0.8", "de=high/0.02/0.8/0.03", "de=1.5/0/0/0",
                                  "=0.8/0.02/0.8/0.03"])
def test_a_wrong_policy_setting_says_how_to_write_one(spec: str) -> None:
    with pytest.raises(SwitchboardError,
                       match=r"SWITCHBOARD_KB_OTHER_LANGUAGES: .*<language, \*, tuned or taught>=<answer score>"):
        parse_language_policies(spec)
