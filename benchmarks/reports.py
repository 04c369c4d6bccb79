"""The reports on a store of 100,000 conversations: the console's default view (the last 7 days) and
a 90-day view, through the real app, and what keeping the rollups up to date costs.

The conversations are written through the store's own API (accept, complete the turn, claim, reply,
close, rate) with a clock of the benchmark's own that spreads them over 90 days: a fifth are handed
off and closed by an agent, half of those rated. The file lives on /dev/shm where there is one, so
building it is not a benchmark of the disk's fsync.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.messages import Author, EventKind, InboundMessage, Reply
from bot.outcome import Outcome
from bot.stores import conversations as store_module
from bot.stores.conversations import ConversationStore

DAYS = 90
ARTICLES = ("shipping-costs", "returns-policy", "exchanges", "warranty", "payment-methods", "order-tracking")


@dataclass(frozen=True)
class ReportTimings:
    conversations: int
    events: int
    build_seconds: float
    first_count_seconds: float
    first_load_ms: float  # the first load after start: templates compiled, the file's pages read from disk
    default_view_ms: list[float]
    quarter_view_ms: list[float]
    default_conversations: int
    after_new_ms: list[float]  # the default view with 100 new conversations since the last load


@contextmanager
def _clock() -> Iterator[list[datetime]]:
    """The store's clock, set by the benchmark."""
    now = [datetime.now(UTC)]
    real = store_module.utcnow
    store_module.utcnow = lambda: now[0]
    try:
        yield now
    finally:
        store_module.utcnow = real


def write_conversations(store: ConversationStore, count: int, end: datetime, now: list[datetime],
                        agents: list[str], seed: int = 7, first: int = 0) -> None:
    """`count` conversations spread evenly over the DAYS before `end`."""
    rng = random.Random(seed)
    span = timedelta(days=DAYS).total_seconds()
    for n in range(first, first + count):
        at = end - timedelta(seconds=span * (1 - (n - first + rng.random()) / count))
        customer, channel = f"c{n % (count * 4 // 5 or 1)}", rng.choice(("web", "web", "telegram", "sms", "whatsapp"))
        for turn in range(2):
            now[0] = at
            accepted = store.accept(InboundMessage(channel, f"{channel}-{customer}", f"m{n}-{turn}",
                                                   f"question {turn} of conversation {n}", received_at=at))
            pending = store.next_pending(accepted.conversation_id)
            assert pending is not None
            at += timedelta(seconds=rng.uniform(0.5, 3))
            now[0] = at
            handoff = turn == 1 and n % 5 == 0
            decision = rng.choice(("answer", "answer", "answer", "choices", "decline"))
            store.complete_turn(pending, Outcome(
                replies=(Reply(accepted.conversation_id, "an answer", Author.BOT),), fallback_streak=0,
                events=((EventKind.KB_ANSWER, {"decision": decision, "answered": decision == "answer",
                                               "passages": [{"article_id": rng.choice(ARTICLES)}]}),),
                handoff_reason=rng.choice(("customer_request", "repeated_fallback", "keyword")) if handoff else None))
            at += timedelta(minutes=rng.uniform(1, 30))
        if n % 5 == 0:
            agent = agents[n % len(agents)]
            conversation = accepted.conversation_id
            for action in ("claim", "reply", "close"):
                at += timedelta(minutes=rng.uniform(1, 20))
                now[0] = at
                if action == "claim":
                    store.claim(conversation, agent)
                elif action == "reply":
                    store.agent_reply(conversation, agent, "an agent's reply")
                else:
                    store.close_conversation(conversation, agent, resolution=rng.choice(("refund", "answered")),
                                             csat_question=("How did we do?", ()))
            if n % 10 == 0:
                now[0] = at + timedelta(minutes=5)
                store.accept(InboundMessage(channel, f"{channel}-{customer}", f"r{n}", str(rng.randint(1, 5)),
                                            received_at=now[0]))
        if (n - first + 1) % 10_000 == 0:
            print(f"  {n - first + 1:,} conversations", flush=True)


