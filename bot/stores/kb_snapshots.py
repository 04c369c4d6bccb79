"""Published knowledge-base snapshots, packed, and which one is live, and the articles saved and not yet
published: how hosts that share no directory follow a publish and edit one working copy
(kb_index/shipping.py)."""

from __future__ import annotations

from bot.messages import utcnow
from bot.stores.records import Records


class KbSnapshotRecords(Records):
    """The packed snapshots a deployment published, newest first by name (names sort by time)."""

    def store_snapshot(self, name: str, archive: bytes, keep: int) -> None:
        """Keep a published snapshot's archive (once: a name is never packed twice) and make it the live one;
        all but the `keep` newest are let go, never the live one."""
        with self._write() as db:
            db.execute("INSERT INTO kb_snapshots (name, stored_at, archive, live) VALUES (?, ?, ?, 0) "
                       "ON CONFLICT (name) DO NOTHING", (name, utcnow().isoformat(), archive))
            db.execute("UPDATE kb_snapshots SET live = CASE WHEN name = ? THEN 1 ELSE 0 END", (name,))
            db.execute("DELETE FROM kb_snapshots WHERE live = 0 AND name NOT IN "
                       "(SELECT name FROM kb_snapshots ORDER BY name DESC LIMIT ?)", (max(keep, 1),))

    def make_snapshot_live(self, name: str) -> bool:
        """Make a stored snapshot the live one (a rollback); False if it is not stored."""
        with self._write() as db:
            if db.execute("SELECT 1 FROM kb_snapshots WHERE name = ?", (name,)).fetchone() is None:
                return False
            db.execute("UPDATE kb_snapshots SET live = CASE WHEN name = ? THEN 1 ELSE 0 END", (name,))
        return True

    def live_snapshot(self) -> str | None:
        """The name of the snapshot every host should serve, if one was stored."""
        row = self._connection().execute("SELECT name FROM kb_snapshots WHERE live = 1").fetchone()
        return None if row is None else str(row["name"])

    def stored_snapshots(self) -> list[tuple[str, str, bool]]:
        """The stored snapshots, newest first: name, when it was stored, and whether it is the live one."""
        rows = self._connection().execute("SELECT name, stored_at, live FROM kb_snapshots ORDER BY name DESC")
        return [(str(row["name"]), str(row["stored_at"]), bool(row["live"])) for row in rows.fetchall()]

    def snapshot_archive(self, name: str) -> bytes | None:
        """A stored snapshot's archive."""
        row = self._connection().execute("SELECT archive FROM kb_snapshots WHERE name = ?", (name,)).fetchone()
        return None if row is None else bytes(row["archive"])


class KbEditRecords(Records):
    """Article files saved in the editor pages since the last publish, in the order they were saved."""

    def record_kb_edit(self, path: str, text: str | None) -> int:
        """Keep a saved article file (`path` within the KB directory; `text` None: the file was deleted).
        Returns the edit's number, which grows with every edit."""
        with self._write() as db:
            row = db.execute("INSERT INTO kb_edits (path, text, edited_at) VALUES (?, ?, ?) RETURNING edit_id",
                             (path, text, utcnow().isoformat())).fetchone()
        return int(row["edit_id"])

    def kb_edits(self) -> list[tuple[int, str, str | None]]:
        """The edits not yet published, oldest first: number, path and text (None: deleted)."""
        rows = self._connection().execute("SELECT edit_id, path, text FROM kb_edits ORDER BY edit_id").fetchall()
        return [(int(row["edit_id"]), str(row["path"]), row["text"]) for row in rows]

    def forget_kb_edits(self, through: int | None = None) -> None:
        """Let go of the edits up to number `through` (a publish took them), or of all (a rollback undid them)."""
        if through is None:
            self._write_one("DELETE FROM kb_edits")
        else:
            self._write_one("DELETE FROM kb_edits WHERE edit_id <= ?", (through,))
