"""The KB-gap report: unanswered questions found in transcripts, grouped by meaning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner
from flask import Flask

from bot.analytics.gaps import ANSWERED_WRONGLY, NOT_ANSWERED, GapQuestion, cluster_gaps, gap_questions
from bot.messages import Author, Event, EventKind, utcnow
from bot.ports import Encoder
from kb_index.multilingual import MultilingualModel
from switchboard.app import services_of
from switchboard.cli import main
from tests.conftest import ROOT, WebChat


def event(seq: int, kind: EventKind, text: str | None = None, **data: Any) -> Event:
    return Event("c1", seq, kind, Author.CUSTOMER, "web", "u1", text, data, utcnow())


def test_unanswered_questions_and_questions_before_a_request_for_a_person() -> None:
    transcript = [
        event(1, EventKind.MESSAGE_IN, "do you rent snowshoes"),
        event(2, EventKind.KB_ANSWER, answered=False),
        event(3, EventKind.MESSAGE_IN, "how much is shipping"),
        event(4, EventKind.KB_ANSWER, answered=True),
        event(5, EventKind.MESSAGE_IN, "I want a person"),
        event(6, EventKind.HANDOFF, reason="customer_request"),
        event(7, EventKind.MESSAGE_IN, "2"),  # no words: nothing an article could answer
        event(8, EventKind.KB_ANSWER, answered=False),
        event(9, EventKind.MESSAGE_IN, "👍?"),
        event(10, EventKind.KB_ANSWER, answered=False),
    ]
    assert [(q.text, q.reason) for q in gap_questions(transcript)] == [
        ("do you rent snowshoes", NOT_ANSWERED),
        ("how much is shipping", ANSWERED_WRONGLY),  # answered, and then a person was asked for
    ]


def test_questions_are_grouped_by_meaning_largest_group_first(encoder: Encoder) -> None:
    texts = ["do you rent snowshoes", "can I hire snow shoes", "snowshoe rental price",
             "do you sell kayaks", "kayaks for sale?", "what is your company's history"]
    clusters = cluster_gaps([GapQuestion("c", t, NOT_ANSWERED, utcnow()) for t in texts], encoder)
    assert [c.size for c in clusters] == [3, 2, 1]
    assert set(clusters[0].examples) == set(texts[:3])
    assert clusters[0].reasons == {NOT_ANSWERED: 3}


def test_a_group_counts_the_names_its_questions_were_declined_for(encoder: Encoder) -> None:
    transcript = [event(1, EventKind.MESSAGE_IN, "reset my netflix password"),
                  event(2, EventKind.KB_ANSWER, answered=False, unknown_names=["netflix"])]
    (question,) = gap_questions(transcript)
    assert question.names == ("netflix",)
    again = GapQuestion("c2", "my netflix password does not work", NOT_ANSWERED, utcnow(), names=("netflix",))
    (cluster,) = cluster_gaps([question, again], encoder)
    assert cluster.names == {"netflix": 2}


def test_gaps_command_reports_what_customers_asked(app: Flask, customer: WebChat, index_dir: Path) -> None:
    customer.say("do you rent snowshoes")
    customer.say("how much is shipping")
    customer.say("I want to talk to a person")
    customer.say("how do i reset my netflix password")
    settings = services_of(app).settings
    env = {"SWITCHBOARD_STORE_URL": settings.store_url, "SWITCHBOARD_INDEX_DIR": str(index_dir),
           "SWITCHBOARD_KB_DIR": str(ROOT / "data" / "kb")}
    result = CliRunner().invoke(main, ["kb", "gaps"], env=env)
    assert result.exit_code == 0, result.output
    assert "3 unanswered questions from 1 conversation, 3 groups" in result.output
    assert "declined for names the KB never mentions: netflix; if you serve them" in result.output
    assert "'do you rent snowshoes'  (1 question: 1 not answered)" in result.output
    assert "'how much is shipping'  (1 question: 1 answered wrongly)" in result.output


def test_questions_are_grouped_within_their_language(encoder: Encoder, multilingual: MultilingualModel) -> None:
    asked = [("do you rent snowshoes", None), ("can I hire snow shoes", "en"), ("你们出租雪鞋吗", "zh"),
             ("可以租雪地鞋吗", "zh"), ("你们卖皮划艇吗", "zh"), ("Vermietet ihr Schneeschuhe?", "de"),
             ("Kann man bei euch Schneeschuhe leihen?", "de")]
    questions = [GapQuestion("c", text, NOT_ANSWERED, utcnow(), language) for text, language in asked]
    clusters = cluster_gaps(questions, encoder, other_languages=multilingual.queries)
    grouped = {(c.language or "en", frozenset(c.questions)) for c in clusters}
    assert grouped == {
        ("de", frozenset({"Vermietet ihr Schneeschuhe?", "Kann man bei euch Schneeschuhe leihen?"})),
        ("en", frozenset({"do you rent snowshoes", "can I hire snow shoes"})),
        ("zh", frozenset({"你们卖皮划艇吗"})),
        ("zh", frozenset({"你们出租雪鞋吗", "可以租雪地鞋吗"})),
    }


def test_a_question_keeps_the_language_it_came_in() -> None:
    transcript = [event(1, EventKind.MESSAGE_IN, "你们出租雪鞋吗", language="zh"),
                  event(2, EventKind.KB_ANSWER, answered=False)]
    (question,) = gap_questions(transcript)
    assert question.language == "zh"
