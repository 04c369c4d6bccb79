"""The figures a support manager runs the week on, defined once over stored conversations.

Each conversation is first reduced to its `ConversationFacts` (what happened and when, no customer's
words), which the store keeps as a rollup; `summarise` turns the facts of a period into a `Report`.
docs/analytics.md defines every figure in words; the tests work them out by hand.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Protocol

from bot.messages import Author, Event, EventKind

# KB decisions a question gets (a tap on a choice or on "did this help?" is no new question).
_QUESTION_DECISIONS = ("answer", "choices", "decline")
_ANSWERED_DECISIONS = ("answer", "chosen")


@dataclass(frozen=True)
class ConversationFacts:
    """One conversation, reduced to what the reports count. Times are UTC; durations in seconds."""

    conversation_id: str
    channel: str                       # where its first customer message came from
    started_at: datetime
    last_activity_at: datetime
    closed_at: datetime | None = None  # None while open (or reopened)
    customer_messages: int = 0
    bot_first_response: float | None = None    # first customer message -> first bot reply
    handoff_at: datetime | None = None          # its first handoff
    handoff_reason: str | None = None
    human_first_response: float | None = None  # first handoff -> first agent reply
    agent_id: str | None = None                 # who held it last (who closed it, once closed)
    handling: float | None = None               # first taken by an agent -> closed or given back
    resolution: str | None = None               # the tag it was closed with
    csat_asked: bool = False
    csat: int | None = None
    kb_questions: int = 0   # questions the knowledge base decided on (answer, choices or decline)
    kb_answered: int = 0    # answered, at once or after the customer chose from choices
    kb_choices: int = 0     # "did you mean" offered
    kb_declined: int = 0    # nothing good enough
    kb_helpful: int = 0     # "did this help?": yes
    kb_unhelpful: int = 0   # "did this help?": no
    articles: tuple[str, ...] = ()  # the articles answered, in order
    next_started_at: datetime | None = None  # the customer's next conversation (filled in when reported)

    def ended(self, now: datetime, inactive_after: timedelta) -> bool:
        """Closed, or nobody wrote for `inactive_after`: a bot conversation is never closed by anyone."""
        return self.closed_at is not None or now - self.last_activity_at >= inactive_after

    @property
    def handed_off(self) -> bool:
        return self.handoff_at is not None


def facts_from(conversation_id: str, events: Sequence[Event], started_at: datetime, csat: int | None,
               csat_asked: bool) -> ConversationFacts:
    """Reduce a conversation's transcript (in order) to its facts."""
    channel = next((e.channel for e in events if e.kind == EventKind.MESSAGE_IN and e.channel), "")
    first_in = next((e.created_at for e in events if e.kind == EventKind.MESSAGE_IN), None)
    handoff = next((e for e in events if e.kind == EventKind.HANDOFF), None)
    first_bot = _first(events, first_in, lambda e: e.kind == EventKind.MESSAGE_OUT and e.author == Author.BOT)
    handoff_at = handoff.created_at if handoff else None
    first_agent = _first(events, handoff_at, lambda e: e.kind == EventKind.MESSAGE_OUT and e.author == Author.AGENT)
    closed_at, resolution, agent_id = None, None, None
    taken_at: datetime | None = None
    handling: float | None = None
    kb: Counter[str] = Counter()
    articles: list[str] = []
    for event in events:
        if event.kind == EventKind.ASSIGNED:
            agent_id = event.data.get("agent_id") or agent_id
            taken_at = taken_at or event.created_at
        elif event.kind == EventKind.REOPENED:
            closed_at, resolution, agent_id = None, None, event.data.get("agent_id") or agent_id
            taken_at = taken_at or event.created_at
        elif event.kind in (EventKind.CLOSED, EventKind.RETURNED_TO_BOT):
            agent_id = event.data.get("agent_id") or agent_id
            if taken_at is not None:
                handling = (event.created_at - taken_at).total_seconds()
            if event.kind == EventKind.CLOSED:
                closed_at, resolution = event.created_at, event.data.get("resolution")
        elif event.kind == EventKind.KB_ANSWER:
            decision = str(event.data.get("decision"))
            kb[decision] += 1
            if decision == "feedback":
                kb["helpful" if event.data.get("helpful") else "unhelpful"] += 1
            if decision in _ANSWERED_DECISIONS:
                article = event.data.get("chosen") or (event.data.get("passages") or [{}])[0].get("article_id")
                if article:
                    articles.append(str(article))
    return ConversationFacts(
        conversation_id=conversation_id,
        channel=channel or "",
        started_at=started_at,
        last_activity_at=events[-1].created_at if events else started_at,
        closed_at=closed_at,
        customer_messages=sum(1 for e in events if e.kind == EventKind.MESSAGE_IN),
        bot_first_response=_seconds(first_in, first_bot),
        handoff_at=handoff_at,
        handoff_reason=str(handoff.data.get("reason") or "unknown") if handoff else None,
        human_first_response=_seconds(handoff_at, first_agent),
        agent_id=agent_id,
        handling=handling,
        resolution=resolution,
        csat_asked=csat_asked,
        csat=csat,
        kb_questions=sum(kb[d] for d in _QUESTION_DECISIONS),
        kb_answered=sum(kb[d] for d in _ANSWERED_DECISIONS),
        kb_choices=kb["choices"],
        kb_declined=kb["decline"],
        kb_helpful=kb["helpful"],
        kb_unhelpful=kb["unhelpful"],
        articles=tuple(articles),
    )


