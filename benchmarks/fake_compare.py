"""Why the fake upstream is a raw asyncio server: the same replies from ``--impl raw`` and ``--impl asgi`` (a bare
ASGI callable under uvicorn with httptools and uvloop), compared by throughput and CPU per request.

    python -m benchmarks.fake_compare [--duration 3]

Each fake runs pinned to core 1; the load generator runs on core 0 (here the fake is the thing measured).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .loadgen import Workload, run_phase
from .runners import Managed, ProcSample, free_port, pin_self


@dataclass(frozen=True, slots=True)
class Row:
    impl: str
    stream: bool
    throughput: float
    cpu_us_per_req: float
    p50_ms: float
    rss_kb: int
    errors: int


def _measure(m: Managed, w: Workload, duration: float) -> Row:
    marks: dict[str, ProcSample] = {}

    def mark(which: str) -> None:
        marks[which] = m.sample()

    res = run_phase(w, "closed", concurrency=16, duration=duration, warmup=0.5, mark=mark)
    cpu_us = (marks["end"].cpu_s - marks["start"].cpu_s) * 1e6 / max(res.sent, 1)
    return Row(m.name.removeprefix("fake-"), w.stream, res.throughput, cpu_us, res.latency.p50, marks["end"].rss_kb,
               res.errors)


def compare(duration: float) -> list[Row]:
    pin_self(0)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="switchyard-fake-") as tmp:
        for impl in ("raw", "asgi"):
            port = free_port()
            argv = [sys.executable, "-m", "benchmarks.fake_upstream", "--port", str(port), "--impl", impl]
            m = Managed(f"fake-{impl}", argv, 1, port, "/health", Path(tmp) / f"{impl}.log")
            m.start()
            try:
                for stream in (False, True):
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    rows.append(_measure(m, Workload.chat(url, "fake", None, stream), duration))
            finally:
                m.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fake_compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=3.0)
    a = ap.parse_args(argv)
    print(f"{'impl':5} {'stream':6} {'req/s':>8} {'CPU us/req':>10} {'p50 ms':>7} {'RSS MB':>7}")
    for r in compare(min(max(a.duration, 0.5), 60.0)):
        print(f"{r.impl:5} {r.stream!s:6} {r.throughput:>8.0f} {r.cpu_us_per_req:>10.1f} {r.p50_ms:>7.3f} "
              f"{r.rss_kb / 1024:>7.1f}" + (f"  errors: {r.errors}" if r.errors else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
