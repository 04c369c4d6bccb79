"""The conversation store: customers, conversations, transcripts, inbox, outbox, agents and sessions, on
SQLite or PostgreSQL (`bot.stores.database`), safe for many threads and, on PostgreSQL, many processes.

Every write runs in one transaction that holds the database's write lock from its start, so a
read-then-write transaction never sees what it read change under it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bot.analytics.csat import CSAT_WINDOW, read_rating
from bot.analytics.reports import ConversationFacts
from bot.customers.codes import link_command, new_reference
from bot.errors import Conflict, InvalidMessage, NotAllowed, NotFound, TooManyRequests
from bot.messages import (
    Accepted,
    Author,
    Button,
    Conversation,
    ConversationStatus,
    Customer,
    DialogueState,
    Event,
    EventKind,
    InboundMessage,
    PendingMessage,
    Profile,
    Reply,
    utcnow,
)
from bot.outcome import Outcome, ReferenceNotice
from bot.stores import report_rollups, schema
from bot.stores.agents import AgentRecords
from bot.stores.customers import (
    EMAIL_CODES_PER_CLIENT,
    EMAIL_CODES_PER_HOUR,
    FAILURE_WINDOW,
    NewEvent,
    append_event,
    attempts,
    code_hash,
    current_customer,
    erase_customer,
    export_customer,
    find_customers,
    insert_events,
    issue_email_code,
    live_link_code,
    load_customer,
    merge_customers,
    open_conversation_of,
    purge_transcripts,
    record_attempt,
    redeem_link_code,
    store_link_code,
    unmerge,
    verify_email_code,
)
from bot.stores.database import Connection, Database, Row, SqliteDatabase, execute_rows
from bot.stores.kb_snapshots import KbEditRecords, KbSnapshotRecords
from bot.stores.outbox import OutboxRecords

log = logging.getLogger(__name__)


MAX_TAGS = 10
MAX_TAG_LENGTH = 40
# Channels whose external id is the customer's E.164 phone number.
PHONE_CHANNELS = ("sms", "whatsapp")
EMAIL_CHANNEL = "email"  # its identities are addresses: the customer's email
OPEN_STATUSES = (ConversationStatus.BOT, ConversationStatus.QUEUED, ConversationStatus.ASSIGNED)


def _buttons(reply: Reply) -> list[dict[str, str]]:
    return [{"title": b.title, "payload": b.payload} for b in reply.buttons]


def _reply_data(reply: Reply, agent_id: str | None = None) -> dict[str, Any]:
    """A reply's event data: its id and buttons, and the agent who wrote it."""
    return {"reply_id": reply.reply_id, "buttons": _buttons(reply), **({"agent_id": agent_id} if agent_id else {})}


def _identity_key(channel: str, external_id: str) -> str:
    return f"{channel}:{external_id}"