def run(conversations: int = 100_000) -> ReportTimings:
    from kb_index.encoder import load_encoder, vectors_name
    from kb_index.snapshot import build_snapshot
    from switchboard.app import create_app, services_of
    from switchboard.settings import Settings

    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-", dir=shm if shm.is_dir() else None) as tmp:
        path = Path(tmp) / "bench.db"
        store = ConversationStore(path)
        agents = [store.add_agent(f"agent{i}@example.com", f"Agent {i}", "agent", "-").agent_id for i in range(12)]
        manager = "manager@example.com"
        end = datetime.now(UTC)
        print(f"reports: writing {conversations:,} conversations over {DAYS} days through the store ...", flush=True)
        started = time.perf_counter()
        with _clock() as now:
            write_conversations(store, conversations, end, now, agents)
        build_seconds = time.perf_counter() - started
        events = store._connection().execute("SELECT COUNT(*) FROM events").fetchone()[0]
        started = time.perf_counter()
        store.refresh_reports()
        first_count_seconds = time.perf_counter() - started
        store.close()

        root = BENCHMARKS_MD.parent.parent
        settings = Settings(store_url=f"sqlite:///{path}", index_dir=Path(tmp) / "index", var_dir=Path(tmp) / "var",
                            kb_dir=root / "data" / "kb", nlu_path=root / "data" / "nlu.yml",
                            domain_path=root / "data" / "domain.yml", rules_path=root / "data" / "rules.yml",
                            handoff_policy_path=root / "data" / "handoff.yml", languages="en", secret_key="bench")
        encoder = load_encoder(settings.model, settings.index_dir / "onnx")
        vectors = vectors_name(settings.model, settings.encoder)
        build_snapshot(settings.kb_dir, settings.index_dir, encoder, model=vectors)  # the app needs a KB
        app = create_app(settings, encoder=encoder)
        try:
            services = services_of(app)
            services.agents.add(manager, "Manager", "manager", "a long enough password")
            client = app.test_client()
            page = client.get("/console/login")
            token = page.get_data(as_text=True).split('name="csrf_token" value="')[1].split('"')[0]
            client.post("/console/login", data={"email": manager, "password": "a long enough password",
                                                "csrf_token": token})

            def load(query: str = "") -> float:
                begin = time.perf_counter()
                response = client.get(f"/console/reports/{query}")
                assert response.status_code == 200, response.status_code
                return (time.perf_counter() - begin) * 1000

            first_load = load()
            default_view = [load() for _ in range(5)]
            first_day = (end - timedelta(days=DAYS)).date().isoformat()
            quarter_view = [load(f"?from={first_day}&to={end.date().isoformat()}") for _ in range(3)]
            week = services.store.report_facts(end - timedelta(days=7), end + timedelta(days=1))
            after_new = []
            for round_ in range(3):
                with _clock() as now:
                    write_conversations(services.store, 100, datetime.now(UTC), now, agents, seed=round_,
                                        first=conversations + 100 * round_)
                after_new.append(load())
        finally:
            services_of(app).close()
    return ReportTimings(conversations, events, build_seconds, first_count_seconds, first_load, default_view,
                         quarter_view, len(week), after_new)


def report(result: ReportTimings) -> str:
    return "\n".join([
        "## Reports",
        "",
        f"A SQLite store of {result.conversations:,} conversations over {DAYS} days ({result.events:,} events; "
        f"written in {result.build_seconds:.0f} s through the store's own API), the console's reports page "
        "loaded through the real app by a signed-in manager (rendering included).",
        "",
        "| view | conversations | median ms | max ms |",
        "| --- | ---: | ---: | ---: |",
        f"| default, the first load after the server started | {result.default_conversations:,} | "
        f"{result.first_load_ms:.0f} | {result.first_load_ms:.0f} |",
        f"| default: the last 7 days | {result.default_conversations:,} | "
        f"{statistics.median(result.default_view_ms):.0f} | {max(result.default_view_ms):.0f} |",
        f"| default, after 100 new conversations since the last load | {result.default_conversations:,}+ | "
        f"{statistics.median(result.after_new_ms):.0f} | {max(result.after_new_ms):.0f} |",
        f"| {DAYS} days | {result.conversations:,} | {statistics.median(result.quarter_view_ms):.0f} | "
        f"{max(result.quarter_view_ms):.0f} |",
        "",
        f"Counting all {result.conversations:,} conversations into the rollups the first time (after an upgrade, "
        f"or `switchboard report --rebuild`) took {result.first_count_seconds:.1f} s; after that each load counts "
        "only the conversations with new events. A load reads one row per conversation of the period (about "
        "25 us each in the running app, plus the figures' own work), so long periods of a busy store take "
        "seconds: daily rollups would be the next step for them.",
    ])


BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def write_section(text: str, path: Path = BENCHMARKS_MD) -> None:
    """Put this section into docs/benchmarks.md in place of its last run (`make bench` rewrites the whole file)."""
    document = path.read_text(encoding="utf-8")
    start = document.find("## Reports\n")
    if start < 0:
        document = document.rstrip("\n") + "\n\n" + text + "\n"
    else:
        end = document.find("\n## ", start + 1)
        document = document[:start] + text + ("\n" + document[end:] if end >= 0 else "\n")
    path.write_text(document, encoding="utf-8")


if __name__ == "__main__":
    import sys

    section = report(run(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
    print(section)
    if len(sys.argv) == 1:
        write_section(section)
