"""Governance's cost in instructions: Switchyard with governance off and on, each under callgrind, serving the same
number of closed-loop requests from the fake upstream.

CPU time on a shared two-core machine moves by a quarter from one phase to the next (other tenants' load), which
hides a difference of a few percent however the phases are paired. An instruction count does not move: the same
code, inputs and environment retire the same instructions. Callgrind (valgrind) counts what each thread of the
gateway retires; the count starts after a warm-up (``callgrind_control --zero``) and is read once the batch
writers have drained. Valgrind runs the gateway some fifty times slower, so work done on a timer (the key
directory's polls, the spool's flushes) would weigh fifty times more per request than it does at full speed: each
thread's idle rate is measured first, over ``IDLE_S`` seconds, and subtracted for the time the load took.

Instructions are not time (a cache miss costs no instruction), so this is the noise-free cross-check of the CPU
figure, not a replacement for it. Needs ``valgrind`` (with ``callgrind_control``); skipped without it.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .loadgen import Workload, run_phase
from .runners import Managed, SwitchyardTarget

IDLE_S = 10.0
DRAIN_S = 4.0
_PART = re.compile(r"\.(\d+)-(\d+)$")  # <out>.<part>-<thread>, as --separate-threads and dumps name them


def available() -> str | None:
    """None when callgrind can run, else why not."""
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def _under_callgrind(target: SwitchyardTarget, out: Path) -> None:
    """Make ``target`` start its gateway under callgrind (one output file per thread and per dump)."""
    make = target.new_process

    def new_process() -> Managed:
        m = make()
        exe = str(Path(sys.executable).parent / "switchyard")
        m.argv = ["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={out}",
                  sys.executable, exe, *m.argv[1:]]
        return m

    target.new_process = new_process  # type: ignore[method-assign]


def _parts(out: Path) -> dict[int, dict[int, int]]:
    """Instructions by dump (1: idle, 2: load) and thread (1: the event loop)."""
    found: dict[int, dict[int, int]] = {}
    for f in out.parent.glob(out.name + ".*"):
        m = _PART.search(f.name)
        if not m:
            continue
        total = re.search(r"^(?:summary|totals):\s+(\d+)", f.read_text(errors="replace"), re.M)
        found.setdefault(int(m.group(1)), {})[int(m.group(2))] = int(total.group(1)) if total else 0
        f.unlink()
    return found


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def measure(ports: dict[str, int], workdir: Path, src: Path | None, governed: type[SwitchyardTarget],
            requests: int = 1000) -> dict[str, Any]:
    """Both gateways in turn: instructions per request by thread, and governance's share over off."""
    out: dict[str, Any] = {"requests": requests}
    for t in (SwitchyardTarget(ports, workdir, src=src), governed(ports, workdir, src=src)):
        cg = workdir / f"callgrind.{t.name}"
        _under_callgrind(t, cg)
        t.process = t.new_process()
        try:
            t.process.start(ready_timeout=300)
            t.api_key = t.provision() if hasattr(t, "provision") else t.api_key
            assert t.process is not None
            pid = str(t.process.pid)
            wl = Workload.chat(t.url("chat/completions", "0ms"), t.model("0ms"), t.api_key)
            run_phase(wl, "closed", concurrency=8, duration=300, warmup=0, max_requests=300, timeout_s=60)
            time.sleep(DRAIN_S)
            _control("--zero", pid)
            time.sleep(IDLE_S)
            _control("--dump", pid)
            t0 = time.perf_counter()
            res = run_phase(wl, "closed", concurrency=8, duration=600, warmup=0, max_requests=requests,
                            timeout_s=60)
            time.sleep(DRAIN_S)
            wall = time.perf_counter() - t0
            _control("--dump", pid)
            if res.sent != requests or res.errors:
                raise RuntimeError(f"{t.name}: {res.sent} requests sent, {res.errors} failed")
        finally:
            with contextlib.suppress(Exception):
                t.stop()
        parts = _parts(cg)
        idle, load = parts.get(1, {}), parts.get(2, {})
        net = {th: load[th] - idle.get(th, 0) / IDLE_S * wall for th in load}
        main = net.get(1, 0.0) / requests
        other = sum(v for th, v in net.items() if th != 1) / requests
        out[t.name] = {"main": round(main), "other": round(other), "total": round(main + other),
                       "load_wall_s": round(wall, 1)}
        print(f"  instructions, {t.name}: {main:,.0f} on the event loop + {other:,.0f} on batch threads per request",
              flush=True)
    off, on = out.get("switchyard", {}), out.get(governed.name, {})
    if off.get("total") and on.get("total"):
        out["over_pct"] = round((on["total"] / off["total"] - 1) * 100, 1)
        out["main_over_pct"] = round((on["main"] / off["main"] - 1) * 100, 1)
    return out
