"""Change notifications that wake waiting streams without polling: in one process, or (SharedNotifier)
across the processes and hosts that share a Redis."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Waiters:
    """Who waits on one key: threads on the condition, coroutines by the callbacks that wake them."""

    condition: threading.Condition
    threads: int = 0
    wakers: set[Callable[[], None]] = field(default_factory=set)

    def idle(self) -> bool:
        return not self.threads and not self.wakers

    def wake(self) -> None:
        self.condition.notify_all()
        for waker in self.wakers:
            waker()


class Notifier:
    """Waiters sleep until their key changes; a change wakes only that key's waiters.

    A thread waits with `wait`, a coroutine with `wait_async` (an event stream on the server's event loop
    holds no thread while it waits).

    Versions come from one counter for all keys, so a key forgotten (beyond `max_keys`, when nobody
    waits on it) and changed again never shows a version a waiter saw before: at worst a waiter wakes
    once for nothing, never sleeps through a change.
    """

    def __init__(self, max_keys: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._versions: dict[str, int] = {}
        self._waiting: dict[str, _Waiters] = {}
        self._counter = itertools.count(1)
        self._max_keys = max_keys
        self._handlers: dict[str, Callable[[str], None]] = {}
        self.closed = False

    def version(self, key: str) -> int:
        """Return the current version of `key` (0 if it never changed or was forgotten)."""
        with self._lock:
            return self._versions.get(key, 0)

    def publish(self, key: str, subject: str = "") -> None:
        """Record a change of `key` and wake everyone waiting on it. A change that names its `subject` (which
        conversation has a message waiting) goes to the key's handler instead, where `hand_over` set one."""
        handler = self._handlers.get(key) if subject else None
        if handler is not None:
            handler(subject)
            return
        with self._lock:
            self._versions[key] = next(self._counter)
            if len(self._versions) > self._max_keys:
                for idle in [k for k in self._versions if k not in self._waiting and k != key]:
                    del self._versions[idle]
            waiting = self._waiting.get(key)
            if waiting is not None:
                waiting.wake()

    def wait(self, key: str, seen: int, timeout: float) -> int:
        """Block until `key` changed after version `seen` or `timeout` passed; return the version."""
        with self._lock:
            waiting = self._waiters(key)
            waiting.threads += 1
            try:
                waiting.condition.wait_for(lambda: self.closed or self._versions.get(key, 0) != seen, timeout)
                return self._versions.get(key, 0)
            finally:
                waiting.threads -= 1
                self._forget_if_idle(key, waiting)

    async def wait_async(self, key: str, seen: int, timeout: float) -> int:
        """`wait` for a coroutine: sleeps on the running event loop, woken from whichever thread publishes."""
        loop = asyncio.get_running_loop()
        woken = loop.create_future()

        def settle() -> None:
            if not woken.done():
                woken.set_result(None)

        def wake() -> None:  # called under the lock, from any thread
            if not loop.is_closed():  # a stopped server's loop: nobody is left to wake
                loop.call_soon_threadsafe(settle)

        with self._lock:
            if self.closed or self._versions.get(key, 0) != seen:
                return self._versions.get(key, 0)
            waiting = self._waiters(key)
            waiting.wakers.add(wake)
        try:
            await asyncio.wait_for(woken, timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                waiting.wakers.discard(wake)
                self._forget_if_idle(key, waiting)
        return self.version(key)

    def hand_over(self, key: str, handler: Callable[[str], None]) -> None:
        """Give the changes of `key` that name a subject to `handler` (a worker's processor, which takes up that
        one conversation) rather than waking the key's waiters, who would have to look for it."""
        self._handlers[key] = handler

    def waited_keys(self) -> list[str]:
        """The keys somebody waits on now."""
        with self._lock:
            return list(self._waiting)

    def close(self) -> None:
        """Release every waiter for good; streams end so the process can stop quickly."""
        with self._lock:
            self.closed = True
            for waiting in self._waiting.values():
                waiting.wake()

    def _waiters(self, key: str) -> _Waiters:
        waiting = self._waiting.get(key)
        if waiting is None:
            waiting = self._waiting[key] = _Waiters(threading.Condition(self._lock))
        return waiting

    def _forget_if_idle(self, key: str, waiting: _Waiters) -> None:
        if waiting.idle() and self._waiting.get(key) is waiting:
            del self._waiting[key]


def connect_redis(url: str, timeout: float, **options: Any) -> tuple[Any, tuple[type[Exception], ...]]:
    """A client of the deployment's Redis whose connections and commands give up after `timeout` seconds, and
    the errors that mean Redis cannot be reached (its users carry on without it, each in its own way). redis is
    imported here, on first use: a process without Redis never loads it (0.2 s of start-up)."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout, **options)
    return client, (redis.RedisError, OSError)


def topic(channel: str, key: str) -> str:
    """The Redis channel a change of `key` is published on: one per key, so that a process subscribes to the
    keys it waits on (a worker does not read the web chat's and the console's changes)."""
    return f"{channel}:{key}"


def subject_topic(channel: str, key: str) -> str:
    """The Redis channel of the changes of `key` that name their subject: outside the pattern `channel:*` that web
    processes hear everything on, so that only the processes that take those subjects read them."""
    return f"{channel}~{key}"


def announce(url: str, channel: str, key: str) -> bool:
    """Tell every process on `channel` that `key` changed, from a process that has no notifier of its own (a
    CLI command); False if Redis cannot be reached."""
    client, errors = connect_redis(url, timeout=5)
    try:
        client.publish(topic(channel, key), f"{uuid.uuid4().hex} {key}")
        return True
    except errors as exc:
        log.warning("could not announce a change of %s over Redis: %s", key, exc)
        return False
    finally:
        client.close()


_STOP = "notifier-stop-"  # a listener's own wake-up call, followed by its process's origin


class SharedNotifier(Notifier):
    """A Notifier whose changes reach every process on the same Redis, over pub/sub: a reply stored by one
    process wakes the console and web-chat streams that another serves.

    Each change is published as `<origin> <key>` on the key's own channel (`topic`); a thread of each process
    relays the others' changes to its own waiters: of every key, or only of `keys` (a worker waits on a few,
    and reads none of the changes the web pages wait on). A change that names its subject is published as
    `<origin> <subject>` on the key's channel of subjects (`subject_topic`), which only the processes that take
    that key's subjects (`subjects`: the workers, for stored messages) subscribe to, and goes to the key's
    handler there (`hand_over`). Pub/sub keeps nothing for a subscriber that is away, so after every
    (re)connection each waited key is woken once: its streams read the state again and miss nothing (a worker
    sweeps the store for the messages it was not told of). While Redis is down, changes still wake this
    process's waiters, and streams fall back on their heartbeats.
    """

    def __init__(self, url: str, channel: str = "switchboard:changes", max_keys: int = 10_000,
                 keys: Collection[str] | None = None, subjects: Collection[str] = ()) -> None:
        super().__init__(max_keys)
        self._subjects = {subject_topic(channel, key): key for key in subjects}
        self._redis, self._errors = connect_redis(url, timeout=5, health_check_interval=30)
        self._channel = channel
        self._keys = None if keys is None else sorted(keys)
        self._origin = uuid.uuid4().hex
        self._stop_key = f"{_STOP}{self._origin}"  # published by `close`: the listener need not time out
        self.connected = threading.Event()
        self._down_since: float | None = None
        self._listener = threading.Thread(target=self._listen, name="switchboard-changes", daemon=True)
        self._listener.start()

    def publish(self, key: str, subject: str = "") -> None:
        super().publish(key, subject)
        try:
            if subject:
                self._redis.publish(subject_topic(self._channel, key), f"{self._origin} {subject}")
            else:
                self._redis.publish(topic(self._channel, key), f"{self._origin} {key}")
        except self._errors as exc:
            self._lost(exc)

    def _listen(self) -> None:
        delay = 0.1
        while not self.closed:
            try:
                pubsub = self._redis.pubsub()
                if self._keys is None:
                    pubsub.psubscribe(topic(re.sub(r"([\\*?\[\]])", r"\\\1", self._channel), "*"))
                else:
                    pubsub.subscribe(*(topic(self._channel, key) for key in [*self._keys, self._stop_key]))
                if self._subjects:
                    pubsub.subscribe(*self._subjects)
                subscribed = False
                while not self.closed:
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] in ("subscribe", "psubscribe"):
                        if not subscribed:  # one confirmation a channel: the first says the connection is back
                            self._reconnected()
                        subscribed = True
                        delay = 0.1
                    elif message["type"] in ("message", "pmessage"):
                        origin, _, change = message["data"].decode().partition(" ")
                        if origin == self._origin:
                            continue
                        named = self._subjects.get(message["channel"].decode())
                        if named is not None:
                            super().publish(named, change)  # a change of `named`, naming its subject
                        elif not change.startswith(_STOP):  # another's stop: not a change
                            super().publish(change)
                pubsub.close()
            except self._errors as exc:
                self._lost(exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _lost(self, exc: Exception) -> None:
        if self.connected.is_set() or self._down_since is None:
            log.warning("live updates between processes paused: Redis cannot be reached (%s); retrying", exc)
            self._down_since = time.monotonic()
        self.connected.clear()

    def _reconnected(self) -> None:
        if self._down_since is not None:
            log.info("live updates between processes resumed")
        self._down_since = None
        for key in self.waited_keys():  # whatever changed while this process was away
            super().publish(key)
        self.connected.set()

    def close(self) -> None:
        super().close()
        with contextlib.suppress(*self._errors):  # wakes the listener at once, rather than at its next second
            self._redis.publish(topic(self._channel, self._stop_key), f"{self._origin} {self._stop_key}")
        self._listener.join(timeout=5)
        self._redis.close()
