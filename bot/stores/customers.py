"""The customer side of the SQLite store, as functions over one open transaction: transcript
events, link codes, merges and their undoing, export, erasure and retention.

`ConversationStore` opens the transaction and calls these; keeping them here keeps
each rule (what a merge moves, what an erasure leaves) in one readable place.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from bot.customers.codes import CODE_LIFETIME
from bot.errors import Conflict, NotAllowed, NotFound
from bot.messages import Author, Customer, EventKind
from bot.stores.database import Connection, Row, execute_rows
from bot.stores.report_rollups import forget_words

EMAIL_CODE_DIGITS = 6
FAILURE_WINDOW = timedelta(hours=1)
FAILURE_LIMIT = 5            # wrong codes per identity per hour; then codes are not even checked
EMAIL_CODES_PER_HOUR = 3     # codes emailed per identity, and to one address, per hour
EMAIL_CODES_PER_CLIENT = 10  # codes emailed per hour at the request of one client address (sessions are free)
PROFILE_FIELDS = ("display_name", "email", "phone", "language")
# A conversation's status after a merge is the furthest of the two: held by an agent, waiting, the bot.
_STATUS_RANK = {"bot": 0, "queued": 1, "assigned": 2}


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


# -- events ---------------------------------------------------------------------------

# One event still to be numbered: kind, author, channel, external id, text, data.
NewEvent = tuple[EventKind, Author, str | None, str | None, str | None, dict[str, Any]]

_INSERT_EVENT = ("INSERT INTO events (conversation_id, seq, kind, author, channel, external_id, text, data, "
                 "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


def append_event(db: Connection, conversation_id: str, kind: EventKind, author: Author,
                 channel: str | None, external_id: str | None, text: str | None, data: dict[str, Any],
                 created_at: str) -> int:
    """Append one transcript event with the conversation's next sequence number; return it."""
    seq: int = db.execute(
        "UPDATE conversations SET next_seq = next_seq + 1 WHERE conversation_id = ? RETURNING next_seq - 1",
        (conversation_id,),
    ).fetchone()[0]
    insert_events(db, conversation_id, seq, [(kind, author, channel, external_id, text, data)], created_at)
    return seq


def insert_events(db: Connection, conversation_id: str, first_seq: int, events: Sequence[NewEvent],
                  created_at: str) -> None:
    """Insert events numbered from `first_seq` on, in order (their numbers taken from `next_seq` already)."""
    rows = [(conversation_id, first_seq + i, kind.value, author.value, channel, external_id, text, json.dumps(data),
             created_at) for i, (kind, author, channel, external_id, text, data) in enumerate(events)]
    execute_rows(db, _INSERT_EVENT, rows)


def _renumber(db: Connection, conversation_id: str, event_ids: list[int]) -> None:
    """Make these events all of `conversation_id`, numbered 1..n in this order; the messages waiting
    for processing and the replies that point at them follow."""
    marks = ", ".join("?" for _ in event_ids)
    old = {row["event_id"]: (row["conversation_id"], row["seq"]) for row in db.execute(
        f"SELECT event_id, conversation_id, seq FROM events WHERE event_id IN ({marks})", event_ids)}
    # Negative numbers are free in every conversation, so nothing collides on the way.
    for seq, event_id in enumerate(event_ids, 1):
        source, source_seq = old[event_id]
        db.execute("UPDATE events SET conversation_id = ?, seq = ? WHERE event_id = ?",
                   (conversation_id, -seq, event_id))
        for table in ("inbound", "outbox"):
            db.execute(f"UPDATE {table} SET conversation_id = ?, event_seq = ? WHERE conversation_id = ? "
                       f"AND event_seq = ?", (conversation_id, -seq, source, source_seq))
    db.execute("UPDATE events SET seq = -seq WHERE conversation_id = ? AND seq < 0", (conversation_id,))
    for table in ("inbound", "outbox"):
        db.execute(f"UPDATE {table} SET event_seq = -event_seq WHERE conversation_id = ? AND event_seq < 0",
                   (conversation_id,))
    db.execute("UPDATE conversations SET next_seq = ? WHERE conversation_id = ?", (len(event_ids) + 1, conversation_id))


