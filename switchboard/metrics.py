"""`/metrics`: what Switchboard does, in Prometheus's text format (prometheus-client).

Counters and the reply-latency histogram are kept as things happen (`PrometheusMeter`, handed to the
inbox, the processor and the delivery worker). The queue is read from the store at each scrape, so it
is the same whichever process answers.

Several processes: give them all one empty directory in `PROMETHEUS_MULTIPROC_DIR` before they start,
as prometheus-client documents; each process then writes its counts there, and a scrape of any of them
adds up all of them (`multiprocess.MultiProcessCollector`). Empty it when the processes restart.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.messages import EventKind, utcnow
from bot.outcome import Outcome

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
