"""Turning a results dict (``benchmarks/results/latest.json``) into ``docs/benchmarks.md`` and an optional chart."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from . import compare_report
from .stats import fmt_ms

Row = dict[str, Any]


def _f(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else fmt_ms(float(v), digits)


def _mb(kb: int | None) -> str:
    return "n/a" if not kb else f"{kb / 1024:.1f} MB"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _label(r: Row) -> str:
    return str(r["scenario"]["label"]) + (" ‡" if r.get("disturbed_cores") else "")


def _latency_rows(rows: list[Row]) -> list[list[str]]:
    out = []
    for r in rows:
        d, g, a = r["direct"]["latency_ms"], r["switchyard"]["latency_ms"], r["added"]
        cpu = r["switchyard"]["gateway"]["cpu_ms_per_req"] if r["switchyard"]["gateway"] else None
        if r.get("saturated"):
            done = f"saturated: {r['switchyard']['throughput']:.0f} req/s done"
            out.append([_label(r), _f(d["p50"]), _f(d["p99"]), _f(g["p50"], 0), _f(g["p99"], 0),
                        f"**{done}**", "—", "—", "—", _f(cpu, 3)])
            continue
        out.append([_label(r), _f(d["p50"]), _f(d["p99"]), _f(g["p50"]), _f(g["p99"]),
                    f"**{_f(a['p50_ms'])}**", f"**{_f(a['p99_ms'])}**", _f(a["paired_p50_ms"]),
                    _f(a["paired_p99_ms"]), _f(cpu, 3)])
    return out


def _stream_rows(rows: list[Row]) -> list[list[str]]:
    out = []
    for r in rows:
        if not r["scenario"]["stream"] or r.get("saturated"):
            continue
        d, g, a = r["direct"]["ttfb_ms"], r["switchyard"]["ttfb_ms"], r["added"]
        out.append([_label(r), _f(d["p50"]), _f(g["p50"]), _f(a["ttfb_p50_ms"]), _f(a["ttfb_p99_ms"]),
                    _f(a["p50_ms"]), _f(a["p99_ms"])])
    return out


def _closed_rows(rows: list[Row]) -> list[list[str]]:
    out = []
    for r in rows:
        d, g = r["direct"], r["switchyard"]
        gw = g["gateway"] or {}
        out.append([_label(r), f"{d['throughput']:.0f}", f"**{g['throughput']:.0f}**",
                    _f(gw.get("cpu_ms_per_req"), 3), f"{100 * gw.get('cpu_util', 0):.0f}%",
                    _f(g["latency_ms"]["p50"]), _f(g["latency_ms"]["p99"])])
    return out


def _stability(res: dict[str, Any], prev: dict[str, Any] | None) -> list[str]:
    pm = (prev or {}).get("meta", {})
    if not prev or pm.get("plan") != res["meta"]["plan"] or pm.get("source") != res["meta"].get("source"):
        return []  # only a run of the same plan on the same gateway code compares
    before = {r["scenario"]["label"]: r for r in prev.get("open_loop", [])}
    rows = []
    for r in res["open_loop"]:
        p = before.get(r["scenario"]["label"])
        if p is None:
            continue
        pa, a = p["added"], r["added"]
        ps = "saturated" if p.get("saturated") else None
        ns = "saturated" if r.get("saturated") else None
        rows.append([r["scenario"]["label"], ps or _f(pa["p50_ms"]), ns or _f(a["p50_ms"]), ps or _f(pa["p99_ms"]),
                     ns or _f(a["p99_ms"])])
    if not rows:
        return []
    return ["## Run to run", "",
            f"The same plan run before this one ({prev['meta']['date']}, {prev['meta'].get('source', 'working tree')}) "
            "against this run: added latency in ms.", "",
            *_table(["Scenario", "p50 before", "p50 now", "p99 before", "p99 now"], rows), ""]


def _profile(res: dict[str, Any]) -> list[str]:
    prof = res.get("profile")
    if not prof:
        return []
    if "error" in prof:
        return ["## Where the gateway spends its CPU", "", f"Not available: {prof['error']}", ""]
    lines = ["## Where the gateway spends its CPU", "",
             f"py-spy, {prof['seconds']:g} s per workload, only samples holding the GIL (so threads waiting and the "
             "idle event loop are left out). *Self* is the share of samples whose innermost Python frame is that "
             "function; time in C code called from it (uvloop's loop, socket calls, orjson) is charged to it. "
             "Sampling slows the gateway down (req/s below). Raw stacks are in the files named below (not "
             "committed).", ""]
    for run in prof["runs"]:
        rows = [[str(i + 1), f"`{t['function']}`", f"{t['pct']:.1f}%"] for i, t in enumerate(run["top_self"])]
        pk = ", ".join(f"{p['package']} {p['pct']:.0f}%" for p in run["by_package"])
        lines += [f"**{run['workload']}** ({run['samples']} samples, {run['throughput_under_profiler']:g} req/s "
                  f"while profiled; `{run['raw']}`):", "",
                  *_table(["#", "Function (file)", "Self"], rows), "", f"By package: {pk}.", ""]
    return lines


def _auto(res: dict[str, Any]) -> list[str]:
    """The auto strategy's decision cost (benchmarks/auto_micro.py), when the run measured it."""
    auto = res.get("auto")
    if not auto:
        return []
    head = ["## The auto strategy's decision", "",
            "`Router.plan` of an `auto` route over six catalog deployments, the task profile included (text, "
            "WordLlama embedding, seed centroids, cue words, scores), in its own process on the gateway's core "
            "(`python -m benchmarks.auto_micro`). Target: at most 1 ms p99 for a 4,000-token prompt. CPU: the "
            "thread's own time (the wall clock's tail includes other processes' time slices). Microseconds.", ""]
    if "error" in auto:
        return [*head, f"Not available: {auto['error']}", ""]
    lines = [*head, *_auto_table(auto), "", f"The first decision loads the embedder and the centroids: "
             f"{auto['first_ms']:g} ms.", ""]
    learned = auto.get("learned")
    if learned:
        lines += ["With a learned router on the route as well (`--router`: trained for the run on RouteLLM's MMLU "
                  "outcomes, between o3, strong, and gpt-4o-mini, weak, at a 30% share of strong calls; it scores "
                  "the profile's embedding):", ""]
        lines += ([f"Not available: {learned['error']}"] if "error" in learned else _auto_table(learned)) + [""]
    return lines


