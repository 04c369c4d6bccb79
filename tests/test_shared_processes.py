"""What the processes of one deployment share through Redis: live updates (pub/sub) and sign-in limits.
Each test has channels and keys of its own on the machine's Redis; the restart test runs its own."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from bot.errors import SwitchboardError
from bot.notifier import SharedNotifier, announce
from switchboard.app import services_of
from tests.servers import RedisServer, wait_for

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"switchboard-test-{uuid.uuid4().hex[:12]}"
    yield name
    server = redis.Redis.from_url(REDIS)
    for key in server.scan_iter(f"{name}*"):
        server.delete(key)
    server.close()


@pytest.fixture
def notifiers() -> Iterator[Callable[..., SharedNotifier]]:
    made: list[SharedNotifier] = []

    def make(url: str, channel: str, keys: tuple[str, ...] | None = None,
             subjects: tuple[str, ...] = ()) -> SharedNotifier:
        made.append(SharedNotifier(url, channel, keys=keys, subjects=subjects))
        assert made[-1].connected.wait(10), "the notifier never subscribed"
        return made[-1]

    yield make
    for notifier in made:
        notifier.close()


def waiting(notifier: SharedNotifier, key: str) -> tuple[threading.Thread, list[int]]:
    """A stream waiting on `key` from its current version; what it woke with lands in the list."""
    seen = notifier.version(key)
    woke: list[int] = []
    thread = threading.Thread(target=lambda: woke.append(notifier.wait(key, seen, timeout=30)))
    thread.start()
    wait_for(lambda: key in notifier.waited_keys())
    return thread, woke


def test_a_change_in_one_process_wakes_the_streams_of_another(
        notifiers: Callable[..., SharedNotifier], prefix: str) -> None:
    first, second = notifiers(REDIS, f"{prefix}:changes"), notifiers(REDIS, f"{prefix}:changes")
    thread, woke = waiting(second, "web:w-1")
    first.publish("web:w-1")
    thread.join(10)
    assert woke and woke[0] != 0
    # Another key's change wakes nobody waiting on this one; the publisher's own streams wake as before.
    thread, woke = waiting(second, "web:w-1")
    own_thread, own_woke = waiting(first, "web:w-2")
    first.publish("web:w-2")
    own_thread.join(10)
    assert own_woke and not woke
    first.publish("web:w-1")
    thread.join(10)
    assert woke


def test_a_worker_hears_only_the_changes_it_waits_on(notifiers: Callable[..., SharedNotifier], prefix: str) -> None:
    # Each key has a channel of its own: a worker (waiting for messages, replies to send, KB publishes) is not
    # handed every web-chat and console change of the deployment to read and drop.
    web = notifiers(REDIS, f"{prefix}:changes")
    worker = notifiers(REDIS, f"{prefix}:changes", ("inbox", "outbox", "kb-published"))
    thread, woke = waiting(worker, "web:w-1")
    web.publish("web:w-1")
    thread.join(1.0)
    assert not woke  # not subscribed: never reached the worker
    for key in ("inbox", "outbox"):
        thread, woke = waiting(worker, key)
        web.publish(key)
        thread.join(10)
        assert woke, key
    thread, woke = waiting(worker, "kb-published")
    assert announce(REDIS, f"{prefix}:changes", "kb-published")  # from a CLI command, without a notifier
    thread.join(10)
    assert woke
    thread, woke = waiting(web, "outbox")  # the web process hears every key, the worker's too
    worker.publish("outbox")
    thread.join(10)
    assert woke


def test_a_web_process_names_the_conversation_a_worker_is_to_take_up(
        notifiers: Callable[..., SharedNotifier], prefix: str) -> None:
    # The worker's processor is handed the conversation at once, instead of being woken to look for it in the
    # store: one read a message fewer for every worker, and none of them sweeps.
    from bot.pipeline.processor import WORK_WAITING, WorkerProcessors

    web, other_web = notifiers(REDIS, f"{prefix}:changes"), notifiers(REDIS, f"{prefix}:changes")
    worker = notifiers(REDIS, f"{prefix}:changes", (WORK_WAITING,), (WORK_WAITING,))
    handed: list[str] = []
    worker.hand_over(WORK_WAITING, handed.append)
    thread, woke = waiting(worker, WORK_WAITING)
    heard, other_woke = waiting(other_web, WORK_WAITING)
    WorkerProcessors(web).notify("conversation-1")
    wait_for(lambda: handed == ["conversation-1"])
    thread.join(0.5)
    assert not woke and not other_woke  # nobody sweeps for it, and web processes never read it
    # A sender id is anything a customer sends: a named change travels apart, never parsed out of a key.
    web.publish("rest:a\nb")
    wait_for(lambda: other_web.version("rest:a\nb") != 0)
    web.publish(WORK_WAITING)  # named nothing (a flood's end): the worker is woken to sweep, as before
    thread.join(10)
    heard.join(10)
    assert woke and woke[0] != 0 and other_woke and handed == ["conversation-1"]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_streams_miss_nothing_while_redis_restarts(
        notifiers: Callable[..., SharedNotifier], tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    first, second = notifiers(server.url, "changes"), notifiers(server.url, "changes")
    thread, woke = waiting(second, "conversations")
    server.kill()
    wait_for(lambda: not second.connected.is_set())
    first.publish("conversations")  # Redis is down: it reaches no one else, and raises nothing
    assert not woke
    server.start()
    try:
        # Back on: the waiting stream is woken to read the state again, since it may have missed a change.
        thread.join(20)
        assert woke
        wait_for(first.connected.is_set)
        thread, woke = waiting(second, "conversations")
        first.publish("conversations")
        thread.join(10)
        assert woke
    finally:
        server.kill()


def test_two_processes_count_the_same_sign_in_attempts_and_wake_each_other(
        make_app: Callable[..., Flask], prefix: str) -> None:
    shared = {"redis_url": REDIS, "redis_prefix": prefix, "login_limit_per_account": "3 per minute"}
    first, second = make_app(**shared), make_app(**shared)  # one store, one Redis: two processes' apps
    services_of(first).agents.add("ann@example.com", "Ann", "agent", "correct horse battery staple")
    wrong = {"email": "ann@example.com", "password": "a guess"}
    address = {"REMOTE_ADDR": "203.0.113.66"}
    statuses = [app.test_client().post("/api/agent/login", json=wrong, environ_base=address).status_code
                for app in (first, second, first, second)]
    assert statuses == [401, 401, 401, 429]

    # A customer's message taken by the first process wakes the agents' streams served by the second.
    notifier = services_of(second).notifier
    seen = notifier.version("conversations")
    sent = first.test_client().post("/webhooks/rest/webhook", json={"sender": "r-1", "message": "hello"})
    assert sent.status_code == 200
    assert notifier.wait("conversations", seen, timeout=10) != seen


def test_web_and_worker_processes_need_redis(index_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from switchboard.cli import main

    env = {"SWITCHBOARD_STORE_URL": f"sqlite:///{tmp_path}/s.db", "SWITCHBOARD_INDEX_DIR": str(index_dir),
           "SWITCHBOARD_VAR_DIR": str(tmp_path / "var"), "SWITCHBOARD_REDIS_URL": ""}
    for command in (["web"], ["worker"]):
        result = CliRunner().invoke(main, command, env=env)
        assert result.exit_code != 0 and "set SWITCHBOARD_REDIS_URL" in result.output, result.output


def test_a_flood_is_counted_across_web_processes_and_answered_once_it_stops(store_url: str, prefix: str) -> None:
    from bot.messages import InboundMessage
    from bot.notifier import Notifier
    from bot.pipeline.inbox import Inbox, SharedSenderThrottle
    from bot.pipeline.processor import ConversationProcessor, SharedQuiet, WorkerProcessors
    from bot.stores import open_store
    from tests.test_processor import RecordingEngine, wait_until_processed

    stores = [open_store(store_url) for _ in range(3)]
    webs = [Inbox(store, WorkerProcessors(Notifier(), SharedQuiet(REDIS, prefix)), Notifier(), 1000,
                  throttle=SharedSenderThrottle(REDIS, prefix, burst=3, window=2.0)) for store in stores[:2]]
    engine = RecordingEngine()
    worker = ConversationProcessor(stores[2], engine, holder="worker", sweep_seconds=0.05,  # type: ignore[arg-type]
                                   quiet=SharedQuiet(REDIS, prefix))
    worker.start()
    for n in range(8):  # one sender, its messages taken by both web processes in turn
        webs[n % 2].accept(InboundMessage("web", "w-1", f"m{n}", f"message {n}"))
    wait_until_processed(stores[2])
    worker.stop()
    # The first three are answered as they come; the flood after them only once it stopped, by its last message.
    assert engine.seen == ["message 0", "message 1", "message 2", "message 7"]
    for store in stores:
        store.dispose()


def test_one_worker_reads_the_pull_channels_and_another_takes_over_when_it_dies(prefix: str) -> None:
    from switchboard.worker import PullLease

    events: list[str] = []
    now = [0.0]

    def lease(name: str) -> PullLease:
        return PullLease(REDIS, f"{prefix}:pull", lambda: events.append(f"{name} reads"),
                         lambda: events.append(f"{name} stops"), seconds=0.6, clock=lambda: now[0])

    a, b = lease("a"), lease("b")
    a.tick()
    b.tick()
    assert (a.reading, b.reading) == (True, False) and events == ["a reads"]
    now[0] += 0.3
    a.tick()  # renewed
    b.tick()  # still held
    assert (a.reading, b.reading) == (True, False)

    time.sleep(0.7)  # a dies: nobody renews its lease, which runs out in Redis
    now[0] += 1
    b.tick()
    assert b.reading and events == ["a reads", "b reads"]
    a.tick()  # a wakes from its stall: the lease is b's, so a stops reading
    assert not a.reading and events[-1] == "a stops"

    redis.Redis.from_url(REDIS).delete(f"{prefix}:pull")  # Redis forgets it (a restart without persistence)
    now[0] += 1
    b.tick()
    assert not b.reading and events[-1] == "b stops"
    now[0] += 1
    a.tick()
    assert a.reading and events[-1] == "a reads"
    a.close()  # a worker stopping frees the lease at once
    assert events[-1] == "a stops"
    now[0] += 1
    b.tick()
    assert b.reading
    b.close()


def test_a_worker_that_cannot_start_reading_frees_the_lease_for_another(prefix: str) -> None:
    from switchboard.worker import PullLease

    events: list[str] = []

    def unreachable() -> None:
        events.append("a tries")
        raise ConnectionError("api.telegram.org cannot be reached")

    now = [0.0]
    a = PullLease(REDIS, f"{prefix}:pull", unreachable, lambda: events.append("a stops"), seconds=5,
                  clock=lambda: now[0])
    b = PullLease(REDIS, f"{prefix}:pull", lambda: events.append("b reads"), lambda: events.append("b stops"),
                  seconds=5)
    a.tick()
    assert not a.reading and events == ["a tries", "a stops"]  # what had started is stopped again
    b.tick()
    assert b.reading and events[-1] == "b reads"  # at once, not after the lease ran out
    b.close()
    now[0] += 2
    a.tick()
    assert events[-1] == "b stops"  # a waits a lease's length before it tries again, not a second
    now[0] += 4
    a.tick()
    assert events[-2:] == ["a tries", "a stops"]


def test_a_lease_too_short_to_renew_is_refused() -> None:
    from switchboard.app import check_settings
    from switchboard.settings import Settings

    with pytest.raises(SwitchboardError, match=r"SWITCHBOARD_PULL_LEASE_SECONDS is 1; .* at least 2"):
        check_settings(Settings(pull_lease_seconds=1))


def article(article_id: str, title: str, body: str) -> str:
    return f"---\nid: {article_id}\ntitle: {title}\nurl: https://help.example/{article_id}\n---\n## {title}\n{body}\n"


def test_a_publish_in_one_process_is_live_in_another_at_once_even_when_its_view_of_the_file_is_stale(
        tmp_path: Path, encoder: Any, prefix: str, notifiers: Callable[..., SharedNotifier],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from kb_index.encoder import DEFAULT_MODEL
    from kb_index.retriever import KB_PUBLISHED, HybridRetriever, SnapshotWatcher
    from kb_index.snapshot import build_snapshot, pointer_stamp

    kb, index = tmp_path / "kb", tmp_path / "index"
    kb.mkdir()
    (kb / "returns.md").write_text(article("returns", "Returns", "Return anything within 30 days."), encoding="utf-8")
    build_snapshot(kb, index, encoder, model=DEFAULT_MODEL)
    publisher, other = notifiers(REDIS, f"{prefix}:changes"), notifiers(REDIS, f"{prefix}:changes")
    retriever = HybridRetriever(index, encoder)
    watch = SnapshotWatcher(other, retriever)
    first = retriever.snapshot.path
    # On a network file system another host may see the pointer file's old fingerprint for up to a minute.
    stale = pointer_stamp(index)
    monkeypatch.setattr("kb_index.retriever.pointer_stamp", lambda index_dir: stale)
    (kb / "dogs.md").write_text(article("dogs", "Dogs in our shops", "Dogs on a lead are welcome in every shop."),
                                encoding="utf-8")
    build_snapshot(kb, index, encoder, model=DEFAULT_MODEL)
    retriever.search("can i bring my dog", k=1)
    time.sleep(0.5)
    assert retriever.snapshot.path == first  # searches did not notice the switch

    publisher.publish(KB_PUBLISHED)  # what a publish, a rollback or `switchboard kb build` announces
    wait_for(lambda: retriever.snapshot.path != first)
    assert retriever.search("can i bring my dog", k=1)[0].article_id == "dogs"
    watch.stop()


def test_kb_build_announces_the_new_snapshot_to_a_deployments_processes(
        tmp_path: Path, prefix: str, notifiers: Callable[..., SharedNotifier],
        with_models: Callable[..., Path]) -> None:
    from click.testing import CliRunner

    from kb_index.retriever import KB_PUBLISHED
    from switchboard.cli import main

    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "returns.md").write_text(article("returns", "Returns", "Return anything within 30 days."), encoding="utf-8")
    listening = notifiers(REDIS, f"{prefix}:changes")
    before = listening.version(KB_PUBLISHED)
    env = {"SWITCHBOARD_KB_DIR": str(kb), "SWITCHBOARD_INDEX_DIR": str(with_models(tmp_path / "index")),
           "SWITCHBOARD_VAR_DIR": str(tmp_path / "var"), "SWITCHBOARD_LANGUAGES": "en",
           "SWITCHBOARD_REDIS_URL": REDIS, "SWITCHBOARD_REDIS_PREFIX": prefix}
    result = CliRunner().invoke(main, ["kb", "build"], env=env)
    assert result.exit_code == 0, result.output
    wait_for(lambda: listening.version(KB_PUBLISHED) != before)
    unreachable = CliRunner().invoke(main, ["kb", "build"], env={**env, "SWITCHBOARD_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert unreachable.exit_code == 0 and "could not be announced" in unreachable.output