# -- customers --------------------------------------------------------------------------

def load_customer(db: Connection, customer_id: str) -> Customer:
    row = db.execute("SELECT * FROM customers WHERE customer_id = ?", (customer_id,)).fetchone()
    if row is None:
        raise NotFound("no such customer")
    identities = db.execute(
        "SELECT channel, external_id FROM identities WHERE customer_id = ? ORDER BY channel, external_id",
        (customer_id,),
    ).fetchall()
    return Customer(customer_id, row["display_name"], tuple((i["channel"], i["external_id"]) for i in identities),
                    json.loads(row["attributes"]), row["email"], row["phone"], row["language"])


def current_customer(db: Connection, customer_id: str) -> str:
    """Follow merges to the customer this one is part of now."""
    seen = set()
    while customer_id not in seen:
        seen.add(customer_id)
        row = db.execute("SELECT merged_into FROM customers WHERE customer_id = ?", (customer_id,)).fetchone()
        if row is None or row["merged_into"] is None:
            return customer_id
        customer_id = row["merged_into"]
    return customer_id


def _live_row(db: Connection, customer_id: str) -> Row:
    row = db.execute("SELECT * FROM customers WHERE customer_id = ?", (customer_id,)).fetchone()
    if row is None:
        raise NotFound("no such customer")
    if row["erased_at"] is not None:
        raise NotAllowed("that customer was erased")
    if row["merged_into"] is not None:
        raise Conflict("that customer was merged into another; act on that one")
    return row


def open_conversation_of(db: Connection, customer_id: str) -> Row | None:
    """The customer's open conversation (there is at most one), or None."""
    row: Row | None = db.execute(
        "SELECT * FROM conversations WHERE customer_id = ? AND status != 'closed'", (customer_id,)).fetchone()
    return row


def _latest_conversation(db: Connection, customer_id: str) -> str | None:
    row = db.execute("SELECT conversation_id FROM conversations WHERE customer_id = ? AND merged_into IS NULL "
                     "ORDER BY status = 'closed', updated_at DESC LIMIT 1", (customer_id,)).fetchone()
    return None if row is None else str(row["conversation_id"])


def _state(row: Row) -> dict[str, Any]:
    return {"status": row["status"], "assignee_id": row["assignee_id"], "handoff_reason": row["handoff_reason"]}