def _auto_table(auto: dict[str, Any]) -> list[str]:
    rows = [[r["prompt"], str(r["tokens"]), f"{r['p50_us']:.0f}", f"{r['p99_us']:.0f}", f"{r['cpu_p50_us']:.0f}",
             f"{r['cpu_p99_us']:.0f}", f"{r['chosen']} ({r['task']}, {r['difficulty']:.2f})"] for r in auto["rows"]]
    e = auto["embedding"]
    rows.append(["embedding alone (4k)", "", f"{e['p50_us']:.0f}", f"{e['p99_us']:.0f}", f"{e['cpu_p50_us']:.0f}",
                 f"{e['cpu_p99_us']:.0f}", ""])
    return _table(["prompt", "tokens", "p50", "p99", "CPU p50", "CPU p99", "chosen (task, difficulty)"], rows)


def render(res: dict[str, Any], prev: dict[str, Any] | None = None, chart: Path | None = None,
           peers_chart: str | None = None) -> str:
    m, mach, plan = res["meta"], res["meta"]["machine"], res["meta"]["plan"]
    sy = res["targets"].get("switchyard", {})
    ready = sy.get("ready_s") or []
    ups = "; ".join(f"`{u['name']}`: {u['latency_ms']:g} ms before the reply starts, streams of {u['chunks']} "
                    f"content chunks {u['chunk_interval_ms']:g} ms apart" for u in plan["upstreams"])
    open_rows = res["open_loop"]
    low = min(r["scenario"]["rate"] for r in open_rows)
    cpu_low = [f"{r['scenario']['label'].split(',')[0]} {_f(r['switchyard']['gateway']['cpu_ms_per_req'], 3)}"
               for r in open_rows if r["scenario"]["rate"] == low and r["scenario"]["upstream"] == "0ms"
               and r["switchyard"]["gateway"]]
    n_sat = sum(1 for r in open_rows if r.get("saturated"))
    disturbed = (["‡ Other processes on the machine took CPU the benchmark needed during this scenario (even after "
                  "a re-run); its numbers, p99 above all, are less reliable. Details under the warnings.", ""]
                 if any(r.get("disturbed_cores") for r in open_rows + res["closed_loop"]) else [])
    lines = [
        "# Benchmarks", "",
        "<!-- Generated by benchmarks/run.py; edit benchmarks/report.py, not this file. -->", "",
        f"What Switchyard adds to a call, measured against a direct call to the same fake OpenAI-compatible "
        f"upstream. Generated {m['date']} by `{m['command']}` in {m.get('elapsed_s', '?')} s.", "",
        "## Reproduce", "",
        "<!-- doc-test: skip the benchmarks: minutes of CPU on a quiet machine -->",  # tests/test_doc_examples.py
        "```sh",
        "make bench                                 # .venv/bin/python -m benchmarks.run (10 s phases)",
        ".venv/bin/python -m benchmarks.run --quick  # 2 s phases, about a minute",
        ".venv/bin/python -m benchmarks.run --profile  # also ranks the gateway's hot spots with py-spy",
        ".venv/bin/python -m benchmarks.run --ref HEAD # the committed gateway, not the working tree",
        "```", "",
        f"This run: `{m['command']}`. Raw numbers: `benchmarks/results/latest.json`.", "",
        "## Machine", "",
        *_table(["", ""], [["CPU", mach["cpu_model"]], ["Cores (nproc)", str(mach["nproc"])],
                           ["Python", f"{mach['implementation']} {mach['python']}"], ["Kernel", mach["kernel"]],
                           ["Repository HEAD at the run", f"`{mach['switchyard_commit']}`"],
                           ["Gateway code measured", m.get("source", "working tree")],
                           ["Load average before", ", ".join(f"{x:.2f}" for x in mach["loadavg_before"])],
                           ["Other processes' CPU before (cores)", _f(mach.get("foreign_cores_before"))]]), "",
        f"Layout: Switchyard pinned to core {m['layout']['gateway_core']}; the fake upstreams and the load "
        f"generator share core {m['layout']['upstream_core']}, in the direct runs and the gateway runs alike.", "",
        "## Added latency", "",
        f"Open loop: requests leave on a fixed schedule; latency runs from each request's scheduled send time to "
        f"the last byte of its reply. {plan['duration_s']:g} s per phase after {plan['warmup_s']:g} s of "
        f"warm-up. Upstreams: {ups}. All times in ms.", "",
        *_table(["Scenario", "Direct p50", "Direct p99", "Switchyard p50", "Switchyard p99", "Added p50",
                 "Added p99", "Paired p50", "Paired p99", "Gateway CPU ms/req"], _latency_rows(open_rows)), "",
        "*Added* is the Switchyard percentile minus the direct percentile. *Paired* matches request i of the "
        "gateway run with request i of the direct run (same schedule) and takes percentiles of the differences.",
        "",
        *([f"*Saturated* ({n_sat} scenario(s)): Switchyard, on its one core, completed fewer requests per second "
           "than were sent, so its queue and its latency grew for as long as the phase lasted; those percentiles "
           "measure the phase's length, not the gateway, and no added latency is given. See the throughput "
           "section for what one core sustains.", ""] if n_sat else []),
        *disturbed,
        "Streams, time to the first body byte (TTFB) and to the end of the stream:", "",
        *_table(["Scenario", "Direct TTFB p50", "Switchyard TTFB p50", "Added TTFB p50", "Added TTFB p99",
                 "Added total p50", "Added total p99"], _stream_rows(open_rows)), "",
        "## Throughput", "",
        f"Closed loop: {plan['concurrency']} connections sending back to back for {plan['closed_duration_s']:g} s, "
        f"upstream `0ms`. Switchyard runs on one core, so its req/s is also its throughput per core.", "",
        *_table(["Scenario", "Direct req/s", "Switchyard req/s", "Gateway CPU ms/req", "Gateway core busy",
                 "Switchyard p50", "Switchyard p99"], _closed_rows(res["closed_loop"])), "",
        "## Resources", "",
        *_table(["Switchyard", "Value"], [
            ["Time from spawn to ready (`/health/ready` = 200), median",
             f"{statistics.median(ready):.2f} s (samples: {', '.join(f'{x:.2f}' for x in ready)})" if ready
             else "n/a"],
            ["RSS when ready, idle", _mb(sy.get("idle_rss_kb"))],
            ["Peak RSS over the whole run (VmHWM)", _mb(sy.get("peak_rss_kb"))],
            [f"CPU ms per request, {low:g} req/s, upstream 0ms", ", ".join(cpu_low)]]), "",
        *compare_report.render(res, peers_chart),
        *_stability(res, prev),
        *_profile(res),
    ]
    if chart is not None:
        lines += [f"A chart of the direct-vs-Switchyard numbers was written to `{chart.name}` in "
                  "`benchmarks/results/` (not committed).", ""]
    lines += _auto(res)
    rows_all = res["open_loop"] + res["closed_loop"]
    rerun = [r["scenario"]["label"] for r in rows_all if r.get("attempts", 1) > 1]
    if res.get("warnings") or rerun:
        lines += ["## Warnings from this run", ""]
        if rerun:
            lines.append(f"- Run again because other processes disturbed them (the least disturbed attempt is "
                         f"kept): {'; '.join(rerun)}.")
        lines += [*[f"- {w}" for w in res["warnings"]], ""]
    lines += CAVEATS
    lines += outage_section()
    return "\n".join(lines).rstrip() + "\n"


