"""Schema versions: a new database is created at the latest, an older one is refused until `switchboard db
upgrade` brings it up with its data, a newer one is refused, and a failed upgrade changes nothing."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bot.messages import Author, InboundMessage, Reply, utcnow
from bot.outcome import Outcome
from bot.stores import open_store, schema
from bot.stores.database import open_database
from bot.stores.schema import SchemaError
from switchboard.cli import main
from tests.conftest import both_databases  # noqa: F401 (runs each test on both databases)


def cli(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"SWITCHBOARD_STORE_URL": url})


def a_sent_reply(url: str) -> str:
    """A conversation with a customer message and a reply Twilio took as SM1 and SM2; returns its id."""
    store = open_store(url)
    accepted = store.accept(InboundMessage("sms", "+4915100000001", "in-1", "where is my parcel"))
    pending = store.next_pending(accepted.conversation_id)
    assert pending is not None
    store.complete_turn(pending, Outcome(replies=(Reply(accepted.conversation_id, "on its way", Author.BOT),)))
    [entry] = store.claim_deliveries(["sms"], utcnow())
    store.delivery_progress(entry.reply_id, 1, "SM1")
    store.delivery_progress(entry.reply_id, 2, "SM2")
    store.dispose()
    return accepted.conversation_id


def set_back_to_version_1(url: str) -> None:
    """The database as release 1 of the schema left it: no provider_ids table."""
    database = open_database(url)
    with database.write() as db:
        db.execute("DROP TABLE provider_ids")
        db.execute("DROP TABLE conversation_leases")
        db.execute("UPDATE schema_version SET version = 1")
    database.dispose()


def test_a_new_database_is_created_at_the_latest_version(store_url: str) -> None:
    open_store(store_url).dispose()
    result = cli(store_url, "db", "version")
    assert result.exit_code == 0, result.output
    assert f"schema version {schema.LATEST}; this Switchboard needs version {schema.LATEST}" in result.output
    assert "nothing to do" in cli(store_url, "db", "upgrade").output


def test_an_older_schema_is_refused_until_upgraded_and_keeps_its_data(store_url: str) -> None:
    conversation_id = a_sent_reply(store_url)
    set_back_to_version_1(store_url)

    with pytest.raises(SchemaError, match=f"holds schema version 1, and this Switchboard needs version "
                                          f"{schema.LATEST}: back it up, then run `switchboard db upgrade`"):
        open_store(store_url)
    refused = cli(store_url, "agents", "list")
    assert refused.exit_code != 0 and "switchboard db upgrade" in refused.output

    upgraded = cli(store_url, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert "applying version 2: The provider's ids of sent replies" in upgraded.output
    assert "applying version 3: Leases on conversations" in upgraded.output
    assert "applying version 5: Articles saved in the editor pages and not yet published" in upgraded.output
    assert f"Upgraded from schema version 1 to {schema.LATEST}." in upgraded.output
    store = open_store(store_url)
    assert [e.text for e in store.transcript(conversation_id)][:2] == ["where is my parcel", "on its way"]
    # The reply's provider ids moved into their table: a receipt for the second part finds it.
    assert store.delivery_receipt("SM2", "delivered", None, ("sent", "delivered", "read")) is True
    assert [e.receipt for e in store.outbox_of(conversation_id)] == ["delivered"]
    store.dispose()
    assert "nothing to do" in cli(store_url, "db", "upgrade").output


def test_a_failed_upgrade_changes_nothing(store_url: str) -> None:
    a_sent_reply(store_url)
    set_back_to_version_1(store_url)
    database = open_database(store_url)
    with database.write() as db:  # a list that cannot be read: version 2 fails halfway
        db.execute("UPDATE outbox SET provider_ids = '[not json'")
    with pytest.raises(json.JSONDecodeError):
        schema.upgrade(database)
    with database.snapshot() as db:
        assert schema.version_of(db, database) == 1
        assert "provider_ids" not in database.tables(db)
    database.dispose()


def test_a_newer_schema_is_refused(store_url: str) -> None:
    open_store(store_url).dispose()
    database = open_database(store_url)
    with database.write() as db:
        db.execute("UPDATE schema_version SET version = ?", (schema.LATEST + 1,))
    database.dispose()
    with pytest.raises(SchemaError, match=f"version {schema.LATEST + 1}, newer than this Switchboard knows"):
        open_store(store_url)
    refused = cli(store_url, "db", "upgrade")
    assert refused.exit_code != 0 and "newer than this Switchboard knows" in refused.output


@pytest.fixture
def first_release_file(tmp_path: Path) -> Iterator[Path]:
    """An SQLite file as the first release wrote it: the first tables, no schema version, a conversation."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(schema.TABLES.replace("/*rowid*/\n", ""))
    db.executescript("""
        INSERT INTO customers VALUES ('c1', 'Ada', '2025-01-01T10:00:00+00:00');
        INSERT INTO identities VALUES ('web', 'w1', 'c1');
        INSERT INTO conversations (conversation_id, customer_id, reference, status, last_channel,
            last_external_id, next_seq, created_at, updated_at)
            VALUES ('k1', 'c1', 'REF-1', 'bot', 'web', 'w1', 2, '2025-01-01T10:00:00+00:00',
                    '2025-01-01T10:00:00+00:00');
        INSERT INTO events (conversation_id, seq, kind, author, channel, external_id, text, created_at)
            VALUES ('k1', 1, 'message_in', 'customer', 'web', 'w1', 'hello from 2025', '2025-01-01T10:00:00+00:00');
    """)
    db.commit()
    db.close()
    yield path