def merge_customers(db: Connection, kept_id: str, merged_id: str, how: str, agent_id: str | None,
                    now: str) -> str:
    """Make `merged_id` part of `kept_id`: its identities, its conversations and, where `kept_id` has
    none, its profile fields. Two open conversations become one, their events in time order.
    Everything moved is recorded, so `unmerge` can put it back. Returns the merge's id."""
    if kept_id == merged_id:
        raise Conflict("that is the same customer")
    kept, merged = _live_row(db, kept_id), _live_row(db, merged_id)
    moved: dict[str, Any] = {
        "identities": [[r["channel"], r["external_id"]] for r in db.execute(
            "SELECT channel, external_id FROM identities WHERE customer_id = ?", (merged_id,))],
        "conversations": [r["conversation_id"] for r in db.execute(
            "SELECT conversation_id FROM conversations WHERE customer_id = ?", (merged_id,))],
    }
    db.execute("UPDATE identities SET customer_id = ? WHERE customer_id = ?", (kept_id, merged_id))
    kept_open, merged_open = open_conversation_of(db, kept_id), open_conversation_of(db, merged_id)
    if kept_open is not None and merged_open is not None:
        # A customer has one open conversation: both become one, each message where its time puts it.
        def events(conversation_id: str) -> list[Row]:
            return db.execute("SELECT event_id, created_at FROM events WHERE conversation_id = ? ORDER BY seq",
                              (conversation_id,)).fetchall()

        theirs = events(merged_open["conversation_id"])
        order = heapq.merge(events(kept_open["conversation_id"]), theirs, key=lambda r: str(r["created_at"]))
        db.execute("UPDATE conversations SET status = 'closed', merged_into = ? WHERE conversation_id = ?",
                   (kept_open["conversation_id"], merged_open["conversation_id"]))
        _renumber(db, kept_open["conversation_id"], [r["event_id"] for r in order])
        if _STATUS_RANK[merged_open["status"]] > _STATUS_RANK[kept_open["status"]]:
            db.execute("UPDATE conversations SET status = ?, assignee_id = ?, handoff_reason = ? "
                       "WHERE conversation_id = ?", (*_state(merged_open).values(), kept_open["conversation_id"]))
        moved["joined"] = {"into": kept_open["conversation_id"], "from": merged_open["conversation_id"],
                           "events": [r["event_id"] for r in theirs], "into_state": _state(kept_open),
                           "from_state": _state(merged_open)}
    db.execute("UPDATE conversations SET customer_id = ? WHERE customer_id = ?", (kept_id, merged_id))
    moved["fields"] = [f for f in PROFILE_FIELDS if kept[f] is None and merged[f] is not None]
    for name in moved["fields"]:
        db.execute(f"UPDATE customers SET {name} = ? WHERE customer_id = ?", (merged[name], kept_id))
    if "language" in moved["fields"]:  # where a language came from travels with it
        db.execute("UPDATE customers SET language_source = ? WHERE customer_id = ?",
                   (merged["language_source"], kept_id))
    kept_attributes, merged_attributes = json.loads(kept["attributes"]), json.loads(merged["attributes"])
    moved["attributes"] = [k for k in merged_attributes if k not in kept_attributes]
    db.execute("UPDATE customers SET attributes = ? WHERE customer_id = ?",
               (json.dumps({**merged_attributes, **kept_attributes}), kept_id))
    db.execute("UPDATE customers SET merged_into = ? WHERE customer_id = ?", (kept_id, merged_id))
    merge_id = uuid.uuid4().hex
    db.execute("INSERT INTO merges (merge_id, kept_id, merged_id, how, agent_id, moved, created_at) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)", (merge_id, kept_id, merged_id, how, agent_id, json.dumps(moved), now))
    conversation_id = _latest_conversation(db, kept_id)
    if conversation_id is not None:
        append_event(db, conversation_id, EventKind.MERGED, Author.AGENT if agent_id else Author.SYSTEM, None, None,
                     None, {"merge_id": merge_id, "how": how, "agent_id": agent_id,
                            "identities": len(moved["identities"])}, now)
    return merge_id