def outage_section() -> list[str]:
    """The routing benchmark's figures (``benchmarks/outage_replay.py``), kept in docs/routing.md, repeated here so
    that every measured figure is in one report."""
    routing = Path(__file__).resolve().parent.parent / "docs" / "routing.md"
    try:
        text = routing.read_text()
    except OSError:
        return []
    start = text.find("\n## Benchmark")
    if start < 0:
        return []
    end = text.find("\n## ", start + 1)
    body = text[start + len("\n## Benchmark"):end if end >= 0 else None].strip()
    return ["", "## Outage replay: success rate and p99 with and without fallbacks", "",
            "From [Routing](routing.md#benchmark); rerun with `python -m benchmarks.outage_replay`.", "", body, ""]


CAVEATS = [
    "## What this measures, and caveats", "",
    "- **Added latency** is the time Switchyard adds between a client and an upstream on this machine: parsing "
    "and validating the request, authentication, routing, re-encoding it for the provider, its HTTP client's "
    "round trip on loopback, parsing and re-rendering the reply, and queuing the request-log record (the "
    "SQLite writer runs in the background, as in production). Metrics are on, and each call writes a JSON request "
    "log line (as an operator runs it). Governance (budgets, rate limits) is off.",
    "- **The fake upstream** (`benchmarks/fake_upstream.py`) is a raw asyncio + httptools server on uvloop, so "
    "that the upstream costs little next to the gateway: `python -m benchmarks.fake_compare` measured about half "
    "the CPU per reply of the same replies from a bare ASGI callable under uvicorn (17 against 32 µs for a plain "
    "reply, 111 against 174 µs for a 16-chunk stream). Its replies follow OpenAI's wire format.",
    "- **Coordinated omission** is avoided: open-loop requests are sent on schedule whatever earlier ones are "
    "doing, and latency starts at the scheduled time, so a stall is charged to every request it delays. The "
    "sender's timer has 1 ms steps (uvloop), so requests leave up to about 1 ms late or early; the lag is in "
    "`send_lag_ms` in the JSON and is the same in the direct and the gateway runs, so it cancels in the "
    "*added* columns but not in the absolute ones. `service_ms` (from the actual send) is in the JSON too.",
    "- **Two cores.** With no third core, the load generator shares core 1 with the fake upstream. It does in "
    "both runs, so the difference is the gateway's; but absolute direct latencies include that sharing.",
    "- **p99 of a short phase** rests on few samples (1,000 requests at 100 req/s for 10 s: the 10 slowest "
    "decide it), so one pause of the gateway's (a full garbage collection, a request-log flush) moves it a lot "
    "from run to run; p50 is the stable number. `--quick` numbers are rougher still. Compare runs made with "
    "the same plan.",
    "- **CPU ms/request** is the gateway process's user + system time (all threads, from `/proc/<pid>/stat`, "
    "10 ms ticks) over the measured phase and the drain after it (until the process is idle again, so that work "
    "it put off, such as batched store writes at a low priority, is charged too) divided by the phase's "
    "requests. Peak RSS is `VmHWM`, reset before each phase and read after its drain.",
    "- **Loopback only, one machine, a virtual machine**: other load on the host (CI, other builds) moves the "
    "numbers; the load average before the run is recorded above.",
    "",
]


