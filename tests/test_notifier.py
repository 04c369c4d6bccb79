"""The change notifier: a change wakes its key's waiters, never sleeps through, and forgets idle keys."""

from __future__ import annotations

import asyncio
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
    wait_for(lambda: len(notifier.waited_keys()) == 5)
    notifier.close()
    for thread in threads:
        thread.join(5)
    assert len(results) == 5 and not notifier.waited_keys()


def test_a_coroutine_is_woken_by_a_change_published_from_another_thread() -> None:
    notifier = Notifier()

    async def scenario() -> tuple[int, int, int]:
        seen = notifier.version("web:a")
        publisher = threading.Timer(0.2, notifier.publish, ("web:a",))
        publisher.start()
        woken = await notifier.wait_async("web:a", seen, timeout=30)
        idle = await notifier.wait_async("web:b", notifier.version("web:b"), timeout=0.2)
        return seen, woken, idle

    seen, woken, idle = asyncio.run(scenario())
    assert woken == notifier.version("web:a") != seen
    assert idle == 0  # timed out: nothing changed for b
    assert not notifier.waited_keys()


def test_a_coroutine_returns_at_once_on_a_change_it_has_not_seen_and_close_releases_it() -> None:
    notifier = Notifier()
    notifier.publish("a")

    async def scenario() -> tuple[int, int]:
        at_once = await asyncio.wait_for(notifier.wait_async("a", 0, timeout=30), 5)
        waiting = asyncio.ensure_future(notifier.wait_async("b", 0, timeout=30))
        await asyncio.sleep(0.1)
        assert notifier.waited_keys() == ["b"]
        threading.Thread(target=notifier.close).start()
        return at_once, await asyncio.wait_for(waiting, 5)

    at_once, released = asyncio.run(scenario())
    assert at_once == notifier.version("a") and released == 0
    assert not notifier.waited_keys()


def test_a_change_naming_its_subject_goes_to_the_keys_handler_and_wakes_no_one() -> None:
    notifier = Notifier()
    handed: list[str] = []
    notifier.hand_over("inbox", handed.append)
    woken: list[int] = []
    thread = waiter(notifier, "inbox", woken, timeout=0.5)
    wait_for(lambda: "inbox" in notifier.waited_keys())
    notifier.publish("inbox", "c-1")
    notifier.publish("outbox", "c-2")  # no handler for this key: its waiters are woken as by any change
    thread.join(5)
    assert handed == ["c-1"] and woken == [0] and notifier.version("outbox") != 0
    # A change that names nothing (a sweep is asked for) still wakes the key's waiters.
    thread = waiter(notifier, "inbox", woken)
    wait_for(lambda: "inbox" in notifier.waited_keys())
    notifier.publish("inbox")
    thread.join(5)
    assert woken[-1] == notifier.version("inbox") != 0 and handed == ["c-1"]
