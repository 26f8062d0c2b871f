"""The benchmark suite: direct calls to a fake upstream vs the same calls through Switchyard.

    python -m benchmarks.run [--quick] [--profile] [--no-doc]      # `make bench` runs it without flags

Open loop at 100 and 500 req/s (10 s each; --quick: 2 s), plain and streamed chat, upstream latency 0 ms and
50 ms; then closed loop for maximum throughput; then the gateway's start-up time. Then the peers section
(:mod:`benchmarks.compare`): LiteLLM and Portkey on the same phases, governance off against on in alternating
pairs and in instructions under callgrind (:mod:`benchmarks.instructions`; skipped without valgrind), and the
scale-out check. Writes ``benchmarks/results/latest.json`` (and a timestamped copy) and regenerates
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from . import compare as peer_compare
from . import compare_report, peers, pyspy, report
from .phases import FULL, QUICK, UPSTREAMS, Plan, Scenario, compare, measure, wait_quiet
from .runners import (
    GATEWAY_CORE,
    LOADGEN_CORE,
    REPO,
    UPSTREAM_CORE,
    DirectTarget,
    Managed,
    SwitchyardTarget,
    Target,
    fake_upstream,
    pin_self,
    startup_times,
)

RESULTS = REPO / "benchmarks" / "results"
DOC = REPO / "docs" / "benchmarks.md"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip() or "unknown"
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "python": platform.python_version(),
            "implementation": platform.python_implementation(), "kernel": platform.release(),
            "platform": platform.platform(), "loadavg_before": os.getloadavg(), "switchyard_commit": commit}


def snapshot(ref: str, dest: Path) -> tuple[Path, str]:
    """``src/`` as of git ``ref``, extracted under ``dest`` (read-only git; the working tree is not touched)."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{ref}^{{commit}}"], capture_output=True,
                         text=True, timeout=10, check=True).stdout.strip()
    blob = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", sha, "src"], capture_output=True,
                          timeout=60, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src", sha[:12]


def source(ref: str | None) -> str:
    """What gateway code runs: a commit, or the working tree (with a note when src/ has uncommitted changes)."""
    if ref is not None:
        return "commit"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"], capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return "working tree" + (" (src/ has uncommitted changes)" if dirty else "")
    return "working tree"


@contextlib.contextmanager
def upstreams(workdir: Path) -> Iterator[dict[str, Managed]]:
    procs: dict[str, Managed] = {}
    try:
        for spec in UPSTREAMS:
            procs[spec.name] = fake_upstream(spec, workdir)
            procs[spec.name].start()
        yield procs
    finally:
        for m in procs.values():
            m.stop()


def run(plan: Plan, command: str, profile: float, ref: str | None = None, with_peers: bool = True) -> dict[str, Any]:
    pin_self(LOADGEN_CORE)
    busy_before = wait_quiet(plan.quiet_wait)
    workdir = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    src, sha = snapshot(ref, workdir / "snapshot") if ref is not None else (None, None)
    # Bytecode, as an installed wheel has it (this machine sets PYTHONDONTWRITEBYTECODE, so without this every
    # start would compile every module again, and the start-up time would measure the compiler).
    compileall.compile_dir(str(src or REPO / "src"), quiet=1)
    warnings: list[str] = []
    started = time.time()
    out: dict[str, Any] = {
        "meta": {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
                 "command": command,
                 "machine": {**machine(), "foreign_cores_before": round(busy_before, 3)},
                 "source": source(ref) + (f" {sha} (git archive of src/)" if sha else ""),
                 "layout": {"gateway_core": GATEWAY_CORE, "upstream_core": UPSTREAM_CORE,
                            "loadgen_core": LOADGEN_CORE},
                 "plan": {"rates": list(plan.rates), "duration_s": plan.duration, "warmup_s": plan.warmup,
                          "closed_duration_s": plan.closed_duration, "concurrency": plan.concurrency,
                          "upstreams": [{"name": u.name, "latency_ms": u.latency_ms, "chunks": u.chunks,
                                         "chunk_interval_ms": u.chunk_interval_ms} for u in UPSTREAMS]}},
        "open_loop": [], "closed_loop": [], "targets": {}, "warnings": warnings}
    try:
        with upstreams(workdir) as ups:
            ports = {name: m.port for name, m in ups.items()}
            direct, gateway = DirectTarget(ports), SwitchyardTarget(ports, workdir, src=src)
            gateway.start()
            assert gateway.process is not None
            boot = gateway.process.sample()
            info: dict[str, Any] = {"ready_s": [round(gateway.process.ready_s or 0, 3)], "idle_rss_kb": boot.rss_kb,
                                    "startup_peak_rss_kb": boot.peak_kb, "command": gateway.process.argv}
            out["targets"]["switchyard"] = info
            peak = boot.peak_kb
            try:
                for sc in plan.scenarios:
                    row, warns = compare(direct, gateway, ups, sc, plan, "open", sc.label)
                    out["open_loop"].append(row)
                    warnings.extend(warns)
                    _progress(row)
                for stream in (False, True):
                    sc = Scenario("chat/completions", stream, "0ms", 0)
                    row, warns = compare(direct, gateway, ups, sc, plan, "closed",
                                         sc.label.rsplit(",", 1)[0] + ", closed loop")
                    row["scenario"]["concurrency"] = plan.concurrency
                    out["closed_loop"].append(row)
                    warnings.extend(warns)
                    _progress(row)
                for row in out["open_loop"] + out["closed_loop"]:
                    if row["switchyard"]["gateway"]:
                        peak = max(peak, row["switchyard"]["gateway"]["peak_rss_kb"])
                if profile > 0:
                    out["profile"] = profile_gateway(gateway, ups["0ms"], plan, profile)
            finally:
                info["peak_rss_kb"] = peak
                gateway.stop()
            if plan.startup_samples > 1:
                info["ready_s"] += [round(s, 3) for s in startup_times(gateway.new_process, plan.startup_samples - 1)]
            out["auto"] = auto_decision(src)
            if with_peers:
                print("benchmarks: Switchyard (governance off and on), LiteLLM and Portkey on the same phases",
                      flush=True)
                out["peers"] = peer_compare.run(plan, ups, direct, workdir, src, warnings)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out["meta"]["elapsed_s"] = round(time.time() - started, 1)
    return out


