"""In-process change notifications that wake waiting streams without polling."""

from __future__ import annotations

import itertools
import threading


class Notifier:
    """Waiters sleep until their key changes; a change wakes only that key's waiters.

    Versions come from one counter for all keys, so a key forgotten (beyond `max_keys`, when nobody
    waits on it) and changed again never shows a version a waiter saw before: at worst a waiter wakes
    once for nothing, never sleeps through a change.
    """

    def __init__(self, max_keys: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._versions: dict[str, int] = {}
        self._waiting: dict[str, tuple[threading.Condition, int]] = {}  # key -> condition, waiters
        self._counter = itertools.count(1)
        self._max_keys = max_keys
        self.closed = False

    def version(self, key: str) -> int:
        """Return the current version of `key` (0 if it never changed or was forgotten)."""
        with self._lock:
            return self._versions.get(key, 0)

    def publish(self, key: str) -> None:
        """Record a change of `key` and wake everyone waiting on it."""
        with self._lock:
            self._versions[key] = next(self._counter)
            if len(self._versions) > self._max_keys:
                for idle in [k for k in self._versions if k not in self._waiting and k != key]:
                    del self._versions[idle]
            waiting = self._waiting.get(key)
            if waiting is not None:
                waiting[0].notify_all()

    def wait(self, key: str, seen: int, timeout: float) -> int:
        """Block until `key` changed after version `seen` or `timeout` passed; return the version."""
        with self._lock:
            condition, waiters = self._waiting.get(key) or (threading.Condition(self._lock), 0)
            self._waiting[key] = (condition, waiters + 1)
            try:
                condition.wait_for(lambda: self.closed or self._versions.get(key, 0) != seen, timeout)
                return self._versions.get(key, 0)
            finally:
                condition, waiters = self._waiting[key]
                if waiters == 1:
                    del self._waiting[key]
                else:
                    self._waiting[key] = (condition, waiters - 1)

    def close(self) -> None:
        """Release every waiter for good; streams end so the process can stop quickly."""
        with self._lock:
            self.closed = True
            for condition, _ in self._waiting.values():
                condition.notify_all()
