"""The fault test of a deployment on PostgreSQL and Redis: two `switchboard worker` processes and a
`switchboard web` of two processes. 2,000 messages from 200 conversations arrive over HTTP, some of
them twice; one worker is killed (SIGKILL) mid-run and Redis (with its append-only file) restarts once.
Every accepted message gets exactly one turn's reply, in order within its conversation."""

from __future__ import annotations

import random
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
from tests.servers import Deployment, running_deployment, wait_for

CONVERSATIONS = 200
MESSAGES = 10  # a conversation's messages, sent one after another
REPEATS = 0.05  # the share of messages sent a second time with the same message id


@pytest.fixture
def deployment(tmp_path: Path, index_dir: Path, postgres_database: str) -> Iterator[Deployment]:
    schema = f"scale_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_database, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    with running_deployment(tmp_path, index_dir, f"{postgres_database}?options=-csearch_path%3D{schema}",
                            SWITCHBOARD_SENDER_BURST="1000", SWITCHBOARD_SYNC_REPLY_TIMEOUT="5") as deployment:
        yield deployment


def test_every_message_is_answered_once_and_in_order_through_a_killed_worker_and_a_redis_restart(
        deployment: Deployment) -> None:
    base, workers, redis = deployment.base, deployment.workers, deployment.redis
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

    store = open_store(deployment.store_url)
    try:
        wait_for(lambda: not store.conversations_with_pending(), timeout=120)
        by_sender = {c.last_external_id: c.conversation_id for c in store.list_conversations(OPEN_STATUSES)}
        for n in range(CONVERSATIONS):
            conversation_id = by_sender[f"load-{n}"]
            messages = [e.seq for e in store.transcript(conversation_id) if e.kind == EventKind.MESSAGE_IN]
            assert len(messages) == MESSAGES, f"load-{n}: {len(messages)} messages stored"
            # One reply a message (a second worker's turn would add another), in the messages' order.
            replies = [entry.in_reply_to for entry in store.outbox_of(conversation_id) if entry.author == Author.BOT]
            assert replies == messages, f"load-{n}: replies to {replies}, messages {messages}"
    finally:
        store.dispose()


def test_one_worker_polls_telegram_and_another_takes_over_when_it_is_killed(
        tmp_path: Path, index_dir: Path, postgres_database: str) -> None:
    from tests.telegram_stub import TOKEN, TelegramStub
    from tests.test_telegram import message

    schema = f"pull_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_database, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    stub = TelegramStub()
    stub.updates = [message(40, text="hello")]
    try:
        store_url = f"{postgres_database}?options=-csearch_path%3D{schema}"
        with running_deployment(tmp_path, index_dir, store_url, workers=2, web_processes=1,
                                SWITCHBOARD_TELEGRAM_TOKEN=TOKEN, SWITCHBOARD_TELEGRAM_API_URL=stub.url,
                                SWITCHBOARD_TELEGRAM_MODE="polling",
                                SWITCHBOARD_PULL_LEASE_SECONDS="2") as deployment:
            wait_for(lambda: len(stub.sent) == 1, timeout=60)
            # Killed between Telegram's answer and the store's record of it, the reader would leave its reply
            # `sending` (the provider may have it), which holds the chat's next reply for STALE_SEND.
            with psycopg.connect(store_url, autocommit=True) as db:
                wait_for(lambda: db.execute("SELECT count(*) FROM outbox WHERE status = 'sent'").fetchone() == (1,))
            logs = [tmp_path / f"worker-{n}.log" for n in (1, 2)]
            # Each worker's startup objects are out of full garbage collections' way (as a web process's are).
            assert all("startup objects set aside from garbage collection" in log.read_text() for log in logs)
            readers = [n for n, log in enumerate(logs) if "reads the pull channels" in log.read_text()]
            assert len(readers) == 1, "exactly one worker polls Telegram"
            reader = deployment.workers[readers[0]]
            reader.kill()
            reader.wait()
            stub.updates.append(message(41, text="how much is shipping"))
            wait_for(lambda: len(stub.sent) == 2, timeout=60)
            other = logs[1 - readers[0]]
            assert "reads the pull channels" in other.read_text()
            time.sleep(2)  # the new reader's polls return both updates until confirmed: neither is answered again
            assert len(stub.sent) == 2
            assert stub.sent[0]["text"].startswith("Hi Anna!") and "4.95" in stub.sent[1]["text"]
    finally:
        stub.close()
