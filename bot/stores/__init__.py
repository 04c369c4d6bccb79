"""Store implementations of the `bot.ports` store protocols, on the database a URL names."""

from __future__ import annotations

from collections.abc import Callable

from bot.stores.conversations import ConversationStore
from bot.stores.database import open_database


def open_store(url: str, on_change: Callable[[str], None] | None = None) -> ConversationStore:
    """Open the store a URL names: `sqlite:///relative/path.db`, `sqlite:////absolute/path.db` or
    `postgresql://user@host:5432/database`. Raises SchemaError if the database needs `switchboard db upgrade`."""
    database = open_database(url)
    try:
        return ConversationStore(database, on_change)
    except BaseException:
        database.dispose()
        raise