def test_a_file_from_before_schema_versions_is_upgraded_with_its_data(first_release_file: Path) -> None:
    url = f"sqlite:///{first_release_file}"
    with pytest.raises(SchemaError, match="holds schema version 0"):
        open_store(url)
    upgraded = cli(url, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert "applying version 1: The tables, columns and indexes of the releases before" in upgraded.output
    store = open_store(url)
    again = store.accept(InboundMessage("web", "w1", "m-2", "still there?"))
    assert again.conversation_id == "k1"  # the same open conversation goes on
    assert [e.text for e in store.transcript("k1")] == ["hello from 2025", "still there?"]
    assert store.get_customer("c1").display_name == "Ada"
    store.dispose()


def test_a_table_altered_while_a_process_runs_is_read_again_not_failed(store_url: str) -> None:
    # On PostgreSQL a statement run often is prepared on its connection; once its table gains a column (an upgrade
    # applied while this process still runs), the prepared `SELECT *` would fail on that connection for good.
    import psycopg

    from bot.errors import Unavailable

    store = open_store(store_url)
    accepted = store.accept(InboundMessage("web", "w-1", "in-1", "hello"))
    for _ in range(8):  # prepared by now
        assert store.get_conversation(accepted.conversation_id).status == "bot"
        assert store.next_pending(accepted.conversation_id) is not None
    if store_url.startswith("postgresql"):
        with psycopg.connect(store_url, autocommit=True) as admin:
            admin.execute("ALTER TABLE conversations ADD COLUMN added_later TEXT")
    else:
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as admin:
            admin.execute("ALTER TABLE conversations ADD COLUMN added_later TEXT")
    # A statement on its own is tried again at once, on a connection that prepares it anew ...
    assert store.get_conversation(accepted.conversation_id).status == "bot"
    # ... and a transaction is refused as Unavailable at most once (the processor retries a turn), then works.
    pending = store.next_pending(accepted.conversation_id)
    assert pending is not None
    try:
        stored = store.complete_turn(pending, Outcome(replies=(Reply(accepted.conversation_id, "hi", Author.BOT),)))
    except Unavailable:
        stored = store.complete_turn(pending, Outcome(replies=(Reply(accepted.conversation_id, "hi", Author.BOT),)))
    assert stored and store.next_pending(accepted.conversation_id) is None
    assert store.get_conversation(accepted.conversation_id).status == "bot"
    store.dispose()


def test_statements_are_prepared_on_postgresql_unless_the_store_url_says_prepare_off(store_url: str) -> None:
    # Behind PgBouncer in transaction mode before 1.21 a prepared statement is gone on the next transaction's
    # server connection: `?prepare=off` keeps psycopg from preparing any.
    if not store_url.startswith("postgresql"):
        pytest.skip("SQLite prepares nothing on a server")
    from bot.errors import SwitchboardError
    from bot.stores.database import PostgresDatabase

    def prepared(url: str) -> int:
        database = PostgresDatabase(url)
        try:
            with database.snapshot() as db:  # one connection throughout
                for _ in range(8):
                    db.execute("SELECT count(*) FROM conversations WHERE status = ?", ("bot",)).fetchone()
                return int(db.execute("SELECT count(*) AS n FROM pg_prepared_statements").fetchone()["n"])
        finally:
            database.close()

    open_store(store_url).dispose()  # the schema
    assert prepared(store_url) > 0
    assert prepared(f"{store_url}&prepare=off") == 0
    with pytest.raises(SwitchboardError, match="prepare=off"):
        PostgresDatabase(f"{store_url}&prepare=maybe")
