"""The store's schema and its versions: what `switchboard db upgrade` applies.

A database records its schema version (`schema_version`). A new, empty database is brought to the
latest version when a store opens it; one at an older version is refused with what to run
(`switchboard db upgrade`), because an upgrade may rewrite data and deserves a backup first, and
one at a newer version than the code is refused too. Each version is a function that runs in one
transaction, on SQLite and PostgreSQL alike: a failed upgrade leaves the database as it was.

The same hand-written SQL serves both databases (see `bot.stores.database`); the only differences
in the tables are the identity columns, spelt per dialect below.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from bot.errors import SwitchboardError
from bot.stores import report_rollups
from bot.stores.database import Connection, Database

log = logging.getLogger(__name__)

TABLES = """
CREATE TABLE IF NOT EXISTS customers (
    customer_id   TEXT PRIMARY KEY,
    display_name  TEXT,
    created_at    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS identities (
    channel      TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    customer_id  TEXT NOT NULL REFERENCES customers(customer_id),
    PRIMARY KEY (channel, external_id)
);
CREATE TABLE IF NOT EXISTS conversations (
    conversation_id   TEXT PRIMARY KEY,
    customer_id       TEXT NOT NULL REFERENCES customers(customer_id),
    reference         TEXT NOT NULL UNIQUE,
    status            TEXT NOT NULL,
    assignee_id       TEXT,
    handoff_reason    TEXT,
    fallback_streak   INTEGER NOT NULL DEFAULT 0,
    last_channel      TEXT NOT NULL,
    last_external_id  TEXT NOT NULL,
    next_seq          INTEGER NOT NULL DEFAULT 1,
    dialogue          TEXT NOT NULL DEFAULT '{}',
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
-- A customer has at most one open conversation.
CREATE UNIQUE INDEX IF NOT EXISTS one_open_conversation
    ON conversations(customer_id) WHERE status != 'closed';
CREATE INDEX IF NOT EXISTS conversations_by_status ON conversations(status, updated_at);
CREATE TABLE IF NOT EXISTS events (
    event_id         INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id  TEXT NOT NULL REFERENCES conversations(conversation_id),
    seq              INTEGER NOT NULL,
    kind             TEXT NOT NULL,
    author           TEXT NOT NULL,
    channel          TEXT,
    external_id      TEXT,
    text             TEXT,
    data             TEXT NOT NULL DEFAULT '{}',
    created_at       TEXT NOT NULL,
    UNIQUE (conversation_id, seq)
);
CREATE INDEX IF NOT EXISTS events_by_identity ON events(channel, external_id, event_id);
CREATE TABLE IF NOT EXISTS inbound (
    inbound_id           INTEGER PRIMARY KEY AUTOINCREMENT,
    channel              TEXT NOT NULL,
    provider_message_id  TEXT NOT NULL,
    conversation_id      TEXT NOT NULL,
    event_seq            INTEGER NOT NULL,
    processed_at         TEXT,
    UNIQUE (channel, provider_message_id)
);
CREATE INDEX IF NOT EXISTS inbound_pending ON inbound(conversation_id, inbound_id)
    WHERE processed_at IS NULL;
CREATE TABLE IF NOT EXISTS outbox (
    reply_id         TEXT PRIMARY KEY,
    /*rowid*/
    conversation_id  TEXT NOT NULL,
    event_seq        INTEGER NOT NULL,
    channel          TEXT NOT NULL,
    external_id      TEXT NOT NULL,
    author           TEXT NOT NULL,
    text             TEXT NOT NULL,
    buttons          TEXT NOT NULL DEFAULT '[]',
    in_reply_to      INTEGER,
    status           TEXT NOT NULL DEFAULT 'pending',
    created_at       TEXT NOT NULL,
    sent_at          TEXT
);
CREATE INDEX IF NOT EXISTS outbox_by_identity ON outbox(channel, external_id, status);
CREATE TABLE IF NOT EXISTS agents (
    agent_id       TEXT PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    active         INTEGER NOT NULL DEFAULT 1,
    last_seen_at   TEXT,
    created_at     TEXT NOT NULL
);
-- Unanswered questions an editor handled (answered with an article, or dismissed), by the hash of their
-- words: the gaps report leaves them out, and no customer's text is kept here.
CREATE TABLE IF NOT EXISTS gap_actions (
    question_hash  TEXT PRIMARY KEY,
    action         TEXT NOT NULL,        -- answered or dismissed
    article_id     TEXT,
    agent_id       TEXT,
    at             TEXT NOT NULL
);
-- One row, rewritten by each health check: proof that the store can write.
CREATE TABLE IF NOT EXISTS health (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS web_sessions (
    token_hash   TEXT PRIMARY KEY,
    external_id  TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS agent_tokens (
    token_hash  TEXT PRIMARY KEY,
    agent_id    TEXT NOT NULL REFERENCES agents(agent_id),
    expires_at  TEXT NOT NULL
);
-- Single-use codes that link an identity to a customer; only hashes are kept.
CREATE TABLE IF NOT EXISTS link_codes (
    code_hash    TEXT PRIMARY KEY,
    customer_id  TEXT NOT NULL,
    purpose      TEXT NOT NULL,          -- link (send it on another channel) or email (sent to `email`)
    channel      TEXT,                   -- email codes: only this identity may use it
    external_id  TEXT,
    email        TEXT,
    expires_at   TEXT NOT NULL,
    used_at      TEXT,
    created_at   TEXT NOT NULL
);
-- Wrong codes tried and email codes sent, per identity: the limits against guessing and spamming.
CREATE TABLE IF NOT EXISTS link_attempts (
    channel      TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    kind         TEXT NOT NULL,          -- wrong_code or email_sent
    at           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS link_attempts_by_identity ON link_attempts(channel, external_id, kind, at);
-- Who merged which customers when, and what moved: enough to undo it.
CREATE TABLE IF NOT EXISTS merges (
    merge_id     TEXT PRIMARY KEY,
    kept_id      TEXT NOT NULL,
    merged_id    TEXT NOT NULL,
    how          TEXT NOT NULL,          -- agent, link_code or email
    agent_id     TEXT,
    moved        TEXT NOT NULL,          -- JSON: identities, conversations, events, profile fields
    created_at   TEXT NOT NULL,
    undone_at    TEXT,
    undone_by    TEXT
);
"""

# Columns added to the tables above before schema versions were kept: (table, column, definition).
LEGACY_COLUMNS = (
    ("conversations", "dialogue", "TEXT NOT NULL DEFAULT '{}'"),
    ("agents", "last_seen_at", "TEXT"),
    ("outbox", "attempts", "INTEGER NOT NULL DEFAULT 0"),
    ("outbox", "next_attempt_at", "TEXT"),
    ("outbox", "parts_sent", "INTEGER NOT NULL DEFAULT 0"),
    ("outbox", "provider_ids", "TEXT NOT NULL DEFAULT '[]'"),
    ("outbox", "receipt", "TEXT"),
    ("outbox", "error", "TEXT"),
    ("identities", "opted_out", "INTEGER NOT NULL DEFAULT 0"),
    ("conversations", "csat_requested_at", "TEXT"),
    ("conversations", "csat", "INTEGER"),
    ("conversations", "csat_comment", "TEXT"),  # what the customer wrote with their rating
    ("conversations", "closed_at", "TEXT"),
    ("conversations", "tags", "TEXT NOT NULL DEFAULT '[]'"),  # agents' labels, a JSON list
    ("conversations", "snoozed_until", "TEXT"),  # hidden from its holder's list until then, or a new message
    ("agents", "presence", "TEXT NOT NULL DEFAULT 'online'"),
    ("customers", "attributes", "TEXT NOT NULL DEFAULT '{}'"),
    ("customers", "email", "TEXT"),
    ("customers", "phone", "TEXT"),
    ("customers", "language", "TEXT"),
    ("customers", "language_source", "TEXT"),  # explicit (imported), channel (a channel's hint) or detected
    ("customers", "merged_into", "TEXT"),
    ("customers", "erased_at", "TEXT"),
    ("conversations", "merged_into", "TEXT"),
    ("conversations", "purged_at", "TEXT"),
)


# Indexes of the releases before schema versions, some on the columns above.
LEGACY_INDEXES = (
    # What merges, erasure and the profile look up by customer or by conversation.
    "CREATE INDEX IF NOT EXISTS identities_by_customer ON identities(customer_id)",
    "CREATE INDEX IF NOT EXISTS conversations_by_customer ON conversations(customer_id)",
    "CREATE INDEX IF NOT EXISTS inbound_by_event ON inbound(conversation_id, event_seq)",
    "CREATE INDEX IF NOT EXISTS outbox_by_event ON outbox(conversation_id, event_seq)",
    "CREATE INDEX IF NOT EXISTS customers_by_email ON customers(email) WHERE email IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS customers_by_phone ON customers(phone) WHERE phone IS NOT NULL",
)


class SchemaError(SwitchboardError):
    """The database's schema is not the one this code needs: says what to run."""


def _statements(script: str, database: Database) -> list[str]:
    if database.dialect == "postgresql":
        script = script.replace("INTEGER PRIMARY KEY AUTOINCREMENT",
                                "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
        # SQLite gives every table an implicit, growing rowid; the outbox is read in that order.
        script = script.replace("/*rowid*/", "rowid BIGINT GENERATED BY DEFAULT AS IDENTITY UNIQUE,")
    else:
        script = script.replace("/*rowid*/\n", "")
    lines = [line.split("--", 1)[0].rstrip() for line in script.splitlines()]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]


def _version_1(db: Connection, database: Database) -> None:
    """The tables, columns and indexes of the releases before schema versions were kept."""
    for statement in _statements(TABLES + report_rollups.SCHEMA, database):
        db.execute(statement)
    for table, column, definition in LEGACY_COLUMNS:
        if column not in database.columns(db, table):
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    for statement in LEGACY_INDEXES:
        db.execute(statement)


def _version_2(db: Connection, database: Database) -> None:
    """The provider's ids of sent replies in a table of their own, so a delivery receipt finds its reply
    by an index instead of reading every reply's list."""
    db.execute("CREATE TABLE IF NOT EXISTS provider_ids (provider_id TEXT NOT NULL, reply_id TEXT NOT NULL "
               "REFERENCES outbox(reply_id), PRIMARY KEY (provider_id, reply_id))")
    rows = db.execute("SELECT reply_id, provider_ids FROM outbox WHERE provider_ids != '[]'").fetchall()
    db.executemany("INSERT INTO provider_ids (provider_id, reply_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                   [(str(provider_id), row["reply_id"])
                    for row in rows for provider_id in json.loads(row["provider_ids"])])


def _version_3(db: Connection, database: Database) -> None:
    """Leases on conversations and the time each reply was taken for sending, so that several workers can
    share a store: one answers a conversation at a time, and only replies a dead worker left mid-send are
    marked unknown."""
    db.execute("CREATE TABLE IF NOT EXISTS conversation_leases (conversation_id TEXT PRIMARY KEY, "
               "holder TEXT NOT NULL, expires_at TEXT NOT NULL, takeovers INTEGER NOT NULL DEFAULT 0)")
    if "claimed_at" not in database.columns(db, "outbox"):
        db.execute("ALTER TABLE outbox ADD COLUMN claimed_at TEXT")


def _version_4(db: Connection, database: Database) -> None:
    """Published knowledge-base snapshots, packed, for hosts that share no directory: each follows the live one."""
    binary = "BYTEA" if database.dialect == "postgresql" else "BLOB"
    db.execute("CREATE TABLE IF NOT EXISTS kb_snapshots (name TEXT PRIMARY KEY, stored_at TEXT NOT NULL, "
               f"archive {binary} NOT NULL, live INTEGER NOT NULL DEFAULT 0)")


def _version_5(db: Connection, database: Database) -> None:
    """Articles saved in the editor pages and not yet published, for hosts that share no directory."""
    key = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY" if database.dialect == "postgresql" \
        else "INTEGER PRIMARY KEY AUTOINCREMENT"
    db.execute(f"CREATE TABLE IF NOT EXISTS kb_edits (edit_id {key}, path TEXT NOT NULL, text TEXT, "
               "edited_at TEXT NOT NULL)")


@dataclass(frozen=True)
class Version:
    number: int
    apply: Callable[[Connection, Database], None]

    @property
    def summary(self) -> str:
        """The first sentence of the version's docstring."""
        text = " ".join((self.apply.__doc__ or "").split())
        return text.split(". ", 1)[0].rstrip(".") + "."


VERSIONS = (Version(1, _version_1), Version(2, _version_2), Version(3, _version_3), Version(4, _version_4),
            Version(5, _version_5))
LATEST = VERSIONS[-1].number


def version_of(db: Connection, database: Database) -> int | None:
    """The database's schema version: None for an empty database, 0 for one written before versions."""
    tables = database.tables(db)
    if "schema_version" in tables:
        return int(db.execute("SELECT version FROM schema_version").fetchone()["version"])
    return 0 if "conversations" in tables else None


def _apply(db: Connection, database: Database, before: int | None,
           progress: Callable[[str], None] = lambda line: None) -> None:
    if before is None or before == 0:
        db.execute("CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version (id, version) VALUES (1, 0)")
    for version in VERSIONS:
        if before is None or version.number > before:
            progress(f"version {version.number}: {version.summary}")
            version.apply(db, database)
    db.execute("UPDATE schema_version SET version = ?", (LATEST,))


def upgrade(database: Database, progress: Callable[[str], None] = lambda line: None) -> tuple[int | None, int]:
    """Bring the database to the latest version in one transaction (a failed upgrade changes nothing).
    Returns the versions before and after."""
    with database.write() as db:
        before = version_of(db, database)
        if before is not None and before > LATEST:
            raise _newer(database, before)
        if before is None or before < LATEST:
            _apply(db, database, before, progress)
    return before, LATEST


def open_schema(database: Database) -> None:
    """Check the schema before a store uses the database: create it in an empty one, refuse an old or newer one."""
    with database.write() as db:
        version = version_of(db, database)
        if version is None:
            _apply(db, database, None)
            log.info("created the store's tables in %s (schema version %d)", database, LATEST)
    if version is not None and version < LATEST:
        raise SchemaError(f"{database} holds schema version {version}, and this Switchboard needs version "
                          f"{LATEST}: back it up, then run `switchboard db upgrade`")
    if version is not None and version > LATEST:
        raise _newer(database, version)


def _newer(database: Database, version: int) -> SchemaError:
    return SchemaError(f"{database} holds schema version {version}, newer than this Switchboard knows "
                       f"({LATEST}): run the release that upgraded it, or a newer one")
