"""Run every benchmark, print the results, and write them to docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch

from benchmarks import kb, nlu, privacy, reply_latency, reports, streams, throughput
from switchboard.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


# The instructions the encoder's matrix products run on: machines of one name differ by these (and by clock) and
# encode a question from 1 to 5 ms (docs/performance.md).
VECTOR_EXTENSIONS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile")


def machine() -> str:
    cpu, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    extensions = ", ".join(name.upper() for name in VECTOR_EXTENSIONS if name in flags) or "no AVX2"
    return (f"{os.cpu_count()} cores ({cpu}; {extensions}), Python {platform.python_version()}, "
            f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")


def main() -> None:
    sections = [
        reply_latency.report(reply_latency.run(), Settings().processor_threads),
        kb.report(kb.run()),
        nlu.report(*nlu.run()),
        privacy.report(privacy.run()),
        reports.report(reports.run()),
        streams.report(streams.run(5000, Settings().server_threads)),
        throughput.report(throughput.run()),
    ]
    text = "\n\n".join([
        "# Benchmarks",
        f"Written by `make bench` on {machine()}. Numbers from one run on a shared machine; "
        "compare runs on the same machine only. What they mean, what was profiled and what was tried: "
        "[performance.md](performance.md).",
        *sections,
    ]) + "\n"
    print("\n" + text)
    (ROOT / "docs" / "benchmarks.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