def unmerge(db: Connection, merge_id: str, agent_id: str, now: str) -> tuple[str, str]:
    """Undo a merge: identities, conversations, events and filled-in profile fields go back.

    Messages that arrived after the merge stay where they were answered. Returns (kept, merged).
    """
    merge = db.execute("SELECT * FROM merges WHERE merge_id = ?", (merge_id,)).fetchone()
    if merge is None:
        raise NotFound("no such merge")
    if merge["undone_at"] is not None:
        raise Conflict("this merge was undone already")
    kept_id, merged_id = merge["kept_id"], merge["merged_id"]
    kept = _live_row(db, kept_id)
    merged = db.execute("SELECT * FROM customers WHERE customer_id = ?", (merged_id,)).fetchone()
    if merged is None or merged["erased_at"] is not None or merged["merged_into"] != kept_id:
        raise Conflict("the merged customer changed since (erased or merged elsewhere); this merge cannot be undone")
    moved = json.loads(merge["moved"])
    for channel, external_id in moved["identities"]:
        db.execute("UPDATE identities SET customer_id = ? WHERE channel = ? AND external_id = ? AND customer_id = ?",
                   (merged_id, channel, external_id, kept_id))
    joined = moved.get("joined")
    if joined:
        into, source = joined["into"], joined["from"]
        current = db.execute("SELECT * FROM conversations WHERE conversation_id = ?", (into,)).fetchone()
        rows = db.execute("SELECT event_id FROM events WHERE conversation_id = ? ORDER BY seq", (into,)).fetchall()
        theirs = set(joined["events"])
        _renumber(db, source, [r["event_id"] for r in rows if r["event_id"] in theirs])
        _renumber(db, into, [r["event_id"] for r in rows if r["event_id"] not in theirs])
        db.execute("UPDATE conversations SET customer_id = ?, merged_into = NULL WHERE conversation_id = ?",
                   (merged_id, source))
        if current["status"] != "closed":
            state = joined["from_state"]
            db.execute("UPDATE conversations SET status = ?, assignee_id = ?, handoff_reason = ? "
                       "WHERE conversation_id = ?", (state["status"], state["assignee_id"], state["handoff_reason"],
                                                     source))
            if _state(current) == state and state != joined["into_state"]:
                # The merge moved the other conversation's state here; nobody changed it since.
                db.execute("UPDATE conversations SET status = ?, assignee_id = ?, handoff_reason = ? "
                           "WHERE conversation_id = ?", (*joined["into_state"].values(), into))
    marks = ", ".join("?" for _ in moved["conversations"])
    if moved["conversations"]:
        db.execute(f"UPDATE conversations SET customer_id = ? WHERE conversation_id IN ({marks})",
                   (merged_id, *moved["conversations"]))
    for name in moved["fields"]:
        # Unless changed since (a NULL moved is NULL still: nothing to undo).
        db.execute(f"UPDATE customers SET {name} = NULL WHERE customer_id = ? AND {name} = ?",
                   (kept_id, merged[name]))
    db.execute("UPDATE customers SET language_source = NULL WHERE customer_id = ? AND language IS NULL", (kept_id,))
    attributes = json.loads(kept["attributes"])
    merged_attributes = json.loads(merged["attributes"])
    for key in moved["attributes"]:
        if key in attributes and attributes[key] == merged_attributes.get(key):
            del attributes[key]
    db.execute("UPDATE customers SET attributes = ? WHERE customer_id = ?", (json.dumps(attributes), kept_id))
    db.execute("UPDATE customers SET merged_into = NULL WHERE customer_id = ?", (merged_id,))
    db.execute("UPDATE merges SET undone_at = ?, undone_by = ? WHERE merge_id = ?", (now, agent_id, merge_id))
    for customer_id in (kept_id, merged_id):
        conversation_id = _latest_conversation(db, customer_id)
        if conversation_id is not None:
            append_event(db, conversation_id, EventKind.UNMERGED, Author.AGENT, None, None, None,
                         {"merge_id": merge_id, "agent_id": agent_id}, now)
    return kept_id, merged_id


# -- link codes -----------------------------------------------------------------------------

def store_link_code(db: Connection, customer_id: str, code: str, now: datetime) -> None:
    """Keep (the hash of) a code for this customer to send on another channel; earlier ones stop working."""
    db.execute("DELETE FROM link_codes WHERE customer_id = ? AND purpose = 'link'", (customer_id,))
    db.execute("DELETE FROM link_codes WHERE expires_at < ?", ((now - FAILURE_WINDOW).isoformat(),))
    db.execute("INSERT INTO link_codes (code_hash, customer_id, purpose, expires_at, created_at) "
               "VALUES (?, ?, 'link', ?, ?)",
               (code_hash(code), customer_id, (now + CODE_LIFETIME).isoformat(), now.isoformat()))


def live_link_code(db: Connection, customer_id: str, now: datetime) -> bool:
    """Whether the customer holds a link code that still works."""
    return db.execute("SELECT 1 FROM link_codes WHERE customer_id = ? AND purpose = 'link' AND expires_at >= ?",
                      (customer_id, now.isoformat())).fetchone() is not None


