"""Switchboard served for real: `switchboard run` on a loopback port, gunicorn, real HTTP."""

from __future__ import annotations

import gc
import os
import re
import select
import signal
import socket
import subprocess
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from bot.messages import ConversationStatus, EventKind
from bot.ports import Encoder
from bot.stores.conversations import ConversationStore
from kb_index.encoder import DEFAULT_MODEL
from kb_index.snapshot import build_snapshot, current_snapshot, load_snapshot
from switchboard.app import freeze_startup_heap
from tests.conftest import ROOT
from tests.servers import open_stream, read_until, running_server, wait_for

OPEN_STREAMS = 100


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, index_dir: Path) -> Iterator[tuple[str, str]]:
    # Every test customer connects from 127.0.0.1: no per-address limit here.
    with running_server(tmp_path_factory.mktemp("server"), index_dir,
                        SWITCHBOARD_STREAMS_PER_CLIENT=str(OPEN_STREAMS * 2)) as (base, output, _):
        yield base, output


def new_token(base: str) -> str:
    response = requests.post(f"{base}/api/web/sessions", timeout=10)
    assert response.status_code == 201
    return str(response.json()["token"])


def test_start_prints_the_urls_and_a_demo_login(server: tuple[str, str]) -> None:
    base, output = server
    assert f"{base}/console/" in output
    match = re.search(r"demo agent:\s+(\S+) / (\S+)", output)
    assert match, output
    assert "gunicorn" in output.lower()  # a production server, not Flask's development server


