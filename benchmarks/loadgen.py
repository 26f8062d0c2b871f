"""The load generator: bounded in requests and in time, loopback only.

Closed loop (``--mode closed -c C``): C workers, each sending its next request as soon as the last one ends; it
measures maximum throughput. Open loop (``--mode open --rate R``): request i is *scheduled* at ``t0 + i/R``
whatever happens to earlier ones, and its latency runs from that scheduled time, so a stalled server is charged
for the requests it delayed (no coordinated omission). Sends never wait for replies: a request that finds every
connection busy opens another (up to ``--max-connections``, then queues, and queueing counts as latency).

    python -m benchmarks.loadgen --url http://127.0.0.1:4000/v1/chat/completions --api-key KEY \\
        --mode open --rate 500 --duration 10 [--stream] [--json]

Reported: count, errors, throughput, p50/p90/p99/max of latency (for streams, time to first body byte too), the
sender's lag behind the schedule, and connections opened.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvloop

from .httpclient import Exchange, Pool, build_request, parse_loopback_url
from .stats import Summary, fmt_ms, summarize

MAX_DURATION = 600.0  # seconds: no phase runs longer, whatever it is asked
MAX_REQUESTS = 2_000_000
SSE_END = b"data: [DONE]\n\n"


@dataclass(slots=True)
class Workload:
    """What to send: one request, built once, repeated."""

    url: str
    body: bytes | None
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    stream: bool = False

    def __post_init__(self) -> None:
        parse_loopback_url(self.url)  # refuse a non-loopback target before anything is sent

    @classmethod
    def chat(cls, url: str, model: str, api_key: str | None = None, stream: bool = False) -> Workload:
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Say hello in five words."}]}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return cls(url, orjson.dumps(body), _headers(api_key), stream=stream)

    @classmethod
    def embeddings(cls, url: str, model: str, api_key: str | None = None) -> Workload:
        body = {"model": model, "input": ["The quick brown fox jumps over the lazy dog."]}
        return cls(url, orjson.dumps(body), _headers(api_key))


def _headers(api_key: str | None) -> dict[str, str]:
    h = {"content-type": "application/json", "accept": "application/json"}
    if api_key:
        h["authorization"] = f"Bearer {api_key}"
    return h


@dataclass(slots=True)
class PhaseResult:
    mode: str  # open | closed
    rate: float | None  # open loop: requests per second asked
    concurrency: int | None  # closed loop: workers
    planned: int  # requests the phase meant to send
    sent: int
    ok: int
    errors: int
    error_kinds: dict[str, int]
    wall_s: float  # first send (or schedule) to last reply
    throughput: float  # successful replies per second of wall time
    latency: Summary  # open: from the scheduled time; closed: from the send
    service: Summary  # from the actual send, for comparison
    ttfb: Summary | None  # streams: to the first body byte, same origin as latency
    send_lag: Summary  # open loop: how late the sender was against the schedule
    connections: int
    latencies: list[float | None] = field(repr=False)  # seconds, by sequence number; None where it failed
    overloaded: bool = False  # open loop: stopped early, the target fell too far behind the schedule

    def as_dict(self, with_samples: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {k: getattr(self, k) for k in ("mode", "rate", "concurrency", "planned", "sent", "ok",
                                                         "errors", "error_kinds", "connections", "overloaded")}
        d["wall_s"] = round(self.wall_s, 4)
        d["throughput"] = round(self.throughput, 2)
        d["latency_ms"] = self.latency.as_dict()
        d["service_ms"] = self.service.as_dict()
        d["ttfb_ms"] = self.ttfb.as_dict() if self.ttfb else None
        d["send_lag_ms"] = self.send_lag.as_dict()
        if with_samples:
            d["latencies_s"] = [None if x is None else round(x, 7) for x in self.latencies]
        return d

    def line(self) -> str:
        lat = self.latency
        s = (f"{self.mode:6} n={self.sent} ok={self.ok} err={self.errors} {self.throughput:8.1f} req/s  "
             f"p50={fmt_ms(lat.p50)} p90={fmt_ms(lat.p90)} p99={fmt_ms(lat.p99)} max={fmt_ms(lat.max)} ms")
        if self.ttfb:
            s += f"  ttfb p50={fmt_ms(self.ttfb.p50)} p99={fmt_ms(self.ttfb.p99)}"
        if self.overloaded:
            s += f"  OVERLOADED: stopped after {self.sent} of {self.planned}"
        return s


def _failure(ex: Exchange, stream: bool) -> str | None:
    if ex.error is not None:
        return ex.error
    if not ex.end:
        return "unfinished"
    if ex.status != 200:
        return f"http {ex.status}"
    if stream and not ex.tail.endswith(SSE_END):
        return "stream without [DONE]"
    return None


def _result(mode: str, w: Workload, exs: list[Exchange], scheds: list[float], planned: int, pool: Pool,
            rate: float | None = None, concurrency: int | None = None) -> PhaseResult:
    kinds: Counter[str] = Counter()
    lat: list[float | None] = []
    service: list[float] = []
    ttfb: list[float] = []
    lag: list[float] = []
    first, last = math.inf, 0.0
    for ex, sched in zip(exs, scheds, strict=True):
        if ex.sent:
            lag.append(max(0.0, ex.sent - sched))
        err = _failure(ex, w.stream)
        if err is not None:
            kinds[err] += 1
            lat.append(None)
            continue
        # From the schedule, or from the send when the timer fired early (uvloop's clock has 1 ms steps).
        origin = min(sched, ex.sent)
        lat.append(ex.end - origin)
        service.append(ex.end - ex.sent)
        ttfb.append(ex.first - origin)
        first, last = min(first, sched), max(last, ex.end)
    ok = len(service)
    wall = last - first if ok else 0.0
    return PhaseResult(mode=mode, rate=rate, concurrency=concurrency, planned=planned, sent=len(exs), ok=ok,
                       errors=len(exs) - ok, error_kinds=dict(kinds), wall_s=wall,
                       throughput=ok / wall if wall > 0 else 0.0,
                       latency=summarize([x for x in lat if x is not None]), service=summarize(service),
                       ttfb=summarize(ttfb) if w.stream else None, send_lag=summarize(lag),
                       connections=pool.opened, latencies=lat)


def _check_bounds(duration: float, max_requests: int) -> None:
    if not 0 < duration <= MAX_DURATION:
        raise ValueError(f"duration must be in (0, {MAX_DURATION}] seconds")
    if not 0 < max_requests <= MAX_REQUESTS:
        raise ValueError(f"max_requests must be in (0, {MAX_REQUESTS}]")


async def _drain(tasks: list[asyncio.Task[None]], wait_s: float) -> None:
    """Wait for in-flight requests at most ``wait_s`` seconds; what is left is cancelled (and counts as failed)."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=wait_s)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=1.0)