def _first(events: Sequence[Event], after: datetime | None, matches: Any) -> datetime | None:
    if after is None:
        return None
    return next((e.created_at for e in events if e.created_at >= after and matches(e)), None)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else (end - start).total_seconds()


class OpeningHours(Protocol):
    def is_open(self, now: datetime) -> bool: ...


@dataclass(frozen=True)
class ReportOptions:
    """What a report covers and how it counts."""

    start: datetime                         # conversations started at or after this (UTC)
    end: datetime                           # ... and before this
    channel: str | None = None              # one channel, or all
    now: datetime | None = None             # for "ended by inactivity"; the report's own time by default
    inactive_after: timedelta = timedelta(hours=24)
    fcr_window: timedelta = timedelta(days=7)
    zone: tzinfo | None = None              # days and hours of day are counted in this time zone (UTC)
    business_hours: OpeningHours | None = None
    top: int = 10                           # top articles and gaps listed


@dataclass(frozen=True)
class Times:
    """Durations in seconds: how many, the median and the 90th percentile (nearest rank)."""

    count: int
    median: float | None
    p90: float | None

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Times:
        known = sorted(v for v in values if v is not None)
        if not known:
            return cls(0, None, None)
        return cls(len(known), statistics.median(known), known[math.ceil(0.9 * len(known)) - 1])


@dataclass(frozen=True)
class Csat:
    responses: int
    asked: int
    average: float | None

    @classmethod
    def of(cls, facts: Iterable[ConversationFacts]) -> Csat:
        facts = list(facts)
        scores = [f.csat for f in facts if f.csat is not None]
        return cls(len(scores), sum(1 for f in facts if f.csat_asked),
                   round(sum(scores) / len(scores), 2) if scores else None)

    @property
    def response_rate(self) -> float | None:
        return _rate(self.responses, self.asked)


@dataclass(frozen=True)
class AgentLoad:
    agent_id: str
    conversations: int
    handling: Times
    csat: Csat


