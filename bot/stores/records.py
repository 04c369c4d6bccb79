"""What every part of the store shares: its database, its transactions and the change notices."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from bot.stores.database import Connection, Database, Params, Result


class Records:
    """A part of the store (one aggregate's rows) over the store's one database."""

    _db: Database
    _on_change: Callable[[str], None]

    def _connection(self) -> Connection:
        return self._db.connection()

    def _write(self, redoable: bool = False) -> AbstractContextManager[Connection]:
        return self._db.write(redoable)

    def _write_one(self, sql: str, parameters: Params = ()) -> Result:
        """One statement that appends no event, committed on its own (see Database)."""
        return self._db.write_one(sql, parameters)

    def _changed(self, *keys: str) -> None:
        for key in keys:
            self._on_change(key)
