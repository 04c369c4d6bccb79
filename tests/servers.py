"""Helpers for tests that start real servers on loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float, failed: Callable[[], str]) -> None:
    """Poll `url` until it answers 200; raise with `failed()`'s explanation if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(failed())
        time.sleep(0.2)


def wait_for(condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll until `condition()` is truthy and return it; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)
    return result


@contextmanager
def running_server(tmp: Path, index_dir: Path, start_timeout: float = 120, **env: str) \
        -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    """`switchboard run` on a free loopback port with a store in `tmp`; yields its URL, start-up output and
    process."""
    port = free_port()
    env = {
        **os.environ,
        "SWITCHBOARD_STORE_URL": f"sqlite:///{tmp / 'switchboard.db'}",
        "SWITCHBOARD_VAR_DIR": str(tmp / "var"),
        "SWITCHBOARD_INDEX_DIR": str(index_dir),
        "SWITCHBOARD_KB_DIR": str(ROOT / "data" / "kb"),
        "SWITCHBOARD_NLU_PATH": str(ROOT / "data" / "nlu.yml"),
        "SWITCHBOARD_DOMAIN_PATH": str(ROOT / "data" / "domain.yml"),
        **env,
    }
    log = (tmp / "server.log").open("w+")
    process = subprocess.Popen([sys.executable, "-m", "switchboard", "run", "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    base = f"http://127.0.0.1:{port}"

    def failed() -> str:
        log.seek(0)
        return f"switchboard run did not start:\n{log.read()}"

    wait_until_up(f"{base}/healthz", process, start_timeout, failed)
    log.seek(0)
    yield base, log.read(), process
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    finally:
        process.kill()
        log.close()


def open_stream(base: str, token: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=15)
    sock.sendall(f"GET /api/web/stream?token={token} HTTP/1.1\r\nHost: {host}\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())
    return sock


def read_until(sock: socket.socket, marker: bytes, limit: float = 30) -> bytes:
    data = b""
    deadline = time.monotonic() + limit
    while marker not in data:
        assert time.monotonic() < deadline, f"{marker!r} not received; got {data[-300:]!r}"
        chunk = sock.recv(65536)
        assert chunk, f"stream closed before {marker!r}"
        data += chunk
    return data
