"""The SQL databases a store runs on: SQLite (one file, one box) and PostgreSQL (shared by processes and hosts).

Every query of the stores is written once, in the SQL both databases understand: `?` placeholders (or
`:name` with a dict), `ON CONFLICT`, `RETURNING`, ISO-8601 timestamps kept as text. A `Database` runs
them: SQLite as they are, PostgreSQL after turning the placeholders into psycopg's. What the two do
differently is here, in a few methods (`json_field`, the schema's column types, compaction), so that no
query has two copies.

Both give the store the same transactions. SQLite has one writer at a time (`BEGIN IMMEDIATE`); on
PostgreSQL every write transaction takes one advisory lock first, so writes are serialised there too:
a read-then-write transaction sees what it read until it commits, and events get their ids in commit
order, which the reports' incremental refresh relies on. Writes are short (the bot's work happens
outside them), so one lock costs little until many workers share a database; reads are not serialised.
A write of one statement that appends no event needs neither (`write_one`): on PostgreSQL it runs on its
own, without the lock, so that the workers' leases on conversations, taken and given up around every
turn, do not queue behind every other write of the deployment.

A write is durable when it commits: the disk holds it (SQLite's `synchronous=FULL`, PostgreSQL's
`synchronous_commit`). A turn's is the exception (`write(redoable=True)`): a crash of the machine, not of
a process, may lose the last turns, and the messages they answered, stored durably when they were accepted,
are then answered again. Both databases write their log in commit order and flush it whole, so the next
durable commit on any connection carries every redoable one before it to the disk; whatever lets a reply
leave the store is such a commit (the delivery worker claims a reply before sending it, the REST channel
marks its replies sent), so a reply never leaves before its turn is durable. A reply shown on a web chat
or console stream may, until then, be lost with the power and answered again with the same event numbers.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bot.errors import Conflict, SwitchboardError, Unavailable

log = logging.getLogger(__name__)

Params = Sequence[Any] | Mapping[str, Any]


class Row(Protocol):
    def __getitem__(self, key: str | int, /) -> Any: ...

    def keys(self) -> list[str]: ...


class Result(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the stores' queries run on: a connection inside a transaction, or the pool outside one."""

    def execute(self, sql: str, parameters: Params = (), /) -> Any: ...

    def executemany(self, sql: str, parameters: Any, /) -> Any: ...


def execute_rows(db: Connection, sql: str, rows: Sequence[Params]) -> None:
    """Run one statement for each of `rows`: a single row as a plain statement, several in one `executemany`
    (on PostgreSQL, one round trip)."""
    if len(rows) == 1:
        db.execute(sql, rows[0])
    elif rows:
        db.executemany(sql, rows)


class IntegrityError(SwitchboardError):
    """A constraint refused a write (a unique key taken, a reference to nothing), on either database."""


# -- SQLite ---------------------------------------------------------------------------------------------

# SQLite's result codes for faults outside the program: the file cannot be written (read-only, full disk,
# I/O error), opened, or locked for too long. Other errors are bugs and stay what they are.
_SQLITE_FAULTS = ("SQLITE_READONLY", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_BUSY",
                  "SQLITE_LOCKED", "SQLITE_PROTOCOL", "SQLITE_NOMEM", "SQLITE_PERM")


def _sqlite_unavailable(exc: sqlite3.Error) -> Unavailable:
    return Unavailable(f"the database cannot be written or read ({exc}): check that its file and folder are "
                       "writable by Switchboard's user and that the disk has space")


