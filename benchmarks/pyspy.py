"""Optional profiling of a target with py-spy (``pip install py-spy``): sample it under load, then rank functions
by self time (the leaf frame of each sample; idle threads are left out, as py-spy does by default)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def available() -> str | None:
    exe = Path(sys.executable).parent / "py-spy"
    if exe.exists():
        return str(exe)
    return shutil.which("py-spy")


def start(pid: int, seconds: float, out: Path, rate: int = 250, core: int | None = None) -> subprocess.Popen[bytes]:
    """Start ``py-spy record`` (raw collapsed stacks) on ``pid``; wait on the returned process."""
    exe = available()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    argv = [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", str(rate),
            "--format", "raw", "--gil", "--output", str(out)]
    if core is not None:
        argv = ["taskset", "-c", str(core), *argv]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _frame_name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if m is None:
        return frame.strip()
    return f"{m['func']} ({m['file']})"


def _package(frame: str) -> str:
    """The top-level package (or stdlib module) of a frame: py-spy names files relative to their sys.path entry."""
    m = _FRAME.match(frame.strip())
    path = m["file"] if m else frame
    if "switchyard" in path:
        return "switchyard"
    head = path.split("/", 1)[0]
    return head.removesuffix(".py") or path


def summarize(raw: Path, top: int = 10) -> dict[str, Any]:
    """Top functions by self time and self time by package, from py-spy's raw (collapsed) output."""
    self_time: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        leaf = stack.split(";")[-1]
        self_time[_frame_name(leaf)] += n
        packages[_package(leaf)] += n
    if total == 0:
        return {"samples": 0, "top_self": [], "by_package": []}
    return {
        "samples": total,
        "top_self": [{"function": f, "pct": round(100 * n / total, 2)} for f, n in self_time.most_common(top)],
        "by_package": [{"package": p, "pct": round(100 * n / total, 2)} for p, n in packages.most_common(12)],
    }
