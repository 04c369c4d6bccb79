"""The fault test of a deployment on PostgreSQL and Redis: two `switchboard worker` processes and a
`switchboard web` of two processes. 2,000 messages from 200 conversations arrive over HTTP, some of
them twice; one worker is killed (SIGKILL) mid-run and Redis (with its append-only file) restarts once.
Every accepted message gets exactly one turn's reply, in order within its conversation."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import requests

from bot.messages import Author, EventKind
from bot.stores import open_store
from bot.stores.conversations import OPEN_STATUSES
from tests.servers import ROOT, free_port, wait_for, wait_until_up

CONVERSATIONS = 200
MESSAGES = 10  # a conversation's messages, sent one after another
REPEATS = 0.05  # the share of messages sent a second time with the same message id


class Redis:
    """A redis-server of the test's own, appending every write to its file, that can be killed and restarted."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self._process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--appendonly", "yes", "--appendfsync", "everysec",
             "--save", "", "--dir", str(self._directory)], stdout=subprocess.DEVNULL)
        wait_for(self._pings)

    def _pings(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        assert self._process is not None
        self._process.kill()
        self._process.wait()


@pytest.fixture
def deployment(tmp_path: Path, index_dir: Path, postgres_database: str) -> Iterator[dict[str, object]]:
    schema = f"scale_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_database, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    store_url = f"{postgres_database}?options=-csearch_path%3D{schema}"
    redis = Redis(tmp_path)
    env = {
        **os.environ,
        "SWITCHBOARD_STORE_URL": store_url,
        "SWITCHBOARD_REDIS_URL": redis.url,
        "SWITCHBOARD_VAR_DIR": str(tmp_path / "var"),
        "SWITCHBOARD_INDEX_DIR": str(index_dir),
        "SWITCHBOARD_KB_DIR": str(ROOT / "data" / "kb"),
        "SWITCHBOARD_NLU_PATH": str(ROOT / "data" / "nlu.yml"),
        "SWITCHBOARD_DOMAIN_PATH": str(ROOT / "data" / "domain.yml"),
        "SWITCHBOARD_LANGUAGES": "en",
        "SWITCHBOARD_SENDER_BURST": "1000",
        "SWITCHBOARD_SYNC_REPLY_TIMEOUT": "5",
        "SWITCHBOARD_SERVER_THREADS": "64",
    }
    logs: list[Path] = []
    processes: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"{args[0]}-{len(logs)}.log"
        logs.append(log)
        processes.append(subprocess.Popen([sys.executable, "-m", "switchboard", *args], env=env, cwd=tmp_path,
                                          stdout=log.open("w"), stderr=subprocess.STDOUT))
        return processes[-1]

    def output() -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)

    # The intent classifiers are trained once here (or found in the index's cache), not by four processes.
    subprocess.run([sys.executable, "-m", "switchboard", "train"], env=env, cwd=tmp_path, check=True,
                   stdout=subprocess.DEVNULL)
    port = free_port()
    web = start("web", "--port", str(port), "--processes", "2")
    base = f"http://127.0.0.1:{port}"
    wait_until_up(f"{base}/healthz", web, 180, output)
    workers = [start("worker"), start("worker")]
    wait_for(lambda: all("worker ready" in log.read_text() for log in logs[1:]), timeout=180)
    yield {"base": base, "workers": workers, "redis": redis, "store_url": store_url, "output": output}
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    redis.kill()


def test_every_message_is_answered_once_and_in_order_through_a_killed_worker_and_a_redis_restart(
        deployment: dict[str, object]) -> None:
    base = str(deployment["base"])
    workers: list[subprocess.Popen[bytes]] = deployment["workers"]  # type: ignore[assignment]
    redis: Redis = deployment["redis"]  # type: ignore[assignment]
    rng = random.Random(7)
    sent = [0]
    lock = threading.Lock()
    failures: list[str] = []

    def conversation(n: int) -> None:
        session = requests.Session()
        for i in range(MESSAGES):
            body = {"sender": f"load-{n}", "message": "/thanks", "message_id": f"load-{n}-{i}"}
            for _ in range(2 if rng.random() < REPEATS else 1):
                try:
                    answer = session.post(f"{base}/webhooks/rest/webhook", json=body, timeout=60)
                    if answer.status_code != 200:
                        failures.append(f"{answer.status_code} {answer.text[:200]}")
                except requests.RequestException as exc:
                    failures.append(str(exc))
            with lock:
                sent[0] += 1

    with ThreadPoolExecutor(max_workers=16) as pool:
        done = [pool.submit(conversation, n) for n in range(CONVERSATIONS)]
        wait_for(lambda: sent[0] >= 600, timeout=600)
        workers[0].kill()  # SIGKILL: its leases run out and the other worker takes its conversations up
        wait_for(lambda: sent[0] >= 1200, timeout=600)
        redis.kill()
        time.sleep(1)
        redis.start()
        for future in done:
            future.result()
    assert not failures, failures[:5]

    store = open_store(str(deployment["store_url"]))
    try:
        wait_for(lambda: not store.conversations_with_pending(), timeout=120)
        by_sender = {c.last_external_id: c.conversation_id for c in store.list_conversations(OPEN_STATUSES)}
        for n in range(CONVERSATIONS):
            conversation = by_sender[f"load-{n}"]
            messages = [e.seq for e in store.transcript(conversation) if e.kind == EventKind.MESSAGE_IN]
            assert len(messages) == MESSAGES, f"load-{n}: {len(messages)} messages stored"
            # One reply a message (a second worker's turn would add another), in the messages' order.
            replies = [entry.in_reply_to for entry in store.outbox_of(conversation) if entry.author == Author.BOT]
            assert replies == messages, f"load-{n}: replies to {replies}, messages {messages}"
    finally:
        store.dispose()
