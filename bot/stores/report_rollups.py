"""The reports' rollups in the SQLite store: each conversation's facts and unanswered questions, and the
messages of each hour.

They are brought up to date from the events appended since the last time (`refresh`), so a report
reads a few rows a conversation however long its transcript, and the figures of a conversation
outlive its transcript's purge (a purge refreshes them first). Facts hold no customer's words.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime

from bot.analytics.gaps import gap_key, gap_questions
from bot.analytics.reports import ConversationFacts, facts_from, facts_of_record, facts_record
from bot.messages import Event, EventKind
from bot.stores.database import Connection, Row

SCHEMA = """
CREATE TABLE IF NOT EXISTS report_conversations (
    conversation_id  TEXT PRIMARY KEY,
    started_at       TEXT NOT NULL,
    channel          TEXT NOT NULL,
    closed_at        TEXT,
    facts            TEXT NOT NULL           -- JSON: bot.analytics.reports.ConversationFacts
);
CREATE INDEX IF NOT EXISTS report_conversations_by_start ON report_conversations(started_at, channel);
-- Customer messages and replies that could not be delivered, by UTC hour ('2026-12-03T21') and channel.
CREATE TABLE IF NOT EXISTS report_hours (
    hour               TEXT NOT NULL,
    channel            TEXT NOT NULL,
    messages           INTEGER NOT NULL DEFAULT 0,
    failed_deliveries  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, channel)
);
-- Each conversation's unanswered questions (bot.analytics.gaps), by the hash editors handle them by. The only words
-- kept here: they go when the transcript is purged or erased.
CREATE TABLE IF NOT EXISTS report_gaps (
    conversation_id  TEXT NOT NULL,
    question_key     TEXT NOT NULL,
    question         TEXT NOT NULL,
    PRIMARY KEY (conversation_id, question_key)
);
-- The last event the rollups have counted.
CREATE TABLE IF NOT EXISTS report_state (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    event_id  INTEGER NOT NULL
);
"""

BATCH = 500  # conversations brought up to date a transaction, so that turns are not held up for long

Write = Callable[[], AbstractContextManager[Connection]]
Progress = Callable[[int, int], None]


def _hour(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()[:13]


def stale_conversations(db: Connection) -> tuple[int, int, list[str]]:
    """The rollups' mark, the newest event, and the conversations with events between them."""
    row = db.execute("SELECT event_id FROM report_state WHERE id = 1").fetchone()
    mark = int(row["event_id"]) if row else 0
    top = int(db.execute("SELECT COALESCE(MAX(event_id), 0) FROM events").fetchone()[0])
    changed = [r["conversation_id"] for r in db.execute(
        "SELECT DISTINCT conversation_id FROM events WHERE event_id > ? AND event_id <= ?", (mark, top))]
    return mark, top, changed


def refresh(db: Connection, write: Write, to_event: Callable[[Row], Event],
            progress: Progress | None = None) -> int:
    """Bring the rollups up to date; returns how many conversations were recounted. Safe to run in
    several threads or processes at once: the hourly counts are added once, by whoever moves the mark."""
    mark, top, changed = stale_conversations(db)
    for start in range(0, len(changed), BATCH):
        with write() as tx:
            _recount(tx, changed[start:start + BATCH], to_event)
        if progress is not None:
            progress(min(start + BATCH, len(changed)), len(changed))
    if top > mark:
        with write() as tx:
            row = tx.execute("SELECT event_id FROM report_state WHERE id = 1").fetchone()
            if (int(row["event_id"]) if row else 0) == mark:
                for hour, channel, count in tx.execute(
                        "SELECT substr(created_at, 1, 13), channel, COUNT(*) FROM events "
                        "WHERE event_id > ? AND event_id <= ? AND kind = ? GROUP BY 1, 2",
                        (mark, top, EventKind.MESSAGE_IN.value)).fetchall():
                    tx.execute("INSERT INTO report_hours (hour, channel, messages) VALUES (?, ?, ?) "
                               "ON CONFLICT (hour, channel) DO UPDATE "
                               "SET messages = report_hours.messages + excluded.messages",
                               (hour, channel or "", count))
                tx.execute("INSERT INTO report_state (id, event_id) VALUES (1, ?) "
                           "ON CONFLICT (id) DO UPDATE SET event_id = excluded.event_id", (top,))
    return len(changed)


