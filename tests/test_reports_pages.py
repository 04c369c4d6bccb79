"""The console's reports (`/console/reports/`) over the known week of tests/report_week.py: who may see
them, every linked number against the conversations behind it, and the export against `switchboard report`."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from bot.ports import Encoder
from bot.stores.conversations import ConversationStore
from handoff.charts import scale
from switchboard.app import create_app, services_of
from switchboard.cli import main
from tests.conftest import Editor, test_settings
from tests.report_week import MONDAY, Clock, set_store_clock, write_week

WEEK = "from=2026-11-02&to=2026-11-08"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, index_dir: Path, encoder: Encoder) -> Iterator[Flask]:
    """One app for these tests (they only read), over a store holding the week, written with a clock of the
    test's."""
    folder = tmp_path_factory.mktemp("reports")
    clock = Clock(MONDAY)
    with pytest.MonkeyPatch.context() as patch:
        set_store_clock(patch, clock)
        store = ConversationStore(folder / "switchboard.db")
        write_week(store, clock)
        store.close()
    app = create_app(test_settings(folder, index_dir, report_timezone="UTC"), encoder=encoder)
    app.config["TESTING"] = True
    yield app
    services_of(app).close()


@pytest.fixture(scope="module")
def signed_in(app: Flask) -> dict[str, FlaskClient]:
    return {role: Editor(app, role).client for role in ("agent", "editor", "manager", "admin")}


def test_only_managers_and_admins_see_the_reports(app: Flask, signed_in: dict[str, FlaskClient]) -> None:
    for role, status in (("agent", 403), ("editor", 403), ("manager", 200), ("admin", 200)):
        assert signed_in[role].get("/console/reports/").status_code == status, role
    assert app.test_client().get("/console/reports/export.csv").status_code == 302  # to the sign-in page
    # The console's bar links to them for those who may see them.
    assert 'href="/console/reports/"' in signed_in["manager"].get("/console/").get_data(as_text=True)
    assert 'href="/console/reports/"' not in signed_in["agent"].get("/console/").get_data(as_text=True)


def test_every_linked_number_is_the_count_of_the_conversations_behind_it(signed_in: dict[str, FlaskClient]) -> None:
    client = signed_in["manager"]
    page = client.get(f"/console/reports/?{WEEK}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Conversations started from 2026-11-02 to 2026-11-08 (days in UTC), all channels." in text
    tiles = {label: figure for figure, label in re.findall(
        r'<span class="figure">([^<]+)</span> ([a-zA-Z -]+)<span', text)}
    assert tiles == {"conversations": "4", "bot containment": "50%", "handed off": "50%",
                     "bot first response": "2.5 s", "human first response": "17 h 10 min",
                     "time to resolution": "17 h 25 min", "first-contact resolution": "50%", "CSAT": "4.00"}
    assert 'style="' not in text and "<script>" not in text  # nothing the Content-Security-Policy forbids
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]

    links = re.findall(r'<a href="(/console/reports/conversations\?[^"]+)">(\d+)</a>', text)
    assert len(links) >= 15
    for href, number in links:
        behind = client.get(html.unescape(href)).get_data(as_text=True)
        listed = re.search(r"(\d+) conversations started from 2026-11-02 to 2026-11-08", behind)
        assert listed is not None and listed.group(1) == number, href
        assert behind.count('href="/console/conversations/') == int(number), href

    handed = client.get(f"/console/reports/conversations?figure=handoffs&key=keyword&{WEEK}").get_data(as_text=True)
    assert ">sms</span>" in handed and "keyword" in handed and "telegram" not in handed


def test_the_charts_are_drawn_on_the_server(signed_in: dict[str, FlaskClient]) -> None:
    text = signed_in["manager"].get(f"/console/reports/?{WEEK}").get_data(as_text=True)
    days = re.search(r'<svg class="chart"[^>]*aria-labelledby="by-day-title">(.*?)</svg>', text, re.S)
    assert days is not None
    titles = re.findall(r"<title>([^<]+)</title>", days.group(1))
    assert "2026-11-02: 2 conversations, 1 without a handoff" in titles
    assert "2026-11-07: 1 handed off" in titles
    hours = re.search(r'aria-labelledby="by-hour-title">(.*?)</svg>', text, re.S)
    assert hours is not None and "09:00-09:59: 4 messages" in hours.group(1)


def test_the_export_is_the_same_as_switchboard_report(app: Flask, signed_in: dict[str, FlaskClient],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    export = signed_in["manager"].get(f"/console/reports/export.csv?{WEEK}&channel=telegram")
    assert export.status_code == 200 and export.mimetype == "text/csv"
    assert 'filename="switchboard-report-2026-11-02-to-2026-11-08-telegram.csv"' in \
        export.headers["Content-Disposition"]
    monkeypatch.setenv("SWITCHBOARD_STORE_URL", services_of(app).settings.store_url)
    monkeypatch.setenv("SWITCHBOARD_REPORT_TIMEZONE", "UTC")
    command = CliRunner().invoke(main, ["report", "--from", "2026-11-02", "--to", "2026-11-08",
                                        "--channel", "telegram", "--csv"])
    assert command.exit_code == 0, command.output
    exported = list(csv.reader(io.StringIO(export.get_data(as_text=True))))
    printed = list(csv.reader(io.StringIO(command.stdout)))
    assert exported == printed and ["conversations", "", "2"] in exported
    assert ["csat_by_agent_average", "X", "4.0"] in exported


def test_a_period_that_cannot_be_reported_says_so(signed_in: dict[str, FlaskClient]) -> None:
    client = signed_in["manager"]
    backwards = client.get("/console/reports/?from=2026-11-08&to=2026-11-02")
    assert backwards.status_code == 200
    assert "That period cannot be reported: the report&#39;s first day (2026-11-08) is after its last" \
        in backwards.get_data(as_text=True)
    garbled = client.get("/console/reports/?from=yesterday")
    assert garbled.status_code == 200 and "That period cannot be reported" in garbled.get_data(as_text=True)
    assert client.get(f"/console/reports/conversations?figure=nonsense&{WEEK}").status_code == 404


@pytest.mark.parametrize(("most", "step", "top"), [(0, 1, 1), (1, 1, 1), (2, 1, 2), (4, 1, 4), (5, 2, 6),
                                                   (9, 5, 10), (17, 5, 20), (41, 20, 60), (1234, 500, 1500)])
def test_the_value_axis_counts_in_whole_steps(most: int, step: int, top: int) -> None:
    assert scale(most) == (step, top)
