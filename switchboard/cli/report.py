"""`switchboard report`: the managers' figures on the command line."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING

import click

from bot.errors import SwitchboardError
from switchboard.cli.base import load_settings, main, plural, store_or_fail

if TYPE_CHECKING:
    from bot.analytics.reports import Csat, Report, Times


@main.command()
@click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="First day (YYYY-MM-DD) of conversations started [default: six days before --to].")
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Last day, included [default: today, in the report's time zone].")
@click.option("--channel", default=None, help="Only conversations started on this channel (web, sms, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print every figure as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print every figure as CSV rows: figure, key, value.")
@click.option("--rebuild", is_flag=True, help="Count the rollups again from every stored event first.")
def report(first: datetime | None, last: datetime | None, channel: str | None, as_json: bool, as_csv: bool,
           rebuild: bool) -> None:
    """Containment, handoffs, response and resolution times, CSAT, agents and the KB, over a period.

    Days are counted in SWITCHBOARD_REPORT_TIMEZONE, else the handoff policy's business hours' zone, else UTC.
    """
    import csv
    import json

    from bot.analytics.reports import build_report, report_rows
    from bot.dialogue.handoff_policy import load_handoff_policy
    from switchboard.reports import report_options

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    settings = load_settings()
    try:
        policy = load_handoff_policy(settings.handoff_policy_path, lambda warning: None)
        options = report_options(settings, policy.business_hours, first.date() if first else None,
                                 last.date() if last else None, channel)
    except SwitchboardError as exc:
        raise click.ClickException(str(exc)) from exc

    def progress(done: int, total: int) -> None:
        if total > 2_000 and not (as_json or as_csv):
            click.echo(f"  counting conversations for the report: {done:,} of {total:,}", err=True)

    with store_or_fail() as store:
        if rebuild:
            store.rebuild_reports(progress)
        result = build_report(store, options, progress)
        names = {agent.agent_id: agent.name for agent in store.list_agents()}
    if as_json:
        data = result.as_dict()
        for load in data["agents"]:
            load["name"] = names.get(load["agent_id"])
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    elif as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(("figure", "key", "value"))
        writer.writerows(report_rows(result, names))
    else:
        click.echo(_report_text(result, names))


def _report_text(report: Report, names: dict[str, str]) -> str:
    from bot.analytics.reports import duration_text as took

    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    def csat(value: Csat) -> str:
        if not value.asked:
            return "not asked"
        average = "-" if value.average is None else f"{value.average:.2f}"
        return f"{average} from {plural(value.responses, 'rating')} ({rate(value.response_rate)} of " \
               f"{value.asked} asked)"

    def times(value: Times) -> str:
        return f"median {took(value.median)}, p90 {took(value.p90)} ({value.count})" if value.count else "-"

    last_day = list(report.by_day)[-1] if report.by_day else ""
    first_day = next(iter(report.by_day), "")
    lines = [
        f"Switchboard report, {first_day} to {last_day}, {report.channel or 'all channels'}",
        "",
        f"Conversations          {report.conversations:,} ({report.messages:,} customer messages)",
        *(f"  {channel or '?':<20} {c['conversations']:,} ({c['messages']:,})"
          for channel, c in report.by_channel.items()),
        f"Bot containment        {rate(report.containment_rate)}: {report.contained:,} of {report.ended:,} ended "
        f"without a handoff; {report.contained_helpful:,} with \"did this help?\": yes",
        f"Handoffs               {report.handoffs:,} ({rate(report.handoff_rate)}): "
        + (", ".join(f"{reason} {n}" for reason, n in report.handoff_reasons.items()) or "none"),
        f"First response, bot    {times(report.bot_first_response)}",
        f"First response, human  {times(report.human_first_response)}",
        f"Time to resolution     {times(report.resolution_time)}",
        f"First-contact resol.   {rate(report.fcr_rate)}: {report.fcr_resolved:,} of {report.fcr_judged:,} closes "
        f"whose window is over ({report.closed:,} closed)",
        f"CSAT                   {csat(report.csat)}",
        *(f"  {label:<7} {key:<12} {csat(value)}" for label, group in (
            ("channel", report.csat_by_channel),
            ("agent", {names.get(k, k): v for k, v in report.csat_by_agent.items()}),
            ("tag", report.csat_by_resolution)) for key, value in group.items()),
        "Agents" + ("                 none" if not report.agents else ""),
        *(f"  {names.get(load.agent_id, load.agent_id):<20} {plural(load.conversations, 'conversation')}, handling "
          f"{times(load.handling)}, CSAT {csat(load.csat)}" for load in report.agents),
        f"Knowledge base         {plural(report.kb_questions, 'question')}: {report.kb_answered:,} answered "
        f"({rate(report.kb_answer_rate)}), {report.kb_choices:,} offered choices, {report.kb_declined:,} declined; "
        f"did this help: {report.kb_helpful:,} yes, {report.kb_unhelpful:,} no",
        *(f"  {article:<20} {plural(n, 'answer')}" for article, n in report.top_articles),
        *(["  unanswered most often:"] if report.top_gaps else []),
        *(f"    {question!r} ({plural(n, 'conversation')})" for question, n in report.top_gaps),
        "Undelivered replies    " + (", ".join(f"{channel} {n}" for channel, n in report.delivery_failures.items())
                                     or "none"),
    ]
    for side, counts in report.business_hours.items():
        lines.append(f"{side.replace('_', ' ').capitalize():<22} {plural(counts['conversations'], 'conversation')}, "
                     f"{counts['handoffs']:,} handed off, {counts['contained']:,} contained")
    lines += ["", "Day          conversations  messages"]
    lines += [f"{day}   {c['conversations']:>13,}  {c['messages']:>8,}" for day, c in report.by_day.items()]
    return "\n".join(lines)
