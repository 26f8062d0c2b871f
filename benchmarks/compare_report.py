"""The peers section of docs/benchmarks.md: one column per gateway, ratios to the peers, the issue's targets with
met / not yet, the scale-out check, and the latency chart (docs/img/benchmarks-latency.png)."""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any

from .compare import GOVERNED, LABELS, ORDER

NOTES = Path(__file__).resolve().parent / "notes.md"  # hand-written: why a target is not met yet


def _f(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def _phase(g: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    for k, v in g["phases"].items():
        if k.startswith(prefix):
            return v  # type: ignore[no-any-return]
    return None


def figures(peers: dict[str, Any], rates: list[float]) -> dict[str, dict[str, Any]]:
    """Per gateway: throughput, CPU/req, added latency at each rate, stream overheads, memory and start time."""
    out: dict[str, dict[str, Any]] = {}
    low = min(rates)
    for name, g in peers["gateways"].items():
        f: dict[str, Any] = {"ready_s": g["ready_s"], "idle_mb": g["idle_rss_kb"] / 1024,
                             "peak_mb": g["peak_rss_kb"] / 1024}
        c = _phase(g, "closed:")
        if c is not None:
            d = c["result"]
            f["throughput"] = d["throughput"]
            f["cpu_ms"] = (d["gateway"] or {}).get("cpu_ms_per_req")
        for r in rates:
            row = _phase(g, f"open: chat, upstream 0ms, {r:g} req/s")
            if row is not None:
                sat = bool(row["saturated"])
                a = row["added"] or {}
                f[f"p50@{r:g}"] = None if sat else a.get("p50_ms")
                f[f"p99@{r:g}"] = None if sat else a.get("p99_ms")
                f[f"sat@{r:g}"] = sat
                f[f"done@{r:g}"] = row["result"]["throughput"]
        s = _phase(g, f"open: chat stream, upstream 50ms, {low:g} req/s")
        if s is not None and not s["saturated"] and s["added"]:
            a = s["added"]
            chunks = 16
            f["ttfb_added"] = a.get("ttfb_p50_ms")
            if a.get("p50_ms") is not None and a.get("ttfb_p50_ms") is not None:
                f["per_chunk"] = (a["p50_ms"] - a["ttfb_p50_ms"]) / chunks
        out[name] = f
    return out


def _version(stamp: str | None) -> str:
    """``litellm[proxy]==1.106.2 python=3.11.7`` -> ``1.106.2``."""
    m = re.search(r"\d+\.\d+\.\d+", stamp or "")
    return m.group(0) if m else ""


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x" if a / b < 10 else f"{a / b:.1f}x"


def _lat(f: dict[str, Any], r: float) -> str:
    if f.get(f"sat@{r:g}"):
        return f"saturated ({f.get(f'done@{r:g}', 0):.0f} req/s done)"
    return f"{_f(f.get(f'p50@{r:g}'))} / {_f(f.get(f'p99@{r:g}'))}"


def render(res: dict[str, Any], chart: str | None) -> list[str]:
    peers = res.get("peers")
    if not peers:
        return []
    rates = list(res["meta"]["plan"]["rates"])
    figs = figures(peers, rates)
    names = [n for n in ORDER if n in figs]
    head = ["", *[LABELS[n] + (f" {_version(peers['gateways'][n].get('version'))}"
                               if peers["gateways"][n].get("version") else "") for n in names]]
    rows = [["Max throughput on one core (req/s, closed loop)", *[_f(figs[n].get("throughput"), 0) for n in names]],
            ["CPU ms per request (closed loop, plain chat)", *[_f(figs[n].get("cpu_ms"), 3) for n in names]]]
    rows += [[f"Added latency p50 / p99 at {r:g} req/s (ms)", *[_lat(figs[n], r) for n in names]] for r in rates]
    rows += [["Stream: added time to first byte, p50 (ms)", *[_f(figs[n].get("ttfb_added")) for n in names]],
             ["Stream: overhead per chunk, p50 (ms)", *[_f(figs[n].get("per_chunk"), 3) for n in names]],
             ["Start to ready (s)", *[_f(figs[n]["ready_s"]) for n in names]],
             ["RSS when ready (MiB)", *[_f(figs[n]["idle_mb"], 0) for n in names]],
             ["Peak RSS over its phases (MiB)", *[_f(figs[n]["peak_mb"], 0) for n in names]]]
    lines = ["## Against the peers", "",
             "Each gateway in turn on the same core, the same fake upstreams and the same load, in this one run. "
             "Plain chat phases use the `0ms` upstream; the stream phase uses the `50ms` upstream (16 chunks, "
             f"10 ms apart) at {min(rates):g} req/s. *Added* latency is over the direct call measured in the same "
             "run. LiteLLM runs as its docs recommend for speed (one worker per core, logging, spend logs and "
             "callbacks off, a master key); Portkey runs `--headless` with `NODE_ENV=production`, in a network "
             "namespace where loopback is the only interface. *Governance on*: a virtual key with a USD budget, "
             "a team token budget and a rate limit (requests, tokens, concurrency), with spend records and the "
             "audit log written.", "",
             *_table(head, rows), ""]
    if chart:
        lines += [f"![Added latency per gateway]({chart})", ""]
    sy = figs.get("switchyard", {})
    ratio_rows = []
    for peer in ("litellm", "portkey"):
        p = figs.get(peer)
        if p is None:
            continue
        low = min(rates)
        ratio_rows.append([f"Switchyard vs {LABELS[peer]}",
                           _ratio(sy.get("throughput"), p.get("throughput")),
                           _ratio(sy.get("cpu_ms"), p.get("cpu_ms")),
                           _ratio(sy.get(f"p50@{low:g}"), p.get(f"p50@{low:g}")),
                           _ratio(sy.get("peak_mb"), p.get("peak_mb")),
                           _ratio(sy.get("ready_s"), p.get("ready_s"))])
    if ratio_rows:
        lines += ["Ratios (Switchyard with governance off, over the peer; throughput: higher is better, the rest: "
                  "lower is better):", "",
                  *_table(["", "Throughput per core", "CPU per request", f"Added p50 at {min(rates):g} req/s",
                           "Peak RSS", "Start to ready"], ratio_rows), ""]
    for name, why in peers.get("skipped", {}).items():
        lines.append(f"- **{LABELS.get(name, name)} not measured**: {why}")
    if peers.get("skipped"):
        lines.append("")
    lines += _scaleout(peers.get("scaleout") or {})
    lines += targets(res, figs)
    return lines


def _scaleout(s: dict[str, Any]) -> list[str]:
    one, two = s.get("1") or {}, s.get("2") or {}
    if not one or not two:
        return []
    rows = [[f"{w} worker(s), cores {d.get('cores', '?')}", _f(d.get("throughput"), 0), _f(d.get("cpu_ms_per_req"), 3),
             _f(d.get("p50_ms")), _f(d.get("p99_ms"))] if "error" not in d else [f"{w} worker(s)", d["error"], "", "",
                                                                                  ""]
            for w, d in (("1", one), ("2", two))]
    scale = _ratio(two.get("throughput"), one.get("throughput"))
    return ["## Scale-out: `switchyard serve --workers N`", "",
            "Closed loop, plain chat, upstream `0ms`. This machine has two cores and the fake upstream and the load "
            "generator need one of them, so the second worker shares a core with them: the ratio is what a second "
            "worker adds here, a lower bound for a machine where the load comes from elsewhere. Budgets stay exact "
            "across workers and replicas through `ledger.redis` (tests/test_scaleout.py runs `serve --workers 2` "
            "on PostgreSQL and Redis: 200 concurrent requests against $1.00 at $0.05 each give exactly 20, and a "
            "60-a-minute rate limit lets exactly 60 of 150 through); `--workers N` with virtual keys and no "
            "`ledger.redis` refuses to start.",
            "", *_table(["", "req/s", "CPU ms/req (all workers)", "p50 ms", "p99 ms"], rows), "",
            f"Two workers: {scale} the throughput of one.", ""]


def targets(res: dict[str, Any], figs: dict[str, dict[str, Any]]) -> list[str]:
    sy, gov, ll = figs.get("switchyard", {}), figs.get(GOVERNED, {}), figs.get("litellm", {})
    main = res.get("targets", {}).get("switchyard", {})
    ready = main.get("ready_s") or []
    ready_med = statistics.median(ready) if ready else sy.get("ready_s")
    peak_mb = max(x for x in [(main.get("peak_rss_kb") or 0) / 1024, sy.get("peak_mb") or 0.0])
    row500 = next((r for r in res.get("open_loop", []) if r["scenario"]["label"] == "chat, upstream 0ms, 500 req/s"),
                  None)
    a500 = (row500 or {}).get("added") or {}
    closed = next((r for r in res.get("closed_loop", []) if not r["scenario"]["stream"]), None)
    cpu_main = ((closed or {}).get("switchyard", {}).get("gateway") or {}).get("cpu_ms_per_req")
    cpu = sy.get("cpu_ms")
    worst_cpu = max(x for x in (cpu, cpu_main, 0.0) if x is not None) or None
    over = (gov["cpu_ms"] / cpu - 1) * 100 if gov.get("cpu_ms") and cpu else None
    pairs = (res.get("peers") or {}).get("governance_pairs") or {}
    over_text = f"{over:+.0f}%" if over is not None else "n/a"
    if pairs.get("median_over_pct") is not None:  # the robust figure: the median of alternating pairs
        over = pairs["median_over_pct"]
        each = ", ".join(f"{r['over_pct']:+.0f}%" for r in pairs["pairs"])
        over_text = f"{over:+.0f}% (median of {len(pairs['pairs'])} alternating pairs: {each}; the table above: " \
                    f"{over_text})"
    ins = (res.get("peers") or {}).get("governance_instructions") or {}
    if ins.get("over_pct") is not None:
        over_text += f"; in instructions (callgrind, noise-free): {ins['over_pct']:+.1f}% " \
                     f"({ins['main_over_pct']:+.1f}% on the event loop)"
    tp_ratio = sy["throughput"] / ll["throughput"] if sy.get("throughput") and ll.get("throughput") else None

    def mark(ok: bool | None) -> str:
        return "n/a" if ok is None else ("**met**" if ok else "not yet")

    rows = [
        ["≥ 10x LiteLLM's throughput per core", f"{tp_ratio:.1f}x" if tp_ratio else "n/a",
         mark(None if tp_ratio is None else tp_ratio >= 10)],
        ["Added latency at 500 req/s: p50 ≤ 1 ms", _f(a500.get("p50_ms")),
         mark(None if a500.get("p50_ms") is None else a500["p50_ms"] <= 1.0)],
        ["Added latency at 500 req/s: p99 ≤ 3 ms", _f(a500.get("p99_ms")),
         mark(None if a500.get("p99_ms") is None else a500["p99_ms"] <= 3.0)],
        ["≤ 0.5 ms CPU per non-streamed request (closed loop: main suite / peers section)",
         f"{_f(cpu_main, 3)} / {_f(cpu, 3)}", mark(None if worst_cpu is None else worst_cpu <= 0.5)],
        ["RSS ≤ 120 MB (peak over the whole run, saturating closed-loop phases included / over the peers section)",
         f"{peak_mb * 1.048576:.0f} MB / {(sy.get('peak_mb') or 0) * 1.048576:.0f} MB" if peak_mb else "n/a",
         mark(None if not peak_mb else peak_mb * 1.048576 <= 120)],
        ["Ready within 1.5 s (median)", _f(ready_med), mark(None if ready_med is None else ready_med <= 1.5)],
        ["Governance on costs ≤ 20% over off (CPU per request)", over_text,
         mark(None if over is None else over <= 20)],
    ]
    rows += stream_targets(res, mark)
    lines = ["## Targets", "", *_table(["Target (issues 6 and 12)", "This run", ""], rows), ""]
    if NOTES.exists():
        lines += [NOTES.read_text().strip(), ""]
    return lines


def stream_targets(res: dict[str, Any], mark: Any) -> list[list[str]]:
    """Issue 12's stream targets: the tail at 500 req/s of 16-chunk streams from the 50 ms upstream, and the CPU a
    16-chunk stream costs (every 0 ms-upstream stream phase: closed loop, 100 and 500 req/s)."""
    def row(label: str) -> dict[str, Any]:
        return next((r for r in res.get("open_loop", []) + res.get("closed_loop", [])
                     if r["scenario"]["label"] == label), {})

    a = row("chat stream, upstream 50ms, 500 req/s").get("added") or {}
    cpus = [((row(label).get("switchyard") or {}).get("gateway") or {}).get("cpu_ms_per_req")
            for label in ("chat stream, upstream 0ms, closed loop", "chat stream, upstream 0ms, 500 req/s",
                          "chat stream, upstream 0ms, 100 req/s")]
    known = [c for c in cpus if c is not None]
    return [
        ["Streams at 500 req/s, 50 ms upstream: added p99 ≤ 3 ms", _f(a.get("p99_ms")),
         mark(None if a.get("p99_ms") is None else a["p99_ms"] <= 3.0)],
        ["Streams at 500 req/s, 50 ms upstream: added time to first byte, p99 ≤ 3 ms", _f(a.get("ttfb_p99_ms")),
         mark(None if a.get("ttfb_p99_ms") is None else a["ttfb_p99_ms"] <= 3.0)],
        ["≤ 0.5 ms CPU per 16-chunk stream (0 ms upstream: closed loop / 500 req/s / 100 req/s)",
         " / ".join(_f(c, 3) for c in cpus), mark(None if not known else max(known) <= 0.5)],
    ]


def write_chart(res: dict[str, Any], path: Path) -> Path | None:
    """Grouped bars: added p50 and p99 per gateway at each rate (plain chat, upstream 0ms); None without
    matplotlib or peers."""
    peers = res.get("peers")
    if not peers:
        return None
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    rates = list(res["meta"]["plan"]["rates"])
    figs = figures(peers, rates)
    names = [n for n in ORDER if n in figs]
    fig, axes = plt.subplots(1, len(rates), figsize=(5.5 * len(rates), 4.2), squeeze=False)
    for ax, r in zip(axes[0], rates, strict=True):
        xs = range(len(names))
        p50 = [figs[n].get(f"p50@{r:g}") or 0.0 for n in names]
        p99 = [figs[n].get(f"p99@{r:g}") or 0.0 for n in names]
        ax.bar([x - 0.2 for x in xs], p50, 0.4, label="added p50")
        ax.bar([x + 0.2 for x in xs], p99, 0.4, label="added p99")
        ax.set_xticks(list(xs), [LABELS[n].replace(", ", "\n") + ("\n(saturated)" if figs[n].get(f"sat@{r:g}")
                                                                  else "") for n in names], fontsize=8)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_ylabel("ms (log scale)")
        ax.set_title(f"Added latency, plain chat, {r:g} req/s")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