def write_chart(res: dict[str, Any], path: Path) -> Path | None:
    """A bar chart of added latency per scenario, when matplotlib is importable; None otherwise."""
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    rows = [r for r in res["open_loop"] if not r.get("saturated")]
    if not rows:
        return None
    labels = [r["scenario"]["label"].replace(", ", "\n") for r in rows]
    p50 = [r["added"]["p50_ms"] or 0.0 for r in rows]
    p99 = [r["added"]["p99_ms"] or 0.0 for r in rows]
    x = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(rows)), 4.5))
    ax.bar([i - 0.2 for i in x], p50, 0.4, label="added p50")
    ax.bar([i + 0.2 for i in x], p99, 0.4, label="added p99")
    ax.set_xticks(list(x), labels, fontsize=7)
    ax.set_ylabel("ms")
    skipped = len(res["open_loop"]) - len(rows)
    ax.set_title("Latency Switchyard adds over a direct call"
                 + (f" ({skipped} saturated scenario(s) left out)" if skipped else ""))
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Regenerate docs/benchmarks.md from saved results, without running anything."""
    import argparse

    import orjson

    repo = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(prog="python -m benchmarks.report", description=main.__doc__)
    ap.add_argument("--results", type=Path, default=repo / "benchmarks" / "results" / "latest.json")
    ap.add_argument("--previous", type=Path, default=None, help="an earlier run of the same plan, to compare with")
    ap.add_argument("--out", type=Path, default=repo / "docs" / "benchmarks.md")
    a = ap.parse_args(argv)
    res = orjson.loads(a.results.read_bytes())
    prev = orjson.loads(a.previous.read_bytes()) if a.previous else None
    chart = write_chart(res, a.results.parent / "latency.png")
    peers_chart = compare_report.write_chart(res, a.out.parent / "img" / "benchmarks-latency.png")
    a.out.write_text(render(res, prev, chart, peers_chart.relative_to(a.out.parent).as_posix() if peers_chart
                            else None))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
