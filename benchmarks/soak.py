"""Soak: mixed traffic at a fixed rate against the real server, for a bounded time, on loopback.

Web chat messages (with the sessions' streams open and read), Telegram updates, signed Twilio SMS,
Rasa REST calls, agent API reads and `/healthz`, round-robin at `rate` requests a second. Every 10 s
it samples the server's memory and threads and the latency of the requests that finished in that
window. Writes docs/soak.md and the plot docs/soak.png. `make soak`; `python -m benchmarks.soak
SECONDS` for a shorter run.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests
from twilio.request_validator import RequestValidator

from benchmarks.server import benchmark_server, percentile
from tests.servers import ROOT

TWILIO_TOKEN = "soak-twilio-token"
TELEGRAM_SECRET = "soak-telegram-secret"
PUBLIC = "http://switchboard.soak"
QUESTIONS = ("how much is shipping", "do you ship to Austria", "how do I return a tent", "where is my order",
             "what payment methods do you accept", "hello", "thanks!", "can I change my delivery address")


@dataclass(frozen=True)
class Sample:
    at: float            # seconds since the start
    rss_mb: float
    threads: int
    requests: int
    errors: int
    median_ms: float
    p99_ms: float


def _proc(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _server_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [pid, *(int(c) for c in children.read_text().split())] if children.exists() else [pid]


class StreamReader:
    """Holds the web sessions' streams open and reads whatever they send, reconnecting when the server
    ends one (as EventSource does)."""

    def __init__(self, host: str, port: int, tokens: list[str]) -> None:
        self._host, self._port = host, port
        self._selector = selectors.DefaultSelector()
        self.bytes = 0
        self.reconnects = 0
        for token in tokens:
            self._connect(token)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _connect(self, token: str) -> None:
        sock = socket.create_connection((self._host, self._port), timeout=30)
        sock.sendall(f"GET /api/web/stream?token={token} HTTP/1.1\r\nHost: {self._host}\r\n\r\n".encode())
        sock.setblocking(False)
        self._selector.register(sock, selectors.EVENT_READ, token)

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.5):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                with contextlib.suppress(BlockingIOError):
                    data = sock.recv(65536)
                    self.bytes += len(data)
                    if not data:
                        self._selector.unregister(sock)
                        sock.close()
                        self.reconnects += 1
                        self._connect(key.data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]


def run(seconds: float = 600, rate: float = 10.0, window: float = 10.0, sessions: int = 50) -> list[Sample]:
    with tempfile.TemporaryDirectory(prefix="switchboard-soak-") as tmp, benchmark_server(
            Path(tmp), SWITCHBOARD_TWILIO_AUTH_TOKEN=TWILIO_TOKEN, SWITCHBOARD_PUBLIC_URL=PUBLIC,
            SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET=TELEGRAM_SECRET, SWITCHBOARD_STREAMS_PER_CLIENT="1000",
            SWITCHBOARD_REST_TOKEN="soak-rest-token") as (base, process):
        host, port = base.removeprefix("http://").split(":")
        http = requests.Session()
        tokens = [http.post(f"{base}/api/web/sessions", timeout=30).json()["token"] for _ in range(sessions)]
        streams = StreamReader(host, int(port), tokens)
        agent = _agent_token(base, tmp)
        counter = itertools.count(1)
        validator = RequestValidator(TWILIO_TOKEN)

        def web() -> requests.Response:
            n = next(counter)
            return requests.post(f"{base}/api/web/messages", timeout=30,
                                 headers={"Authorization": f"Bearer {tokens[n % sessions]}"},
                                 json={"text": QUESTIONS[n % len(QUESTIONS)], "client_message_id": str(n)})

        def telegram() -> requests.Response:
            n = next(counter)
            return requests.post(f"{base}/webhooks/telegram", timeout=30,
                                 headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET},
                                 json={"update_id": n, "message": {
                                     "message_id": n, "date": int(time.time()), "text": QUESTIONS[n % len(QUESTIONS)],
                                     "chat": {"id": 700_000 + n % sessions, "type": "private"},
                                     "from": {"id": 700_000 + n % sessions, "is_bot": False, "first_name": "Soak"}}})

        def sms() -> requests.Response:
            n = next(counter)
            form = {"MessageSid": f"SM{n:032d}", "From": f"+4915100{n % sessions:06d}", "To": "+15005550006",
                    "Body": QUESTIONS[n % len(QUESTIONS)], "NumMedia": "0"}
            path = "/webhooks/twilio/sms"
            return requests.post(f"{base}{path}", data=form, timeout=30,
                                 headers={"X-Twilio-Signature": validator.compute_signature(PUBLIC + path, form)})

        def rest() -> requests.Response:
            n = next(counter)
            return requests.post(f"{base}/webhooks/rest/webhook?token=soak-rest-token", timeout=30,
                                 json={"sender": f"rest-{n % sessions}", "message": QUESTIONS[n % len(QUESTIONS)]})

        def tickets() -> requests.Response:
            return requests.get(f"{base}/api/agent/tickets?status=all", timeout=30,
                                headers={"Authorization": f"Bearer {agent}"})

        def healthz() -> requests.Response:
            return requests.get(f"{base}/healthz", timeout=30)

        mix: list[Callable[[], requests.Response]] = [web, telegram, web, sms, rest, web, telegram, tickets, web,
                                                      healthz]
        finished: list[tuple[float, float, bool]] = []  # (when, ms, failed)
        lock = threading.Lock()

        def send(request: Callable[[], requests.Response]) -> None:
            begin = time.perf_counter()
            try:
                failed = request().status_code >= 500
            except requests.RequestException:
                failed = True
            with lock:
                finished.append((time.perf_counter(), (time.perf_counter() - begin) * 1000, failed))

        print(f"soak: {seconds:.0f} s at {rate:g} requests/s, {sessions} web chat streams open ...", flush=True)
        samples: list[Sample] = []
        start = time.perf_counter()
        next_sample = start + window
        with ThreadPoolExecutor(32) as pool:
            for n, request in enumerate(itertools.cycle(mix)):
                due = start + n / rate
                if due - start >= seconds:
                    break
                while (now := time.perf_counter()) < due:
                    time.sleep(min(due - now, 0.05))
                pool.submit(send, request)
                if now >= next_sample:
                    samples.append(_sample(process.pid, now - start, finished, lock, next_sample - window))
                    print(f"  {samples[-1]}", flush=True)
                    next_sample += window
        samples.append(_sample(process.pid, time.perf_counter() - start, finished, lock, next_sample - window))
        streams.close()
    return samples


def _agent_token(base: str, tmp: str) -> str:
    subprocess.run([sys.executable, "-m", "switchboard", "agents", "add", "soak@example.com", "--role", "admin",
                    "--password-stdin"], input=b"soak password 123\n", check=True, cwd=ROOT, capture_output=True,
                   env={**os.environ, "SWITCHBOARD_STORE_URL": f"sqlite:///{Path(tmp) / 'switchboard.db'}"})
    response = requests.post(f"{base}/api/agent/login", timeout=30,
                             json={"email": "soak@example.com", "password": "soak password 123"})
    return str(response.json()["token"])


def _sample(pid: int, at: float, finished: list[tuple[float, float, bool]], lock: threading.Lock,
            since: float) -> Sample:
    with lock:
        recent = [(ms, failed) for when, ms, failed in finished if when >= since]
    latencies = sorted(ms for ms, _ in recent) or [0.0]
    pids = _server_pids(pid)
    return Sample(round(at, 1), sum(_proc(p, "VmRSS") for p in pids) / 1024, sum(_proc(p, "Threads") for p in pids),
                  len(recent), sum(failed for _, failed in recent), statistics.median(latencies),
                  percentile(latencies, 0.99))


def write(samples: list[Sample], seconds: float, rate: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [s.at / 60 for s in samples]
    figure, (memory, latency) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    memory.plot(times, [s.rss_mb for s in samples], color="tab:blue")
    memory.set_ylabel("server RSS (MB)")
    memory.set_ylim(bottom=0)
    memory.grid(alpha=0.3)
    latency.plot(times, [s.p99_ms for s in samples], color="tab:red", label="p99")
    latency.plot(times, [s.median_ms for s in samples], color="tab:green", label="median")
    latency.set_ylabel("request latency (ms)")
    latency.set_xlabel("minutes")
    latency.set_ylim(bottom=0)
    latency.legend()
    latency.grid(alpha=0.3)
    figure.suptitle(f"Switchboard soak: {rate:g} requests/s of mixed traffic for {seconds / 60:.0f} min")
    figure.tight_layout()
    figure.savefig(ROOT / "docs" / "soak.png", dpi=100)
    errors = sum(s.errors for s in samples)
    total = sum(s.requests for s in samples)
    settled = samples[1:] or samples  # the first window warms up
    lines = [
        "# Soak",
        "",
        f"Written by `make soak`: {seconds / 60:.0f} minutes of mixed traffic at {rate:g} requests a second against "
        "`switchboard run` on loopback (web chat messages with 50 streams open and read, Telegram updates, signed "
        "Twilio SMS, Rasa REST calls that wait for the answer, agent API ticket lists, `/healthz`).",
        "",
        f"{total} requests, {errors} errors (5xx or no answer). Server memory from {settled[0].rss_mb:.0f} MB "
        f"(after the first window) to {samples[-1].rss_mb:.0f} MB; threads {min(s.threads for s in settled)} to "
        f"{max(s.threads for s in settled)}; p99 latency per window {min(s.p99_ms for s in settled):.0f} to "
        f"{max(s.p99_ms for s in settled):.0f} ms.",
        "",
        "![memory and latency every 10 s](soak.png)",
        "",
        "| s | RSS MB | threads | requests | errors | median ms | p99 ms |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(f"| {s.at:.0f} | {s.rss_mb:.0f} | {s.threads} | {s.requests} | {s.errors} | {s.median_ms:.1f} | "
          f"{s.p99_ms:.1f} |" for s in samples),
    ]
    (ROOT / "docs" / "soak.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines[:6]))


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 600.0
    rate = 10.0
    samples = run(seconds, rate)
    write(samples, seconds, rate)
    print(json.dumps({"errors": sum(s.errors for s in samples)}))


if __name__ == "__main__":
    main()
