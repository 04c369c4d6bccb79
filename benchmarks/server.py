"""`switchboard run` on a loopback port for the benchmarks that need the real server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(tmp: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The server with its store in `tmp` and the sample KB's index under var/ (built on first use)."""
    port = free_port()
    environment = {
        **os.environ,
        "SWITCHBOARD_STORE_URL": f"sqlite:///{tmp / 'switchboard.db'}",
        "SWITCHBOARD_VAR_DIR": str(tmp / "var"),
        "SWITCHBOARD_INDEX_DIR": str(ROOT / "var" / "kb_index"),
        "SWITCHBOARD_KB_DIR": str(ROOT / "data" / "kb"),
        **env,
    }
    log = (tmp / "server.log").open("w+")
    process = subprocess.Popen([sys.executable, "-m", "switchboard", "run", "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log.seek(0)
            raise RuntimeError(f"switchboard run did not start:\n{log.read()[-3000:]}")
        time.sleep(0.5)
    try:
        yield base, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            process.kill()
            log.close()


def server_rss_mb(process: subprocess.Popen[bytes]) -> float:
    """Resident memory of the server and its worker processes, in MB."""
    pids = [process.pid]
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    if children.exists():
        pids += [int(pid) for pid in children.read_text().split()]
    total_kb = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024
