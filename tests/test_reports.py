"""The manager's report over a known week of conversations (tests/report_week.py), every figure
worked out by hand."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from bot.analytics.gaps import gap_key
from bot.analytics.reports import ReportOptions, Times, build_report
from bot.dialogue.handoff_policy import BusinessHours
from bot.stores import open_store
from bot.stores.conversations import ConversationStore
from switchboard.cli import main
from tests.conftest import both_databases  # noqa: F401 (runs each test on both databases)
from tests.report_week import MONDAY, WEEK, Clock, Week, kb, set_store_clock, write_week


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(MONDAY)
    set_store_clock(monkeypatch, clock)
    return clock


@pytest.fixture
def store(store_url: str, clock: Clock) -> Iterator[ConversationStore]:
    store = open_store(store_url)
    write_week(store, clock)
    yield store
    store.dispose()


def london_office() -> BusinessHours:
    nine_to_five = ((datetime(2026, 1, 1, 9).time(), datetime(2026, 1, 1, 17).time()),)
    return BusinessHours(ZoneInfo("Europe/London"), {day: nine_to_five for day in range(5)})


def test_the_weeks_figures(store: ConversationStore) -> None:
    options = ReportOptions(start=WEEK.start, end=WEEK.end, now=WEEK.now, business_hours=london_office())
    report = build_report(store, options)

    assert (report.conversations, report.messages) == (4, 7)  # A 2, B 2 (the rating is no message), C 2, D 1
    assert report.by_channel == {"sms": {"conversations": 1, "messages": 1, "handoffs": 1},
                                 "telegram": {"conversations": 2, "messages": 4, "handoffs": 1},
                                 "web": {"conversations": 1, "messages": 2, "handoffs": 0}}
    assert list(report.by_day) == [f"2026-11-0{d}" for d in range(2, 9)]
    assert report.by_day["2026-11-02"] == {"conversations": 2, "messages": 4, "handoffs": 1}
    assert report.by_day["2026-11-05"] == {"conversations": 1, "messages": 2, "handoffs": 0}
    assert report.by_day["2026-11-07"] == {"conversations": 1, "messages": 1, "handoffs": 1}
    assert report.by_day["2026-11-08"] == {"conversations": 0, "messages": 0, "handoffs": 0}
    assert {h: n for h, n in enumerate(report.by_hour) if n} == {9: 4, 10: 2, 22: 1}

    # Ended: B and D closed, A and C idle for more than a day. Contained: A and C; helpful: A.
    assert (report.ended, report.contained, report.contained_helpful) == (4, 2, 1)
    assert report.containment_rate == 0.5
    assert (report.handoffs, report.handoff_rate) == (2, 0.5)
    assert report.handoff_reasons == {"customer_request": 1, "keyword": 1}

    assert report.bot_first_response == Times(4, 2.5, 4.0)            # 2, 4, 1, 3 s
    # From the handoff (the turn's time: B 10:01:01, D Sat 22:00:03) to the first agent reply, and to the close.
    assert report.human_first_response == Times(2, 61_798.5, 122_997.0)  # 600 s; 34 h 9 min 57 s
    assert report.resolution_time == Times(2, 62_698.5, 123_597.0)       # 1,800 s; 34 h 19 min 57 s

    # B's customer came back on Thursday, within 7 days of its close; D's did not.
    assert (report.closed, report.fcr_judged, report.fcr_resolved, report.fcr_rate) == (2, 2, 1, 0.5)

    assert (report.csat.responses, report.csat.asked, report.csat.average) == (1, 1, 4.0)
    assert report.csat.response_rate == 1.0
    assert list(report.csat_by_channel) == ["telegram"] and report.csat_by_channel["telegram"].average == 4.0
    assert list(report.csat_by_resolution) == ["refund"]
    week_agents = {load.agent_id: load for load in report.agents}
    x = store.agent_credentials("x@example.com")
    y = store.agent_credentials("y@example.com")
    assert x is not None and y is not None
    assert list(report.csat_by_agent) == [x[0].agent_id]
    assert week_agents[x[0].agent_id].conversations == 1
    assert week_agents[x[0].agent_id].handling == Times(1, 1_561.0, 1_561.0)  # 10:05 -> 10:31:01
    assert week_agents[y[0].agent_id].handling == Times(1, 1_200.0, 1_200.0)  # 08:00 -> 08:20
    assert week_agents[y[0].agent_id].csat.asked == 0

    # KB: three questions (A answered, B declined, C choices then chosen).
    assert (report.kb_questions, report.kb_answered, report.kb_choices, report.kb_declined) == (3, 2, 1, 1)
    assert (report.kb_helpful, report.kb_unhelpful, report.kb_answer_rate) == (1, 0, 0.6667)
    assert report.top_articles == [("returns-policy", 1), ("shipping-costs", 1)]
    # B's question was declined, then B asked for a person: one unanswered question, in one conversation.
    assert report.top_gaps == [("my parcel is broken", 1)]

    assert report.delivery_failures == {"sms": 1}
    assert report.business_hours == {"in_hours": {"conversations": 3, "handoffs": 1, "contained": 2},
                                     "out_of_hours": {"conversations": 1, "handoffs": 1, "contained": 0}}


def test_one_channel(store: ConversationStore) -> None:
    report = build_report(store, ReportOptions(start=WEEK.start, end=WEEK.end, now=WEEK.now, channel="telegram"))
    assert (report.conversations, report.messages, report.handoffs, report.kb_questions) == (2, 4, 1, 2)
    assert report.delivery_failures == {}
    assert report.by_hour[9] == 2 and report.by_hour[10] == 2


def test_what_is_not_over_yet(store: ConversationStore) -> None:
    # Seen on Monday 9 November at 12:00: C (idle since Thursday) has ended, A too; B's 7 days ended at
    # 10:31:01, but D was closed at 08:20, so first-contact resolution does not judge D yet.
    report = build_report(store, ReportOptions(start=WEEK.start, end=WEEK.end,
                                               now=datetime(2026, 11, 9, 12, tzinfo=UTC)))
    assert (report.ended, report.contained) == (4, 2)
    assert (report.closed, report.fcr_judged, report.fcr_resolved) == (2, 1, 0)  # only B, which came back
    # With five days of silence to end a conversation, C (last message Thursday 09:00:31) has not ended.
    report = build_report(store, ReportOptions(start=WEEK.start, end=WEEK.end, inactive_after=timedelta(days=5),
                                               now=datetime(2026, 11, 9, 12, tzinfo=UTC)))
    assert (report.ended, report.contained, report.containment_rate) == (3, 1, 0.3333)


def test_days_and_hours_in_the_business_time_zone(store: ConversationStore) -> None:
    # In Tokyo (UTC+9) D's Saturday 22:00 is Sunday 07:00, and A's Monday 09:00 is 18:00.
    report = build_report(store, ReportOptions(start=WEEK.start, end=WEEK.end, now=WEEK.now,
                                               zone=ZoneInfo("Asia/Tokyo")))
    assert report.by_day["2026-11-08"]["conversations"] == 1
    assert {h: n for h, n in enumerate(report.by_hour) if n} == {18: 4, 19: 2, 7: 1}


def test_the_rollups_follow_new_events_and_outlive_the_transcripts(store: ConversationStore,
                                                                   clock: Clock) -> None:
    assert store.refresh_reports() == 5  # A to E, counted for the first time
    first = build_report(store, WEEK)
    assert store.refresh_reports() == 0
    week = Week(store, clock, first_message=100)
    f = week.message("web", "f", "do you ship to Norway", clock.at(6, 12))
    week.turn(f, clock.at(6, 12, 0, 5), kb("decline", answered=False))
    second = build_report(store, WEEK)
    assert (second.conversations, second.messages, second.kb_declined) == (5, 8, 2)
    assert second.bot_first_response.count == first.bot_first_response.count + 1

    clock.now = datetime(2026, 12, 20, tzinfo=UTC)
    assert store.purge_transcripts(timedelta(days=30)) == 2  # B and D, closed in November
    after = build_report(store, WEEK)
    # Every figure stays; only the words of B's unanswered question are gone with its transcript.
    assert replace(after, top_gaps=second.top_gaps) == second
    assert second.top_gaps == [("do you ship to Norway", 1), ("my parcel is broken", 1)]
    assert after.top_gaps == [("do you ship to Norway", 1)]
    store.rebuild_reports()
    assert build_report(store, WEEK) == after


def test_a_merged_conversation_is_counted_once(store: ConversationStore) -> None:
    before = build_report(store, WEEK)
    a = store.latest_conversation_of("web", "a")
    c = store.latest_conversation_of("telegram", "b")
    x = store.agent_credentials("x@example.com")
    assert a is not None and c is not None and x is not None
    # A and C are both open (with the bot): merging their customers makes them one conversation, A.
    store.merge_customers(a.customer_id, c.customer_id, x[0].agent_id)
    after = build_report(store, WEEK)
    assert (after.conversations, after.messages) == (3, 7)
    assert (after.kb_questions, after.kb_answered, after.top_articles) == (3, 2, before.top_articles)
    assert after.by_channel["telegram"]["conversations"] == 1


def test_switchboard_report_prints_the_same_figures_three_ways(store: ConversationStore, store_url: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_STORE_URL", store_url)
    monkeypatch.setenv("SWITCHBOARD_REPORT_TIMEZONE", "UTC")
    week = ["report", "--from", "2026-11-02", "--to", "2026-11-08"]

    as_json = CliRunner().invoke(main, [*week, "--json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert (data["conversations"], data["messages"], data["containment_rate"], data["fcr_rate"]) == (4, 7, 0.5, 0.5)
    assert data["human_first_response"] == {"count": 2, "median": 61_798.5, "p90": 122_997.0}
    assert data["csat"] == {"responses": 1, "asked": 1, "average": 4.0, "response_rate": 1.0}
    assert {a["name"]: a["conversations"] for a in data["agents"]} == {"X": 1, "Y": 1}
    assert data["delivery_failures"] == {"sms": 1}

    as_csv = CliRunner().invoke(main, [*week, "--csv"])
    assert as_csv.exit_code == 0, as_csv.output
    rows = {(figure, key): value for figure, key, value in csv.reader(io.StringIO(as_csv.stdout))}
    assert rows[("figure", "key")] == "value"
    assert (rows[("conversations", "")], rows[("containment_rate", "")], rows[("csat_by_agent_average", "X")]) \
        == ("4", "0.5", "4.0")
    assert (rows[("handoffs_by_reason", "keyword")], rows[("delivery_failures", "sms")]) == ("1", "1")
    assert rows[("human_first_response_p90_seconds", "")] == "122997.0"

    text = CliRunner().invoke(main, [*week])
    assert text.exit_code == 0, text.output
    assert "2026-11-02 to 2026-11-08, all channels" in text.stdout
    assert "Bot containment        50%: 2 of 4 ended without a handoff; 1 with" in text.stdout
    assert "First response, human  median 17 h 10 min, p90 34 h 10 min (2)" in text.stdout
    assert "CSAT                   4.00 from 1 rating (100% of 1 asked)" in text.stdout

    only_sms = json.loads(CliRunner().invoke(main, [*week, "--channel", "sms", "--json"]).stdout)
    assert (only_sms["conversations"], only_sms["handoffs"]) == (1, 1)


def test_switchboard_report_says_what_is_wrong(store: ConversationStore, store_url: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_STORE_URL", store_url)
    backwards = CliRunner().invoke(main, ["report", "--from", "2026-11-08", "--to", "2026-11-02"])
    assert backwards.exit_code != 0 and "first day (2026-11-08) is after its last (2026-11-02)" in backwards.output
    decade = CliRunner().invoke(main, ["report", "--from", "2016-01-01", "--to", "2026-01-01"])
    assert decade.exit_code != 0 and "a report covers at most 366 days; 2016-01-01 to 2026-01-01 is 3,654" \
        in decade.output
    both = CliRunner().invoke(main, ["report", "--json", "--csv"])
    assert both.exit_code != 0 and "choose one of --json and --csv" in both.output
    monkeypatch.setenv("SWITCHBOARD_REPORT_TIMEZONE", "Mars/Olympus")
    zone = CliRunner().invoke(main, ["report"])
    assert zone.exit_code != 0 and "is not a time zone; use a name like Europe/Berlin" in zone.output


def test_unanswered_questions_go_when_an_editor_handles_them_or_the_customer_is_erased(
        store: ConversationStore) -> None:
    assert build_report(store, WEEK).top_gaps == [("my parcel is broken", 1)]
    x = store.agent_credentials("x@example.com")
    assert x is not None
    store.handle_gaps([gap_key("My parcel  is broken")], "dismissed", None, x[0].agent_id)
    assert build_report(store, WEEK).top_gaps == []

    def kept_words() -> list[str]:
        return [row[0] for row in store._connection().execute("SELECT question FROM report_gaps")]

    assert kept_words() == ["my parcel is broken"]  # left out of the report, not forgotten
    before = build_report(store, WEEK)
    b = store.latest_conversation_of("telegram", "b")
    assert b is not None
    store.erase_customer(b.customer_id)
    after = build_report(store, WEEK)
    assert kept_words() == []
    assert replace(after, top_gaps=[]) == before  # every figure stays