def issue_email_code(db: Connection, customer_id: str, channel: str, external_id: str, email: str,
                     now: datetime) -> str:
    """A numeric code to send to `email`; only this identity can use it, once, within the lifetime."""
    db.execute("DELETE FROM link_codes WHERE purpose = 'email' AND channel = ? AND external_id = ?",
               (channel, external_id))
    code = "".join(secrets.choice("0123456789") for _ in range(EMAIL_CODE_DIGITS))
    db.execute("INSERT INTO link_codes (code_hash, customer_id, purpose, channel, external_id, email, expires_at, "
               "created_at) VALUES (?, ?, 'email', ?, ?, ?, ?, ?)",
               (code_hash(f"{channel}:{external_id}:{code}"), customer_id, channel, external_id, email,
                (now + CODE_LIFETIME).isoformat(), now.isoformat()))
    return code


def attempts(db: Connection, channel: str, external_id: str, kind: str, since: datetime) -> int:
    """How many wrong codes (`wrong_code`) or sent emails (`email_sent`) this identity had since then."""
    row = db.execute("SELECT COUNT(*) FROM link_attempts WHERE channel = ? AND external_id = ? AND kind = ? "
                     "AND at >= ?", (channel, external_id, kind, since.isoformat())).fetchone()
    return int(row[0])


def record_attempt(db: Connection, channel: str, external_id: str, kind: str, now: datetime) -> None:
    db.execute("DELETE FROM link_attempts WHERE at < ?", ((now - FAILURE_WINDOW).isoformat(),))
    db.execute("INSERT INTO link_attempts (channel, external_id, kind, at) VALUES (?, ?, ?, ?)",
               (channel, external_id, kind, now.isoformat()))


def too_many_failures(db: Connection, channel: str, external_id: str, now: datetime) -> bool:
    return attempts(db, channel, external_id, "wrong_code", now - FAILURE_WINDOW) >= FAILURE_LIMIT


def verify_email_code(db: Connection, channel: str, external_id: str, code: str, now: datetime) -> str:
    """Check a code this identity got by email: `linked`, `verified`, or `limited`, `wrong`, `expired`
    (a wrong code is recorded, so the caller must commit before it reports the failure)."""
    if too_many_failures(db, channel, external_id, now):
        return "limited"
    row = db.execute("SELECT * FROM link_codes WHERE code_hash = ? AND purpose = 'email'",
                     (code_hash(f"{channel}:{external_id}:{code.strip()}"),)).fetchone()
    if row is None:
        record_attempt(db, channel, external_id, "wrong_code", now)
        return "wrong"
    if row["used_at"] is not None or row["expires_at"] < now.isoformat():
        return "expired"
    db.execute("UPDATE link_codes SET used_at = ? WHERE code_hash = ?", (now.isoformat(), row["code_hash"]))
    customer_id = current_customer(db, row["customer_id"])
    other = db.execute("SELECT customer_id FROM customers WHERE email = ? AND customer_id != ? AND erased_at IS NULL "
                       "AND merged_into IS NULL ORDER BY created_at LIMIT 1", (row["email"], customer_id)).fetchone()
    result = "verified"
    if other is not None:
        kept, merged = _older_first(db, other["customer_id"], customer_id)
        merge_customers(db, kept, merged, "email", None, now.isoformat())
        customer_id, result = kept, "linked"
    db.execute("UPDATE customers SET email = ? WHERE customer_id = ?", (row["email"], customer_id))
    return result


def _older_first(db: Connection, a: str, b: str) -> tuple[str, str]:
    """The two customers, the one created first first: it is the one kept in a merge."""
    older, newer = sorted((a, b), key=lambda c: (
        db.execute("SELECT created_at FROM customers WHERE customer_id = ?", (c,)).fetchone()[0], c))
    return older, newer


