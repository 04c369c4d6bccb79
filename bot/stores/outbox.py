"""The outbox: replies waiting for their channel, claimed, sent part by part, retried or failed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from bot.errors import NotFound
from bot.messages import Author, Button, OutboxEntry, utcnow
from bot.stores import report_rollups
from bot.stores.database import Row
from bot.stores.records import Records


class OutboxRecords(Records):
    """Replies on their way out: what the delivery worker claims and records, and what pull channels read."""

    def outbox_for(self, channel: str, external_id: str, status: str) -> list[OutboxEntry]:
        """Return the outbox entries addressed to one identity in a given status, oldest first."""
        rows = self._connection().execute(
            "SELECT o.*, e.event_id FROM outbox o JOIN events e "
            "ON e.conversation_id = o.conversation_id AND e.seq = o.event_seq "
            "WHERE o.channel = ? AND o.external_id = ? AND o.status = ? ORDER BY e.event_id",
            (channel, external_id, status),
        ).fetchall()
        return [_outbox_entry(row) for row in rows]

    def take_replies(self, channel: str, external_id: str,
                     answering: tuple[str, int] | None = None) -> list[OutboxEntry]:
        """Mark sent, and return oldest first, the replies waiting for one identity on a channel that hands them
        over in its answer to the customer's request (the REST channel): all of them, or only the bot's answers
        to one message (`answering`: its conversation and event seq). One statement, so a reply is handed to
        one request only, however many ask for the same identity at once."""
        parameters: list[Any] = [utcnow().isoformat(), channel, external_id]
        mine = ""
        if answering is not None:
            mine = " AND conversation_id = ? AND in_reply_to = ? AND author <> ?"
            parameters += [*answering, Author.AGENT.value]
        rows = self._write_one(
            "UPDATE outbox SET status = 'sent', sent_at = ? WHERE channel = ? AND external_id = ? "
            f"AND status = 'pending'{mine} RETURNING *, (SELECT event_id FROM events e WHERE "
            "e.conversation_id = outbox.conversation_id AND e.seq = outbox.event_seq) AS event_id",
            parameters).fetchall()
        return [_outbox_entry(row) for row in sorted(rows, key=lambda row: row["event_id"])]

    def mark_sent(self, reply_ids: Sequence[str]) -> None:
        """Record that these replies reached their channel."""
        if not reply_ids:
            return
        now = utcnow().isoformat()
        with self._write() as db:
            db.executemany("UPDATE outbox SET status = 'sent', sent_at = ? WHERE reply_id = ? "
                           "AND status = 'pending'", [(now, rid) for rid in reply_ids])

    def claim_deliveries(self, channels: Sequence[str], now: datetime, limit: int = 20) -> list[OutboxEntry]:
        """Take the replies due for sending on these channels and mark them `sending`.

        Only the oldest unsent reply of each identity is due, so replies reach a customer in
        order even while one waits for a retry.
        """
        marks = ", ".join("?" for _ in channels)
        with self._write() as db:
            rows = db.execute(
                f"SELECT o.*, o.rowid AS position, e.event_id FROM outbox o JOIN events e "
                f"ON e.conversation_id = o.conversation_id AND e.seq = o.event_seq "
                f"WHERE o.channel IN ({marks}) AND o.status = 'pending' "
                f"AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= ?) "
                f"AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.channel = o.channel "
                f"AND p.external_id = o.external_id AND p.status IN ('pending', 'sending') AND p.rowid < o.rowid) "
                f"ORDER BY o.rowid LIMIT ?",
                (*channels, now.isoformat(), limit),
            ).fetchall()
            opted_out = {(i["channel"], i["external_id"]) for i in db.execute(
                f"SELECT channel, external_id FROM identities WHERE opted_out = 1 AND channel IN ({marks})",
                tuple(channels))}
            claimed = [row for row in rows if (row["channel"], row["external_id"]) not in opted_out]
            held = {row["reply_id"] for row in rows} - {row["reply_id"] for row in claimed}
            db.executemany("UPDATE outbox SET status = 'failed', error = 'the customer opted out (STOP); "
                           "nothing more is sent until they send START' WHERE reply_id = ?",
                           [(reply_id,) for reply_id in held])
            db.executemany("UPDATE outbox SET status = 'sending', attempts = attempts + 1, claimed_at = ? "
                           "WHERE reply_id = ?", [(utcnow().isoformat(), row["reply_id"]) for row in claimed])
        if len(claimed) < len(rows):
            self._changed("conversations")
        return [replace(_outbox_entry(row), status="sending", attempts=row["attempts"] + 1) for row in claimed]

    def last_inbound_at(self, channel: str, external_id: str) -> datetime | None:
        """When this identity last wrote (WhatsApp's 24-hour window runs from there)."""
        row = self._connection().execute(
            "SELECT MAX(created_at) AS at FROM events WHERE channel = ? AND external_id = ? AND kind = 'message_in'",
            (channel, external_id)).fetchone()
        return datetime.fromisoformat(row["at"]) if row["at"] else None

    def delivery_progress(self, reply_id: str, parts_sent: int, provider_id: str) -> None:
        """Record one sent part of a reply and the provider's id for it."""
        with self._write() as db:
            row = db.execute("SELECT provider_ids FROM outbox WHERE reply_id = ?", (reply_id,)).fetchone()
            db.execute("UPDATE outbox SET parts_sent = ?, provider_ids = ? WHERE reply_id = ?",
                       (parts_sent, json.dumps([*json.loads(row["provider_ids"]), provider_id]), reply_id))
            db.execute("INSERT INTO provider_ids (provider_id, reply_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                       (provider_id, reply_id))

    def delivery_done(self, reply_id: str, now: datetime) -> None:
        """Every part of the reply reached the provider."""
        with self._write() as db:
            db.execute("UPDATE outbox SET status = 'sent', sent_at = ?, receipt = COALESCE(receipt, 'sent'), "
                       "error = NULL, next_attempt_at = NULL WHERE reply_id = ?", (now.isoformat(), reply_id))
        self._changed("conversations")

    def delivery_retry(self, reply_id: str, at: datetime, error: str) -> None:
        """A transient failure: try again at `at`."""
        with self._write() as db:
            db.execute("UPDATE outbox SET status = 'pending', next_attempt_at = ?, error = ? WHERE reply_id = ?",
                       (at.isoformat(), error, reply_id))

    def delivery_failed(self, reply_id: str, error: str, status: str = "failed") -> None:
        """The reply will not be sent (`failed`), or it is not known whether it was (`unknown`)."""
        with self._write() as db:
            row = db.execute("UPDATE outbox SET status = ?, error = ?, next_attempt_at = NULL WHERE reply_id = ? "
                             "RETURNING channel", (status, error, reply_id)).fetchone()
            if row is not None and status == "failed":
                report_rollups.count_failed_delivery(db, row["channel"], utcnow())
        self._changed("conversations")

    def recover_interrupted_deliveries(self, older_than: timedelta | None = None) -> list[str]:
        """Replies left `sending` by a stopped worker: the provider may or may not have them, and a second
        send could reach the customer twice, so they become `unknown` for an agent to check. With
        `older_than`, only replies taken for sending longer ago than that (other workers may be sending
        the others right now)."""
        before = (utcnow() - older_than).isoformat() if older_than is not None else None
        with self._write() as db:
            rows = db.execute("UPDATE outbox SET status = 'unknown', error = 'the delivery worker stopped while "
                              "sending; check with the customer before sending again' "
                              "WHERE status = 'sending' "
                              "AND (CAST(? AS TEXT) IS NULL OR claimed_at IS NULL OR claimed_at < ?) "
                              "RETURNING reply_id", (before, before)).fetchall()
        if rows:
            self._changed("conversations")
        return [row["reply_id"] for row in rows]

    def delivery_receipt(self, provider_id: str, receipt: str, error: str | None, order: Sequence[str]) -> bool:
        """Apply a provider's status callback; a receipt never moves back in `order`. False if unknown."""
        with self._write() as db:
            row = db.execute("SELECT o.reply_id, o.receipt FROM outbox o JOIN provider_ids p USING (reply_id) "
                             "WHERE p.provider_id = ?", (provider_id,)).fetchone()
            if row is None:
                return False
            current = order.index(row["receipt"]) if row["receipt"] in order else -1
            if receipt in order and order.index(receipt) > current:
                db.execute("UPDATE outbox SET receipt = ?, error = COALESCE(?, error) WHERE reply_id = ?",
                           (receipt, error, row["reply_id"]))
        self._changed("conversations")
        return True

    def outbox_of(self, conversation_id: str) -> list[OutboxEntry]:
        """Every reply of a conversation with its delivery state, oldest first."""
        rows = self._connection().execute(
            "SELECT o.*, e.event_id FROM outbox o JOIN events e "
            "ON e.conversation_id = o.conversation_id AND e.seq = o.event_seq "
            "WHERE o.conversation_id = ? ORDER BY o.rowid", (conversation_id,)
        ).fetchall()
        return [_outbox_entry(row) for row in rows]

    def latest_mail(self, channel: str, external_id: str) -> dict[str, Any] | None:
        """The mail headers kept on an identity's latest message (`data.email`): what a reply threads under."""
        mail_of = self._db.json_field("data", "email")
        row = self._connection().execute(
            f"SELECT {mail_of} AS mail FROM events WHERE channel = ? AND external_id = ? "
            f"AND kind = 'message_in' AND {mail_of} IS NOT NULL ORDER BY event_id DESC LIMIT 1",
            (channel, external_id)).fetchone()
        mail = json.loads(row["mail"]) if row is not None and row["mail"] else None
        return mail if isinstance(mail, dict) else None

    def last_buttons(self, channel: str, external_id: str) -> tuple[Button, ...]:
        """The buttons of the latest reply to an identity (a number typed back chooses one)."""
        row = self._connection().execute(
            "SELECT buttons FROM outbox WHERE channel = ? AND external_id = ? ORDER BY rowid DESC LIMIT 1",
            (channel, external_id),
        ).fetchone()
        return () if row is None else tuple(Button(b["title"], b["payload"]) for b in json.loads(row["buttons"]))

    def get_outbox_entry(self, reply_id: str) -> OutboxEntry:
        row = self._connection().execute(
            "SELECT o.*, e.event_id FROM outbox o JOIN events e "
            "ON e.conversation_id = o.conversation_id AND e.seq = o.event_seq WHERE o.reply_id = ?", (reply_id,)
        ).fetchone()
        if row is None:
            raise NotFound("no such reply")
        return _outbox_entry(row)


def _outbox_entry(row: Row) -> OutboxEntry:
    return OutboxEntry(
        reply_id=row["reply_id"],
        conversation_id=row["conversation_id"],
        channel=row["channel"],
        external_id=row["external_id"],
        text=row["text"],
        author=Author(row["author"]),
        buttons=tuple(Button(b["title"], b["payload"]) for b in json.loads(row["buttons"])),
        status=row["status"],
        in_reply_to=row["in_reply_to"],
        event_seq=row["event_seq"],
        created_at=datetime.fromisoformat(row["created_at"]),
        attempts=row["attempts"],
        parts_sent=row["parts_sent"],
        receipt=row["receipt"],
        error=row["error"],
    )
