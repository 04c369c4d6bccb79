"""Open web-chat streams: `switchboard run` holding many Server-Sent Events streams at once.

Starts the real server (gunicorn, one process) on a loopback port, opens one stream per new web
chat session, and while they are all open measures what must never starve: `/healthz`, a
Telegram webhook, and a customer's message answered on its own stream. Also the server's memory.
"""

from __future__ import annotations

import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from benchmarks.server import benchmark_server, percentile, server_rss_mb
from tests.servers import open_stream, read_until


@dataclass(frozen=True)
class StreamTimings:
    threads: int
    streams: int
    opened: int
    open_seconds: float
    healthz_ms: list[float]
    webhook_ms: list[float]
    answer_ms: list[float]
    rss_idle_mb: float
    rss_open_mb: float


def _ms(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return (time.perf_counter() - started) * 1000


def run(streams: int = 5000, threads: int = 256) -> StreamTimings:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, streams * 3)), hard))
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp, benchmark_server(
            Path(tmp), SWITCHBOARD_SERVER_THREADS=str(threads), SWITCHBOARD_STREAMS_PER_CLIENT=str(streams * 2),
            SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET="bench-secret") as (base, process):
        rss_idle = server_rss_mb(process)
        print(f"streams: opening {streams} web chat streams on {threads} server threads ...", flush=True)
        http = requests.Session()
        started = time.perf_counter()
        sockets = []
        for n in range(streams):
            token = http.post(f"{base}/api/web/sessions", timeout=30).json()["token"]
            sockets.append(open_stream(base, token))
            if (n + 1) % 1000 == 0:
                print(f"  {n + 1} opened", flush=True)
        opened = sum(b" 200 OK" in read_until(sock, b"\r\n\r\n") for sock in sockets)
        open_seconds = time.perf_counter() - started
        try:
            healthz = [_ms(lambda: http.get(f"{base}/healthz", timeout=30).raise_for_status()) for _ in range(50)]
            webhook = [_ms(lambda n=n: http.post(
                f"{base}/webhooks/telegram", timeout=30, headers={"X-Telegram-Bot-Api-Secret-Token": "bench-secret"},
                json={"update_id": n, "message": {"message_id": n, "date": 1_700_000_000, "text": "hi",
                                                  "chat": {"id": 900_000 + n, "type": "private"}}}).raise_for_status())
                       for n in range(20)]
            answers = []
            for n in range(10):
                token = http.post(f"{base}/api/web/sessions", timeout=30).json()["token"]
                mine = open_stream(base, token)
                read_until(mine, b"retry: 3000")
                begin = time.perf_counter()
                http.post(f"{base}/api/web/messages", timeout=30, headers={"Authorization": f"Bearer {token}"},
                          json={"text": "how much is shipping", "client_message_id": str(n)}).raise_for_status()
                read_until(mine, b'"author": "bot"')
                answers.append((time.perf_counter() - begin) * 1000)
                mine.close()
            rss_open = server_rss_mb(process)
        finally:
            for sock in sockets:
                sock.close()
    return StreamTimings(threads, streams, opened, open_seconds, healthz, webhook, answers, rss_idle, rss_open)


def report(t: StreamTimings) -> str:
    def row(name: str, values: list[float]) -> str:
        return (f"| {name} | {statistics.median(values):.1f} | {percentile(values, 0.99):.1f} | "
                f"{max(values):.1f} | {len(values)} |")

    return "\n".join([
        "## Open web-chat streams",
        "",
        f"`switchboard run` (gunicorn's asyncio worker, one process, {t.threads} threads for requests; streams "
        f"wait on its event loop) with {t.opened} of {t.streams} "
        f"web chat streams open (each a new session; {t.open_seconds:.1f} s to open them all), every client on "
        "loopback. While they stay open:",
        "",
        "| request | median ms | p99 ms | max ms | n |",
        "| --- | ---: | ---: | ---: | ---: |",
        row("`GET /healthz` (writes a row)", t.healthz_ms),
        row("Telegram webhook (stored, 200)", t.webhook_ms),
        row("web message -> bot answer on its stream", t.answer_ms),
        "",
        f"Server memory (RSS, all processes): {t.rss_idle_mb:.0f} MB before, {t.rss_open_mb:.0f} MB with the "
        f"streams open ({(t.rss_open_mb - t.rss_idle_mb) * 1024 / max(t.opened, 1):.0f} KB a stream).",
    ])


if __name__ == "__main__":
    print(report(run(*(int(arg) for arg in sys.argv[1:3]))))
