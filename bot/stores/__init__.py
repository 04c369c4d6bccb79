"""Store implementations of the `bot.ports` store protocols, chosen by URL scheme."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bot.errors import SwitchboardError
from bot.stores.sqlite import SqliteConversationStore


def open_store(url: str, on_change: Callable[[str], None] | None = None) -> SqliteConversationStore:
    """Open the store a URL names: `sqlite:///relative/path.db` or `sqlite:////absolute/path.db`."""
    scheme, sep, rest = url.partition("://")
    if scheme == "sqlite" and sep and rest.startswith("/") and len(rest) > 1:
        return SqliteConversationStore(Path(rest[1:]), on_change)
    raise SwitchboardError(
        f"unsupported store URL {url!r}: use sqlite:///var/switchboard.db "
        "(the Redis store arrives with scale-out)"
    )