def redeem_link_code(db: Connection, code: str, channel: str, external_id: str, customer_id: str,
                     now: datetime) -> tuple[str, str]:
    """Try a link code sent from an identity of `customer_id`.

    Returns (result, customer): `linked` (the two customers are one now, the older kept), `same`
    (already one customer), `wrong`, `expired` or `limited` (too many wrong codes from this identity).
    """
    if too_many_failures(db, channel, external_id, now):
        return "limited", customer_id
    row = db.execute("SELECT * FROM link_codes WHERE code_hash = ? AND purpose = 'link'",
                     (code_hash(code),)).fetchone()
    if row is None:
        record_attempt(db, channel, external_id, "wrong_code", now)
        return "wrong", customer_id
    if row["used_at"] is not None or row["expires_at"] < now.isoformat():
        return "expired", customer_id
    db.execute("UPDATE link_codes SET used_at = ? WHERE code_hash = ?", (now.isoformat(), row["code_hash"]))
    owner = current_customer(db, row["customer_id"])
    if owner == customer_id:
        return "same", customer_id
    try:
        _live_row(db, owner)
    except (NotAllowed, NotFound):
        return "expired", customer_id
    older, newer = _older_first(db, owner, customer_id)
    merge_customers(db, older, newer, "link_code", None, now.isoformat())
    return "linked", older


# -- privacy ----------------------------------------------------------------------------------

# Event data that says nothing about the person and keeps metrics countable after erasure.
_IMPERSONAL_KEYS = ("reason", "resolution", "answered", "intent", "how", "agent_id", "by")


def _scrub_events(db: Connection, where: str, params: tuple[Any, ...]) -> None:
    """Blank the text, identity and personal data of events; their kind, author, channel and time stay.
    The reports forget those conversations' unanswered questions with them."""
    forget_words(db, where, params)
    rows = db.execute(f"SELECT event_id, data FROM events WHERE {where}", params).fetchall()
    db.executemany("UPDATE events SET text = NULL, external_id = NULL, data = ? WHERE event_id = ?", [
        (json.dumps({k: v for k, v in json.loads(r["data"]).items() if k in _IMPERSONAL_KEYS}), r["event_id"])
        for r in rows])


def cluster(db: Connection, customer_id: str) -> list[str]:
    """The customer and every customer merged into them, directly or not."""
    found = [customer_id]
    for current in found:
        found.extend(r["customer_id"] for r in db.execute(
            "SELECT customer_id FROM customers WHERE merged_into = ?", (current,)) if r["customer_id"] not in found)
    return found


def export_customer(db: Connection, customer_id: str) -> dict[str, Any]:
    """Everything held about a person: profile, identities, conversations with transcripts and replies,
    merges, including the customers merged into them."""
    def rows(sql: str, *params: Any) -> list[dict[str, Any]]:
        return [{k: json.loads(v) if k in ("data", "buttons", "attributes", "provider_ids", "dialogue") and v else v
                 for k, v in dict(r).items()} for r in db.execute(sql, params)]

    people: list[dict[str, Any]] = []
    for member in cluster(db, current_customer(db, customer_id)):
        found = rows("SELECT * FROM customers WHERE customer_id = ?", member)
        if not found:
            raise NotFound("no such customer")
        profile = found[0]
        conversations = rows("SELECT * FROM conversations WHERE customer_id = ? ORDER BY created_at", member)
        for conversation in conversations:
            conversation["transcript"] = rows("SELECT * FROM events WHERE conversation_id = ? ORDER BY seq",
                                              conversation["conversation_id"])
            conversation["replies"] = rows("SELECT * FROM outbox WHERE conversation_id = ? ORDER BY rowid",
                                           conversation["conversation_id"])
        people.append({"customer": profile,
                       "identities": rows("SELECT channel, external_id, opted_out FROM identities "
                                          "WHERE customer_id = ?", member),
                       "conversations": conversations,
                       "merges": rows("SELECT * FROM merges WHERE kept_id = ? OR merged_id = ?", member, member)})
    return {"customer_id": people[0]["customer"]["customer_id"], "records": people}


