"""The console's reports for managers and admins: the period's figures with charts, the conversations
behind each number, and a CSV export. The figures are bot.analytics.reports's, the same as `switchboard report`."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any

from flask import Blueprint, abort, render_template, request, url_for
from werkzeug.wrappers import Response

from bot.analytics.reports import (
    FIGURES,
    Report,
    ReportOptions,
    ReportStore,
    build_report,
    conversations_behind,
    duration_text,
    report_rows,
)
from bot.errors import SwitchboardError
from bot.messages import Conversation
from bot.ports import AgentStore
from handoff.auth import require_agent
from handoff.charts import Chart, Column, bar_chart

MANAGER_ROLES = ("manager", "admin")
LISTED = 200  # conversations listed behind a figure

# (first day, last day, channel) -> the report's options; raises SwitchboardError for a bad period.
OptionsFor = Callable[[date | None, date | None, str | None], ReportOptions]


def create_reports_blueprint(agents: AgentStore, store: ReportStore, options_for: OptionsFor,
                             conversation: Callable[[str], Conversation], agent_names: Callable[[], dict[str, str]],
                             channels: Sequence[str], zone_name: str = "UTC") -> Blueprint:
    """Build `/console/reports` over the store's rollups; `zone_name` is the time zone days are counted in."""
    pages = Blueprint("reports", __name__, url_prefix="/console/reports", template_folder="templates")
    manager = require_agent(agents, MANAGER_ROLES)

    def period() -> tuple[ReportOptions, dict[str, str], str | None]:
        """The options the query asks for, the query to keep in links, and what was wrong with it."""
        def day(name: str) -> date | None:
            raw = request.args.get(name, "").strip()
            return date.fromisoformat(raw) if raw else None

        channel = request.args.get("channel", "").strip() or None
        try:
            options = options_for(day("from"), day("to"), channel)
            problem = None
        except (ValueError, SwitchboardError) as exc:
            options, problem = options_for(None, None, channel), f"That period cannot be reported: {exc}."
        zone = options.zone or options.start.tzinfo
        query = {"from": options.start.astimezone(zone).date().isoformat(),
                 "to": (options.end - timedelta(microseconds=1)).astimezone(zone).date().isoformat(),
                 **({"channel": options.channel} if options.channel else {})}
        return options, query, problem


    @pages.get("/")
    @manager
    def dashboard() -> str:
        options, query, problem = period()
        report = build_report(store, options)

        def behind(figure: str, key: str = "") -> str:
            values: dict[str, Any] = {"figure": figure, **({"key": key} if key else {}), **query}
            return url_for("reports.behind", **values)

        return render_template("console/reports.html", report=report, query=query, problem=problem,
                               channels=channels, names=agent_names(), behind=behind, took=duration_text,
                               report_zone=zone_name,
                               by_day=_day_chart(report, behind), by_hour=_hour_chart(report))

    @pages.get("/export.csv")
    @manager
    def export() -> Response:
        options, query, _ = period()
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(("figure", "key", "value"))
        writer.writerows(report_rows(build_report(store, options), agent_names()))
        name = "-".join(["switchboard-report", query["from"], "to", query["to"], *query.get("channel", "").split()])
        return Response(out.getvalue(), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})

    @pages.get("/conversations")
    @manager
    def behind() -> str:
        figure, key = request.args.get("figure", ""), request.args.get("key", "")
        if figure not in FIGURES:
            abort(404)
        options, query, problem = period()
        store.refresh_reports()
        found = conversations_behind(store.report_facts(options.start, options.end, options.channel), figure, key,
                                     options)
        listed = [(facts, conversation(facts.conversation_id)) for facts in found[:LISTED]]
        return render_template("console/reports_behind.html", figure=figure, key=key, found=len(found),
                               listed=listed, query=query, problem=problem, names=agent_names(), took=duration_text)

    return pages


def _day_chart(report: Report, behind: Callable[[str, str], str]) -> Chart:
    columns = [Column(day[5:], (
        ("handed", counts["handoffs"], f"{day}: {counts['handoffs']} handed off", ""),
        ("bot", counts["conversations"] - counts["handoffs"],
         f"{day}: {counts['conversations']} conversations, {counts['conversations'] - counts['handoffs']} "
         "without a handoff", behind("day", day)),
    )) for day, counts in report.by_day.items()]
    return bar_chart(columns, label_every=max(1, len(columns) // 10))


def _hour_chart(report: Report) -> Chart:
    return bar_chart([Column(f"{hour:02d}", (
        ("messages", count, f"{hour:02d}:00-{hour:02d}:59: {count} messages", ""),))
                      for hour, count in enumerate(report.by_hour)], label_every=3)