def test_the_demo_login_works_in_the_console(server: tuple[str, str]) -> None:
    base, output = server
    email, password = re.search(r"demo agent:\s+(\S+) / (\S+)", output).groups()  # type: ignore[union-attr]
    browser = requests.Session()
    page = browser.get(f"{base}/console/login", timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    response = browser.post(f"{base}/console/login", timeout=10,
                            data={"email": email, "password": password, "csrf_token": csrf})
    assert response.url.endswith("/console/") and "Waiting for an agent" in response.text


def test_the_serving_process_sets_its_startup_objects_aside_from_garbage_collection(server: tuple[str, str]) -> None:
    # Full collections would otherwise walk the models' and libraries' objects (0.2 s or more each).
    _, output = server
    found = re.search(r"([\d,]+) startup objects set aside from garbage collection", output)
    assert found and int(found.group(1).replace(",", "")) > 100_000, output


def test_setting_the_startup_heap_aside_frees_what_is_garbage_first() -> None:
    class Node:
        pass

    cycle = Node()
    cycle.self = cycle  # type: ignore[attr-defined]  # only a full collection frees a cycle
    gone = weakref.ref(cycle)
    del cycle
    try:
        assert freeze_startup_heap() > 0 and gc.get_freeze_count() > 0
        assert gone() is None  # collected, not kept for good
    finally:
        gc.unfreeze()


def test_answers_keep_flowing_with_many_web_chat_streams_open(server: tuple[str, str]) -> None:
    base, _ = server
    streams = [open_stream(base, new_token(base)) for _ in range(OPEN_STREAMS)]
    try:
        for sock in streams:
            assert b"200 OK" in read_until(sock, b"retry: 3000")

        token = new_token(base)
        mine = open_stream(base, token)
        read_until(mine, b"retry: 3000")
        response = requests.post(f"{base}/api/web/messages", timeout=10,
                                 headers={"Authorization": f"Bearer {token}"},
                                 json={"text": "how long does standard delivery take", "client_message_id": "1"})
        assert response.status_code == 202
        received = read_until(mine, b'"author": "bot"').decode()
        assert "2 to 4 working days" in received
        mine.close()

        rest = requests.post(f"{base}/webhooks/rest/webhook", timeout=30,
                             json={"sender": "http-tester", "message": "what payment methods do you accept"})
        assert rest.status_code == 200 and "PayPal" in rest.json()[0]["text"]

        # The streams opened first are all still being served.
        readable, _, _ = select.select(streams, [], [], 0)
        for sock in readable:
            assert sock.recv(65536) != b"", "a stream was closed by the server"
    finally:
        for sock in streams:
            sock.close()


def test_open_streams_hold_no_thread_and_beyond_the_limit_are_told_to_poll(tmp_path: Path, index_dir: Path) -> None:
    # 4 threads for requests and 40 streams: every stream is served, and requests still find a thread.
    with running_server(tmp_path, index_dir, SWITCHBOARD_SERVER_THREADS="4", SWITCHBOARD_STREAM_LIMIT="40",
                        SWITCHBOARD_STREAMS_PER_CLIENT="100", SWITCHBOARD_STREAM_HEARTBEAT="1",
                        SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET="secret") as (base, _, _):
        tokens = [new_token(base) for _ in range(44)]
        streams: list[socket.socket] = []
        try:
            # One after another, each once the previous one was answered: opened all at once, which 40 get a
            # place would depend on the order the server's threads take them.
            answers = []
            for token in tokens:
                streams.append(open_stream(base, token))
                answers.append(read_until(streams[-1], b"\r\n\r\n").split(b"\r\n", 1)[0])
            assert answers == [b"HTTP/1.1 200 OK"] * 40 + [b"HTTP/1.1 503 Service Unavailable"] * 4
            assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
            telegram = requests.post(f"{base}/webhooks/telegram", timeout=5,
                                     headers={"X-Telegram-Bot-Api-Secret-Token": "secret"},
                                     json={"update_id": 1, "message": {"message_id": 1, "date": 1_700_000_000,
                                                                       "chat": {"id": 5, "type": "private"},
                                                                       "text": "hello"}})
            assert telegram.status_code == 200
            refused = requests.get(f"{base}/api/web/stream", timeout=5, params={"token": new_token(base)})
            assert refused.status_code == 503 and "poll" in refused.json()["message"]
            # The first and the last stream served are both live: each gets its own session's answer.
            for n in (0, 39):
                sent = requests.post(f"{base}/api/web/messages", timeout=10,
                                     json={"text": "opening hours?", "client_message_id": "m1"},
                                     headers={"Authorization": f"Bearer {tokens[n]}"})
                assert sent.status_code == 202
                assert b"event: message" in read_until(streams[n], b"event: message")
        finally:
            for sock in streams:
                sock.close()
        # Closed streams give their places back once the server finds them gone.
        token = new_token(base)
        wait_for(lambda: requests.get(f"{base}/api/web/stream", params={"token": token}, stream=True,
                                      timeout=5).status_code == 200, timeout=10)


def test_synchronous_rest_requests_waiting_for_their_reply_hold_no_thread(tmp_path: Path, index_dir: Path) -> None:
    # 2 threads for requests, and 3 REST requests that each wait about 5 s for their reply: a sender past
    # their burst is answered once they stop. Meanwhile /healthz is answered, and then every request is.
    with running_server(tmp_path, index_dir, SWITCHBOARD_SERVER_THREADS="2", SWITCHBOARD_SENDER_BURST="1") \
            as (base, _, _):
        senders = [f"waiting-{n}" for n in range(3)]

        def say(sender: str, text: str) -> requests.Response:
            return requests.post(f"{base}/webhooks/rest/webhook", json={"sender": sender, "message": text},
                                 timeout=60)

        for sender in senders:
            assert say(sender, "hello").status_code == 200
        store = ConversationStore(tmp_path / "switchboard.db")
        try:
            with ThreadPoolExecutor(3) as pool:
                waiting = [pool.submit(say, sender, "what payment methods do you accept") for sender in senders]

                def stored(sender: str) -> bool:
                    conversation = store.latest_conversation_of("rest", sender)
                    return conversation is not None and sum(
                        event.kind == EventKind.MESSAGE_IN for event in store.transcript(conversation.conversation_id)
                    ) == 2

                wait_for(lambda: all(stored(sender) for sender in senders), timeout=30)
                assert requests.get(f"{base}/healthz", timeout=30).status_code == 200
                assert not any(request.done() for request in waiting)  # all three still wait for the bot
                replies = [request.result() for request in waiting]
        finally:
            store.close()
        assert all(reply.status_code == 200 and "PayPal" in reply.json()[-1]["text"] for reply in replies)


def test_a_stopping_server_ends_its_open_streams_at_once(tmp_path: Path, index_dir: Path) -> None:
    with running_server(tmp_path, index_dir) as (base, _, process):
        streams = [open_stream(base, new_token(base)) for _ in range(3)]
        for sock in streams:
            read_until(sock, b"retry: 3000")
        process.send_signal(signal.SIGTERM)
        for sock in streams:
            # The server ends each stream itself (the last chunk of a chunked body), rather than holding the
            # stop until its grace period runs out and cutting the connection.
            assert read_until(sock, b"0\r\n\r\n").endswith(b"0\r\n\r\n")
            assert sock.recv(65536) == b""
            sock.close()
        assert process.wait(timeout=30) == 0


def kill_hard(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server and its worker: no shutdown code runs, as in a power cut or an OOM kill."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    pids = [int(pid) for pid in children.read_text().split()] if children.exists() else []
    for pid in [process.pid, *pids]:
        os.kill(pid, signal.SIGKILL)
    process.wait(timeout=30)


def test_after_a_sigkill_every_acknowledged_message_is_answered_once_and_a_handoff_stays_queued(
        tmp_path: Path, index_dir: Path) -> None:
    with running_server(tmp_path, index_dir) as (base, _, process):
        token = new_token(base)
        auth = {"Authorization": f"Bearer {token}"}
        handoff = requests.post(f"{base}/api/web/messages", timeout=10, headers=auth,
                                json={"text": "I want to talk to a person", "client_message_id": "h"})
        assert handoff.status_code == 202
        wait_for(lambda: any(e["author"] == "bot" for e in requests.get(
            f"{base}/api/web/events", headers=auth, timeout=10).json()["events"]))
        others = [new_token(base) for _ in range(20)]
        for n, other in enumerate(others):  # acknowledged, and then the process dies mid-work
            assert requests.post(f"{base}/api/web/messages", timeout=10, headers={"Authorization": f"Bearer {other}"},
                                 json={"text": "how much is shipping", "client_message_id": str(n)}).status_code == 202
        kill_hard(process)
    with running_server(tmp_path, index_dir) as (base, _, _):
        def answered(session: str) -> list[dict[str, object]]:
            events = requests.get(f"{base}/api/web/events", headers={"Authorization": f"Bearer {session}"},
                                  timeout=10).json()["events"]
            return [e for e in events if e["author"] == "bot"]

        wait_for(lambda: all(answered(other) for other in others), timeout=60)
        time.sleep(1)  # time for a second answer, if one were coming
        assert all(len(answered(other)) == 1 for other in others)
        handoff_events = requests.get(f"{base}/api/web/events", headers=auth, timeout=10).json()["events"]
        assert sum(e["author"] == "bot" for e in handoff_events) == 1  # one "passing you to a colleague"
    store = ConversationStore(tmp_path / "switchboard.db")
    assert len(store.list_conversations([ConversationStatus.QUEUED])) == 1  # still waiting for an agent
    store.close()


def test_a_public_https_service_gets_no_demo_agent_and_is_told_how_to_make_an_admin(
        tmp_path: Path, index_dir: Path) -> None:
    with running_server(tmp_path, index_dir, SWITCHBOARD_PUBLIC_URL="https://support.example.com",
                        SWITCHBOARD_EMAIL_SENDER="off") as (_, output, _):
        assert "demo agent:" not in output
        assert "create an admin with `switchboard agents add EMAIL --role admin`" in output


def test_an_index_from_before_other_languages_is_rebuilt_on_start(tmp_path: Path, encoder: Encoder,
                                                                  with_models: Callable[..., Path]) -> None:
    old = tmp_path / "index"
    build_snapshot(ROOT / "data" / "kb", old, encoder, model=DEFAULT_MODEL)  # English only, as before
    with_models(old)  # the exported encoders, and the tuned intents if trained yet
    (tmp_path / "run").mkdir()
    # Labelled (404 of the sample shop's dev questions, 58 of them unanswerable): the rebuild tunes questions in
    # other languages on them.
    questions = f"{ROOT}/data/kb_eval/dev.csv,{ROOT}/data/kb_eval/lang/*/dev.csv"
    with running_server(tmp_path / "run", old, SWITCHBOARD_KB_QUESTIONS=questions) as (base, output, _):
        assert "predates answers in en,de,bg,zh,zh-TW,th; rebuilding it" in output
        live = current_snapshot(old)
        assert live is not None and load_snapshot(live).multilingual is not None
        assert load_snapshot(live).adapter is not None
        token = new_token(base)
        requests.post(f"{base}/api/web/messages", headers={"Authorization": f"Bearer {token}"},
                      json={"text": "Wie hoch sind die Versandkosten?", "client_message_id": "m1"}, timeout=30)
        replies = wait_for(lambda: [e for e in requests.get(
            f"{base}/api/web/events", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()["events"]
            if e["kind"] == "message_out"])
        assert replies[0]["text"].startswith("Der Standardversand kostet 4,95")
