"""Switchyard against its peers, in the same run and on the same core: LiteLLM's proxy and Portkey's gateway,
and Switchyard twice (governance off, and governance on: a virtual key with budgets and rate limits, spend records
and the audit log). Then the scale-out check: ``serve --workers 2`` against one worker.

Each gateway in turn is started pinned to ``GATEWAY_CORE`` and measured on the same phases, against the same fake
upstreams, from the same load generator (``LOADGEN_CORE``):

* closed loop, plain chat, upstream ``0ms``: the maximum throughput on one core, and CPU ms per request;
* open loop at each of the plan's rates, plain chat, upstream ``0ms``: added latency p50/p99 over the direct call;
* open loop at the lowest rate, streamed chat, upstream ``50ms`` (16 chunks 10 ms apart): the added time to the
  first byte, and the per-chunk overhead (the added time to the end of the stream, less the added time to the
  first byte, over the number of chunks);
* time from spawn to ready, RSS when ready, and peak RSS over its phases.

Portkey listens on every interface, so the whole benchmark runs in a network namespace of its own where loopback
is the only interface (:func:`benchmarks.peers.enter_loopback_netns`, called by ``run.py`` before anything starts).
A peer that is not installed, or that fails to start, is reported as skipped with the reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from . import instructions, peers
from .loadgen import PhaseResult
from .phases import Plan, Scenario, added, measure, saturated
from .runners import GATEWAY_CORE, Managed, SwitchyardTarget, Target

MASTER_KEY = "sk-bench-master-0123456789abcdef"
GOVERNED = "switchyard-gov"
ORDER = ("switchyard", GOVERNED, "litellm", "portkey")
LABELS = {"switchyard": "Switchyard", GOVERNED: "Switchyard, governance on", "litellm": "LiteLLM",
          "portkey": "Portkey"}


class GovernedSwitchyardTarget(SwitchyardTarget):
    """Switchyard with governance on: a master key, and, created through the admin API once it is ready, an org,
    a team, a user and a virtual key with a USD budget on the key, a token budget on the team and a rate limit
    (requests, tokens and concurrency) on the key, all far above what the benchmark spends. The load uses the
    virtual key, so every request authenticates from the key cache, reserves and settles against two budgets and
    three limits, and writes a spend record and an audit record."""

    name = GOVERNED

    def config_text(self) -> str:
        return f"master_key: {MASTER_KEY}\n" + super().config_text()

    def start(self) -> None:
        super().start()
        self.api_key = self.provision()

    def new_process(self) -> Managed:
        m = super().new_process()
        self.api_key = None
        return m

    def _admin(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/admin/{path}", data=orjson.dumps(body),
                                     headers={"authorization": f"Bearer {MASTER_KEY}",
                                              "content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:  # loopback only: the gateway we started
            out: dict[str, Any] = orjson.loads(r.read())
            return out

    def provision(self) -> str:
        org = self._admin("orgs", {"name": "bench"})["id"]
        team = self._admin("teams", {"name": "bench", "org_id": org})["id"]
        user = self._admin("users", {"email": "bench@example.com", "team_id": team})["id"]
        key = self._admin("keys", {"user_id": user, "name": "bench"})
        self._admin("budgets", {"scope": "key", "scope_id": key["id"], "max_usd": 1_000_000, "period": "monthly"})
        self._admin("budgets", {"scope": "team", "scope_id": team, "max_tokens": 10**12, "period": "daily"})
        self._admin("rate_limits", {"scope": "key", "scope_id": key["id"], "rpm": 10**8, "tpm": 10**12,
                                    "max_concurrent": 100_000})
        time.sleep(1.2)  # two key-directory polls: every cached principal carries the new definitions
        return str(key["secret"])


def _start(t: Target) -> None:
    t.start()


def _targets(upstreams: dict[str, int], workdir: Path, src: Path | None,
             skipped: dict[str, str]) -> list[Target]:
    out: list[Target] = [SwitchyardTarget(upstreams, workdir, src=src),
                         GovernedSwitchyardTarget(upstreams, workdir, src=src)]
    for name, cls in peers.PEERS.items():
        if peers.installed(name) is None:
            skipped[name] = f"not installed (bash {peers.SETUP.relative_to(peers.REPO)})"
        elif name == "portkey" and not peers.only_loopback():
            skipped[name] = "needs a loopback-only network namespace (run as root, or under `unshare -rn`)"
        else:
            out.append(cls(upstreams, workdir))
    return out


def scenarios(plan: Plan) -> tuple[Scenario, list[Scenario], Scenario]:
    closed = Scenario("chat/completions", False, "0ms", 0)
    opened = [Scenario("chat/completions", False, "0ms", r) for r in plan.rates]
    stream = Scenario("chat/completions", True, "50ms", min(plan.rates))
    return closed, opened, stream


def _row(res: PhaseResult, d: dict[str, Any], base: PhaseResult | None, plan: Plan) -> dict[str, Any]:
    row: dict[str, Any] = {"result": d}
    if res.mode == "open":
        row["saturated"] = saturated(res, base, plan)
        row["added"] = added(base, res) if base is not None else None
    return row


def run(plan: Plan, ups: dict[str, Managed], direct: Target, workdir: Path, src: Path | None,
        warnings: list[str]) -> dict[str, Any]:
    """Measure every available gateway on the same phases; the direct baselines are measured once, first."""
    ports = {name: m.port for name, m in ups.items()}
    closed, opened, stream = scenarios(plan)
    out: dict[str, Any] = {"skipped": {}, "gateways": {}, "direct": {}}
    baselines: dict[str, PhaseResult] = {}
    for sc in [*opened, stream]:
        res, d = measure(direct, ups[sc.upstream], "open", sc, plan)
        baselines[sc.label] = res
        out["direct"][sc.label] = d
    for t in _targets(ports, workdir, src, out["skipped"]):
        g: dict[str, Any] = {"label": LABELS.get(t.name, t.name), "phases": {}}
        try:
            _start(t)
        except Exception as e:  # a peer that will not start is reported, not fatal
            out["skipped"][t.name] = f"did not start: {str(e)[:300]}"
            warnings.append(f"peers: {t.name} did not start: {str(e)[:300]}")
            with contextlib.suppress(Exception):
                t.stop()
            continue
        assert t.process is not None
        boot = t.process.sample()
        g.update(ready_s=round(t.process.ready_s or 0.0, 3), idle_rss_kb=boot.rss_kb, command=t.process.argv)
        if isinstance(t, peers.PeerTarget):
            g["version"] = t.version()
        peak = boot.peak_kb
        print(f"peers: {t.name} ready in {g['ready_s']:.2f} s, {boot.rss_kb / 1024:.0f} MiB", flush=True)
        try:
            for mode, sc in [("closed", closed), *(("open", s) for s in opened), ("open", stream)]:
                res, d = measure(t, ups[sc.upstream], mode, sc, plan)
                row = _row(res, d, baselines.get(sc.label) if mode == "open" else None, plan)
                g["phases"][f"{mode}: {sc.label}"] = row
                if d["gateway"]:
                    peak = max(peak, d["gateway"]["peak_rss_kb"])
                if res.errors and not res.overloaded:
                    warnings.append(f"peers: {t.name} / {sc.label}: {res.errors} of {res.sent} requests failed: "
                                    f"{res.error_kinds}")
                print(f"  {t.name:<15} {mode:6} {sc.label:<36} {res.throughput:8.0f} req/s  p50 "
                      f"{res.latency.p50:8.3f} ms  p99 {res.latency.p99:8.3f} ms  cpu "
                      f"{(d['gateway'] or {}).get('cpu_ms_per_req')} ms/req", flush=True)
        finally:
            g["peak_rss_kb"] = peak
            t.stop()
        out["gateways"][t.name] = g
    out["governance_pairs"] = governance_pairs(plan, ups, ports, workdir, src, closed, plan.governance_pairs)
    out["governance_instructions"] = (governance_instructions(ports, workdir, src, warnings) if plan.instructions
                                      else {"skipped": "not in a quick run"})
    out["scaleout"] = scaleout(plan, ups, ports, workdir, src, closed)
    return out


def governance_pairs(plan: Plan, ups: dict[str, Managed], ports: dict[str, int], workdir: Path, src: Path | None,
                     closed: Scenario, pairs: int = 8) -> dict[str, Any]:
    """Governance off and on, alternating, ``pairs`` times on the same core: CPU per request of each closed-loop
    phase (drain included, at most 2 s of load each), and the median of the pairs' ratios. One pair moves by a
    quarter from run to run on this machine (other tenants' load); short phases, alternated, and the median of
    many paired ratios move much less."""
    plan = dataclasses.replace(plan, closed_duration=min(plan.closed_duration, 2.0))
    off, on = SwitchyardTarget(ports, workdir, src=src), GovernedSwitchyardTarget(ports, workdir, src=src)
    rows: list[dict[str, float]] = []
    try:
        off.start()
        on.start()
        for _ in range(pairs):
            cpu = []
            for t in (off, on):
                _, d = measure(t, ups[closed.upstream], "closed", closed, plan)
                cpu.append((d["gateway"] or {}).get("cpu_ms_per_req") or 0.0)
            rows.append({"off_cpu_ms": cpu[0], "on_cpu_ms": cpu[1],
                         "over_pct": round((cpu[1] / cpu[0] - 1) * 100, 1) if cpu[0] else 0.0})
            print(f"  governance pair: off {cpu[0]:.3f} ms/req, on {cpu[1]:.3f} ms/req, "
                  f"{rows[-1]['over_pct']:+.1f}%", flush=True)
    finally:
        off.stop()
        on.stop()
    return {"pairs": rows, "median_over_pct": statistics.median(r["over_pct"] for r in rows) if rows else None}


def governance_instructions(ports: dict[str, int], workdir: Path, src: Path | None,
                            warnings: list[str]) -> dict[str, Any]:
    """The same comparison in instructions (callgrind): noise-free, see :mod:`benchmarks.instructions`."""
    why = instructions.available()
    if why is not None:
        return {"skipped": why}
    try:
        return instructions.measure(ports, workdir, src, GovernedSwitchyardTarget)
    except Exception as e:  # reported, not fatal: the CPU pairs stand on their own
        warnings.append(f"peers: the instruction count failed: {str(e)[:300]}")
        return {"skipped": f"failed: {str(e)[:300]}"}


def _children_cpu(pid: int) -> float:
    """CPU seconds of a supervisor's worker processes (``serve --workers N``)."""
    from .runners import sample

    total = 0.0
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            with contextlib.suppress(OSError):
                total += sample(int(child)).cpu_s
    return total


def scaleout(plan: Plan, ups: dict[str, Managed], ports: dict[str, int], workdir: Path, src: Path | None,
             sc: Scenario) -> dict[str, Any]:
    """Closed-loop plain chat against ``serve --workers 1`` on one core, then ``--workers 2`` on both cores.
    This machine has two cores, and the fake upstream and the load generator need one of them too, so the second
    worker shares its core with them: the figure shows what a second worker adds here, not a clean 2x."""
    out: dict[str, Any] = {}
    for workers, core in ((1, str(GATEWAY_CORE)), (2, "0,1")):
        t = SwitchyardTarget(ports, workdir, src=src, workers=workers, core=core)
        t.name = f"switchyard-w{workers}"
        t.config_path = workdir / f"{t.name}.yaml"
        try:
            t.start()
            time.sleep(0.5)  # every worker bound and ready
            assert t.process is not None
            cpu0 = t.process.sample().cpu_s + _children_cpu(t.process.pid)
            res, _ = measure(t, ups[sc.upstream], "closed", sc, plan)
            cpu1 = t.process.sample().cpu_s + _children_cpu(t.process.pid)
            out[str(workers)] = {"throughput": round(res.throughput, 1), "errors": res.errors,
                                 "cores": core, "cpu_ms_per_req": round(1000 * (cpu1 - cpu0) / max(res.sent, 1), 4),
                                 "p50_ms": round(res.latency.p50, 3), "p99_ms": round(res.latency.p99, 3)}
            print(f"  scale-out: {workers} worker(s) on cores {core}: {res.throughput:.0f} req/s", flush=True)
        except Exception as e:
            out[str(workers)] = {"error": str(e)[:300]}
        finally:
            t.stop()
    return out