async def open_loop(w: Workload, rate: float, duration: float, *, max_requests: int = MAX_REQUESTS,
                    timeout_s: float = 10.0, max_connections: int = 1024, pool: Pool | None = None,
                    max_backlog_s: float = 2.0) -> PhaseResult:
    """Send ``rate`` requests per second for ``duration`` seconds (at most ``max_requests``), on schedule.

    When more than ``max_backlog_s`` seconds' worth of requests (``rate * max_backlog_s``, at least 256) are in
    flight at once, the target cannot keep up: the phase stops sending, waits briefly for what is in flight, and
    is marked ``overloaded`` (its latencies would only measure how long the phase ran)."""
    _check_bounds(duration, max_requests)
    if not 0 < rate <= 100_000:
        raise ValueError("rate must be in (0, 100000] requests per second")
    ep = parse_loopback_url(w.url)
    own = pool is None
    pool = pool or Pool(ep, max_connections)
    data = build_request(w.method, ep, w.headers, w.body)
    n = min(math.ceil(rate * duration), max_requests)
    exs: list[Exchange] = []
    scheds: list[float] = []
    tasks: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    period = 1.0 / rate
    backlog_limit = max(256, int(rate * max_backlog_s))
    inflight = 0
    overloaded = False

    def finished(_: asyncio.Task[None]) -> None:
        nonlocal inflight
        inflight -= 1

    t0 = time.perf_counter() + 0.005
    for i in range(n):
        sched = t0 + i * period
        delay = sched - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if inflight > backlog_limit:
            overloaded = True
            break
        ex = Exchange()
        exs.append(ex)
        scheds.append(sched)
        task = loop.create_task(pool.request(data, ex, timeout_s))
        task.add_done_callback(finished)
        inflight += 1
        tasks.append(task)
    await _drain(tasks, min(2.0, timeout_s) if overloaded else timeout_s + 1.0)
    if own:
        pool.close()
    res = _result("open", w, exs, scheds, n, pool, rate=rate)
    res.overloaded = overloaded
    return res


