"""Scenarios and phases: what one measurement is, how a direct run and a gateway run are paired, what the
gateway adds, and when a phase cannot be trusted (saturated, or disturbed by other processes on the machine)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from .loadgen import PhaseResult, Workload, run_phase
from .runners import Managed, ProcSample, SystemSample, Target, UpstreamSpec, foreign_cpu, reset_peak, system_sample
from .stats import paired_differences, summarize

UPSTREAMS = (UpstreamSpec("0ms", 0.0, chunks=16, chunk_interval_ms=0.0),
             UpstreamSpec("50ms", 50.0, chunks=16, chunk_interval_ms=10.0))


@dataclass(frozen=True, slots=True)
class Scenario:
    endpoint: str  # "chat/completions" | "embeddings"
    stream: bool
    upstream: str  # an UpstreamSpec name
    rate: float

    @property
    def label(self) -> str:
        kind = "embeddings" if self.endpoint == "embeddings" else ("chat stream" if self.stream else "chat")
        return f"{kind}, upstream {self.upstream}, {self.rate:g} req/s"

    def as_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "stream": self.stream, "upstream": self.upstream, "rate": self.rate,
                "label": self.label}


@dataclass(slots=True)
class Plan:
    duration: float
    warmup: float
    closed_duration: float
    concurrency: int
    startup_samples: int
    timeout_s: float = 10.0  # per request; also bounds how long a saturated phase drains
    retries: int = 1  # re-runs of a pair of phases that other processes disturbed
    quiet_wait: float = 20.0  # seconds to wait for the machine to go quiet before a re-run
    rates: tuple[float, ...] = (100.0, 500.0)
    embeddings: bool = True
    governance_pairs: int = 8  # alternating off/on closed-loop pairs (benchmarks.compare.governance_pairs)
    instructions: bool = True  # count governance's instructions under callgrind (about two minutes)
    scenarios: list[Scenario] = field(default_factory=list)

    def build(self) -> Plan:
        self.scenarios = [Scenario("chat/completions", stream, up.name, rate)
                          for up in UPSTREAMS for stream in (False, True) for rate in self.rates]
        if self.embeddings:
            self.scenarios.append(Scenario("embeddings", False, "0ms", max(self.rates)))
        return self


FULL = Plan(duration=10.0, warmup=1.0, closed_duration=5.0, concurrency=32, startup_samples=3)
QUICK = Plan(duration=2.0, warmup=0.25, closed_duration=1.5, concurrency=32, startup_samples=1, timeout_s=2.0,
             retries=0, quiet_wait=3.0, embeddings=False, governance_pairs=3, instructions=False)


def workload(target: Target, sc: Scenario) -> Workload:
    url, model = target.url(sc.endpoint, sc.upstream), target.model(sc.upstream, sc.endpoint)
    if sc.endpoint == "embeddings":
        w = Workload.embeddings(url, model, target.api_key)
    else:
        w = Workload.chat(url, model, target.api_key, sc.stream)
    w.headers.update(target.request_headers(sc.upstream))
    return w


def _cost(before: ProcSample, after: ProcSample, requests: int) -> dict[str, Any]:
    cpu = after.cpu_s - before.cpu_s
    return {"cpu_s": round(cpu, 3), "cpu_ms_per_req": round(1000 * cpu / requests, 4) if requests else None,
            "rss_kb": after.rss_kb, "peak_rss_kb": after.peak_kb}


def measure(target: Target, upstream: Managed, mode: str, sc: Scenario,
            plan: Plan) -> tuple[PhaseResult, dict[str, Any]]:
    """One phase against one target, with the CPU and memory the gateway and the fake spent on it."""
    gw = target.process
    marks: dict[str, tuple[ProcSample | None, ProcSample, SystemSample, float]] = {}

    def mark(which: str) -> None:
        if which == "start" and gw is not None:
            reset_peak(gw.pid)
        marks[which] = (gw.sample() if gw is not None else None, upstream.sample(), system_sample(),
                        time.perf_counter())

    if mode == "open":
        res = run_phase(workload(target, sc), "open", rate=sc.rate, duration=plan.duration, warmup=plan.warmup,
                        timeout_s=plan.timeout_s, mark=mark)
    else:
        res = run_phase(workload(target, sc), "closed", concurrency=plan.concurrency, duration=plan.closed_duration,
                        warmup=plan.warmup, timeout_s=plan.timeout_s, mark=mark)
    g2: ProcSample | None = None
    if gw is not None:
        gw.settle()  # a saturated phase leaves a backlog: let it drain before the next phase
        g2 = gw.sample()
    d = res.as_dict()
    (g0, u0, s0, t0), (g1, u1, s1, t1) = marks["start"], marks["end"]
    # The gateway's CPU and peak RSS run to the end of the drain: work it put off during the phase (batched store
    # writes at a low priority, say) is charged to the phase's requests, not lost between phases.
    d["gateway"] = _cost(g0, g2, res.sent) if g0 is not None and g1 is not None and g2 is not None else None
    if d["gateway"] is not None and g1 is not None and g2 is not None:
        d["gateway"]["drain_cpu_s"] = round(g2.cpu_s - g1.cpu_s, 3)
    ours = (u1.cpu_s - u0.cpu_s) + (g1.cpu_s - g0.cpu_s if g0 is not None and g1 is not None else 0.0)
    d["system"] = foreign_cpu(s0, s1, ours, t1 - t0)
    span = max(t1 - t0, 1e-9)
    d["system"]["gateway_wait"] = round((g1.wait_s - g0.wait_s) / span, 4) if g0 is not None and g1 else None
    d["system"]["upstream_wait"] = round((u1.wait_s - u0.wait_s) / span, 4)
    d["system"]["loadgen_wait"] = round((s1.self_wait_s - s0.self_wait_s) / span, 4)
    if d["gateway"] is not None and g0 is not None and g1 is not None and res.wall_s > 0:
        d["gateway"]["cpu_util"] = round((g1.cpu_s - g0.cpu_s) / res.wall_s, 3)
    d["upstream"] = _cost(u0, u1, res.sent)
    return res, d


def added(direct: PhaseResult, gateway: PhaseResult) -> dict[str, float | None]:
    """What the gateway adds: differences of percentiles, and percentiles of the paired (same sequence number)
    differences."""
    paired = summarize(paired_differences(direct.latencies, gateway.latencies))
    out: dict[str, float | None] = {
        "p50_ms": gateway.latency.p50 - direct.latency.p50, "p90_ms": gateway.latency.p90 - direct.latency.p90,
        "p99_ms": gateway.latency.p99 - direct.latency.p99, "mean_ms": gateway.latency.mean - direct.latency.mean,
        "paired_p50_ms": paired.p50, "paired_p99_ms": paired.p99,
        "service_p50_ms": gateway.service.p50 - direct.service.p50,
        "service_p99_ms": gateway.service.p99 - direct.service.p99,
        "ttfb_p50_ms": None, "ttfb_p99_ms": None}
    if direct.ttfb and gateway.ttfb:
        out["ttfb_p50_ms"] = gateway.ttfb.p50 - direct.ttfb.p50
        out["ttfb_p99_ms"] = gateway.ttfb.p99 - direct.ttfb.p99
    return {k: (None if v is None or math.isnan(v) else round(v, 4)) for k, v in out.items()}


def saturated(res: PhaseResult, baseline: PhaseResult | None, plan: Plan) -> bool:
    """An open-loop phase that could not keep up: failures, or replies finishing well behind the schedule (the
    phase's throughput, measured to its last reply, under 90% of the direct run's, or of the rate asked)."""
    if res.overloaded or res.errors or not res.ok:
        return True
    if baseline is not None:
        return res.throughput < 0.9 * baseline.throughput
    expected = res.planned / (plan.duration + 0.25 + res.latency.p50 / 1000)
    return res.throughput < 0.9 * expected


FOREIGN_LIMIT = 0.15  # cores' worth of CPU used by other processes during a phase before the run is flagged


WAIT_LIMIT = 0.02  # share of the phase the gateway spent runnable but kept off its core


def disturbed(d: dict[str, Any]) -> float:
    """How much other work got in the way of a phase (cores' worth of CPU other processes used); 0 when it did
    not. Other processes' CPU counts only when ours had to wait for a core meanwhile: the gateway's event loop
    (alone on its core but for its own helper threads), or, in open loop, the fake and the load generator (which
    share a core, so in closed loop they wait for each other anyway)."""
    s = d["system"]
    other = float(s["foreign_cores"] + s["steal_cores"])
    if other <= FOREIGN_LIMIT:
        return 0.0
    if (s.get("gateway_wait") or 0.0) > WAIT_LIMIT:
        return other
    if d["mode"] == "open" and s["upstream_wait"] + s["loadgen_wait"] > 2 * WAIT_LIMIT:
        return other
    return 0.0


def sanity(label: str, target: str, res: PhaseResult, warnings: list[str], overloaded: bool = False,
           d: dict[str, Any] | None = None) -> None:
    if d is not None and disturbed(d) > 0:
        s = d["system"]
        warnings.append(f"{label} / {target}: disturbed by other processes ({s['foreign_cores']:.2f} cores used by "
                        f"others; waiting for a core: gateway {s.get('gateway_wait') or 0:.1%}, fake "
                        f"{s['upstream_wait']:.1%}, load generator {s['loadgen_wait']:.1%} of the phase)")
    if res.errors and not (res.overloaded and set(res.error_kinds) <= {"unfinished", "timeout"}):
        warnings.append(f"{label} / {target}: {res.errors} of {res.sent} requests failed: {res.error_kinds}")
    if overloaded:
        warnings.append(f"{label} / {target}: saturated, {res.throughput:.0f} req/s completed"
                        + (f" of {res.rate:g} asked" if res.rate else "")
                        + (f"; stopped after {res.sent} of {res.planned} requests, too far behind ({res.errors} "
                           "of them unanswered)" if res.overloaded else ""))


def wait_quiet(max_wait: float) -> float:
    """Cores' worth of CPU other processes use now (over 1 s); waits up to ``max_wait`` s for it to fall under
    ``FOREIGN_LIMIT``. The benchmark shares the machine; a busy neighbour moves every number."""
    deadline = time.perf_counter() + max_wait
    while True:
        s0 = system_sample()
        time.sleep(1.0)
        busy = foreign_cpu(s0, system_sample(), 0.0, 1.0)["foreign_cores"]
        if busy <= FOREIGN_LIMIT or time.perf_counter() >= deadline:
            return busy
        print(f"benchmarks: other processes use {busy:.2f} cores; waiting for the machine to be quiet", flush=True)


def compare(direct: Target, gateway: Target, upstreams: dict[str, Managed], sc: Scenario, plan: Plan, mode: str,
            label: str) -> tuple[dict[str, Any], list[str]]:
    """Run a scenario against the direct target, then the gateway. When other processes disturbed either phase,
    wait for the machine to go quiet and run the pair again (``plan.retries`` times at most), keeping the least
    disturbed pair. Returns the row for the results and its warnings."""
    best: tuple[float, dict[str, Any], list[str]] | None = None
    for attempt in range(plan.retries + 1):
        if attempt:
            wait_quiet(plan.quiet_wait)
        row: dict[str, Any] = {"scenario": {**sc.as_dict(), "label": label}, "attempts": attempt + 1}
        results: dict[str, PhaseResult] = {}
        warnings: list[str] = []
        for t in (direct, gateway):
            res, d = measure(t, upstreams[sc.upstream], mode, sc, plan)
            results[t.name], row[t.name] = res, d
            if mode == "open":
                d["saturated"] = saturated(res, results.get("direct") if t is gateway else None, plan)
            sanity(label, t.name, res, warnings, bool(d.get("saturated")), d)
        if mode == "open":
            row["added"] = added(results["direct"], results["switchyard"])
            row["saturated"] = row["direct"]["saturated"] or row["switchyard"]["saturated"]
        noise = max(disturbed(row["direct"]), disturbed(row["switchyard"]))
        if best is None or noise < best[0]:
            best = (noise, row, warnings)
        if noise == 0.0:
            break
    assert best is not None
    best[1]["attempts"] = attempt + 1
    best[1]["disturbed_cores"] = round(best[0], 3)
    return best[1], best[2]