@dataclass(frozen=True)
class Report:
    start: datetime
    end: datetime
    channel: str | None
    conversations: int
    messages: int
    by_channel: dict[str, dict[str, int]]     # channel -> conversations, messages
    by_day: dict[str, dict[str, int]]         # ISO date -> conversations, messages
    by_hour: list[int]                        # customer messages by hour of day, 0-23
    ended: int
    contained: int                            # ended without a handoff
    contained_helpful: int                    # ... with "did this help?": yes
    handoffs: int
    handoff_reasons: dict[str, int]
    bot_first_response: Times
    human_first_response: Times
    resolution_time: Times                    # handoff -> close
    closed: int
    fcr_judged: int                           # closes whose window has passed
    fcr_resolved: int                         # ... with no new conversation within it
    csat: Csat
    csat_by_channel: dict[str, Csat]
    csat_by_agent: dict[str, Csat]
    csat_by_resolution: dict[str, Csat]
    agents: list[AgentLoad]
    kb_questions: int
    kb_answered: int
    kb_choices: int
    kb_declined: int
    kb_helpful: int
    kb_unhelpful: int
    top_articles: list[tuple[str, int]]
    # The questions most often left unanswered (the KB gaps page's: declined, answered with a "no", or followed
    # by a request for a person), in how many conversations each, less those an editor handled.
    top_gaps: list[tuple[str, int]] = field(default_factory=list)
    delivery_failures: dict[str, int] = field(default_factory=dict)  # channel -> replies never delivered
    business_hours: dict[str, dict[str, int]] = field(default_factory=dict)  # in/out -> conversations, handoffs

    @property
    def containment_rate(self) -> float | None:
        return _rate(self.contained, self.ended)

    @property
    def handoff_rate(self) -> float | None:
        return _rate(self.handoffs, self.conversations)

    @property
    def fcr_rate(self) -> float | None:
        return _rate(self.fcr_resolved, self.fcr_judged)

    @property
    def kb_answer_rate(self) -> float | None:
        return _rate(self.kb_answered, self.kb_questions)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: times as ISO strings, rates beside their counts."""
        data = asdict(self)
        data.update(start=self.start.isoformat(), end=self.end.isoformat(),
                    containment_rate=self.containment_rate, handoff_rate=self.handoff_rate,
                    fcr_rate=self.fcr_rate, kb_answer_rate=self.kb_answer_rate)
        data["csat"]["response_rate"] = self.csat.response_rate
        for name in ("csat_by_channel", "csat_by_agent", "csat_by_resolution"):
            for key, value in getattr(self, name).items():
                data[name][key]["response_rate"] = value.response_rate
        for load, entry in zip(self.agents, data["agents"], strict=True):
            entry["csat"]["response_rate"] = load.csat.response_rate
        data["top_articles"] = [{"article_id": a, "answers": n} for a, n in self.top_articles]
        data["top_gaps"] = [{"question": q, "count": n} for q, n in self.top_gaps]
        return data


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


class ReportStore(Protocol):
    def refresh_reports(self, progress: Any = None) -> int: ...

    def report_gaps(self, start: datetime, end: datetime, channel: str | None = None,
                    top: int = 10) -> list[tuple[str, int]]: ...

    def report_facts(self, start: datetime, end: datetime, channel: str | None = None) -> list[ConversationFacts]: ...

    def report_hours(self, start: datetime, end: datetime,
                     channel: str | None = None) -> tuple[dict[tuple[datetime, str], int], dict[str, int]]: ...


def build_report(store: ReportStore, options: ReportOptions, progress: Any = None) -> Report:
    """Bring the store's rollups up to date and report the period."""
    store.refresh_reports(progress)
    messages, failures = store.report_hours(options.start, options.end, options.channel)
    facts = store.report_facts(options.start, options.end, options.channel)
    return replace(summarise(facts, messages, failures, options),
                   top_gaps=store.report_gaps(options.start, options.end, options.channel, options.top))


