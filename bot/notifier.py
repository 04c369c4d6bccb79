"""In-process change notifications that wake waiting streams without polling."""

from __future__ import annotations

import threading
from collections import defaultdict


class Notifier:
    """Counts changes per key; waiters sleep until their key's count moves on."""

    def __init__(self) -> None:
        self._versions: defaultdict[str, int] = defaultdict(int)
        self._condition = threading.Condition()
        self.closed = False

    def version(self, key: str) -> int:
        """Return the current change count of `key`."""
        with self._condition:
            return self._versions[key]

    def publish(self, key: str) -> None:
        """Record a change of `key` and wake everyone waiting on it."""
        with self._condition:
            self._versions[key] += 1
            self._condition.notify_all()

    def wait(self, key: str, seen: int, timeout: float) -> int:
        """Block until `key` changed after version `seen` or `timeout` passed; return the version."""
        with self._condition:
            self._condition.wait_for(lambda: self.closed or self._versions[key] != seen, timeout)
            return self._versions[key]

    def close(self) -> None:
        """Release every waiter for good; streams end so the process can stop quickly."""
        with self._condition:
            self.closed = True
            self._condition.notify_all()