def _recount(db: Connection, conversation_ids: Sequence[str], to_event: Callable[[Row], Event]) -> None:
    marks = ", ".join("?" for _ in conversation_ids)
    rows = {r["conversation_id"]: r for r in db.execute(
        f"SELECT conversation_id, created_at, csat, csat_requested_at, purged_at FROM conversations "
        f"WHERE conversation_id IN ({marks})", conversation_ids)}
    transcripts: dict[str, list[Event]] = {c: [] for c in conversation_ids}
    for event in db.execute(f"SELECT * FROM events WHERE conversation_id IN ({marks}) ORDER BY conversation_id, seq",
                            conversation_ids):
        transcripts[event["conversation_id"]].append(to_event(event))
    for conversation_id, events in transcripts.items():
        row = rows.get(conversation_id)
        if row is None:
            continue
        facts = facts_from(conversation_id, events, datetime.fromisoformat(row["created_at"]), row["csat"],
                           row["csat_requested_at"] is not None)
        if row["purged_at"] is not None:
            # A purged transcript keeps its times but not what was decided: what was counted before stays.
            kept = db.execute("SELECT facts FROM report_conversations WHERE conversation_id = ?",
                              (conversation_id,)).fetchone()
            if kept is not None:
                continue
        db.execute(
            "INSERT INTO report_conversations (conversation_id, started_at, channel, closed_at, facts) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (conversation_id) DO UPDATE SET started_at = excluded.started_at, "
            "channel = excluded.channel, closed_at = excluded.closed_at, facts = excluded.facts",
            (conversation_id, facts.started_at.isoformat(), facts.channel,
             facts.closed_at.isoformat() if facts.closed_at else None, json.dumps(facts_record(facts))))
        db.execute("DELETE FROM report_gaps WHERE conversation_id = ?", (conversation_id,))
        db.executemany("INSERT INTO report_gaps (conversation_id, question_key, question) VALUES (?, ?, ?) "
                       "ON CONFLICT DO NOTHING",
                       [(conversation_id, gap_key(q.text), " ".join(q.text.split())) for q in gap_questions(events)])


def rebuild(db: Connection, write: Write, to_event: Callable[[Row], Event],
            progress: Progress | None = None) -> int:
    """Count everything again from the stored events (the figures of purged transcripts are kept)."""
    with write() as tx:
        tx.execute("DELETE FROM report_state")
        tx.execute("UPDATE report_hours SET messages = 0")
    return refresh(db, write, to_event, progress)


# The conversations a report covers: started in [start, end) on the channel asked for, merged ones left out.
# (`r` is report_conversations, `c` conversations.)
_COVERED = ("r.started_at >= ? AND r.started_at < ? AND c.merged_into IS NULL "
            "AND (CAST(? AS TEXT) IS NULL OR r.channel = ?)")


def _covered(start: datetime, end: datetime, channel: str | None) -> tuple[str, str, str | None, str | None]:
    return start.astimezone(UTC).isoformat(), end.astimezone(UTC).isoformat(), channel or None, channel or None


def facts_between(db: Connection, start: datetime, end: datetime,
                  channel: str | None) -> Iterator[ConversationFacts]:
    """The facts of the conversations a report covers, each with the time of its customer's next
    conversation after its close."""
    query = ("SELECT r.facts, CASE WHEN r.closed_at IS NOT NULL THEN (SELECT MIN(n.created_at) FROM conversations n "
             "WHERE n.customer_id = c.customer_id AND n.merged_into IS NULL AND n.created_at > r.closed_at) "
             "END AS next_started_at FROM report_conversations r JOIN conversations c USING (conversation_id) "
             f"WHERE {_COVERED} ORDER BY r.started_at")
    for row in db.execute(query, _covered(start, end, channel)):
        record = json.loads(row["facts"])
        record["next_started_at"] = row["next_started_at"]
        yield facts_of_record(record)


def hours_between(db: Connection, start: datetime, end: datetime,
                  channel: str | None) -> tuple[dict[tuple[datetime, str], int], dict[str, int]]:
    """Customer messages by UTC hour and channel, and replies never delivered by channel, in [start, end)."""
    query = "SELECT hour, channel, messages, failed_deliveries FROM report_hours WHERE hour >= ? AND hour < ?"
    parameters: list[str] = [_hour(start), _hour(end)]
    if channel:
        query += " AND channel = ?"
        parameters.append(channel)
    messages: dict[tuple[datetime, str], int] = {}
    failures: dict[str, int] = {}
    for row in db.execute(query, parameters):
        if row["messages"]:
            moment = datetime.fromisoformat(f"{row['hour']}:00:00+00:00")
            messages[(moment, row["channel"])] = row["messages"]
        if row["failed_deliveries"]:
            failures[row["channel"]] = failures.get(row["channel"], 0) + row["failed_deliveries"]
    return messages, failures


def gaps_between(db: Connection, start: datetime, end: datetime, channel: str | None,
                 top: int) -> list[tuple[str, int]]:
    """The questions most often unanswered in the conversations a report covers, in how many conversations
    each, less those an editor handled."""
    query = ("SELECT MIN(g.question) AS question, COUNT(*) AS n FROM report_gaps g "
             "JOIN report_conversations r USING (conversation_id) JOIN conversations c USING (conversation_id) "
             f"WHERE {_COVERED} AND g.question_key NOT IN (SELECT question_hash FROM gap_actions) "
             "GROUP BY g.question_key ORDER BY n DESC, question LIMIT ?")
    return [(row["question"], row["n"]) for row in db.execute(query, (*_covered(start, end, channel), top))]


def forget_words(db: Connection, where: str, parameters: tuple[object, ...]) -> None:
    """Drop the unanswered questions of the conversations whose events match `where` (their transcript is
    being purged or erased); every other figure of theirs stays."""
    db.execute("DELETE FROM report_gaps WHERE conversation_id IN "
               f"(SELECT DISTINCT conversation_id FROM events WHERE {where})", parameters)


def count_failed_delivery(db: Connection, channel: str, at: datetime) -> None:
    """A reply given up on: counted when it happens, since no transcript event records it."""
    db.execute("INSERT INTO report_hours (hour, channel, failed_deliveries) VALUES (?, ?, 1) "
               "ON CONFLICT (hour, channel) DO UPDATE SET failed_deliveries = report_hours.failed_deliveries + 1",
               (_hour(at), channel))