def erase_customer(db: Connection, customer_id: str, now: str) -> int:
    """Remove everything personal about a person (and customers merged into them), leaving tombstones:
    conversations keep their reference, status, times, rating and handoff reason, events their kind,
    author, channel and time, so metrics stay counted. Returns how many customers were erased."""
    members = cluster(db, current_customer(db, customer_id))
    if db.execute("SELECT 1 FROM customers WHERE customer_id = ?", (members[0],)).fetchone() is None:
        raise NotFound("no such customer")
    marks = ", ".join("?" for _ in members)
    identities = db.execute(f"SELECT channel, external_id FROM identities WHERE customer_id IN ({marks})",
                            members).fetchall()
    conversations = [r["conversation_id"] for r in db.execute(
        f"SELECT conversation_id FROM conversations WHERE customer_id IN ({marks})", members)]
    in_conversations = f"conversation_id IN ({', '.join('?' for _ in conversations)})"
    if conversations:
        _scrub_events(db, in_conversations, tuple(conversations))
        for table in ("outbox", "inbound"):
            db.execute(f"DELETE FROM {table} WHERE {in_conversations}", conversations)
        # Nobody is left to answer: open ones close, so no empty ticket waits in the queue.
        db.execute(f"UPDATE conversations SET last_external_id = '', dialogue = '{{}}', "
                   f"status = 'closed', csat_comment = NULL WHERE {in_conversations}", conversations)
    for identity in identities:
        # Their messages in other conversations too (left there by an undone merge).
        _scrub_events(db, "channel = ? AND external_id = ?", tuple(identity))
        db.execute("DELETE FROM outbox WHERE channel = ? AND external_id = ?", tuple(identity))
        db.execute("DELETE FROM link_attempts WHERE channel = ? AND external_id = ?", tuple(identity))
        if identity["channel"] == "web":
            db.execute("DELETE FROM web_sessions WHERE external_id = ?", (identity["external_id"],))
    db.execute(f"DELETE FROM identities WHERE customer_id IN ({marks})", members)
    db.execute(f"DELETE FROM link_codes WHERE customer_id IN ({marks})", members)
    db.execute(f"UPDATE merges SET moved = '{{}}' WHERE kept_id IN ({marks}) OR merged_id IN ({marks})",
               members * 2)
    db.execute(f"UPDATE customers SET display_name = NULL, email = NULL, phone = NULL, language = NULL, "
               f"language_source = NULL, attributes = '{{}}', erased_at = ? WHERE customer_id IN ({marks})",
               (now, *members))
    return len(members)


def purge_transcripts(db: Connection, before: str, now: str) -> int:
    """Blank the transcripts of conversations closed before `before`; returns how many."""
    ids = [r["conversation_id"] for r in db.execute(
        "SELECT conversation_id FROM conversations WHERE status = 'closed' AND updated_at < ? AND purged_at IS NULL",
        (before,))]
    for start in range(0, len(ids), 500):
        batch = ids[start:start + 500]
        where = f"conversation_id IN ({', '.join('?' for _ in batch)})"
        _scrub_events(db, where, tuple(batch))
        for table in ("outbox", "inbound"):
            db.execute(f"DELETE FROM {table} WHERE {where}", batch)
        db.execute(f"UPDATE conversations SET dialogue = '{{}}', csat_comment = NULL, purged_at = ? WHERE {where}",
                   (now, *batch))
    return len(ids)


def find_customers(db: Connection, text: str, limit: int = 50) -> list[str]:
    """Customers whose name, email, phone, identity or message text contains `text`, latest first."""
    like = f"%{text.strip().lower()}%"
    rows = db.execute(
        "SELECT customer_id FROM customers WHERE erased_at IS NULL AND merged_into IS NULL AND ("
        "lower(display_name) LIKE :q OR lower(email) LIKE :q OR phone LIKE :q OR customer_id = :exact "
        "OR customer_id IN (SELECT customer_id FROM identities WHERE lower(external_id) LIKE :q) "
        "OR customer_id IN (SELECT c.customer_id FROM events e JOIN conversations c USING (conversation_id) "
        "WHERE e.kind = 'message_in' AND lower(e.text) LIKE :q)) ORDER BY created_at DESC LIMIT :limit",
        {"q": like, "exact": text.strip(), "limit": limit}).fetchall()
    return [r["customer_id"] for r in rows]
