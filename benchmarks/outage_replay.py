"""Replay a day of traffic, compressed into seconds, against fake providers with scripted outages, through the
gateway three ways, and report the success rate and the latency of each.

    python -m benchmarks.outage_replay            # 3 modes x 30 s (about 1.5 minutes)
    python -m benchmarks.outage_replay --quick    # 3 modes x 3 s (about 15 s)

The day: 24 hours in ``--duration`` seconds; arrivals are Poisson (open loop, so a slow gateway cannot slow the
load down and hide its own latency) at a diurnal rate, lowest at 04:00 and highest at 16:00 (``--peak-rps``).
A quarter of the requests stream. Each carries ``x-switchyard-timeout`` (the deadline, 5 s).

The providers (chaos upstreams on loopback, answering in OpenAI's wire format):

* ``a`` (30 ms) is down for 30% of the day: connections refused from 09:00 to 12:36, then black-holed (it accepts
  and never answers) until 16:12.
* ``b`` (30 ms) throttles: over 40 requests per second it answers 429 with ``Retry-After: 1``.
* ``c`` (80 ms, the spare) is healthy all day.

The modes, each against fresh upstreams and a fresh gateway:

* ``direct``: the client spreads requests over deployments ``a`` and ``b`` itself (as an application without a
  routing gateway would): no failover; a deployment's failure is the request's failure.
* ``route``: one route over ``a`` and ``b`` (weighted), with breakers, ``ttft_s`` and one retry: no fallbacks.
* ``route+fallbacks``: the same route with ``fallbacks: [c]``.

Safety: everything listens on and connects to 127.0.0.1 only; the run is bounded in time (``--duration`` <= 600
s per mode) and in requests (at most 200,000 per mode, 2,000 in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.chaos import ChaosUpstream, Fault  # noqa: E402

MAX_REQUESTS = 200_000
MAX_IN_FLIGHT = 2_000
DEADLINE_S = 5.0
A_DOWN = (9.0, 12.6)  # hours: refused
A_BLACKHOLE = (12.6, 16.2)  # hours: accepts, never answers
B_LIMIT_RPS = 40.0
MODES = ("direct", "route", "route+fallbacks")


# --- the upstreams ---------------------------------------------------------------------------------------------


def throttle_policy(limit_rps: float, ok: Fault) -> Callable[[int, str], Fault]:
    """A provider rate limit: a token bucket of ``limit_rps``; over it, 429 with Retry-After: 1."""
    state = {"tokens": limit_rps, "at": time.monotonic()}
    lock = threading.Lock()
    refused = Fault.error(429, retry_after=1, message="Rate limit reached for requests")

    def policy(n: int, path: str) -> Fault:
        with lock:
            now = time.monotonic()
            state["tokens"] = min(limit_rps, state["tokens"] + (now - state["at"]) * limit_rps)
            state["at"] = now
            if state["tokens"] >= 1:
                state["tokens"] -= 1
                return ok
        return refused

    return policy


def upstreams(duration: float) -> None:
    """Run the three providers (the child process of a benchmark run) and play the outage schedule.

    Prints ``{"a": port, ...}``, reads the start instant (a ``time.monotonic()`` value: the clock is system-wide on
    Linux) from stdin, then changes ``a`` at the scheduled hours; exits when stdin closes.
    """
    with contextlib.ExitStack() as stack:
        ups = {n: stack.enter_context(ChaosUpstream(name=n, default=Fault.ok(ttft=lat)))
               for n, lat in (("a", 0.03), ("b", 0.03), ("c", 0.08))}
        ups["b"].policy = throttle_policy(B_LIMIT_RPS, Fault.ok(ttft=0.03))
        print(json.dumps({n: u.port for n, u in ups.items()}), flush=True)
        start = float(sys.stdin.readline())
        a = ups["a"]

        def blackhole() -> None:
            a.default = Fault.hang(60)
            a.up()

        def recover() -> None:
            a.default = Fault.ok(ttft=0.03)

        for hour, action in ((A_DOWN[0], a.down), (A_BLACKHOLE[0], blackhole), (A_BLACKHOLE[1], recover)):
            time.sleep(max(0.0, start + hour / 24 * duration - time.monotonic()))
            action()
        sys.stdin.read()  # until the parent is done


@contextlib.contextmanager
def upstream_process(duration: float) -> Iterator[tuple[dict[str, int], Callable[[float], None]]]:
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.outage_replay", "--upstreams", str(duration)],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.stdin is not None and proc.stdout is not None
    stdin = proc.stdin
    try:
        ports = json.loads(proc.stdout.readline())

        def go(start: float) -> None:
            stdin.write(f"{start}\n")
            stdin.flush()

        yield ports, go
    finally:
        stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


# --- the gateway, in its own process --------------------------------------------------------------------------


def gateway_config(ports: dict[str, int], mode: str, port: int) -> dict[str, Any]:
    providers = {n: {"type": "openai", "base_url": f"http://127.0.0.1:{p}/v1", "api_key": "sk-bench",
                     "connect_timeout": 0.5, "timeout": 30} for n, p in ports.items()}
    route: dict[str, Any] = {"targets": ["a", "b"], "retries": {"max": 1, "backoff_base_ms": 50}}
    if mode == "route+fallbacks":
        route["fallbacks"] = ["c"]
    return {
        "master_key": "sk-bench-master-0123456789",
        "store": "sqlite:///:memory:",
        "server": {"host": "127.0.0.1", "port": port, "request_timeout": 30},
        "providers": providers,
        "deployments": [{"name": n, "provider": n, "model": f"model-{n}", "price": {"input": 1, "output": 2}}
                        for n in ports],
        "routes": {"chat": route},
        "routing": {
            "timeouts": {"ttft_s": 1.0},
            "breaker": {"consecutive_failures": 5, "failure_rate": 0.5, "window_s": 5, "min_requests": 20,
                        "cooldown_s": 0.25, "cooldown_max_s": 1},
        },
    }


def serve(config_path: str) -> None:
    """Run a gateway from a JSON config (the child process of a benchmark run)."""
    import uvicorn

    from switchyard.config import parse_config
    from switchyard.server.factory import build

    cfg = parse_config(json.loads(Path(config_path).read_text()), config_path, {})
    uvicorn.run(build(cfg), host="127.0.0.1", port=cfg.server.port, log_level="error", access_log=False,
                lifespan="on")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def gateway_process(config: dict[str, Any]) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gateway.json"
        path.write_text(json.dumps(config))
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.outage_replay", "--serve", str(path)], cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        url = f"http://127.0.0.1:{config['server']['port']}"
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if httpx.get(url + "/health/live", timeout=0.5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the gateway did not start")
                time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


# --- the day ---------------------------------------------------------------------------------------------------


def rate_at(hour: float, peak: float) -> float:
    """Requests per second at an hour of the day: a quarter of the peak at 04:00, the peak at 16:00."""
    return peak * (0.25 + 0.75 * (1 - math.cos(2 * math.pi * (hour - 4) / 24)) / 2)


def schedule(duration: float, peak: float, seed: int) -> list[float]:
    """Arrival offsets (seconds) of a non-homogeneous Poisson process, by thinning."""
    rng = random.Random(seed)
    out: list[float] = []
    t = 0.0
    while len(out) < MAX_REQUESTS:
        t += rng.expovariate(peak)
        if t >= duration:
            break
        if rng.random() < rate_at(t / duration * 24, peak) / peak:
            out.append(t)
    return out


@dataclass
class Result:
    mode: str
    latencies_ok: list[float] = field(default_factory=list)
    latencies_all: list[float] = field(default_factory=list)
    ok: int = 0
    failed: int = 0
    by_phase: dict[str, list[int]] = field(default_factory=dict)  # phase -> [ok, total]
    errors: dict[str, int] = field(default_factory=dict)
    served_by: dict[str, int] = field(default_factory=dict)
    lag: list[float] = field(default_factory=list)  # how late each request left, against its schedule

    def add(self, phase: str, ok: bool, seconds: float, detail: str) -> None:
        self.latencies_all.append(seconds)
        p = self.by_phase.setdefault(phase, [0, 0])
        p[1] += 1
        if ok:
            self.ok += 1
            p[0] += 1
            self.latencies_ok.append(seconds)
            self.served_by[detail] = self.served_by.get(detail, 0) + 1
        else:
            self.failed += 1
            self.errors[detail] = self.errors.get(detail, 0) + 1

    def summary(self) -> dict[str, Any]:
        total = self.ok + self.failed
        return {
            "mode": self.mode, "requests": total, "success_rate": self.ok / total if total else 0.0,
            "p50_ms": _pct(self.latencies_ok, 50), "p99_ms": _pct(self.latencies_ok, 99),
            "p99_all_ms": _pct(self.latencies_all, 99), "max_ms": max(self.latencies_all, default=0) * 1000,
            "by_phase": {k: {"success_rate": v[0] / v[1], "requests": v[1]} for k, v in self.by_phase.items()},
            "errors": self.errors, "served_by": self.served_by, "send_lag_p99_ms": _pct(self.lag, 99),
        }


def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p / 100))] * 1000


def phase_of(hour: float) -> str:
    if A_DOWN[0] <= hour < A_DOWN[1]:
        return "a refused"
    if A_BLACKHOLE[0] <= hour < A_BLACKHOLE[1]:
        return "a black-holed"
    return "a healthy"


async def one(client: httpx.AsyncClient, url: str, model: str, stream: bool) -> tuple[bool, str]:
    body = {"model": model, "messages": [{"role": "user", "content": "replay"}], "stream": stream}
    headers = {"authorization": "Bearer sk-bench-master-0123456789", "x-switchyard-timeout": str(DEADLINE_S)}
    if not stream:
        r = await client.post(url, json=body, headers=headers)
        if r.status_code != 200:
            return False, f"HTTP {r.status_code}"
        return bool(r.json().get("choices")), r.headers.get("x-switchyard-deployment", "?")
    async with client.stream("POST", url, json=body, headers=headers) as r:
        if r.status_code != 200:
            await r.aread()
            return False, f"HTTP {r.status_code}"
        last = ""
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                if '"error"' in line[:20]:
                    return False, "stream error event"
                last = line
        if last != "data: [DONE]":
            return False, "stream cut"
        return True, r.headers.get("x-switchyard-deployment", "?")


async def replay(mode: str, arrivals: list[float], duration: float, url: str, start: float, seed: int) -> Result:
    res = Result(mode)
    rng = random.Random(seed + 1)
    limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=200)
    sem = asyncio.Semaphore(MAX_IN_FLIGHT)
    async with httpx.AsyncClient(limits=limits, timeout=DEADLINE_S + 5) as client:
        tasks: list[asyncio.Task[None]] = []

        async def fire(at: float) -> None:
            res.lag.append(time.monotonic() - (start + at))
            async with sem:
                model = "chat" if mode != "direct" else ("a" if rng.random() < 0.5 else "b")
                began = time.monotonic()
                try:
                    ok, detail = await one(client, url + "/v1/chat/completions", model, rng.random() < 0.25)
                except httpx.HTTPError as e:
                    ok, detail = False, type(e).__name__
                res.add(phase_of(at / duration * 24), ok, time.monotonic() - began, detail)

        for at in arrivals:
            delay = start + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(fire(at)))
        await asyncio.gather(*tasks)
    return res


def run_mode(mode: str, duration: float, peak: float, seed: int) -> Result:
    """One mode, with fresh providers and a fresh gateway, each in its own process (the load generator has this
    one to itself, so its own overhead does not show as latency)."""
    with upstream_process(duration) as (ports, go), gateway_process(gateway_config(ports, mode, free_port())) as url:
        arrivals = schedule(duration, peak, seed)
        start = time.monotonic() + 0.2
        go(start)
        return asyncio.run(replay(mode, arrivals, duration, url, start, seed))


def report(results: list[Result], duration: float, peak: float) -> str:
    lines = [f"day compressed into {duration:g} s per mode, peak {peak:g} req/s, deadline {DEADLINE_S:g} s", "",
             "| mode | requests | success | p50 (ok) | p99 (ok) | p99 (all) | a refused | a black-holed | a healthy |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        s = r.summary()
        ph = s["by_phase"]

        def rate(k: str, ph: dict[str, Any] = ph) -> str:
            return f"{ph[k]['success_rate']:.2%}" if k in ph else "-"

        lines.append(f"| {r.mode} | {s['requests']} | {s['success_rate']:.2%} | {s['p50_ms']:.0f} ms | "
                     f"{s['p99_ms']:.0f} ms | {s['p99_all_ms']:.0f} ms | {rate('a refused')} | "
                     f"{rate('a black-holed')} | {rate('a healthy')} |")
    lines.append("")
    for r in results:
        s = r.summary()
        lines.append(f"{r.mode}: served by {s['served_by']}; failures {s['errors'] or 'none'}")
    worst = max((r.summary()["send_lag_p99_ms"] for r in results), default=0.0)
    if worst > 20:
        lines.append(f"\nWARNING: the load generator sent requests up to {worst:.0f} ms late (p99): the machine did "
                     "not keep up, so the latencies above include queueing outside the gateway. Use a quiet machine.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 s per mode at a lower rate (about 15 s in all)")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per mode (one compressed day)")
    ap.add_argument("--peak-rps", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--upstreams", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.upstreams:
        upstreams(args.upstreams)
        return
    duration, peak = (3.0, 80.0) if args.quick else (args.duration, args.peak_rps)
    if not (0 < duration <= 600 and 0 < peak <= 1000):
        ap.error("--duration must be in (0, 600] and --peak-rps in (0, 1000]")
    results = []
    for mode in args.modes.split(","):
        if mode not in MODES:
            ap.error(f"unknown mode {mode!r}; expected {', '.join(MODES)}")
        print(f"replaying a day as {mode} ...", file=sys.stderr, flush=True)
        results.append(run_mode(mode, duration, peak, args.seed))
    print(report(results, duration, peak))
    if args.json is not None:
        args.json.write_text(json.dumps([r.summary() for r in results], indent=2))


if __name__ == "__main__":
    main()