@dataclass(frozen=True)
class _Judge:
    """The report's rules for one conversation, at the report's time."""

    options: ReportOptions
    now: datetime

    def day(self, moment: datetime) -> str:
        return moment.astimezone(self.options.zone or self.options.start.tzinfo).date().isoformat()

    def ended(self, fact: ConversationFacts) -> bool:
        return fact.ended(self.now, self.options.inactive_after)

    def contained(self, fact: ConversationFacts) -> bool:
        return self.ended(fact) and not fact.handed_off

    def fcr_judged(self, fact: ConversationFacts) -> bool:
        """Closed long enough ago for its customer to have come back within the window."""
        return fact.closed_at is not None and self.now - fact.closed_at >= self.options.fcr_window

    def fcr_resolved(self, fact: ConversationFacts) -> bool:
        return self.fcr_judged(fact) and fact.closed_at is not None and (
            fact.next_started_at is None or fact.next_started_at - fact.closed_at > self.options.fcr_window)

    def in_hours(self, fact: ConversationFacts) -> bool | None:
        hours = self.options.business_hours
        return None if hours is None else hours.is_open(fact.started_at)


def _csat_key(fact: ConversationFacts, key: str) -> bool:
    """`key` is "", or "channel:web", "agent:<id>", "resolution:refund"."""
    if not fact.csat_asked:
        return False
    name, _, value = key.partition(":")
    return not key or str({"channel": fact.channel, "agent": fact.agent_id,
                           "resolution": fact.resolution}.get(name)) == value


# What each figure of the report counts, for listing the conversations behind it: (judge, facts, key).
FIGURES: dict[str, Callable[[_Judge, ConversationFacts, str], bool]] = {
    "conversations": lambda j, f, key: key in ("", f.channel),
    "day": lambda j, f, key: j.day(f.started_at) == key,
    "ended": lambda j, f, key: j.ended(f),
    "contained": lambda j, f, key: j.contained(f),
    "contained_helpful": lambda j, f, key: j.contained(f) and f.kb_helpful > 0,
    "handoffs": lambda j, f, key: f.handed_off and key in ("", f.handoff_reason),
    "closed": lambda j, f, key: f.closed_at is not None,
    "fcr_judged": lambda j, f, key: j.fcr_judged(f),
    "fcr_resolved": lambda j, f, key: j.fcr_resolved(f),
    "fcr_returned": lambda j, f, key: j.fcr_judged(f) and not j.fcr_resolved(f),
    "csat": lambda j, f, key: _csat_key(f, key),
    "csat_rated": lambda j, f, key: _csat_key(f, key) and f.csat is not None,
    "agent": lambda j, f, key: f.agent_id == key,
    "kb_answered": lambda j, f, key: f.kb_answered > 0,
    "kb_choices": lambda j, f, key: f.kb_choices > 0,
    "kb_declined": lambda j, f, key: f.kb_declined > 0,
    "kb_unhelpful": lambda j, f, key: f.kb_unhelpful > 0,
    "article": lambda j, f, key: key in f.articles,
    "in_hours": lambda j, f, key: j.in_hours(f) is True,
    "out_of_hours": lambda j, f, key: j.in_hours(f) is False,
}


def conversations_behind(facts: Sequence[ConversationFacts], figure: str, key: str,
                         options: ReportOptions) -> list[ConversationFacts]:
    """The conversations a figure of the report counts (`figure` a name of FIGURES), newest first."""
    if figure not in FIGURES:
        raise ValueError(f"no figure {figure!r}; one of {', '.join(FIGURES)}")
    judge = _Judge(options, options.now or datetime.now(options.start.tzinfo))
    return sorted((f for f in facts if FIGURES[figure](judge, f, key)), key=lambda f: f.started_at, reverse=True)


