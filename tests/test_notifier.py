"""The change notifier: a change wakes its key's waiters, never sleeps through, and forgets idle keys."""

from __future__ import annotations

import threading

from bot.notifier import Notifier
from tests.servers import wait_for


def waiter(notifier: Notifier, key: str, results: list[int], timeout: float = 10.0) -> threading.Thread:
    seen = notifier.version(key)
    thread = threading.Thread(target=lambda: results.append(notifier.wait(key, seen, timeout)))
    thread.start()
    return thread


def test_a_change_wakes_the_waiters_of_its_key_only() -> None:
    notifier = Notifier()
    woken: list[int] = []
    others: list[int] = []
    mine = [waiter(notifier, "web:a", woken) for _ in range(3)]
    other = waiter(notifier, "web:b", others, timeout=0.5)
    notifier.publish("web:a")
    for thread in mine:
        thread.join(5)
    assert len(woken) == 3 and all(v == notifier.version("web:a") for v in woken)
    other.join(5)
    assert others == [0]  # timed out: nothing changed for b


def test_a_forgotten_key_that_changes_again_never_repeats_a_seen_version() -> None:
    notifier = Notifier(max_keys=2)
    notifier.publish("a")
    seen = notifier.version("a")
    for key in ("b", "c", "d"):  # "a" is forgotten: nobody waits on it
        notifier.publish(key)
    assert notifier.version("a") == 0
    notifier.publish("a")
    assert notifier.version("a") not in (0, seen)
    assert notifier.wait("a", seen, timeout=5) != seen  # returns at once: a change happened


def test_close_releases_every_waiter() -> None:
    notifier = Notifier()
    results: list[int] = []
    threads = [waiter(notifier, f"k{n}", results, timeout=30) for n in range(5)]
    wait_for(lambda: len(notifier._waiting) == 5)
    notifier.close()
    for thread in threads:
        thread.join(5)
    assert len(results) == 5 and not notifier._waiting