MMLU = REPO.parent / "shared" / "data" / "routellm-mmlu"  # RouteLLM's MMLU outcomes, where the machine has them
MMLU_STRONG, MMLU_WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"


def auto_decision(src: Path | None) -> dict[str, Any]:
    """The auto strategy's decision cost (``benchmarks/auto_micro.py``), in its own process on the gateway's core;
    and again with a learned router on the route (``learned``), trained for the run on RouteLLM's MMLU outcomes
    when they are on the machine (about a minute)."""
    print("benchmarks: the auto strategy's decision (benchmarks/auto_micro.py)", flush=True)
    env = {**os.environ, "PYTHONPATH": str(src or REPO / "src"), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    result = _auto_micro(env, [])
    if "error" in result:
        return result
    if not MMLU.is_dir():
        result["learned"] = {"error": f"no RouteLLM MMLU outcomes at {MMLU} to train a router on"}
        return result
    print("benchmarks: the same with a learned router (trained on routellm-mmlu)", flush=True)
    with tempfile.TemporaryDirectory(prefix="switchyard-router-") as tmp:
        router = Path(tmp) / "mmlu.npz"
        train = ["-m", "switchyard.cli.main", "router", "train", "--outcomes",
                 *map(str, sorted(MMLU.glob("mmlu_*.csv"))), "--strong", MMLU_STRONG, "--weak", MMLU_WEAK,
                 "--exclude", str(MMLU / "contaminated_prompts.jsonl"), "--out", str(router)]
        error = _python(train, env, 1200)[1]
        result["learned"] = ({"error": f"router train: {error}"} if error
                             else _auto_micro(env, ["--router", str(router)]))
    return result


def _auto_micro(env: dict[str, str], extra: list[str]) -> dict[str, Any]:
    out, error = _python(["-m", "benchmarks.auto_micro", "--json", "--n", "3000", "--core", str(GATEWAY_CORE),
                          *extra], env, 600)
    if error:
        return {"error": error}
    result: dict[str, Any] = orjson.loads(out.strip().splitlines()[-1])
    return result


def _python(args: list[str], env: dict[str, str], timeout: float) -> tuple[str, str | None]:
    """Run this Python with ``args`` in the repository: its output, and an error (its last line) if it failed."""
    try:
        done = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.SubprocessError) as e:
        return "", str(e)
    if done.returncode != 0:
        return "", (done.stderr.strip().splitlines() or ["failed"])[-1][:300]
    return done.stdout, None


def profile_gateway(gateway: Target, upstream: Managed, plan: Plan, seconds: float) -> dict[str, Any]:
    """py-spy on the gateway during closed-loop plain chat (not a measured phase): one connection (the cost of a
    request) and ``plan.concurrency`` connections (what changes under concurrency)."""
    if pyspy.available() is None:
        return {"error": "py-spy is not installed (pip install py-spy)"}
    assert gateway.process is not None
    RESULTS.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"seconds": seconds, "runs": []}
    for conc in (1, plan.concurrency):
        raw = RESULTS / f"profile-switchyard-chat-c{conc}.txt"
        spy = pyspy.start(gateway.process.pid, seconds, raw, core=LOADGEN_CORE)
        time.sleep(0.5)  # let py-spy attach
        p = Plan(duration=1.0, warmup=0.1, closed_duration=seconds, concurrency=conc, startup_samples=0,
                 timeout_s=plan.timeout_s)
        res, _ = measure(gateway, upstream, "closed", Scenario("chat/completions", False, "0ms", 0), p)
        _, err = spy.communicate(timeout=seconds + 30)
        if spy.returncode != 0 or not raw.exists():
            return {"error": f"py-spy failed ({spy.returncode}): {err.decode(errors='replace')[-500:]}"}
        out["runs"].append({"workload": f"closed loop, plain chat, upstream 0ms, {conc} connection(s)",
                            "throughput_under_profiler": round(res.throughput, 1),
                            "raw": str(raw.relative_to(REPO)), **pyspy.summarize(raw)})
    return out


