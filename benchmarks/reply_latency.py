"""Bot reply latency: a message accepted -> the bot's reply in the outbox, against bare encode + search.

Runs the real engine (model, FAISS index over the sample KB, SQLite store, processor
threads) in-process, without HTTP, so the numbers are the engine's own.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.kb import timed
from bot.messages import InboundMessage
from bot.pipeline.inbox import Inbox
from bot.pipeline.processor import ConversationProcessor, WorkerProcessors
from bot.ports import Encoder
from kb_index.encoder import load_encoder, vectors_name
from kb_index.retriever import HybridRetriever
from kb_index.snapshot import build_snapshot
from switchboard.app import Services, build_services, labelled_kb_questions, language_detector
from switchboard.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

QUESTIONS = [
    "How do I reset my password?", "how long does delivery take", "can I return a jacket I bought",
    "when will my refund arrive", "what payment methods do you accept", "my card was declined",
    "when are you open", "is my tent covered by warranty", "where is my order", "how much is shipping",
    "do you ship to Norway", "my parcel arrived damaged", "how do I delete my account",
    "can I pay in instalments", "how do I wash my rain jacket", "gift card balance",
    "can I change my delivery address", "an item is missing from my parcel", "I never got a confirmation email",
    "how do I get an invoice with my company VAT number", "my discount code does not work",
    "can I exchange for a bigger size", "do you repair zips", "how do puffin points work", "hello", "thanks",
    "are you a bot", "purple elephants dance on the moon", "what's the weather in Paris", "bye",
]


@dataclass(frozen=True)
class Percentiles:
    p50: float
    p95: float
    p99: float
    mean: float

    @classmethod
    def of(cls, seconds: list[float]) -> Percentiles:
        ms = np.array(seconds) * 1000
        p50, p95, p99 = (float(np.percentile(ms, q)) for q in (50, 95, 99))
        return cls(p50, p95, p99, float(statistics.fmean(ms)))


@dataclass(frozen=True)
class ReplyLatency:
    messages: int
    accept: Percentiles
    reply: Percentiles
    bare: Percentiles
    burst_messages: int
    burst_seconds: float
    accept_seconds: float    # the burst's accepting loop alone, ended before the answers are
    burst_cpu_seconds: float  # the process's CPU over the burst, every thread's
    backlog_seconds: float   # as many messages stored while nothing answered, answered once the processor looks
    encoder_rate: float  # texts/s: the engine's own encoder alone, batches of ENCODER_BATCH


ENCODER_BATCH = 16


def run(messages: int = 1000, burst: int = 1000) -> ReplyLatency:
    """Measure; prints progress as it goes."""
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:
        # The bare search runs on as many ONNX Runtime threads as the server's encoder: the same model setup.
        defaults = Settings()
        encoder = load_encoder(defaults.model, Path(tmp) / "index" / "onnx", threads=defaults.encoder_threads)
        settings = Settings(
            store_url=f"sqlite:///{tmp}/bench.db", index_dir=Path(tmp) / "index", var_dir=Path(tmp),
            kb_dir=ROOT / "data" / "kb", nlu_path=ROOT / "data" / "nlu.yml",
            domain_path=ROOT / "data" / "domain.yml", secret_key="bench",
        )
        # As the sample shop ships: its labelled English questions among the examples (kb_index.snapshot).
        build_snapshot(settings.kb_dir, settings.index_dir, encoder,
                       model=vectors_name(settings.model, settings.encoder), questions=labelled_kb_questions(settings))
        retriever = HybridRetriever(settings.index_dir, encoder)
        queries = [QUESTIONS[i % len(QUESTIONS)] for i in range(messages)]

        # The engine gets the encoder a server builds for itself: ONNX behind the micro-batcher.
        services = build_services(settings)
        services.processor.start()
        try:
            for text in QUESTIONS:  # warm-up: first calls pay for allocations and lazy imports
                retriever.search(text, k=3, vector=encoder.encode([text])[0])
            # Bare search first, then the full path: alternating two models per message would have each
            # evict the other's weights from the CPU's caches and slow both.
            print(f"{messages} messages: bare encode + search, then through the engine ...", flush=True)
            bare, accept, reply = [], [], []
            for text in queries:
                started = time.perf_counter()
                retriever.search(text, k=3, vector=encoder.encode([text])[0])
                bare.append(time.perf_counter() - started)
            for i, text in enumerate(queries):
                message = InboundMessage("bench", f"customer-{i}", f"m-{i}", text)
                started = time.perf_counter()
                accepted = services.inbox.accept(message)
                stored = time.perf_counter()
                if not services.inbox.wait_processed(accepted, "bench", message.external_id, timeout=60):
                    raise RuntimeError(f"message {i} was not processed within 60 s")
                accept.append(stored - started)
                reply.append(time.perf_counter() - stored)

            print(f"a burst of {burst} messages from {burst} customers ...", flush=True)
            started, cpu = time.perf_counter(), time.process_time()
            for i in range(burst):
                services.inbox.accept(InboundMessage("bench", f"burst-{i}", f"b-{i}", QUESTIONS[i % len(QUESTIONS)]))
            accept_seconds = time.perf_counter() - started
            drain(services)
            burst_seconds = time.perf_counter() - started
            burst_cpu_seconds = time.process_time() - cpu

            print(f"a backlog of {burst} messages stored while nothing answered, then answered ...", flush=True)
            # A web process whose workers are all down: it stores and announces, and nobody answers.
            storing = Inbox(services.store, WorkerProcessors(services.notifier), services.notifier,
                            settings.max_text_length, languages=language_detector(settings))
            for i in range(burst):
                storing.accept(InboundMessage("bench", f"backlog-{i}", f"k-{i}", QUESTIONS[i % len(QUESTIONS)]))
            started = time.perf_counter()
            assert isinstance(services.processor, ConversationProcessor)  # embedded: this process answers
            services.processor.sweep()  # what a processor does as it starts
            drain(services)
            backlog_seconds = time.perf_counter() - started

            print(f"the engine's encoder alone, batches of {ENCODER_BATCH} ...", flush=True)
            encoder_rate = encoder_throughput(services.encoder, burst)
        finally:
            services.close()
    return ReplyLatency(messages, Percentiles.of(accept), Percentiles.of(reply), Percentiles.of(bare),
                        burst, burst_seconds, accept_seconds, burst_cpu_seconds, backlog_seconds, encoder_rate)


def drain(services: Services) -> None:
    """Wait until no stored message waits for its turn. Looks rarely: each look reads every waiting row, and a
    tight loop took a core from the burst."""
    while services.store.conversations_with_pending():
        time.sleep(0.05)


def encoder_throughput(encoder: Encoder, texts: int) -> float:
    """Texts a second through `encoder` in batches of ENCODER_BATCH: what a burst could reach at best,
    with nothing stored and no turn run (the batches a busy processor forms are this size or smaller)."""
    batch = [QUESTIONS[i % len(QUESTIONS)] for i in range(ENCODER_BATCH)]
    seconds = timed(lambda: encoder.encode(batch), repeat=max(1, texts // ENCODER_BATCH))
    return len(seconds) * ENCODER_BATCH / sum(seconds)


def report(result: ReplyLatency, threads: int) -> str:
    """Render the result as a Markdown section."""
    def row(name: str, p: Percentiles) -> str:
        return f"| {name} | {p.p50:.1f} | {p.p95:.1f} | {p.p99:.1f} | {p.mean:.1f} |"

    ratio = result.reply.p50 / result.bare.p50
    cpu_ms = result.burst_cpu_seconds * 1000 / result.burst_messages
    cores = os.cpu_count() or 1
    return "\n".join([
        "## Bot reply latency",
        "",
        f"{result.messages} messages of the sample shop (KB questions, small talk, off-topic), one at a time, "
        "each from a new customer, through the real engine and SQLite store, in-process (no HTTP).",
        "",
        "| step (ms) | p50 | p95 | p99 | mean |",
        "| --- | ---: | ---: | ---: | ---: |",
        row("accept: store the message (identity, conversation, `message_in`)", result.accept),
        row("reply: accepted -> bot reply committed to the outbox", result.reply),
        row("bare encode + hybrid search (FAISS + BM25) of the same text", result.bare),
        "",
        f"Engine overhead: the reply's median is {ratio:.2f}x the bare encode + search median "
        f"({result.reply.p50 - result.bare.p50:+.1f} ms: the intent encoder's own encode of the message with the "
        "default `SWITCHBOARD_INTENT_ENCODER=tuned`, sentiment and intent scoring, the order "
        "action for \"where is my order\", templating, the turn's SQLite transaction (which, unlike the accept, "
        "does not wait for the disk: docs/performance.md), and the hand-over between threads).",
        "",
        f"Burst: {result.burst_messages} messages from as many customers accepted at once and processed by "
        f"{threads} processor threads in {result.burst_seconds:.1f} s "
        f"= {result.burst_messages / result.burst_seconds:.0f} messages/s; the accepting loop (one thread, one "
        f"message after another, as the engine answered) ended after {result.accept_seconds:.1f} s. "
        f"It took {cpu_ms:.1f} ms of CPU a message, every thread's (storing, encoding, deciding, committing): "
        f"at that cost this machine's {cores} cores give at most {cores * 1000 / cpu_ms:.0f} messages/s. "
        f"A backlog of as many messages, stored while nothing answered and then answered as a processor starts "
        f"(a restart after downtime): {result.backlog_seconds:.1f} s "
        f"= {result.burst_messages / result.backlog_seconds:.0f} messages/s. The engine's encoder alone (the "
        f"graph the burst ran, both heads), in batches of {ENCODER_BATCH} on the same cores: "
        f"{result.encoder_rate:.0f} texts/s ({1000 / result.encoder_rate:.1f} ms of one core a text), the most a "
        "burst could reach on one encoding thread before anything is stored or decided.",
    ])
