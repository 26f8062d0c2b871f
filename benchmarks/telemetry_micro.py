"""The per-call cost of telemetry, in microseconds per finished call: the metrics observer, and the request log
off (``--log-level warning``), in text and in JSON. In process, with no HTTP: N records through each observer.

    PYTHONPATH=src python -m benchmarks.telemetry_micro            # single-process metrics
    PROMETHEUS_MULTIPROC_DIR=$(mktemp -d) PYTHONPATH=src python -m benchmarks.telemetry_micro   # serve --workers
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable

from switchyard.catalog import Catalog
from switchyard.config import parse_config
from switchyard.messages import Usage
from switchyard.pipeline import CallContext, Gateway
from switchyard.records import CallRecord
from switchyard.routing import Attempt
from switchyard.telemetry.logs import TEXT_FORMAT, JsonFormatter, RequestLog
from switchyard.telemetry.metrics import Metrics

N = 100_000


def calls() -> list[tuple[CallContext, CallRecord]]:
    out = []
    for i in range(1000):
        ctx = CallContext(request_id=f"req_{i:032x}")
        ctx.attempts = [Attempt("sim-a", outcome="ok")]
        rec = CallRecord(request_id=ctx.request_id, ts=time.time(), principal_id="key:user", endpoint="chat",
                         model="fast", route="fast", deployment="sim-a", provider="sim", status="ok", http_status=200,
                         usage=Usage(input_tokens=10, output_tokens=20), cost=0.0001, latency_ms=12.5, ttft_ms=3.0,
                         attempts=1)
        out.append((ctx, rec))
    return out


def per_call(fn: Callable[[CallContext, CallRecord], None], pairs: list[tuple[CallContext, CallRecord]]) -> float:
    start = time.perf_counter()
    for i in range(N):
        ctx, rec = pairs[i % len(pairs)]
        fn(ctx, rec)
    return (time.perf_counter() - start) / N * 1e6


def main() -> None:
    cfg = parse_config({"store": "sqlite:///:memory:", "providers": {"sim": {"type": "simulated"}},
                        "deployments": [{"name": "sim-a", "provider": "sim", "price": {"input": 1, "output": 2}}],
                        "routes": {"fast": {"targets": ["sim-a"]}}}, "<bench>", {})
    gw = Gateway(cfg, Catalog.from_config(cfg))
    pairs = calls()
    print(f"metrics: {per_call(Metrics(gw.router.health).observe, pairs):.2f} us/call")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        root.setLevel(logging.WARNING)
        print(f"request log off (warning): {per_call(RequestLog().observe, pairs):.2f} us/call")
        logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False  # as serve sets them
        for name, fmt in (("text", logging.Formatter(TEXT_FORMAT)), ("json", JsonFormatter())):
            handler = logging.StreamHandler(io.StringIO())
            handler.setFormatter(fmt)
            root.handlers = [handler]
            root.setLevel(logging.INFO)
            print(f"request log {name} (info, to memory): {per_call(RequestLog().observe, pairs):.2f} us/call")
    finally:
        root.handlers = saved[0]
        root.setLevel(saved[1])


if __name__ == "__main__":
    main()