class ConversationStore(OutboxRecords, AgentRecords, KbSnapshotRecords, KbEditRecords):
    """The store: conversations, transcripts and turns here, the outbox (`OutboxRecords`), agents and web
    sessions (`AgentRecords`), published KB snapshots and unpublished article edits (`KbSnapshotRecords`,
    `KbEditRecords`), and customers
    (bot/stores/customers.py), on one database (SQLite or PostgreSQL); a Path means an SQLite file.

    `on_change` is called after each commit with the keys that changed: the identity
    a message came from or goes to (`channel:external_id`) and `conversations`.
    """

    def __init__(self, database: Database | Path, on_change: Callable[[str], None] | None = None) -> None:
        self._db = database if not isinstance(database, Path) else SqliteDatabase(database)
        self._on_change = on_change or (lambda key: None)
        schema.open_schema(self._db)

    @property
    def database(self) -> Database:
        return self._db

    # -- connections and transactions ------------------------------------------------

    def check_writable(self) -> None:
        """Write a row and commit, as every message must; Unavailable says why it cannot."""
        with self._write() as db:
            db.execute("INSERT INTO health (id, checked_at) VALUES (1, ?) "
                       "ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at", (utcnow().isoformat(),))

    def checkpoint_in_background(self, interval: float = 5.0) -> None:
        """SQLite: copy the WAL into the database file on a thread of the store's own (see `SqliteDatabase`)."""
        self._db.checkpoint_in_background(interval)

    def stop_checkpoints(self) -> None:
        self._db.stop_checkpoints()

    def close(self) -> None:
        """Close this thread's connection."""
        self._db.close()

    def dispose(self) -> None:
        """Close every connection: the store is not used again."""
        self._db.dispose()

    # -- inbound ---------------------------------------------------------------------

    def accept(self, message: InboundMessage) -> Accepted:
        """Store a customer message: identity, customer, open conversation, `message_in`.

        A repeat of the same `(channel, provider_message_id)` stores nothing and
        returns the first copy with `duplicate=True`.
        """
        now = utcnow().isoformat()
        with self._write() as db:
            seen = db.execute(
                "SELECT i.inbound_id, i.conversation_id, i.event_seq, c.customer_id FROM inbound i "
                "JOIN conversations c USING (conversation_id) "
                "WHERE i.channel = ? AND i.provider_message_id = ?",
                (message.channel, message.provider_message_id),
            ).fetchone()
            if seen is not None:
                return Accepted(seen["conversation_id"], seen["customer_id"], seen["event_seq"],
                                seen["inbound_id"], duplicate=True)
            conversation_id, customer_id, seq = self._store_message(db, message, now)
            inbound_id = db.execute(
                "INSERT INTO inbound (channel, provider_message_id, conversation_id, event_seq) VALUES (?, ?, ?, ?) "
                "RETURNING inbound_id",
                (message.channel, message.provider_message_id, conversation_id, seq),
            ).fetchone()["inbound_id"]
        self._changed(_identity_key(message.channel, message.external_id), "conversations")
        assert inbound_id is not None
        return Accepted(conversation_id, customer_id, seq, inbound_id, duplicate=False)

    def _store_message(self, db: Connection, message: InboundMessage, now: str) -> tuple[str, str, int]:
        """The message's customer and conversation, found or made, and its event there: their ids and its seq."""
        customer_id = self._resolve_identity(db, message.channel, message.external_id, message.profile, now,
                                             message.data.get("language"))
        data = {**message.data, "provider_message_id": message.provider_message_id,
                "attachments": list(message.attachments)}
        code = link_command(message.text, message.data)
        if code is not None:
            data["link"], customer_id = redeem_link_code(db, code, message.channel, message.external_id,
                                                         customer_id, datetime.fromisoformat(now))
        conversation = open_conversation_of(db, customer_id)
        rated = self._csat_answer(db, customer_id, message, now) if conversation is None else None
        received = message.received_at.isoformat()
        if rated is not None:
            # The customer rated a conversation that was closed: kept on it, and thanked.
            conversation_id, data["csat"] = rated
            return conversation_id, customer_id, append_event(
                db, conversation_id, EventKind.CSAT, Author.CUSTOMER, message.channel, message.external_id,
                message.text, data, received)
        event: NewEvent = (EventKind.MESSAGE_IN, Author.CUSTOMER, message.channel, message.external_id,
                           message.text, data)
        if conversation is None:
            conversation_id, seq = self._open_conversation(db, customer_id, message, now), 1
        else:
            # The channel it came on, and its number, in one statement.
            conversation_id = conversation["conversation_id"]
            seq = db.execute(
                "UPDATE conversations SET last_channel = ?, last_external_id = ?, updated_at = ?, "
                "snoozed_until = NULL, next_seq = next_seq + 1 WHERE conversation_id = ? RETURNING next_seq - 1",
                (message.channel, message.external_id, now, conversation_id),
            ).fetchone()[0]
        insert_events(db, conversation_id, seq, [event], received)
        return conversation_id, customer_id, seq

    def _csat_answer(self, db: Connection, customer_id: str, message: InboundMessage,
                     now: str) -> tuple[str, dict[str, Any]] | None:
        """The closed conversation a rating answers and what became of the rating, or None if the
        message is no rating. Only the first rating of a conversation counts; a later one (an old
        button tapped again) is kept beside it as a repeat."""
        rating = read_rating(message.text)
        if rating is None:
            return None
        since = (datetime.fromisoformat(now) - CSAT_WINDOW).isoformat()
        row = db.execute(
            "SELECT conversation_id, csat FROM conversations WHERE customer_id = ? AND status = 'closed' "
            "AND csat_requested_at >= ? ORDER BY csat_requested_at DESC LIMIT 1",
            (customer_id, since),
        ).fetchone()
        if row is None:
            return None
        answer: dict[str, Any] = {"score": rating.score, "comment": rating.comment}
        if row["csat"] is not None:
            return str(row["conversation_id"]), {**answer, "repeat": True}
        db.execute("UPDATE conversations SET csat = ?, csat_comment = ? WHERE conversation_id = ?",
                   (rating.score, rating.comment, row["conversation_id"]))
        return str(row["conversation_id"]), answer

    def _resolve_identity(self, db: Connection, channel: str, external_id: str, profile: Profile,
                          now: str, detected_language: str | None = None) -> str:
        """The customer behind the message's identity, created on first contact.

        SMS and WhatsApp from one E.164 number are one customer, also with a customer imported
        with that phone number; an email address is the customer who has it as their email (verified in
        the web chat, or imported), else a new customer with that email. What the channel tells of the
        person fills empty profile fields.
        The profile's language is an imported one, else the channel's hint, else the language of
        the customer's latest message that had one.
        """
        row = db.execute("SELECT customer_id FROM identities WHERE channel = ? AND external_id = ?",
                         (channel, external_id)).fetchone()
        customer_id: str | None = None if row is None else row["customer_id"]
        if customer_id is None and channel in PHONE_CHANNELS:
            same_number = db.execute(
                f"SELECT customer_id FROM identities WHERE external_id = ? AND channel IN "
                f"({', '.join('?' for _ in PHONE_CHANNELS)}) UNION ALL SELECT customer_id FROM customers "
                f"WHERE phone = ? AND merged_into IS NULL AND erased_at IS NULL LIMIT 1",
                (external_id, *PHONE_CHANNELS, external_id),
            ).fetchone()
            customer_id = None if same_number is None else same_number["customer_id"]
        if customer_id is None and channel == EMAIL_CHANNEL:
            # An address the web chat verified (or a customer imported with it) is that customer.
            same_address = db.execute(
                "SELECT customer_id FROM customers WHERE email = ? AND merged_into IS NULL AND erased_at IS NULL "
                "ORDER BY created_at LIMIT 1", (external_id,)).fetchone()
            customer_id = None if same_address is None else same_address["customer_id"]
        if customer_id is None:
            customer_id = uuid.uuid4().hex
            db.execute("INSERT INTO customers (customer_id, created_at, email) VALUES (?, ?, ?)",
                       (customer_id, now, external_id if channel == EMAIL_CHANNEL else None))
        if row is None:
            db.execute("INSERT INTO identities (channel, external_id, customer_id) VALUES (?, ?, ?)",
                       (channel, external_id, customer_id))
        # The profile's name, phone and language are written when they change, not rewritten with every message.
        if profile.display_name or profile.phone:
            named = profile.display_name is not None
            changed = ["(display_name IS NULL OR display_name <> ?)"] if named else []
            if profile.phone is not None:
                changed.append("phone IS NULL")  # a phone already on the profile is kept
            db.execute("UPDATE customers SET display_name = COALESCE(?, display_name), phone = COALESCE(phone, ?) "
                       f"WHERE customer_id = ? AND ({' OR '.join(changed)})",
                       (profile.display_name, profile.phone, customer_id, *([profile.display_name] if named else [])))
        if profile.language:
            db.execute("UPDATE customers SET language = ?, language_source = 'channel' WHERE customer_id = ? "
                       "AND (language IS NULL OR language_source IN ('channel', 'detected')) "
                       "AND (language IS NULL OR language <> ? OR language_source <> 'channel')",
                       (profile.language, customer_id, profile.language))
        elif detected_language:
            db.execute("UPDATE customers SET language = ?, language_source = 'detected' WHERE customer_id = ? "
                       "AND (language IS NULL OR language_source = 'detected') AND (language IS NULL OR language <> ?)",
                       (detected_language, customer_id, detected_language))
        return customer_id

    def _open_conversation(self, db: Connection, customer_id: str,
                           message: InboundMessage, now: str) -> str:
        conversation_id = uuid.uuid4().hex
        while True:
            reference = new_reference()
            taken = db.execute("SELECT 1 FROM conversations WHERE reference = ?", (reference,)).fetchone()
            if taken is None:
                break
        # Its first event, the message, is numbered 1 by the caller.
        db.execute(
            "INSERT INTO conversations (conversation_id, customer_id, reference, status, last_channel, "
            "last_external_id, created_at, updated_at, next_seq) VALUES (?, ?, ?, 'bot', ?, ?, ?, ?, 2)",
            (conversation_id, customer_id, reference, message.channel, message.external_id, now, now),
        )
        return conversation_id

    # -- processing ------------------------------------------------------------------

    def conversations_with_pending(self, unleased: bool = False) -> list[str]:
        """Return the conversations that have stored, unprocessed messages, oldest first; `unleased`: only
        those no worker holds a live lease on."""
        leased = (" AND conversation_id NOT IN (SELECT conversation_id FROM conversation_leases "
                  "WHERE expires_at >= ?)") if unleased else ""
        rows = self._connection().execute(
            "SELECT conversation_id, MIN(inbound_id) AS first FROM inbound WHERE processed_at IS NULL"
            f"{leased} GROUP BY conversation_id ORDER BY first", (utcnow().isoformat(),) if unleased else ()
        ).fetchall()
        return [row["conversation_id"] for row in rows]

    def lease(self, conversation_id: str, holder: str, seconds: float) -> int | None:
        """Take (or extend) the lease on a conversation for `seconds`, if a message of it waits. Returns None if
        none waits or another holder's lease is live; else how many times the conversation was taken over from
        a holder whose lease ran out since it was last released (a worker that died on it, or on one of its
        messages: 0 normally). One worker answers a conversation at a time; a dead worker's lease runs out and
        another takes it over."""
        now = utcnow()
        # One statement, atomic alone (see Database.write_one), that looks and takes at once: a conversation
        # offered again while it was answered (by a sweep and a wake-up at once) costs no lease taken and given
        # up. A worker taken for dead that commits a turn late, after another took its lease, still stores it
        # at most once: `complete_turn` marks a message processed only if nobody did, and the other worker's
        # look at the conversation waits for that.
        row = self._write_one(
            "INSERT INTO conversation_leases (conversation_id, holder, expires_at) SELECT ?, ?, ? "
            "WHERE EXISTS (SELECT 1 FROM inbound WHERE conversation_id = ? AND processed_at IS NULL) "
            "ON CONFLICT (conversation_id) DO UPDATE SET holder = excluded.holder, "
            "expires_at = excluded.expires_at, takeovers = conversation_leases.takeovers + "
            "CASE WHEN conversation_leases.holder = excluded.holder THEN 0 ELSE 1 END "
            "WHERE conversation_leases.holder = excluded.holder OR conversation_leases.expires_at < ? "
            "RETURNING takeovers", (conversation_id, holder, (now + timedelta(seconds=seconds)).isoformat(),
                                    conversation_id, now.isoformat())).fetchone()
        return None if row is None else int(row["takeovers"])

    def renew_leases(self, holder: str, seconds: float) -> int:
        """Extend every lease `holder` has (a worker's heartbeat); returns how many."""
        return self._write_one("UPDATE conversation_leases SET expires_at = ? WHERE holder = ?",
                               ((utcnow() + timedelta(seconds=seconds)).isoformat(), holder)).rowcount

    def release(self, conversation_id: str, holder: str) -> bool:
        """Give up `holder`'s lease on a conversation (nothing if another holds it now). Returns whether a message
        of it waits: one stored after the holder's last look, which its announcement may have offered to a
        worker that found the lease taken."""
        row = self._write_one(
            "DELETE FROM conversation_leases WHERE conversation_id = ? AND holder = ? RETURNING EXISTS "
            "(SELECT 1 FROM inbound WHERE inbound.conversation_id = conversation_leases.conversation_id "
            "AND processed_at IS NULL) AS waiting", (conversation_id, holder)).fetchone()
        return row is not None and bool(row["waiting"])

    def processed(self, inbound_id: int) -> bool:
        """Whether a stored message's turn was taken (or the message is gone: erased with its customer)."""
        row = self._connection().execute("SELECT processed_at FROM inbound WHERE inbound_id = ?",
                                         (inbound_id,)).fetchone()
        return row is None or row["processed_at"] is not None

    def next_pending(self, conversation_id: str) -> PendingMessage | None:
        """Return the oldest unprocessed message of a conversation, if any."""
        row = self._connection().execute(
            "SELECT i.inbound_id, i.conversation_id, i.event_seq, e.channel, e.external_id, e.text, e.data, "
            "e.created_at, EXISTS (SELECT 1 FROM inbound j WHERE j.conversation_id = i.conversation_id "
            "AND j.processed_at IS NULL AND j.inbound_id > i.inbound_id) AS followed "
            "FROM inbound i JOIN events e ON e.conversation_id = i.conversation_id AND e.seq = i.event_seq "
            "WHERE i.conversation_id = ? AND i.processed_at IS NULL ORDER BY i.inbound_id LIMIT 1",
            (conversation_id,),
        ).fetchone()
        if row is None:
            return None
        data = json.loads(row["data"])
        rating = data.get("csat")
        return PendingMessage(row["inbound_id"], row["conversation_id"], row["event_seq"],
                              row["channel"], row["external_id"], row["text"], data.get("media"), data.get("link"),
                              throttled=bool(data.get("throttled")), followed=bool(row["followed"]),
                              rated=None if rating is None else "repeat" if rating.get("repeat") else "first",
                              language=data.get("language"),
                              received_at=datetime.fromisoformat(row["created_at"]))

    def complete_turn(self, pending: PendingMessage, outcome: Outcome, holder: str | None = None) -> bool:
        """Store a turn's events and replies and mark its message processed, atomically.

        Returns False, storing nothing, if the message was already processed, or if `holder` is given and
        another worker has taken the conversation's lease over meanwhile (this worker was taken for dead).

        The commit does not wait for the disk: a crash of the machine may undo it, and the message, stored
        durably when it was accepted, is then answered again (`Database.write`; a reply never leaves before it
        is on the disk).
        """
        now = utcnow().isoformat()
        with self._write(redoable=True) as db:
            # Where the message is now: a merge may have moved it to another conversation since it was taken.
            # With a `holder`, only while no other worker holds the conversation it was taken from.
            where = db.execute(
                "UPDATE inbound SET processed_at = ? WHERE inbound_id = ? AND processed_at IS NULL "
                "RETURNING conversation_id, event_seq", (now, pending.inbound_id),
            ).fetchone() if holder is None else db.execute(
                "UPDATE inbound SET processed_at = ? WHERE inbound_id = ? AND processed_at IS NULL AND NOT EXISTS "
                "(SELECT 1 FROM conversation_leases WHERE conversation_id = ? AND holder <> ?) "
                "RETURNING conversation_id, event_seq", (now, pending.inbound_id, pending.conversation_id, holder),
            ).fetchone()
            if where is None:
                return False
            pending = replace(pending, conversation_id=where["conversation_id"], event_seq=where["event_seq"])
            if outcome.message_data:
                row = db.execute("SELECT data FROM events WHERE conversation_id = ? AND seq = ?",
                                 (pending.conversation_id, pending.event_seq)).fetchone()
                db.execute("UPDATE events SET data = ? WHERE conversation_id = ? AND seq = ?",
                           (json.dumps({**json.loads(row["data"]), **outcome.message_data}), pending.conversation_id,
                            pending.event_seq))
            self._store_turn(db, pending, outcome, now)
            if outcome.opted_out is not None:
                db.execute("UPDATE identities SET opted_out = ? WHERE channel = ? AND external_id = ?",
                           (int(outcome.opted_out), pending.channel, pending.external_id))
            notified = None
            if outcome.customer_attributes or outcome.customer_name or outcome.link_code or outcome.reference_notice:
                customer_id = db.execute("SELECT customer_id FROM conversations WHERE conversation_id = ?",
                                         (pending.conversation_id,)).fetchone()["customer_id"]
                if outcome.customer_attributes:
                    self._merge_attributes(db, customer_id, dict(outcome.customer_attributes))
                if outcome.customer_name:
                    db.execute("UPDATE customers SET display_name = ? WHERE customer_id = ?",
                               (outcome.customer_name, customer_id))
                if outcome.link_code is not None:
                    store_link_code(db, customer_id, outcome.link_code, datetime.fromisoformat(now))
                if outcome.reference_notice is not None:
                    notified = self._send_reference_code(db, customer_id, outcome.reference_notice, now)
            if outcome.handoff_reason is not None:
                db.execute(
                    "UPDATE conversations SET status = 'queued', handoff_reason = ?, updated_at = ? "
                    "WHERE conversation_id = ? AND status = 'bot'",
                    (outcome.handoff_reason, now, pending.conversation_id),
                )
                append_event(db, pending.conversation_id, EventKind.HANDOFF, Author.BOT, None, None,
                             None, {**outcome.handoff_detail, "reason": outcome.handoff_reason}, now)
        self._changed(_identity_key(pending.channel, pending.external_id), "conversations", "outbox")
        if notified is not None:
            self._changed(notified)
        return True

    def _store_turn(self, db: Connection, pending: PendingMessage, outcome: Outcome, now: str) -> None:
        """The bot's events and replies, in that order, and the conversation's fallback streak and dialogue
        state: one update of the conversation (which numbers the events) and one insert a table, so that the
        turn holds the write lock for few statements. A reply addressed to another conversation (one merged
        away meanwhile) is added on its own."""
        conversation_id = pending.conversation_id
        replies: list[Reply] = []
        elsewhere: list[Reply] = []
        for reply in outcome.replies:
            (replies if reply.conversation_id == conversation_id else elsewhere).append(reply)
        events: list[NewEvent] = [(kind, Author.BOT, None, None, None, data) for kind, data in outcome.events]
        events += [(EventKind.MESSAGE_OUT, reply.author, pending.channel, pending.external_id, reply.text,
                    _reply_data(reply)) for reply in replies]
        changes = ["next_seq = next_seq + ?"]
        values: list[Any] = [len(events)]
        if outcome.fallback_streak is not None:
            changes += ["fallback_streak = ?", "updated_at = ?"]
            values += [outcome.fallback_streak, now]
        if outcome.dialogue is not None:
            changes += ["dialogue = ?"]
            values += [json.dumps(outcome.dialogue.as_json())]
        if events or len(changes) > 1:
            after = db.execute(f"UPDATE conversations SET {', '.join(changes)} WHERE conversation_id = ? "
                               "RETURNING next_seq", (*values, conversation_id)).fetchone()["next_seq"]
            first = after - len(events)
            insert_events(db, conversation_id, first, events, now)
            self._insert_outbox(db, [(reply, first + len(outcome.events) + i) for i, reply in enumerate(replies)],
                                pending.channel, pending.external_id, pending.event_seq, now)
        for reply in elsewhere:
            self._add_reply(db, reply, pending.channel, pending.external_id, pending.event_seq, now)

    def _send_reference_code(self, db: Connection, customer_id: str, notice: ReferenceNotice,
                             now: str) -> str | None:
        """Send a link code to the channel of the quoted conversation, unless it is this customer's own,
        or its owner already holds a live code (so quoting a reference cannot flood them).
        Returns the identity written to."""
        row = db.execute("SELECT conversation_id, customer_id, last_channel, last_external_id FROM conversations "
                         "WHERE reference = ?", (notice.reference,)).fetchone()
        if row is None:
            return None
        owner = current_customer(db, row["customer_id"])
        at = datetime.fromisoformat(now)
        identity = db.execute("SELECT 1 FROM identities WHERE channel = ? AND external_id = ? AND customer_id = ?",
                              (row["last_channel"], row["last_external_id"], owner)).fetchone()
        if owner == customer_id or identity is None or live_link_code(db, owner, at):
            return None
        store_link_code(db, owner, notice.code, at)
        self._add_reply(db, Reply(row["conversation_id"], notice.text, Author.SYSTEM), row["last_channel"],
                        row["last_external_id"], None, now)
        return _identity_key(row["last_channel"], row["last_external_id"])

    def reference_owner(self, reference: str) -> str | None:
        """The customer a conversation reference belongs to now, or None."""
        db = self._connection()
        row = db.execute("SELECT customer_id FROM conversations WHERE reference = ?", (reference,)).fetchone()
        return None if row is None else current_customer(db, row["customer_id"])

    def _add_reply(self, db: Connection, reply: Reply, channel: str, external_id: str,
                   in_reply_to: int | None, now: str, agent_id: str | None = None) -> None:
        seq = append_event(db, reply.conversation_id, EventKind.MESSAGE_OUT, reply.author, channel,
                           external_id, reply.text, _reply_data(reply, agent_id), now)
        self._insert_outbox(db, [(reply, seq)], channel, external_id, in_reply_to, now)

    @staticmethod
    def _insert_outbox(db: Connection, replies: Sequence[tuple[Reply, int]], channel: str, external_id: str,
                       in_reply_to: int | None, now: str) -> None:
        """Queue replies whose events are numbered (`(reply, seq)`) for their channel."""
        sql = ("INSERT INTO outbox (reply_id, conversation_id, event_seq, channel, external_id, author, text, "
               "buttons, in_reply_to, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        rows = [(reply.reply_id, reply.conversation_id, seq, channel, external_id, reply.author.value, reply.text,
                 json.dumps(_buttons(reply)), in_reply_to, now) for reply, seq in replies]
        execute_rows(db, sql, rows)

    # -- reports -----------------------------------------------------------------------

    def refresh_reports(self, progress: report_rollups.Progress | None = None) -> int:
        """Bring the reports' rollups up to date with the events since the last time; returns how many
        conversations were recounted (`progress(done, total)` is told along the way)."""
        return report_rollups.refresh(self._connection(), self._write, _event, progress)

    def rebuild_reports(self, progress: report_rollups.Progress | None = None) -> int:
        """Count the reports' rollups again from every stored event."""
        return report_rollups.rebuild(self._connection(), self._write, _event, progress)

    def report_facts(self, start: datetime, end: datetime, channel: str | None = None) -> list[ConversationFacts]:
        """The facts of the conversations started in [start, end) (bring them up to date first)."""
        return list(report_rollups.facts_between(self._connection(), start, end, channel))

    def report_gaps(self, start: datetime, end: datetime, channel: str | None = None,
                    top: int = 10) -> list[tuple[str, int]]:
        """The questions most often unanswered in conversations started in [start, end), in how many each."""
        return report_rollups.gaps_between(self._connection(), start, end, channel, top)

    def report_hours(self, start: datetime, end: datetime,
                     channel: str | None = None) -> tuple[dict[tuple[datetime, str], int], dict[str, int]]:
        """Customer messages by UTC hour and channel, and undelivered replies by channel, in [start, end)."""
        return report_rollups.hours_between(self._connection(), start, end, channel)

    # -- reading ---------------------------------------------------------------------

    def get_conversation(self, conversation_id: str) -> Conversation:
        """Return a conversation, or raise NotFound."""
        row = self._connection().execute(
            "SELECT * FROM conversations WHERE conversation_id = ?", (conversation_id,)
        ).fetchone()
        if row is None:
            raise NotFound("no such conversation")
        return _conversation(row)

    def get_customer(self, customer_id: str) -> Customer:
        """Return a customer with their identities, or raise NotFound."""
        return load_customer(self._connection(), customer_id)

    def request_email_code(self, channel: str, external_id: str, email: str, client: str = "") -> str:
        """A one-time code to send to `email`, which this identity (created if new) may use to prove the
        address is theirs. At most EMAIL_CODES_PER_HOUR per identity and per address, and
        EMAIL_CODES_PER_CLIENT per client address (`client`), so that free sessions cannot flood a mailbox."""
        now = utcnow()
        email = email.strip().lower()
        since = now - FAILURE_WINDOW
        # The address and the client are counted under hashes: the counts hold nothing personal.
        senders = ((channel, external_id, EMAIL_CODES_PER_HOUR, "this chat"),
                   ("email", code_hash(email), EMAIL_CODES_PER_HOUR, "this address"),
                   ("client", code_hash(client), EMAIL_CODES_PER_CLIENT, "your network"))
        with self._write() as db:
            for counted_channel, counted_id, limit, what in senders:
                if attempts(db, counted_channel, counted_id, "email_sent", since) >= limit:
                    raise TooManyRequests(f"too many codes were sent for {what}; try again in an hour")
            customer_id = self._resolve_identity(db, channel, external_id, Profile(), now.isoformat())
            for counted_channel, counted_id, _, _ in senders:
                record_attempt(db, counted_channel, counted_id, "email_sent", now)
            return issue_email_code(db, customer_id, channel, external_id, email, now)

    def verify_email_code(self, channel: str, external_id: str, code: str) -> str:
        """Check a code sent by email. The address becomes the customer's; another customer with it is
        merged with this one (the older kept). Returns `linked` or `verified`."""
        with self._write() as db:
            result = verify_email_code(db, channel, external_id, code, utcnow())
        # Raised only now: the wrong try is committed, so it counts against the limit.
        if result == "limited":
            raise TooManyRequests("too many wrong codes from this chat; try again in an hour")
        if result == "wrong":
            raise InvalidMessage("that code is not right; check the email, or ask for a new code")
        if result == "expired":
            raise Conflict("that code has expired or was used already; ask for a new one")
        self._changed("conversations")
        return result

    def merge_customers(self, kept_id: str, merged_id: str, agent_id: str) -> str:
        """An agent makes two customers one (`merged_id` joins `kept_id`); returns the merge's id."""
        with self._write() as db:
            merge_id = merge_customers(db, kept_id, merged_id, "agent", agent_id, utcnow().isoformat())
        self._changed("conversations")
        return merge_id

    def unmerge(self, merge_id: str, agent_id: str) -> tuple[str, str]:
        """Undo a merge; returns (kept, merged) customer ids."""
        with self._write() as db:
            customers = unmerge(db, merge_id, agent_id, utcnow().isoformat())
        self._changed("conversations")
        return customers

    def merges_of(self, customer_id: str) -> list[dict[str, Any]]:
        """The merges a customer took part in, latest first."""
        rows = self._connection().execute(
            "SELECT merge_id, kept_id, merged_id, how, agent_id, created_at, undone_at, undone_by FROM merges "
            "WHERE kept_id = ? OR merged_id = ? ORDER BY created_at DESC", (customer_id, customer_id)).fetchall()
        return [dict(row) for row in rows]

    # -- profiles and privacy -----------------------------------------------------------

    def list_customers(self, limit: int = 200) -> list[Customer]:
        """Customers (not erased, not merged into another), latest first."""
        rows = self._connection().execute(
            "SELECT customer_id FROM customers WHERE erased_at IS NULL AND merged_into IS NULL "
            "ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        return [self.get_customer(r["customer_id"]) for r in rows]

    def find_customers(self, text: str) -> list[Customer]:
        """Customers whose name, email, phone, identity or message text contains `text`."""
        return [self.get_customer(c) for c in find_customers(self._connection(), text)]

    def current_customer(self, customer_id: str) -> str:
        """The customer this one was merged into (or itself)."""
        return current_customer(self._connection(), customer_id)

    def export_customer(self, customer_id: str) -> dict[str, Any]:
        """Everything held about a person, as JSON-ready data."""
        with self._db.snapshot() as db:
            return export_customer(db, customer_id)

    def erase_customer(self, customer_id: str) -> int:
        """Erase a person (see `customers.erase_customer`), then compact the file so nothing
        erased survives in free pages or the write-ahead log. Returns how many customers were erased."""
        self.refresh_reports()  # their conversations stay counted in the reports, without their words
        with self._write() as db:
            erased = erase_customer(db, customer_id, utcnow().isoformat())
        self.compact()
        self._changed("conversations")
        return erased

    def purge_transcripts(self, older_than: timedelta) -> int:
        """Blank the transcripts of conversations closed longer ago than `older_than`; returns how many.
        The reports count them first: their figures outlive their words."""
        self.refresh_reports()
        now = utcnow()
        with self._write() as db:
            purged = purge_transcripts(db, (now - older_than).isoformat(), now.isoformat())
        if purged:
            self.compact()
            self._changed("conversations")
        return purged

    def compact(self) -> None:
        """Leave nothing deleted behind in the database's files (see the databases' `compact`)."""
        self._db.compact()

    def import_customer(self, record: dict[str, Any]) -> tuple[str, bool]:
        """Create or update a customer from an imported record: `email` and/or `phone` (E.164) find
        them, `name` and `language` fill the profile, every other field is an attribute.
        Returns (customer id, created)."""
        email = (record.get("email") or "").strip().lower() or None
        phone = record.get("phone") or None
        attributes = {k: v for k, v in record.items() if k not in ("email", "phone", "name", "language")}
        language = record.get("language") or None
        now = utcnow().isoformat()
        with self._write() as db:
            row = db.execute(
                "SELECT customer_id FROM customers WHERE erased_at IS NULL AND merged_into IS NULL AND "
                "((email IS NOT NULL AND email = ?) OR (phone IS NOT NULL AND phone = ?)) "
                "UNION ALL SELECT customer_id FROM identities WHERE external_id = ? AND channel IN ('sms', 'whatsapp') "
                "LIMIT 1", (email, phone, phone)).fetchone()
            created = row is None
            customer_id = uuid.uuid4().hex if created else row["customer_id"]
            if created:
                db.execute("INSERT INTO customers (customer_id, created_at) VALUES (?, ?)", (customer_id, now))
            db.execute("UPDATE customers SET email = COALESCE(?, email), phone = COALESCE(?, phone), "
                       "display_name = COALESCE(?, display_name), language = COALESCE(?, language), "
                       "language_source = CASE WHEN CAST(? AS TEXT) IS NULL THEN language_source ELSE 'explicit' END "
                       "WHERE customer_id = ?", (email, phone, record.get("name") or None, language, language,
                                                 customer_id))
            self._merge_attributes(db, customer_id, attributes)
        self._changed("conversations")
        return customer_id, created

    def set_attributes(self, customer_id: str, attributes: dict[str, Any]) -> Customer:
        """Merge attributes into a customer's profile; a None value removes that attribute."""
        with self._write() as db:
            self._merge_attributes(db, customer_id, attributes)
        self._changed("conversations")
        return self.get_customer(customer_id)

    @staticmethod
    def _merge_attributes(db: Connection, customer_id: str, attributes: dict[str, Any]) -> None:
        row = db.execute("SELECT attributes FROM customers WHERE customer_id = ?", (customer_id,)).fetchone()
        if row is None:
            raise NotFound("no such customer")
        merged = {**json.loads(row["attributes"]), **attributes}
        db.execute("UPDATE customers SET attributes = ? WHERE customer_id = ?",
                   (json.dumps({k: v for k, v in merged.items() if v is not None}), customer_id))

    def list_conversations(self, statuses: Sequence[ConversationStatus]) -> list[Conversation]:
        """Return the conversations in the given states, longest waiting first."""
        marks = ", ".join("?" for _ in statuses)
        rows = self._connection().execute(
            f"SELECT * FROM conversations WHERE status IN ({marks}) ORDER BY updated_at",
            [s.value for s in statuses],
        ).fetchall()
        return [_conversation(row) for row in rows]

    def queue_length(self) -> int:
        """How many conversations wait for an agent."""
        count: int = self._connection().execute(
            "SELECT COUNT(*) FROM conversations WHERE status = 'queued'").fetchone()[0]
        return count

    def queue_waiting_since(self) -> datetime | None:
        """When the conversation waiting longest for an agent was handed off, or None if none waits."""
        row = self._connection().execute(
            "SELECT MIN(COALESCE((SELECT MAX(e.created_at) FROM events e WHERE e.conversation_id = c.conversation_id "
            "AND e.kind = 'handoff'), c.updated_at)) FROM conversations c WHERE c.status = 'queued'").fetchone()
        return datetime.fromisoformat(row[0]) if row[0] else None

    def latest_conversation_of(self, channel: str, external_id: str) -> Conversation | None:
        """The latest conversation of the customer behind an identity (their open one, if any), or None."""
        row = self._connection().execute(
            "SELECT c.* FROM identities i JOIN conversations c USING (customer_id) WHERE i.channel = ? "
            "AND i.external_id = ? ORDER BY c.status = 'closed', c.updated_at DESC LIMIT 1",
            (channel, external_id)).fetchone()
        return _conversation(row) if row is not None else None

    def conversations_of(self, customer_id: str) -> list[Conversation]:
        """Every conversation of a customer, latest first."""
        rows = self._connection().execute(
            "SELECT * FROM conversations WHERE customer_id = ? ORDER BY created_at DESC", (customer_id,)
        ).fetchall()
        return [_conversation(row) for row in rows]

    def previous_conversation(self, customer_id: str, before: str) -> Conversation | None:
        """The customer's most recent conversation other than `before`."""
        row = self._connection().execute(
            "SELECT * FROM conversations WHERE customer_id = ? AND conversation_id != ? "
            "ORDER BY updated_at DESC LIMIT 1", (customer_id, before)
        ).fetchone()
        return None if row is None else _conversation(row)

    def transcript(self, conversation_id: str) -> list[Event]:
        """Return every event of a conversation in order."""
        rows = self._connection().execute(
            "SELECT * FROM events WHERE conversation_id = ? ORDER BY seq", (conversation_id,)
        ).fetchall()
        return [_event(row) for row in rows]

    def wrote_before(self, conversation_id: str, seq: int) -> bool:
        """Whether the customer wrote in the conversation before its event `seq` (one row looked at, however long
        the conversation)."""
        return self._connection().execute(
            "SELECT 1 FROM events WHERE conversation_id = ? AND seq < ? AND kind = 'message_in' LIMIT 1",
            (conversation_id, seq),
        ).fetchone() is not None

    def identity_events(self, channel: str, external_id: str, after_id: int) -> list[tuple[int, Event]]:
        """Return the messages from and to one identity (ratings too) after a global event id."""
        rows = self._connection().execute(
            "SELECT * FROM events WHERE channel = ? AND external_id = ? AND event_id > ? "
            "AND kind IN ('message_in', 'message_out', 'csat') ORDER BY event_id",
            (channel, external_id, after_id),
        ).fetchall()
        return [(row["event_id"], _event(row)) for row in rows]

    # -- agents acting on conversations ----------------------------------------------

    def _held(self, db: Connection, conversation_id: str, agent_id: str, admin: bool = False) -> Row:
        """The conversation, if this agent holds it (an admin may act on any assigned one)."""
        row = db.execute("SELECT * FROM conversations WHERE conversation_id = ?",
                         (conversation_id,)).fetchone()
        if row is None:
            raise NotFound("no such conversation")
        if row["status"] != ConversationStatus.ASSIGNED:
            raise NotAllowed("claim this conversation before acting on it")
        if row["assignee_id"] != agent_id and not admin:
            raise NotAllowed("another agent holds this conversation; only they or an admin can act on it")
        return row

    def claim(self, conversation_id: str, agent_id: str) -> Conversation:
        """Assign a queued (or bot-held) conversation to an agent; a second claim raises Conflict."""
        now = utcnow().isoformat()
        with self._write() as db:
            claimed = db.execute(
                "UPDATE conversations SET status = 'assigned', assignee_id = ?, updated_at = ? "
                "WHERE conversation_id = ? AND status IN ('bot', 'queued')",
                (agent_id, now, conversation_id),
            ).rowcount
            if not claimed:
                current = db.execute("SELECT status FROM conversations WHERE conversation_id = ?",
                                     (conversation_id,)).fetchone()
                if current is None:
                    raise NotFound("no such conversation")
                raise Conflict(f"this conversation is {current['status']}, it cannot be claimed")
            append_event(db, conversation_id, EventKind.ASSIGNED, Author.AGENT, None, None, None,
                         {"agent_id": agent_id}, now)
        self._changed("conversations")
        return self.get_conversation(conversation_id)

    def agent_reply(self, conversation_id: str, agent_id: str, text: str, admin: bool = False,
                    to: tuple[str, str] | None = None) -> Reply:
        """Send an agent's reply to the channel the customer last used, or to `to`, another of their identities."""
        now = utcnow().isoformat()
        with self._write() as db:
            row = self._held(db, conversation_id, agent_id, admin)
            channel, external_id = to or (row["last_channel"], row["last_external_id"])
            if db.execute("SELECT 1 FROM identities WHERE channel = ? AND external_id = ? AND customer_id = ?",
                          (channel, external_id, row["customer_id"])).fetchone() is None:
                raise InvalidMessage("that is not an identity of this conversation's customer")
            reply = Reply(conversation_id, text, Author.AGENT)
            self._add_reply(db, reply, channel, external_id, None, now, agent_id)
            db.execute("UPDATE conversations SET updated_at = ? WHERE conversation_id = ?",
                       (now, conversation_id))
        self._changed(_identity_key(channel, external_id), "conversations", "outbox")
        return reply

    def add_note(self, conversation_id: str, agent_id: str, text: str) -> Event:
        """An internal note on a conversation: in the transcript for agents, never sent to the customer."""
        now = utcnow().isoformat()
        with self._write() as db:
            if db.execute("SELECT 1 FROM conversations WHERE conversation_id = ?", (conversation_id,)).fetchone() \
                    is None:
                raise NotFound("no such conversation")
            seq = append_event(db, conversation_id, EventKind.NOTE, Author.AGENT, None, None, text,
                               {"agent_id": agent_id}, now)
        self._changed("conversations")
        return next(e for e in self.transcript(conversation_id) if e.seq == seq)

    def set_tags(self, conversation_id: str, tags: Sequence[str]) -> Conversation:
        """Label a conversation (any agent may): tags are trimmed, lower-cased, at most MAX_TAGS of at most
        MAX_TAG_LENGTH characters each; an empty list removes them."""
        cleaned = list(dict.fromkeys(" ".join(t.split()).lower() for t in tags if t.strip()))
        if len(cleaned) > MAX_TAGS or any(len(t) > MAX_TAG_LENGTH for t in cleaned):
            raise InvalidMessage(f"at most {MAX_TAGS} tags of at most {MAX_TAG_LENGTH} characters each")
        with self._write() as db:
            if not db.execute("UPDATE conversations SET tags = ? WHERE conversation_id = ?",
                              (json.dumps(cleaned), conversation_id)).rowcount:
                raise NotFound("no such conversation")
        self._changed("conversations")
        return self.get_conversation(conversation_id)

    def snooze(self, conversation_id: str, agent_id: str, until: datetime | None, admin: bool = False) -> Conversation:
        """Hide a held conversation from its holder's list until `until` (None: wake it now); the customer
        writing again wakes it at once."""
        if until is not None and until <= utcnow():
            raise InvalidMessage("snooze until a time in the future")
        with self._write() as db:
            self._held(db, conversation_id, agent_id, admin)
            db.execute("UPDATE conversations SET snoozed_until = ? WHERE conversation_id = ?",
                       (until.isoformat() if until else None, conversation_id))
        self._changed("conversations")
        return self.get_conversation(conversation_id)

    def transfer(self, conversation_id: str, agent_id: str, to_agent_id: str, admin: bool = False) -> Conversation:
        """Hand a held conversation to another active agent (an admin may also assign a queued one)."""
        now = utcnow().isoformat()
        with self._write() as db:
            target = db.execute("SELECT active FROM agents WHERE agent_id = ?", (to_agent_id,)).fetchone()
            if target is None or not target["active"]:
                raise NotFound("no active agent to transfer to")
            row = db.execute("SELECT status FROM conversations WHERE conversation_id = ?",
                             (conversation_id,)).fetchone()
            if row is None:
                raise NotFound("no such conversation")
            if not (admin and row["status"] == ConversationStatus.QUEUED):
                self._held(db, conversation_id, agent_id, admin)
            db.execute("UPDATE conversations SET status = 'assigned', assignee_id = ?, snoozed_until = NULL, "
                       "updated_at = ? WHERE conversation_id = ?", (to_agent_id, now, conversation_id))
            append_event(db, conversation_id, EventKind.ASSIGNED, Author.AGENT, None, None, None,
                         {"agent_id": to_agent_id, "by": agent_id}, now)
        self._changed("conversations")
        return self.get_conversation(conversation_id)

    def return_to_bot(self, conversation_id: str, agent_id: str, admin: bool = False,
                      notice: tuple[str, tuple[Button, ...]] | None = None) -> Conversation:
        """Give a held conversation back to the bot, telling the customer with `notice`."""
        return self._release(conversation_id, agent_id, ConversationStatus.BOT, EventKind.RETURNED_TO_BOT, admin,
                             notice=notice)

    def close_conversation(self, conversation_id: str, agent_id: str, resolution: str | None = None,
                           admin: bool = False, csat_question: tuple[str, tuple[Button, ...]] | None = None,
                           ) -> Conversation:
        """Close a held conversation, tagged with how it was resolved, and ask the customer for a rating
        (1-5; their answer within a week is stored on it). Their next other message opens a new one."""
        return self._release(conversation_id, agent_id, ConversationStatus.CLOSED, EventKind.CLOSED, admin,
                             {"resolution": resolution} if resolution else {}, csat_question)

    def reopen(self, conversation_id: str, agent_id: str) -> Conversation:
        """Take a closed conversation up again, held by `agent_id`. Refused while the customer has another
        open conversation (that one is where they are talking now) or when the customer was erased."""
        now = utcnow().isoformat()
        with self._write() as db:
            row = db.execute("SELECT * FROM conversations WHERE conversation_id = ?", (conversation_id,)).fetchone()
            if row is None:
                raise NotFound("no such conversation")
            if row["status"] != ConversationStatus.CLOSED:
                raise NotAllowed("only a closed conversation can be reopened")
            if not row["last_external_id"] or row["merged_into"]:
                raise NotAllowed("this conversation cannot be reopened: its customer was erased or it was merged "
                                 "into another")
            customer_id = current_customer(db, row["customer_id"])
            other = open_conversation_of(db, customer_id)
            if other is not None:
                raise Conflict(f"the customer is in another open conversation, {other['reference']}: "
                               "continue there")
            db.execute("UPDATE conversations SET status = 'assigned', assignee_id = ?, closed_at = NULL, "
                       "updated_at = ? WHERE conversation_id = ?", (agent_id, now, conversation_id))
            append_event(db, conversation_id, EventKind.REOPENED, Author.AGENT, None, None, None,
                         {"agent_id": agent_id}, now)
        self._changed("conversations")
        return self.get_conversation(conversation_id)

    def _release(self, conversation_id: str, agent_id: str, status: ConversationStatus, kind: EventKind,
                 admin: bool = False, data: dict[str, Any] | None = None,
                 notice: tuple[str, tuple[Button, ...]] | None = None) -> Conversation:
        now = utcnow().isoformat()
        with self._write() as db:
            row = self._held(db, conversation_id, agent_id, admin)
            if status == ConversationStatus.CLOSED:
                # Who handled it and why it was handed off stay on the record.
                db.execute("UPDATE conversations SET status = 'closed', closed_at = ? WHERE conversation_id = ?",
                           (now, conversation_id))
            else:
                db.execute("UPDATE conversations SET status = ?, assignee_id = NULL, handoff_reason = NULL "
                           "WHERE conversation_id = ?", (status.value, conversation_id))
            dialogue = {**json.loads(row["dialogue"]), "active_loop": None, "negative_streak": 0}
            db.execute(
                "UPDATE conversations SET fallback_streak = 0, snoozed_until = NULL, dialogue = ?, "
                "updated_at = ? WHERE conversation_id = ?",
                (json.dumps(dialogue), now, conversation_id),
            )
            append_event(db, conversation_id, kind, Author.AGENT, None, None, None,
                         {"agent_id": agent_id, **(data or {})}, now)
            if notice is not None:
                text, buttons = notice
                self._add_reply(db, Reply(conversation_id, text, Author.SYSTEM, buttons), row["last_channel"],
                                row["last_external_id"], None, now)
                if status == ConversationStatus.CLOSED:
                    db.execute("UPDATE conversations SET csat_requested_at = ? WHERE conversation_id = ?",
                               (now, conversation_id))
        self._changed("conversations", "outbox", _identity_key(row["last_channel"], row["last_external_id"]))
        return self.get_conversation(conversation_id)

    # -- the gaps report ---------------------------------------------------------------

    def handle_gaps(self, question_hashes: Sequence[str], action: str, article_id: str | None, agent_id: str) -> None:
        """Record that an editor answered (with `article_id`) or dismissed these questions."""
        now = utcnow().isoformat()
        with self._write() as db:
            db.executemany("INSERT INTO gap_actions (question_hash, action, article_id, agent_id, at) "
                           "VALUES (?, ?, ?, ?, ?) ON CONFLICT (question_hash) DO UPDATE SET action = excluded.action, "
                           "article_id = excluded.article_id, agent_id = excluded.agent_id, at = excluded.at",
                           [(h, action, article_id, agent_id, now) for h in question_hashes])

    def handled_gaps(self) -> set[str]:
        """The hashes of the questions editors handled."""
        return {row[0] for row in self._connection().execute("SELECT question_hash FROM gap_actions")}

def _conversation(row: Row) -> Conversation:
    return Conversation(
        conversation_id=row["conversation_id"],
        customer_id=row["customer_id"],
        reference=row["reference"],
        status=ConversationStatus(row["status"]),
        assignee_id=row["assignee_id"],
        handoff_reason=row["handoff_reason"],
        fallback_streak=row["fallback_streak"],
        last_channel=row["last_channel"],
        last_external_id=row["last_external_id"],
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        dialogue=DialogueState.from_json(json.loads(row["dialogue"])),
        csat=row["csat"],
        csat_comment=row["csat_comment"],
        tags=tuple(json.loads(row["tags"] or "[]")),
        snoozed_until=datetime.fromisoformat(row["snoozed_until"]) if row["snoozed_until"] else None,
        closed_at=datetime.fromisoformat(row["closed_at"]) if row["closed_at"] else None,
    )


def _event(row: Row) -> Event:
    return Event(
        conversation_id=row["conversation_id"],
        seq=row["seq"],
        kind=EventKind(row["kind"]),
        author=Author(row["author"]),
        channel=row["channel"],
        external_id=row["external_id"],
        text=row["text"],
        data=json.loads(row["data"]),
        created_at=datetime.fromisoformat(row["created_at"]),
    )
