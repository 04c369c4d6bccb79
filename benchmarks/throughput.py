"""Messages a second through HTTP, embedded and scaled out.

Customers' questions (the KB dev set's, with small talk) are sent to the Rasa REST channel, which
answers synchronously: each request waits for its reply, so a client sends its next message once
the last one is answered. At 1, 8 and 32 concurrent clients, each its own customer, on:

- `switchboard run` on SQLite (the embedded default: one process);
- `switchboard web` (2 processes) with 1 and with 2 `switchboard worker`s, on PostgreSQL and Redis.

Everything runs on this machine's cores, load generator included; its clients speak HTTP/1.1 through the
standard library's `http.client` over one kept-alive connection each, which costs the shared cores far less a
request than `requests` did (docs/performance.md).
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from benchmarks.server import benchmark_server, percentile
from tests.servers import ROOT, running_deployment

CLIENTS = (1, 8, 32)
MESSAGES = {1: 150, 8: 480, 32: 640}  # per run, spread over the clients
POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
SMALL_TALK = ("hi", "thanks", "ok", "are you a bot?", "bye")


@dataclass(frozen=True)
class Run:
    setup: str
    clients: int
    messages: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    busy_seconds: float    # every core's CPU time spent over the run, whoever spent it
    client_seconds: float  # of which the load generator's (this process)
    idle: float            # the share of the cores' time nobody used

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def server_cpu_ms(self) -> float:
        """CPU a message on the serving side: the server's processes and, scaled out, PostgreSQL and Redis."""
        return (self.busy_seconds - self.client_seconds) * 1000 / self.messages

    @property
    def client_cpu_ms(self) -> float:
        return self.client_seconds * 1000 / self.messages


def cpu_times() -> tuple[float, float]:
    """Seconds of the machine's cores since boot: busy (any process, the kernel's own work included), idle."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle, waiting for I/O
    return (sum(fields) - idle) / ticks, idle / ticks


def questions() -> list[str]:
    """The KB dev set's questions, every fourth message small talk instead."""
    with (ROOT / "data" / "kb_eval" / "dev.csv").open(encoding="utf-8") as file:
        asked = [row["question"] for row in csv.DictReader(file)]
    return [SMALL_TALK[i % len(SMALL_TALK)] if i % 4 == 3 else text for i, text in enumerate(asked)]


class Client:
    """One customer's kept-alive HTTP/1.1 connection to the Rasa REST channel."""

    def __init__(self, base: str) -> None:
        address = urlsplit(base)
        self._host, self._port = address.hostname or "127.0.0.1", address.port or 80
        self._connection = http.client.HTTPConnection(self._host, self._port, timeout=60)

    def say(self, sender: str, text: str) -> bool:
        """Send one message and read the bot's replies; whether they came with a 200."""
        body = json.dumps({"sender": sender, "message": text}).encode()
        try:
            self._connection.request("POST", "/webhooks/rest/webhook", body,
                                     {"Content-Type": "application/json"})
            response = self._connection.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            self.close()  # the next message opens a new connection
            self._connection = http.client.HTTPConnection(self._host, self._port, timeout=60)
            return False

    def close(self) -> None:
        self._connection.close()


def load(base: str, clients: int, messages: int, texts: list[str], setup: str) -> Run:
    """`clients` customers, each sending its share of `messages` one after another."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    run_id = uuid.uuid4().hex[:8]

    def customer(n: int) -> None:
        client = Client(base)
        for i in range(messages // clients):
            started = time.perf_counter()
            ok = client.say(f"bench-{run_id}-{n}", texts[(n * 7 + i) % len(texts)])
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                errors[0] += not ok
        client.close()

    # Warm up: models, connections and caches of every process.
    def warm_up() -> None:
        client = Client(base)
        for text in texts[:5]:
            client.say(f"warm-{uuid.uuid4().hex}", text)
        client.close()

    warm = [threading.Thread(target=warm_up) for _ in range(4)]
    for thread in warm:
        thread.start()
    for thread in warm:
        thread.join()
    threads = [threading.Thread(target=customer, args=(n,)) for n in range(clients)]
    (busy, idle), client = cpu_times(), time.process_time()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    client = time.process_time() - client
    busy_after, idle_after = cpu_times()
    busy, idle = busy_after - busy, idle_after - idle
    return Run(setup, clients, len(latencies), seconds, latencies, errors[0], busy, client, idle / (busy + idle))


def measure(setup: str, server: AbstractContextManager[str], texts: list[str]) -> list[Run]:
    runs = []
    with server as base:
        for clients in CLIENTS:
            run = load(base, clients, MESSAGES[clients], texts, setup)
            print(f"  {setup}, {clients} clients: {run.rate:.0f} messages/s, p50 "
                  f"{statistics.median(run.latencies_ms):.0f} ms, p99 {percentile(run.latencies_ms, 0.99):.0f} ms, "
                  f"server CPU {run.server_cpu_ms:.1f} ms a message, cores {run.idle:.0%} idle", flush=True)
            runs.append(run)
    return runs


@contextmanager
def embedded(folder: Path, **env: str) -> Iterator[str]:
    folder.mkdir()
    with benchmark_server(folder, **env) as (base, _):
        yield base


@contextmanager
def scaled_out(folder: Path, store_url: str, workers: int, **env: str) -> Iterator[str]:
    folder.mkdir()
    with running_deployment(folder, ROOT / "var" / "kb_index", store_url, workers=workers, web_processes=2,
                            **env) as deployment:
        yield deployment.base


def run() -> list[Run]:
    texts = questions()
    env = {"SWITCHBOARD_SENDER_BURST": "100000", "SWITCHBOARD_LANGUAGES": "en"}
    database = f"switchboard_bench_{uuid.uuid4().hex[:8]}"
    url = POSTGRES.rsplit("/", 1)[0] + f"/{database}"
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp:
        runs += measure("embedded SQLite, `switchboard run`", embedded(Path(tmp) / "embedded", **env), texts)
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{database}"')
        try:
            for workers in (1, 2):
                with psycopg.connect(url, autocommit=True) as admin:
                    admin.execute(f'CREATE SCHEMA "bench_{workers}"')
                store_url = f"{url}?options=-csearch_path%3Dbench_{workers}"
                deployment = scaled_out(Path(tmp) / f"workers-{workers}", store_url, workers, **env)
                runs += measure(f"PostgreSQL + Redis, web (2 processes) + {workers} worker{'s' * (workers > 1)}",
                                deployment, texts)
        finally:
            with psycopg.connect(POSTGRES, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
    return runs


def report(runs: list[Run]) -> str:
    lines = [
        "## Throughput through HTTP",
        "",
        "The Rasa REST channel, synchronous (each request waits for its reply; a client sends its next message "
        "when answered), the KB dev set's questions mixed with small talk, each client its own customer. "
        f"The load generator runs on the same {os.cpu_count()} cores. Server CPU: the cores' busy time over the run "
        "less the load generator's, a message (the server's processes and, scaled out, PostgreSQL and Redis); "
        "idle: the cores' time nobody used. `benchmarks/throughput.py`.",
        "",
        "| setup | clients | messages/s | p50 ms | p99 ms | errors | server CPU ms | client CPU ms | idle |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        lines.append(f"| {run.setup} | {run.clients} | {run.rate:.0f} | {statistics.median(run.latencies_ms):.0f} | "
                     f"{percentile(run.latencies_ms, 0.99):.0f} | {run.errors} | {run.server_cpu_ms:.1f} | "
                     f"{run.client_cpu_ms:.1f} | {run.idle:.0%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