def summarise(facts: Sequence[ConversationFacts], hourly_messages: Mapping[tuple[datetime, str], int],
              delivery_failures: Mapping[str, int], options: ReportOptions) -> Report:
    """The report over the facts of the conversations started in the period (already filtered by the
    store), the customer messages of each UTC hour and channel of the period, and the replies of the
    period that could not be delivered, by channel."""
    judge = _Judge(options, options.now or datetime.now(options.start.tzinfo))
    zone = options.zone or options.start.tzinfo

    def counts() -> dict[str, int]:
        return {"conversations": 0, "messages": 0, "handoffs": 0}

    by_channel: dict[str, dict[str, int]] = defaultdict(counts)
    last_day = (options.end - timedelta(microseconds=1)).astimezone(zone).date()
    by_day = {d: counts() for d in _days(options.start.astimezone(zone).date(), last_day)}
    by_hour = [0] * 24
    for fact in facts:
        for group in (by_channel[fact.channel], by_day.setdefault(judge.day(fact.started_at), counts())):
            group["conversations"] += 1
            group["handoffs"] += fact.handed_off
    for (hour, channel), count in hourly_messages.items():
        by_channel[channel]["messages"] += count
        by_day.setdefault(judge.day(hour), counts())["messages"] += count
        by_hour[hour.astimezone(zone).hour] += count

    ended = [f for f in facts if judge.ended(f)]
    contained = [f for f in facts if judge.contained(f)]
    handed = [f for f in facts if f.handed_off]
    by_agent: dict[str, list[ConversationFacts]] = defaultdict(list)
    for fact in facts:
        if fact.agent_id:
            by_agent[fact.agent_id].append(fact)
    articles: Counter[str] = Counter(a for f in facts for a in f.articles)
    hours: dict[str, dict[str, int]] = {}
    for fact in facts:
        in_hours = judge.in_hours(fact)
        if in_hours is not None:
            side = hours.setdefault("in_hours" if in_hours else "out_of_hours",
                                    {"conversations": 0, "handoffs": 0, "contained": 0})
            side["conversations"] += 1
            side["handoffs"] += fact.handed_off
            side["contained"] += judge.contained(fact)

    return Report(
        start=options.start, end=options.end, channel=options.channel,
        conversations=len(facts), messages=sum(hourly_messages.values()),
        by_channel=dict(sorted(by_channel.items())), by_day=dict(sorted(by_day.items())), by_hour=by_hour,
        ended=len(ended), contained=len(contained), contained_helpful=sum(1 for f in contained if f.kb_helpful),
        handoffs=len(handed), handoff_reasons=dict(Counter(str(f.handoff_reason) for f in handed).most_common()),
        bot_first_response=Times.of(f.bot_first_response for f in facts),
        human_first_response=Times.of(f.human_first_response for f in handed),
        resolution_time=Times.of(_seconds(f.handoff_at, f.closed_at) for f in handed),
        closed=sum(1 for f in facts if f.closed_at is not None),
        fcr_judged=sum(1 for f in facts if judge.fcr_judged(f)),
        fcr_resolved=sum(1 for f in facts if judge.fcr_resolved(f)),
        csat=Csat.of(facts),
        csat_by_channel=_csat_by(facts, lambda f: f.channel),
        csat_by_agent=_csat_by(facts, lambda f: f.agent_id),
        csat_by_resolution=_csat_by(facts, lambda f: f.resolution),
        agents=[AgentLoad(agent, len(held), Times.of(f.handling for f in held), Csat.of(held))
                for agent, held in sorted(by_agent.items(), key=lambda item: (-len(item[1]), item[0]))],
        kb_questions=sum(f.kb_questions for f in facts), kb_answered=sum(f.kb_answered for f in facts),
        kb_choices=sum(f.kb_choices for f in facts), kb_declined=sum(f.kb_declined for f in facts),
        kb_helpful=sum(f.kb_helpful for f in facts), kb_unhelpful=sum(f.kb_unhelpful for f in facts),
        top_articles=sorted(articles.items(), key=lambda item: (-item[1], item[0]))[:options.top],
        delivery_failures=dict(sorted(delivery_failures.items())),
        business_hours=hours,
    )


def _csat_by(facts: Sequence[ConversationFacts], key: Any) -> dict[str, Csat]:
    groups: dict[str, list[ConversationFacts]] = defaultdict(list)
    for fact in facts:
        if fact.csat_asked and key(fact):
            groups[str(key(fact))].append(fact)
    return {name: Csat.of(group) for name, group in sorted(groups.items())}


