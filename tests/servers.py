"""Helpers for tests that start real servers on loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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


class RedisServer:
    """A redis-server of its own on a free port, appending every write to its file in `directory`; it can be
    killed and started again on the same port and file."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self._process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "yes",
             "--appendfsync", "everysec", "--save", "", "--dir", str(self._directory)], stdout=subprocess.DEVNULL)
        wait_for(self._pings)

    def _pings(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


@dataclass
class Deployment:
    base: str  # the web processes' URL
    store_url: str
    redis: RedisServer
    web: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]


@contextmanager
def running_deployment(tmp: Path, index_dir: Path, store_url: str, workers: int = 2, web_processes: int = 2,
                       worker_args: Sequence[str] = (), **env: str) -> Iterator[Deployment]:
    """`switchboard web` with `web_processes` processes and `workers` `switchboard worker`s (given `worker_args`)
    on `store_url`, with a Redis of their own; English only (the multilingual model is not loaded). Stopped with
    SIGTERM at the end."""
    redis = RedisServer(tmp)
    env = {
        **os.environ,
        "SWITCHBOARD_STORE_URL": store_url,
        "SWITCHBOARD_REDIS_URL": redis.url,
        "SWITCHBOARD_VAR_DIR": str(tmp / "var"),
        "SWITCHBOARD_INDEX_DIR": str(index_dir),
        "SWITCHBOARD_KB_DIR": str(ROOT / "data" / "kb"),
        "SWITCHBOARD_NLU_PATH": str(ROOT / "data" / "nlu.yml"),
        "SWITCHBOARD_DOMAIN_PATH": str(ROOT / "data" / "domain.yml"),
        "SWITCHBOARD_LANGUAGES": "en",
        "SWITCHBOARD_SERVER_THREADS": "64",
        **env,
    }
    logs: list[Path] = []
    processes: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        log = tmp / f"{args[0]}-{len(logs)}.log"
        logs.append(log)
        processes.append(subprocess.Popen([sys.executable, "-m", "switchboard", *args], env=env, cwd=tmp,
                                          stdout=log.open("w"), stderr=subprocess.STDOUT))
        return processes[-1]

    def output() -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)

    try:
        # The intent classifiers are trained once here (or found in the index's cache), not by every process.
        subprocess.run([sys.executable, "-m", "switchboard", "train"], env=env, cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        port = free_port()
        web = start("web", "--port", str(port), "--processes", str(web_processes))
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/healthz", web, 300, output)
        started = [start("worker", *worker_args) for _ in range(workers)]
        try:
            wait_for(lambda: all("worker ready" in log.read_text() for log in logs[1:]), timeout=300)
        except AssertionError as exc:
            raise AssertionError(f"the workers did not start:\n{output()}") from exc
        yield Deployment(base, store_url, redis, web, started)
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        redis.kill()
