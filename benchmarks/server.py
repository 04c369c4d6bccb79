"""The real server for the benchmarks that need one: `switchboard run` as the tests start it, over the
sample KB's index under var/ (built on first use)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers import ROOT, running_server


@contextmanager
def benchmark_server(tmp: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The server with its store in `tmp`; yields its URL and process."""
    with running_server(tmp, ROOT / "var" / "kb_index", start_timeout=300, **env) as (base, _, process):
        yield base, process


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


def percentile(values: list[float], q: float) -> float:
    """The value at quantile `q` (0.99: the p99) of measured values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
