"""Customer records at scale: finding, merging, erasing and purging in a store of realistic size.

Builds a SQLite store with many customers, each with a conversation of messages and replies,
then times the operations an agent or an admin runs on it. Erasure and purging include the
`VACUUM` and WAL checkpoint that make deleted text unrecoverable, so they grow with the file.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bot.messages import Author, InboundMessage, Reply
from bot.outcome import Outcome
from bot.stores.conversations import ConversationStore


@dataclass(frozen=True)
class PrivacyTimings:
    customers: int
    events: int
    file_mb: float
    build_seconds: float
    find_ms: float
    merge_ms: float
    unmerge_ms: float
    erase_ms: list[float]
    purge_conversations: int
    purge_ms: float


def run(customers: int = 20_000, messages_each: int = 3) -> PrivacyTimings:
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:
        store = ConversationStore(Path(tmp) / "bench.db")
        print(f"privacy: building {customers} customers x {messages_each} messages with replies ...", flush=True)
        started = time.perf_counter()
        for c in range(customers):
            for m in range(messages_each):
                accepted = store.accept(InboundMessage("web", f"w-{c}", f"{c}-{m}",
                                                       f"customer {c} asks question {m} about order PO-{c:07d}"))
                pending = store.next_pending(accepted.conversation_id)
                assert pending is not None
                store.complete_turn(pending, Outcome(replies=(Reply(accepted.conversation_id,
                                                                    f"answer {m} for customer {c}", Author.BOT),)))
            if (c + 1) % 5000 == 0:
                print(f"  {c + 1} customers", flush=True)
        build_seconds = time.perf_counter() - started
        events = store._connection().execute("SELECT COUNT(*) FROM events").fetchone()[0]

        def timed(action: object) -> float:
            begin = time.perf_counter()
            action()  # type: ignore[operator]
            return (time.perf_counter() - begin) * 1000

        find_ms = timed(lambda: store.find_customers(f"PO-{customers // 2:07d}"))
        first, second = (store.get_conversation(store.accept(InboundMessage("web", f"w-{c}", f"x-{c}", "hi"))
                                                .conversation_id).customer_id for c in (1, 2))
        merge_id = ""

        def merge() -> None:
            nonlocal merge_id
            merge_id = store.merge_customers(first, second, "bench")

        merge_ms = timed(merge)
        unmerge_ms = timed(lambda: store.unmerge(merge_id, "bench"))
        erase_ms = [timed(lambda c=c: store.erase_customer(  # type: ignore[misc]
            store.get_conversation(store.accept(InboundMessage("web", f"w-{c}", f"e-{c}", "bye"))
                                   .conversation_id).customer_id)) for c in range(10, 15)]
        with store._write() as db:  # a tenth of the conversations closed two years ago
            db.execute("UPDATE conversations SET status = 'closed', updated_at = '2024-01-01T00:00:00+00:00' "
                       "WHERE rowid % 10 = 0")
        begin = time.perf_counter()
        purged = store.purge_transcripts(timedelta(days=365))
        purge_ms = (time.perf_counter() - begin) * 1000
        file_mb = (Path(tmp) / "bench.db").stat().st_size / 1e6
        store.close()
    return PrivacyTimings(customers, events, file_mb, build_seconds, find_ms, merge_ms, unmerge_ms, erase_ms,
                          purged, purge_ms)


def report(result: PrivacyTimings) -> str:
    return "\n".join([
        "## Customer records",
        "",
        f"A SQLite store of {result.customers:,} customers with {result.events:,} transcript events "
        f"({result.file_mb:.0f} MB after compaction; built in {result.build_seconds:.0f} s through the store's "
        "own accept and complete-turn transactions).",
        "",
        "| operation | ms |",
        "| --- | ---: |",
        f"| `customers find` by a string in one message (a `LIKE` scan) | {result.find_ms:.0f} |",
        f"| merge two customers with open conversations (events renumbered in time order) | {result.merge_ms:.1f} |",
        f"| undo that merge | {result.unmerge_ms:.1f} |",
        f"| erase one customer, including `VACUUM` and WAL truncation (median of {len(result.erase_ms)}) | "
        f"{statistics.median(result.erase_ms):.0f} |",
        f"| purge {result.purge_conversations:,} closed conversations past retention, with compaction | "
        f"{result.purge_ms:.0f} |",
        "",
        "Erasure time is dominated by rewriting the file, so it grows with the store, not with the customer.",
    ])
