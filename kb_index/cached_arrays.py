"""Arrays kept under a cache directory by a key of what made them (a tuned model's vectors, a fitted map):
read back and marked recently used, written whole or not at all, and the oldest of a kind pruned."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np


def load_array(path: Path) -> np.ndarray | None:
    """The array kept at `path`, marked as just used (pruning keeps the newest); None if there is none."""
    try:
        array = np.load(path)
    except (OSError, ValueError):
        return None
    os.utime(path)
    return array


def keep_array(path: Path, array: np.ndarray, kind: str, keep: int) -> None:
    """Write `array` to `path` atomically, then prune its directory's `kind` (a glob) to the `keep` newest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=".", suffix=".npy", dir=path.parent)
    with os.fdopen(handle, "wb") as file:
        np.save(file, array)
    os.replace(staging, path)
    prune(path.parent, kind, keep)


def prune(directory: Path, kind: str, keep: int) -> None:
    """Remove all but the `keep` most recently used entries of `directory` matching `kind` (files or folders)."""
    found = sorted(directory.glob(kind), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in found[keep:]:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
