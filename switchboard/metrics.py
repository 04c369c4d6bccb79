"""`/metrics`: what Switchboard does, in Prometheus's text format (prometheus-client).

Counters and the reply-latency histogram are kept as things happen (`PrometheusMeter`, handed to the
inbox, the processor and the delivery worker). The queue is read from the store at each scrape, so it
is the same whichever process answers.

Several processes on one host add up their counts in one directory (prometheus-client's multiprocess
mode): `switchboard web --processes N` gives its processes a fresh one (`count_across_processes`), so a
scrape of any of them reports them all; other process managers set `PROMETHEUS_MULTIPROC_DIR` to an empty
directory before the processes start, as prometheus-client documents. A `switchboard worker` serves its own
counts with `--metrics-port` (`MetricsServer`): Prometheus scrapes every web server and every worker, and
adds them up.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client import values as prometheus_values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.errors import SwitchboardError
from bot.messages import EventKind, utcnow
from bot.outcome import Outcome
from switchboard.settings import metrics_multiprocess_dir

log = logging.getLogger(__name__)

# Seconds from a message's arrival to its replies' commit: the bot answers in milliseconds, a turn that
# waits for an action server or a busy processor in seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class QueueStore(Protocol):
    def queue_length(self) -> int: ...

    def queue_waiting_since(self) -> datetime | None: ...


class PrometheusMeter:
    """Counts messages, turns, replies, handoffs, KB decisions and deliveries (see bot.ports.Meter)."""

    def __init__(self) -> None:
        # A registry of its own: several apps in one process (the tests) each count their own.
        self.registry = CollectorRegistry()
        self.messages = Counter("switchboard_messages_received", "Customer messages stored (repeats not counted)",
                                ["channel"], registry=self.registry)
        self.replies = Counter("switchboard_bot_replies", "Replies the bot's turns stored", ["channel"],
                               registry=self.registry)
        self.handoffs = Counter("switchboard_handoffs", "Conversations handed to a person, by reason", ["reason"],
                                registry=self.registry)
        self.kb = Counter("switchboard_kb_decisions", "Knowledge-base decisions: answer, choices or decline",
                          ["decision", "encoder"], registry=self.registry)
        self.latency = Histogram("switchboard_reply_seconds", "From a message's arrival to its turn's commit",
                                 ["channel"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.deliveries = Counter("switchboard_deliveries", "Sends of replies on push channels: sent, retry, failed",
                                  ["channel", "result"], registry=self.registry)

    def message_received(self, channel: str) -> None:
        self.messages.labels(channel).inc()

    def turn_done(self, channel: str, outcome: Outcome, waited: float | None) -> None:
        if outcome.replies:
            self.replies.labels(channel).inc(len(outcome.replies))
        if outcome.handoff_reason:
            self.handoffs.labels(outcome.handoff_reason).inc()
        for kind, data in outcome.events:
            if kind == EventKind.KB_ANSWER and data.get("decision"):
                self.kb.labels(data["decision"], data.get("encoder", "english")).inc()
        if waited is not None:
            self.latency.labels(channel).observe(max(waited, 0.0))

    def delivery(self, channel: str, result: str) -> None:
        self.deliveries.labels(channel, result).inc()


class QueueCollector(Collector):
    """The conversations waiting for an agent, read from the store at each scrape."""

    def __init__(self, store: QueueStore) -> None:
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("switchboard_queue_conversations", "Conversations waiting for an agent",
                                value=self._store.queue_length())
        since = self._store.queue_waiting_since()
        yield GaugeMetricFamily("switchboard_queue_oldest_wait_seconds",
                                "How long the conversation waiting longest has waited (0: none waits)",
                                value=max((utcnow() - since).total_seconds(), 0.0) if since else 0.0)


def exposition(meter: PrometheusMeter, store: QueueStore, multiprocess_dir: str | None = None) -> bytes:
    """Every metric in the text format: this process's counts, or those of every process writing to
    `multiprocess_dir` (PROMETHEUS_MULTIPROC_DIR)."""
    registry = CollectorRegistry()
    if multiprocess_dir:
        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)
    else:
        registry.register(_Counts(meter.registry))
    registry.register(QueueCollector(store))
    return generate_latest(registry)


class _Counts(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()


def scrape(token: str, meter: PrometheusMeter, store: QueueStore) -> Response:
    """The answer to a scrape of /metrics (`token` set): the counts for the bearer of the token, 401 for others.
    The counts tell outsiders how busy the business is, so they are never open."""
    expected = f"Bearer {token}".encode()
    if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
        return Response("metrics need Authorization: Bearer <SWITCHBOARD_METRICS_TOKEN>\n", status=401,
                        mimetype="text/plain", headers={"WWW-Authenticate": "Bearer"})
    return Response(exposition(meter, store, metrics_multiprocess_dir()), mimetype=CONTENT_TYPE_LATEST)


def count_across_processes(directory: Path) -> None:
    """From now on this process, and every process it forks, keeps its counts in `directory`, emptied first,
    so that a scrape of any of them adds them all up. prometheus-client picks its multiprocess mode when it
    is imported, from PROMETHEUS_MULTIPROC_DIR; this sets the variable and has it pick again. Call it before
    any meter is made (`switchboard web` does, before it forks its processes)."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # a previous run's counts: its processes are gone
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    prometheus_values.ValueClass = prometheus_values.get_value_class()


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass  # a scrape every few seconds is no news


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper does not hold the worker's exit


class MetricsServer:
    """A `switchboard worker`'s /metrics on a port of its own (the worker serves nothing else), behind the
    same token as the web server's. Its counts are the turns, replies, KB decisions and deliveries the
    worker made; the web processes count the messages they stored."""

    def __init__(self, host: str, port: int, token: str, meter: PrometheusMeter, store: QueueStore) -> None:
        app = Flask(__name__)
        app.add_url_rule("/metrics", "metrics", lambda: scrape(token, meter, store))
        try:
            self._server = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
        except OSError as exc:
            raise SwitchboardError(f"cannot serve metrics on {host}:{port} ({exc}); "
                                   "choose another --metrics-port") from exc
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics", self._server.server_name, self.port)

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
