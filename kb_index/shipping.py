"""Published snapshots through the store, for hosts that share no directory.

With `SWITCHBOARD_KB_SNAPSHOTS=store`, the process that publishes (the editor pages, `switchboard kb build`,
a rollback) packs the live snapshot into the store and marks it live there; every other process, told by
the KB publish notice (over Redis) or at its next check, unpacks it into its own index directory and
switches to it. The store keeps the packed snapshots a rollback may need, as the index directory does.
"""

from __future__ import annotations

import io
import logging
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Protocol

from bot.errors import SwitchboardError
from kb_index.editing import SharedEdits
from kb_index.snapshot import (
    build_lock,
    current_snapshot,
    load_snapshot,
    prune_snapshots,
    restore_sources,
    switch_to,
)

log = logging.getLogger(__name__)


class SnapshotShelf(Protocol):
    """Where packed snapshots are kept: the store (bot.stores.kb_snapshots)."""

    def store_snapshot(self, name: str, archive: bytes, keep: int) -> None: ...

    def make_snapshot_live(self, name: str) -> bool: ...

    def live_snapshot(self) -> str | None: ...

    def snapshot_archive(self, name: str) -> bytes | None: ...

    def stored_snapshots(self) -> list[tuple[str, str, bool]]: ...


def pack(snapshot: Path) -> bytes:
    """A snapshot directory as a gzipped tar of its files, under relative names."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for file in sorted(p for p in snapshot.rglob("*") if p.is_file()):
            archive.add(file, arcname=file.relative_to(snapshot).as_posix(), recursive=False)
    return buffer.getvalue()


def unpack(archive: bytes, index_dir: Path, name: str) -> Path:
    """Unpack a packed snapshot as `index_dir/snapshots/name` (atomically: a half-written one is never seen),
    after checking that it loads. Raises SwitchboardError for an archive that is damaged or does not load."""
    snapshots = index_dir / "snapshots"
    snapshots.mkdir(parents=True, exist_ok=True)
    target = snapshots / name
    staging = Path(tempfile.mkdtemp(prefix=f".incoming-{name}-", dir=snapshots))
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as packed:
            packed.extractall(staging, filter="data")  # no absolute paths, links out or devices
        load_snapshot(staging)
        staging.rename(target)
    except (OSError, tarfile.TarError, EOFError, zlib.error) as exc:
        raise SwitchboardError(f"the stored snapshot {name} is damaged: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def share(shelf: SnapshotShelf, index_dir: Path, keep: int) -> str | None:
    """After a publish or rollback here: make this index directory's live snapshot the store's live one,
    packing it unless the store has it already. Returns its name (None if nothing is built)."""
    live = current_snapshot(index_dir)
    if live is None:
        return None
    if not shelf.make_snapshot_live(live.name):
        shelf.store_snapshot(live.name, pack(live), keep)
    return live.name


def fetch(shelf: SnapshotShelf, index_dir: Path, name: str) -> bool:
    """Unpack the stored snapshot `name` into this index directory unless it is here already (a rollback on a
    host that started after it was published). False if neither this directory nor the store has it; raises
    SwitchboardError for a stored one that is damaged."""
    if not _is_snapshot_name(name):
        return False
    with build_lock(index_dir):
        return _unpacked(shelf, index_dir, name)


def _unpacked(shelf: SnapshotShelf, index_dir: Path, name: str) -> bool:
    """Unpack the stored snapshot `name` unless this index directory has it (the caller holds the build lock);
    False if the store does not hold it (let go of by a newer publish)."""
    if (index_dir / "snapshots" / name).is_dir():
        return True
    archive = shelf.snapshot_archive(name)
    if archive is None:
        return False
    unpack(archive, index_dir, name)
    return True


def follow(shelf: SnapshotShelf, index_dir: Path, keep: int) -> bool:
    """Make the store's live snapshot this index directory's, unpacking it first if it is not here (all but
    the `keep` newest unpacked ones are then deleted, as after a build). True if the pointer moved; a damaged
    stored snapshot is logged and the live one kept."""
    name = shelf.live_snapshot()
    if name is None:
        return False
    if not _is_snapshot_name(name):
        log.error("kept the live snapshot: the store names %r live, which is no snapshot's name", name)
        return False
    with build_lock(index_dir):
        live = current_snapshot(index_dir)
        if live is not None and live.name == name:
            return False
        try:
            if not _unpacked(shelf, index_dir, name):
                return False  # let go of by a newer publish since it was read as live
        except SwitchboardError:
            log.exception("kept the live snapshot: the one the store says is live does not load")
            return False
        switch_to(index_dir, name)
        prune_snapshots(index_dir, keep)
    log.info("knowledge base %s taken from the store", name)
    return True


def _is_snapshot_name(name: str) -> bool:
    """Whether a name read from the store can be a directory in `snapshots/` (no path into elsewhere)."""
    return not ("/" in name or "\\" in name or name.startswith("."))


class StoreSnapshots:
    """One process's part in `SWITCHBOARD_KB_SNAPSHOTS=store`: it shares what it publishes, and follows what
    any process published, its article files included, so that the editor pages of every host start from
    the published articles, with the edits saved since on any host (`edits`) on top."""

    def __init__(self, shelf: SnapshotShelf, index_dir: Path, kb_dir: Path | None, keep: int,
                 edits: SharedEdits | None = None) -> None:
        self._shelf = shelf
        self._index_dir = index_dir
        self._kb_dir = kb_dir
        self._keep = keep
        self.edits = edits  # the working copy's unpublished edits, shared by the hosts' editor pages

    def share(self) -> str | None:
        """After a publish or rollback in this process (see `share`)."""
        return share(self._shelf, self._index_dir, self._keep)

    def start(self) -> None:
        """As a process starts: take the store's live snapshot, or, where the store has none yet (the first
        host of a deployment), offer it this one."""
        if not self.follow() and self._shelf.live_snapshot() is None:
            self.share()

    def follow(self) -> bool:
        """Take the store's live snapshot, and its articles where this process has a KB directory (see
        `follow`). True if another snapshot is live here now."""
        if not follow(self._shelf, self._index_dir, self._keep):
            return False
        live = current_snapshot(self._index_dir)
        if self._kb_dir is not None and live is not None:
            try:
                restore_sources(live, self._kb_dir)
            except (SwitchboardError, OSError) as exc:
                log.warning("the articles of %s were not copied into %s: %s", live.name, self._kb_dir, exc)
            if self.edits is not None:
                self.edits.catch_up()  # edits saved since that publish, on any host, stay in the working copy
        return True
