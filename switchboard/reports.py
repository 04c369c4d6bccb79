"""The report's settings and period, shared by `switchboard report` and the console's reports page."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.analytics.reports import ReportOptions
from bot.dialogue.handoff_policy import BusinessHours
from bot.errors import SwitchboardError
from switchboard.settings import Settings

DEFAULT_DAYS = 7  # a report without dates covers the last seven days, today included
MAX_DAYS = 366   # a report covers a year at most (its day-by-day table and chart have a row per day)


def report_zone(settings: Settings, hours: BusinessHours | None) -> tzinfo:
    """SWITCHBOARD_REPORT_TIMEZONE, else the business hours' time zone, else UTC."""
    if settings.report_timezone:
        try:
            return ZoneInfo(settings.report_timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise SwitchboardError(f"SWITCHBOARD_REPORT_TIMEZONE={settings.report_timezone!r} is not a time zone; "
                                   "use a name like Europe/Berlin") from exc
    return hours.zone if hours is not None else UTC


def report_options(settings: Settings, hours: BusinessHours | None, first: date | None = None,
                   last: date | None = None, channel: str | None = None, now: datetime | None = None) -> ReportOptions:
    """Options for the days `first` to `last` (both included, in the report's time zone)."""
    zone = report_zone(settings, hours)
    now = now or datetime.now(UTC)
    last = last or now.astimezone(zone).date()
    first = first or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise SwitchboardError(f"the report's first day ({first}) is after its last ({last})")
    if (last - first).days >= MAX_DAYS:
        raise SwitchboardError(f"a report covers at most {MAX_DAYS} days; {first} to {last} is "
                               f"{(last - first).days + 1:,}: report it a year at a time")
    return ReportOptions(
        start=datetime.combine(first, time(), zone).astimezone(UTC),
        end=datetime.combine(last + timedelta(days=1), time(), zone).astimezone(UTC),
        channel=channel or None, now=now, zone=zone, business_hours=hours,
        inactive_after=timedelta(hours=settings.report_inactive_hours),
        fcr_window=timedelta(days=settings.report_fcr_days),
    )