def _days(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


_TIMES = ("started_at", "last_activity_at", "closed_at", "handoff_at", "next_started_at")


def facts_record(facts: ConversationFacts) -> dict[str, Any]:
    """The facts as JSON-ready data, as the store keeps them."""
    record = asdict(facts)
    for name in _TIMES:
        record[name] = record[name].isoformat() if record[name] else None
    return record


def facts_of_record(record: Mapping[str, Any]) -> ConversationFacts:
    values = dict(record)
    for name in _TIMES:
        values[name] = datetime.fromisoformat(values[name]) if values.get(name) else None
    values["articles"] = tuple(values.get("articles") or ())
    return ConversationFacts(**values)


def report_rows(report: Report, names: Mapping[str, str] | None = None) -> list[tuple[str, str, Any]]:
    """The report as (figure, key, value) rows: one CSV for a spreadsheet, whatever the breakdown.
    `names` gives agents' names for their ids."""
    names = names or {}
    rows: list[tuple[str, str, Any]] = [("period_start", "", report.start.isoformat()),
                                        ("period_end", "", report.end.isoformat()),
                                        ("channel", "", report.channel or "all"),
                                        ("conversations", "", report.conversations),
                                        ("messages", "", report.messages)]
    for channel, counts in report.by_channel.items():
        rows += [(f"{name}_by_channel", channel, n) for name, n in counts.items()]
    for day, counts in report.by_day.items():
        rows += [(f"{name}_by_day", day, n) for name, n in counts.items()]
    rows += [("messages_by_hour", f"{hour:02d}", n) for hour, n in enumerate(report.by_hour)]
    rows += [("ended", "", report.ended), ("contained", "", report.contained),
             ("contained_helpful", "", report.contained_helpful), ("containment_rate", "", report.containment_rate),
             ("handoffs", "", report.handoffs), ("handoff_rate", "", report.handoff_rate)]
    rows += [("handoffs_by_reason", reason, n) for reason, n in report.handoff_reasons.items()]
    for name in ("bot_first_response", "human_first_response", "resolution_time"):
        times: Times = getattr(report, name)
        rows += [(f"{name}_count", "", times.count), (f"{name}_median_seconds", "", times.median),
                 (f"{name}_p90_seconds", "", times.p90)]
    rows += [("closed", "", report.closed), ("fcr_judged", "", report.fcr_judged),
             ("fcr_resolved", "", report.fcr_resolved), ("fcr_rate", "", report.fcr_rate)]
    rows += _csat_rows("csat", "", report.csat)
    for name in ("channel", "agent", "resolution"):
        for key, csat in getattr(report, f"csat_by_{name}").items():
            rows += _csat_rows(f"csat_by_{name}", names.get(key, key) if name == "agent" else key, csat)
    for load in report.agents:
        agent = names.get(load.agent_id, load.agent_id)
        rows += [("agent_conversations", agent, load.conversations),
                 ("agent_handling_median_seconds", agent, load.handling.median)]
        rows += _csat_rows("agent_csat", agent, load.csat)
    rows += [(f"kb_{name}", "", getattr(report, f"kb_{name}"))
             for name in ("questions", "answered", "choices", "declined", "helpful", "unhelpful", "answer_rate")]
    rows += [("kb_top_articles", article, n) for article, n in report.top_articles]
    rows += [("kb_top_gaps", question, n) for question, n in report.top_gaps]
    rows += [("delivery_failures", channel, n) for channel, n in report.delivery_failures.items()]
    for side, counts in report.business_hours.items():
        rows += [(f"{name}_{side}", "", n) for name, n in counts.items()]
    return rows


def _csat_rows(figure: str, key: str, csat: Csat) -> list[tuple[str, str, Any]]:
    return [(f"{figure}_average", key, csat.average), (f"{figure}_responses", key, csat.responses),
            (f"{figure}_asked", key, csat.asked), (f"{figure}_response_rate", key, csat.response_rate)]


def duration_text(seconds: float | None) -> str:
    """ "4 s", "26 min", "34 h 10 min", "3 d 2 h"; "-" when there is nothing to measure."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