def _progress(row: dict[str, Any]) -> None:
    sc, a = row["scenario"], row.get("added")
    d, g = row["direct"], row["switchyard"]
    if a is None:
        print(f"  {sc['label']:<44} direct {d['throughput']:8.0f} req/s   switchyard {g['throughput']:8.0f} req/s "
              f"(cpu {g['gateway']['cpu_ms_per_req']} ms/req)", flush=True)
        return
    print(f"  {sc['label']:<44} added p50 {a['p50_ms']:7.3f} ms  p99 {a['p99_ms']:7.3f} ms   "
          f"(direct p50 {d['latency_ms']['p50']:.3f}, gateway p50 {g['latency_ms']['p50']:.3f}, "
          f"cpu {g['gateway']['cpu_ms_per_req']} ms/req)", flush=True)


def prepare_peers() -> None:
    """Install the peers if needed (PyPI and npm: before the network goes away), then move this process into a
    loopback-only network namespace, where Portkey (which binds every interface) may run. Either step may fail
    (no node, no root): the peers concerned are then reported as skipped."""
    try:
        peers.setup()
    except Exception as e:
        print(f"benchmarks: installing the peers failed ({e}); those missing are skipped", file=sys.stderr)
    try:
        peers.enter_loopback_netns()
    except (OSError, RuntimeError) as e:
        print(f"benchmarks: no loopback-only network namespace ({e}); Portkey is skipped", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short phases (about a minute in all)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per open-loop phase (overrides the plan)")
    ap.add_argument("--profile", type=float, nargs="?", const=5.0, default=0.0, metavar="SECONDS",
                    help="also profile the gateway with py-spy under load (default 5 s)")
    ap.add_argument("--rates", default=None, metavar="R1,R2",
                    help="open-loop rates in req/s (default 100,500), e.g. 100,250,500")
    ap.add_argument("--ref", default=None, metavar="GIT_REF",
                    help="benchmark the gateway as of this commit (git archive of src/) instead of the working tree")
    ap.add_argument("--wait-quiet", type=float, default=None, metavar="SECONDS",
                    help="wait up to this long for other processes to go quiet, before the run and before a "
                         "disturbed pair of phases is run again (default 20; --quick: 3)")
    ap.add_argument("--no-doc", action="store_true", help="do not regenerate docs/benchmarks.md")
    ap.add_argument("--no-peers", action="store_true",
                    help="skip the comparison with LiteLLM and Portkey (and Switchyard with governance on)")
    a = ap.parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        print("benchmarks: need at least 2 CPU cores (gateway on core 0, upstream and load on core 1)",
              file=sys.stderr)
        return 2
    plan = QUICK if a.quick else FULL
    if a.duration is not None:
        plan.duration = min(max(a.duration, 0.5), 120.0)
    if a.rates is not None:
        try:
            plan.rates = tuple(sorted({min(max(float(r), 1.0), 20_000.0) for r in a.rates.split(",")}))
        except ValueError:
            ap.error("--rates takes numbers separated by commas")
    plan.build()
    if not a.no_peers:
        prepare_peers()
    ref = None
    if a.ref is not None:  # pin the ref to a commit id, so that the recorded command reproduces this run
        ref = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{a.ref}^{{commit}}"],
                             capture_output=True, text=True, timeout=10).stdout.strip()[:12]
        if not ref:
            print(f"benchmarks: unknown git ref {a.ref!r}", file=sys.stderr)
            return 2
    command = "python -m benchmarks.run" + (" --quick" if a.quick else "") + (
        f" --duration {plan.duration:g}" if a.duration is not None else "") + (
        " --rates " + ",".join(f"{r:g}" for r in plan.rates) if a.rates is not None else "") + (
        f" --ref {ref}" if ref else "") + (
        f" --profile {a.profile:g}" if a.profile else "")
    print(f"benchmarks: {len(plan.scenarios)} open-loop scenarios x 2 targets, {plan.duration:g} s each", flush=True)
    if a.wait_quiet is not None:
        plan.quiet_wait = min(max(a.wait_quiet, 0.0), 600.0)
    results = run(plan, command, a.profile, ref, with_peers=not a.no_peers)
    RESULTS.mkdir(parents=True, exist_ok=True)
    latest = RESULTS / "latest.json"
    previous = orjson.loads(latest.read_bytes()) if latest.exists() else None
    blob = orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    latest.write_bytes(blob)
    (RESULTS / time.strftime("run-%Y%m%d-%H%M%S.json")).write_bytes(blob)
    chart = report.write_chart(results, RESULTS / "latency.png")
    if not a.no_doc:
        peers_chart = compare_report.write_chart(results, DOC.parent / "img" / "benchmarks-latency.png")
        DOC.write_text(report.render(results, previous, chart,
                                     peers_chart.relative_to(DOC.parent).as_posix() if peers_chart else None))
        print(f"wrote {latest.relative_to(REPO)} and {DOC.relative_to(REPO)} ({results['meta']['elapsed_s']} s)")
    for w in results["warnings"]:
        print("WARNING:", w, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