class _SqliteConnection(sqlite3.Connection):
    """A connection whose faults raise Unavailable (503 for webhooks, so providers retry) and mark it broken."""

    broken = False
    durable = True  # the commits wait for the disk (`PRAGMA synchronous`)

    def commit_durably(self, durable: bool) -> None:
        """Whether this connection's next commits wait for the disk: FULL, or NORMAL for a redoable write (in
        WAL mode NORMAL loses no committed data when a process dies, only when the machine does)."""
        if durable != self.durable:
            self.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self.durable = durable

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        with self._faults():
            return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        with self._faults():
            return super().executemany(sql, parameters)

    def executescript(self, script: str, /) -> sqlite3.Cursor:
        with self._faults():
            return super().executescript(script)

    @contextmanager
    def _faults(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc
        except sqlite3.OperationalError as exc:
            if not exc.sqlite_errorname.startswith(_SQLITE_FAULTS):
                raise
            self.broken = True
            raise _sqlite_unavailable(exc) from exc


class SqliteDatabase:
    """One SQLite file in WAL mode, a connection per thread. Writes run in `BEGIN IMMEDIATE`, so a
    read-then-write transaction takes the write lock up front instead of failing with SQLITE_BUSY
    halfway through."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._writers = threading.RLock()
        # WAL checkpoints: by whichever connection commits past 1,000 pages, unless a thread of the
        # store's own does them (checkpoint_in_background), so that no request waits for one.
        self._autocheckpoint = True
        self._checkpoints_stop = threading.Event()
        self._checkpoints: threading.Thread | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # Customers' messages: readable by Switchboard's user only. SQLite gives its -wal and -shm
            # files the database file's permissions.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))

    def __str__(self) -> str:
        return f"the SQLite file {self.path}"

    def connection(self) -> _SqliteConnection:
        """This thread's connection, outside any transaction (each statement commits on its own)."""
        db: _SqliteConnection | None = getattr(self._local, "db", None)
        if db is not None and db.broken:
            # A connection that met a fault may stay read-only for good (SQLite opens the file read-only
            # when it cannot open it for writing): the next use opens a fresh one.
            db.close()
            db = self._local.db = None
        if db is None:
            try:
                db = sqlite3.connect(self.path, isolation_level=None, timeout=30, factory=_SqliteConnection)
            except sqlite3.OperationalError as exc:
                raise _sqlite_unavailable(exc) from exc
            try:
                db.row_factory = sqlite3.Row
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA foreign_keys=ON")
                db.execute("PRAGMA busy_timeout=30000")
                # Deleted content is overwritten, not left in free pages: erasure must leave nothing behind.
                db.execute("PRAGMA secure_delete=ON")
                db.execute(f"PRAGMA wal_autocheckpoint={1000 if self._autocheckpoint else 0}")
            except Unavailable:
                db.close()
                raise
            self._local.db = db
        return db

    @contextmanager
    def write(self, redoable: bool = False) -> Iterator[_SqliteConnection]:
        """A write transaction, durable when it commits unless `redoable` (module docstring)."""
        # SQLite has one writer at a time. The threads of this process queue for it here, each woken the
        # moment the one before commits; left to SQLite, a waiting writer sleeps in its busy handler for up
        # to 100 ms at a time (profiled under 8 concurrent clients: most of a reply's wait). Other processes
        # (a CLI command) still wait in the busy handler.
        with self._writers:
            db = self.connection()
            db.commit_durably(not redoable)
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with suppress(Unavailable):  # then the connection is dropped, and closing it rolls back
                        db.execute("ROLLBACK")
                raise

    def write_one(self, sql: str, parameters: Params = (), /) -> _Rows:
        """One statement that appends no event, committed on its own; its rows read."""
        with self.write() as db:
            cursor = db.execute(sql, parameters)
            return _Rows(cursor.fetchall(), cursor.rowcount)

    @contextmanager
    def snapshot(self) -> Iterator[_SqliteConnection]:
        """Reads that see one consistent state of the database."""
        db = self.connection()
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    def tables(self, db: Connection) -> set[str]:
        return {row["name"] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def columns(self, db: Connection, table: str) -> set[str]:
        return {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}

    def json_field(self, column: str, key: str) -> str:
        """An SQL expression for the JSON text of `key` in a column holding a JSON object (NULL if absent)."""
        return f"json_extract({column}, '$.{key}')"

    def compact(self) -> None:
        """Rewrite the database without free pages and empty the write-ahead log into it."""
        db = self.connection()
        db.execute("VACUUM")
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise Conflict("the write-ahead log could not be emptied while other connections read; try again")

    def checkpoint_in_background(self, interval: float = 5.0) -> None:
        """Copy the WAL into the database file every `interval` seconds on a thread of its own.

        Measured by `make soak`: a checkpoint run by the committing request every few minutes stalled
        every request behind it for up to two seconds.
        """
        if self._checkpoints is not None:
            return
        self._autocheckpoint = False  # connections opened from now on leave checkpoints to the thread
        self.connection().execute("PRAGMA wal_autocheckpoint=0")
        self._checkpoints = threading.Thread(target=self._checkpoint_loop, args=(interval,),
                                             name="switchboard-checkpoints", daemon=True)
        self._checkpoints.start()

    def _checkpoint_loop(self, interval: float) -> None:
        stopping = False
        while not stopping:
            stopping = self._checkpoints_stop.wait(interval)
            try:
                self.connection().execute("PRAGMA wal_checkpoint(PASSIVE)")
            except Unavailable:
                log.warning("WAL checkpoint failed; tried again in %g s", interval, exc_info=True)
        self.close()

    def stop_checkpoints(self) -> None:
        """Stop the background checkpoints (a last one runs first)."""
        if self._checkpoints is not None:
            self._checkpoints_stop.set()
            self._checkpoints.join(timeout=10)
            self._checkpoints = None

    def close(self) -> None:
        """Close this thread's connection."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def dispose(self) -> None:
        self.stop_checkpoints()
        self.close()


# -- PostgreSQL -----------------------------------------------------------------------------------------

# The advisory lock every write transaction takes first (any number; this one spells "SwBd").
WRITE_LOCK = 0x53774264

# A string literal, a `::` cast, a `?` placeholder, a `:name` placeholder or a percent sign.
_SQL_TOKENS = re.compile(r"'(?:[^']|'')*'|::|\?|:([A-Za-z_]\w*)|%")


@lru_cache(maxsize=1024)
def to_pyformat(sql: str) -> str:
    """A query in the stores' SQL with psycopg's placeholders: `?` -> `%s`, `:name` -> `%(name)s`, `%` -> `%%`."""

    def token(match: re.Match[str]) -> str:
        text = match.group(0)
        if text.startswith("'"):
            return text.replace("%", "%%")
        if text == "?":
            return "%s"
        if text == "%":
            return "%%"
        if match.group(1):
            return f"%({match.group(1)})s"
        return text

    return _SQL_TOKENS.sub(token, sql)


class _Rows:
    """A statement's rows, read before its connection went back to the pool."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return self._rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


class _PgRow(tuple):  # type: ignore[type-arg]
    """A row readable by position and by column name, as sqlite3.Row is."""

    _index: ClassVar[dict[str, int]] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> type[_PgRow]:
    return type("Row", (_PgRow,), {"_index": {name: i for i, name in enumerate(names)}, "__slots__": ()})


def _row_factory(cursor: Any) -> Any:
    names = tuple(column.name for column in cursor.description or ())
    cls = _row_class(names)
    return cls


class _StalePlan(Unavailable):
    """A statement prepared on a connection before its table changed: that connection must not be used again."""


class _PgConnection:
    """A PostgreSQL connection inside a transaction, speaking the stores' SQL."""

    def __init__(self, connection: Any, faults: Any) -> None:
        self._connection = connection
        self._faults = faults

    def execute(self, sql: str, parameters: Params = (), /) -> _Rows:
        with self._faults():
            cursor = self._connection.execute(to_pyformat(sql), parameters)
            rows = cursor.fetchall() if cursor.description is not None else []
            return _Rows(rows, cursor.rowcount)

    def executemany(self, sql: str, parameters: Any, /) -> _Rows:
        with self._faults(), self._connection.cursor() as cursor:
            cursor.executemany(to_pyformat(sql), list(parameters))
            return _Rows([], cursor.rowcount)


class _PgStatements:
    """Statements outside a transaction: each takes a connection from the pool and commits on its own."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._database = database

    def execute(self, sql: str, parameters: Params = (), /) -> _Rows:
        try:
            with self._database._connection() as connection:
                return connection.execute(sql, parameters)
        except _StalePlan:
            with self._database._connection() as connection:  # one statement, alone: tried again at once
                return connection.execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> _Rows:
        with self._database._connection() as connection:
            return connection.executemany(sql, parameters)


class PostgresDatabase:
    """A PostgreSQL database through a pool of psycopg 3 connections.

    Parameters are bound by the server, and a statement a connection has run five times is prepared there
    (psycopg's default): PostgreSQL then neither parses nor plans it again, which halved its CPU a message
    (docs/performance.md). A value whose type nothing in the statement tells is cast (`CAST(? AS TEXT) IS
    NULL`). A prepared `SELECT *` fails once its table gains a column (`switchboard db upgrade` while this
    process runs): the connection is then closed, so that the pool opens one that prepares it anew, and a
    statement outside a transaction is tried again on it; a transaction fails as Unavailable, to be retried.
    """

    dialect = "postgresql"

    def __init__(self, url: str, max_connections: int = 10) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        url, prepare = _prepare_setting(url)
        self.url = url
        self._psycopg = psycopg
        parts = urlsplit(url)
        self._where = f"PostgreSQL at {parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"
        self._pool = ConnectionPool(
            url, min_size=1, max_size=max_connections, open=False, name="switchboard",
            kwargs={"autocommit": True, "row_factory": _row_factory,
                    **({} if prepare else {"prepare_threshold": None})},
        )
        try:
            self._pool.open(wait=True, timeout=10)
        except Exception as exc:
            self._pool.close()
            raise Unavailable(f"cannot connect to {self._where} ({exc}): check that it runs, that the "
                              "database exists and that SWITCHBOARD_STORE_URL names it") from exc

    def __str__(self) -> str:
        return self._where

    @contextmanager
    def _faults(self) -> Iterator[None]:
        psycopg = self._psycopg
        from psycopg_pool import PoolTimeout

        try:
            yield
        except psycopg.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise Unavailable(f"{self._where} cannot be reached or written ({exc}): check that it runs "
                              "and has room") from exc
        except psycopg.errors.FeatureNotSupported as exc:
            # "cached plan must not change result type", told by where PostgreSQL raised it (its text is translated)
            if exc.diag.source_function != "RevalidateCachedQuery":
                raise
            raise _StalePlan(f"a table of {self._where} changed while Switchboard ran (`switchboard db upgrade`); "
                             "its statements are prepared again: try again") from exc

    @contextmanager
    def _connection(self) -> Iterator[_PgConnection]:
        with self._faults(), self._pool.connection(timeout=30) as connection:
            try:
                yield _PgConnection(connection, self._faults)
            except _StalePlan:
                connection.close()  # prepared for the tables as they were: the pool opens a new connection
                raise

    def connection(self) -> _PgStatements:
        return _PgStatements(self)

    @contextmanager
    def write(self, redoable: bool = False) -> Iterator[_PgConnection]:
        """A write transaction, durable when it commits unless `redoable` (module docstring)."""
        with self._connection() as db, db._connection.transaction():
            if redoable:  # for this transaction only, in the same round trip as the lock
                db.execute("SELECT pg_advisory_xact_lock(?), set_config('synchronous_commit', 'off', true)",
                           (WRITE_LOCK,))
            else:
                db.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
            yield db

    def write_one(self, sql: str, parameters: Params = (), /) -> _Rows:
        """One statement that appends no event, committed on its own: atomic alone, it needs no place in the
        order of the deployment's writes, so it does not take their lock."""
        return self.connection().execute(sql, parameters)

    @contextmanager
    def snapshot(self) -> Iterator[_PgConnection]:
        with self._connection() as db, db._connection.transaction():
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield db

    def tables(self, db: Connection) -> set[str]:
        rows = db.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        return {row["table_name"] for row in rows}

    def columns(self, db: Connection, table: str) -> set[str]:
        rows = db.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                          "AND table_name = ?", (table,))
        return {row["column_name"] for row in rows}

    def json_field(self, column: str, key: str) -> str:
        return f"(({column})::jsonb -> '{key}')::text"

    def compact(self) -> None:
        """Let PostgreSQL reclaim deleted rows now (VACUUM), rather than when autovacuum comes round.
        Old row versions stay in the write-ahead log and backups until they rotate (docs/deploy.md)."""
        with self._connection() as db:
            db.execute("VACUUM")

    def checkpoint_in_background(self, interval: float = 5.0) -> None:
        """Nothing to do: PostgreSQL checkpoints on its own."""

    def stop_checkpoints(self) -> None:
        """Nothing to do."""

    def close(self) -> None:
        """Nothing to do: connections go back to the pool after each statement or transaction."""

    def dispose(self) -> None:
        self._pool.close()


def _prepare_setting(url: str) -> tuple[str, bool]:
    """A PostgreSQL URL without Switchboard's own `prepare` parameter, and whether statements are prepared:
    `?prepare=off` behind a pooler that cannot keep them (PgBouncer in transaction mode before 1.21)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    chosen = [value for key, value in query if key == "prepare"]
    if not chosen:
        return url, True
    if chosen[-1] not in ("on", "off"):
        raise SwitchboardError(f"prepare={chosen[-1]!r} in the store URL: use prepare=on (the default) or "
                               "prepare=off (behind PgBouncer in transaction mode before 1.21)")
    rest = urlencode([(key, value) for key, value in query if key != "prepare"])
    return urlunsplit(parts._replace(query=rest)), chosen[-1] == "on"


Database = SqliteDatabase | PostgresDatabase


def open_database(url: str) -> Database:
    """The database a store URL names: `sqlite:///relative.db`, `sqlite:////absolute.db` or
    `postgresql://user@host:port/database`."""
    scheme, sep, rest = url.partition("://")
    if scheme == "sqlite" and sep and rest.startswith("/") and len(rest) > 1:
        return SqliteDatabase(Path(rest[1:]))
    if scheme in ("postgresql", "postgres") and sep:
        return PostgresDatabase(url)
    raise SwitchboardError(f"unsupported store URL {url!r}: use sqlite:///var/switchboard.db or "
                           "postgresql://user@host:5432/switchboard")
