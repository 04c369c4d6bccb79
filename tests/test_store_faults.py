"""Store faults: a database that is read-only for a few seconds, or a full disk. Writes answer 503 (so
providers retry) and `/healthz` says so while it lasts; afterwards every thread writes again and a turn
that failed to commit is answered without the customer writing again. No restart."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask

from bot.errors import Unavailable
from bot.messages import EventKind, InboundMessage
from bot.pipeline.processor import ConversationProcessor
from bot.ports import Encoder
from bot.stores.conversations import ConversationStore
from kb_index.retriever import HybridRetriever
from switchboard.app import build_engine
from switchboard.cli import main
from tests.conftest import test_settings
from tests.servers import wait_for

needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("chattr") is None,
                                reason="needs root and chattr (immutable files) or mount (a small tmpfs)")
# The app's store made read-only by its files: a suite run on PostgreSQL (SWITCHBOARD_TEST_DATABASE) has none.
on_sqlite = pytest.mark.skipif(os.environ.get("SWITCHBOARD_TEST_DATABASE", "sqlite") != "sqlite",
                               reason="makes the app's SQLite files read-only")


def database_files(path: Path) -> list[Path]:
    # Not the -shm file: SQLite maps it into memory, and a mapping it cannot extend ends the process
    # with SIGBUS, which no program can recover from.
    return [p for p in (path, Path(f"{path}-wal")) if p.exists()]


@pytest.fixture
def immutable() -> Iterator[Callable[[list[Path], bool], None]]:
    """chattr +i / -i on files, always undone at the end."""
    touched: list[Path] = []

    def set_immutable(paths: list[Path], on: bool) -> None:
        subprocess.run(["chattr", "+i" if on else "-i", *map(str, paths)], check=True)
        touched.extend(paths)

    yield set_immutable
    subprocess.run(["chattr", "-i", *map(str, touched)], check=False)


def new_session(app: Flask) -> int:
    return app.test_client().post("/api/web/sessions").status_code


@needs_root
@on_sqlite
def test_a_database_read_only_for_a_while_answers_503_then_every_thread_writes_again(
        make_app: Callable[..., Flask], tmp_path: Path, immutable: Callable[[list[Path], bool], None]) -> None:
    app = make_app()
    app.config["TESTING"] = False  # a crash is a 500 here, as a client would see it
    client = app.test_client()
    assert new_session(app) == 201
    files = database_files(tmp_path / "switchboard.db")
    immutable(files, True)
    # Threads that first touch the store now open their connections while it cannot be written.
    with ThreadPoolExecutor(8) as pool:
        during = list(pool.map(lambda _: new_session(app), range(16)))
        health = client.get("/healthz")
        immutable(files, False)
        after = list(pool.map(lambda _: new_session(app), range(32)))
    assert set(during) == {503}
    assert health.status_code == 503 and "cannot be written" in health.get_json()["store"]
    assert set(after) == {201}
    assert client.get("/healthz").status_code == 200


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MB tmpfs: a disk that fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and mount for a small tmpfs")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill the disk to the last byte; return the file that holds the space."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def message(text: str, external_id: str = "w-disk") -> InboundMessage:
    return InboundMessage(channel="web", external_id=external_id, provider_message_id=uuid.uuid4().hex, text=text)


def test_a_full_disk_answers_503_and_a_turn_that_failed_to_commit_is_answered_once_space_returns(
        small_disk: Path, index_dir: Path, encoder: Encoder, tmp_path: Path) -> None:
    store = ConversationStore(small_disk / "switchboard.db")
    settings = test_settings(tmp_path, index_dir)
    engine = build_engine(settings, encoder, HybridRetriever(index_dir, encoder), store)
    processor = ConversationProcessor(store, engine, retry_delays=(0.2, 0.5, 1.0))
    try:
        accepted = store.accept(message("how much is shipping"))
        filler = fill(small_disk)
        with pytest.raises(Unavailable, match="cannot be written"):
            store.accept(message("and to Austria?", "w-other"))
        with pytest.raises(Unavailable):
            store.check_writable()
        processor.notify(accepted.conversation_id)  # the turn runs, and cannot commit
        wait_for(lambda: processor.retrying(accepted.conversation_id))
        assert store.next_pending(accepted.conversation_id) is not None
        filler.unlink()
        wait_for(lambda: store.next_pending(accepted.conversation_id) is None)
        replies = [e for e in store.transcript(accepted.conversation_id) if e.kind == EventKind.MESSAGE_OUT]
        assert len(replies) == 1 and "shipping" in (replies[0].text or "").lower()
        store.check_writable()
    finally:
        processor.stop()
        store.close()


@on_sqlite
def test_webhooks_answer_503_while_the_store_cannot_write(make_app: Callable[..., Flask], tmp_path: Path,
                                                          immutable: Any) -> None:
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("needs root and chattr")
    app = make_app(twilio_auth_token="token", telegram_webhook_secret="secret")
    app.config["TESTING"] = False
    web = app.test_client()
    token = web.post("/api/web/sessions").get_json()["token"]
    immutable(database_files(tmp_path / "switchboard.db"), True)
    with ThreadPoolExecutor(1) as pool:  # a thread whose connection opens now
        response = pool.submit(lambda: app.test_client().post(
            "/api/web/messages", json={"text": "hello", "client_message_id": "1"},
            headers={"Authorization": f"Bearer {token}"})).result()
        telegram = pool.submit(lambda: app.test_client().post(
            "/webhooks/telegram", headers={"X-Telegram-Bot-Api-Secret-Token": "secret"},
            json={"update_id": 1, "message": {"message_id": 1, "date": 1_700_000_000, "text": "hi",
                                              "chat": {"id": 5, "type": "private"}}})).result()
    assert response.status_code == 503 and response.get_json()["error"] == "unavailable"
    assert response.headers["Retry-After"] == "5"
    assert telegram.status_code == 503


@needs_root
@pytest.mark.parametrize("command", [["run", "--port", "1"], ["agents", "add", "ann@example.com"]])
def test_starting_on_a_read_only_database_says_what_to_do(tmp_path: Path, index_dir: Path, immutable: Any,
                                                         monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    database = tmp_path / "switchboard.db"
    ConversationStore(database).close()
    immutable(database_files(database), True)
    monkeypatch.setenv("SWITCHBOARD_STORE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("SWITCHBOARD_INDEX_DIR", str(index_dir))
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1, result.output
    assert "Error: the database cannot be written or read (attempt to write a readonly database)" in result.output
    assert f"writable by Switchboard's user and that the disk has space [sqlite:///{database}]" in result.output
    assert "Traceback" not in result.output