async def closed_loop(w: Workload, concurrency: int, duration: float, *, max_requests: int = MAX_REQUESTS,
                      timeout_s: float = 10.0, pool: Pool | None = None) -> PhaseResult:
    """``concurrency`` workers back to back for ``duration`` seconds (at most ``max_requests`` in all)."""
    _check_bounds(duration, max_requests)
    if not 0 < concurrency <= 4096:
        raise ValueError("concurrency must be in (0, 4096]")
    ep = parse_loopback_url(w.url)
    own = pool is None
    pool = pool or Pool(ep, concurrency)
    data = build_request(w.method, ep, w.headers, w.body)
    exs: list[Exchange] = []
    scheds: list[float] = []
    end = time.perf_counter() + duration

    async def worker() -> None:
        while time.perf_counter() < end and len(exs) < max_requests:
            ex = Exchange()
            exs.append(ex)
            scheds.append(time.perf_counter())
            await pool.request(data, ex, timeout_s)

    tasks = [asyncio.get_running_loop().create_task(worker()) for _ in range(concurrency)]
    await _drain(tasks, duration + timeout_s + 1.0)
    if own:
        pool.close()
    return _result("closed", w, exs, scheds, len(exs), pool, concurrency=concurrency)


async def _phase(w: Workload, mode: str, rate: float, concurrency: int, duration: float, warmup: float,
                 max_requests: int, timeout_s: float, mark: Callable[[str], None] | None) -> PhaseResult:
    ep = parse_loopback_url(w.url)
    pool = Pool(ep, concurrency if mode == "closed" else 1024)
    try:
        if warmup > 0:  # same load on the same connections; the result is thrown away
            if mode == "open":
                await open_loop(w, rate, warmup, timeout_s=timeout_s, pool=pool)
            else:
                await closed_loop(w, concurrency, warmup, timeout_s=timeout_s, pool=pool)
        pool.opened = 0
        gc.collect()
        if mark is not None:
            mark("start")
        if mode == "open":
            res = await open_loop(w, rate, duration, max_requests=max_requests, timeout_s=timeout_s, pool=pool)
        else:
            res = await closed_loop(w, concurrency, duration, max_requests=max_requests, timeout_s=timeout_s,
                                    pool=pool)
        if mark is not None:
            mark("end")
        return res
    finally:
        pool.close()


def run_phase(w: Workload, mode: str = "open", *, rate: float = 100.0, concurrency: int = 16, duration: float = 10.0,
              warmup: float = 1.0, max_requests: int = MAX_REQUESTS, timeout_s: float = 10.0,
              mark: Callable[[str], None] | None = None) -> PhaseResult:
    """Run one phase (warm-up, then the measured part) on a fresh uvloop event loop. Blocks.

    ``mark("start")`` and ``mark("end")`` are called around the measured part (e.g. to sample a target's CPU
    time); keep them quick, they run on the event loop."""
    if mode not in ("open", "closed"):
        raise ValueError("mode must be 'open' or 'closed'")
    return uvloop.run(_phase(w, mode, rate, concurrency, duration, warmup, max_requests, timeout_s, mark))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="a loopback URL, e.g. http://127.0.0.1:4000/v1/chat/completions")
    ap.add_argument("--api-key", default=None, help="sent as Authorization: Bearer")
    ap.add_argument("--model", default="bench-0ms")
    ap.add_argument("--kind", choices=("chat", "embeddings"), default="chat")
    ap.add_argument("--stream", action="store_true", help="chat with stream: true (SSE)")
    ap.add_argument("--mode", choices=("open", "closed"), default="open")
    ap.add_argument("--rate", type=float, default=100.0, help="open loop: requests per second")
    ap.add_argument("-c", "--concurrency", type=int, default=16, help="closed loop: workers")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of measured load")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of load before, not measured")
    ap.add_argument("--max-requests", type=int, default=100_000)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--samples", action="store_true", help="with --json: include every latency, by sequence")
    a = ap.parse_args(argv)
    try:
        if a.kind == "chat":
            w = Workload.chat(a.url, a.model, a.api_key, a.stream)
        else:
            w = Workload.embeddings(a.url, a.model, a.api_key)
        res = run_phase(w, a.mode, rate=a.rate, concurrency=a.concurrency, duration=a.duration, warmup=a.warmup,
                        max_requests=a.max_requests, timeout_s=a.timeout)
    except ValueError as e:
        print(f"loadgen: {e}", file=sys.stderr)
        return 2
    if a.json:
        sys.stdout.write(orjson.dumps(res.as_dict(a.samples), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(res.line())
        if res.error_kinds:
            print("errors:", res.error_kinds)
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
