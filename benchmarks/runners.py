"""Targets as subprocesses pinned to a CPU core with ``taskset``, and what the kernel says they cost.

Layout on a 2-core machine (``nproc`` = 2; there is no third core):

    core 0  the gateway under test (Switchyard; later LiteLLM, Portkey), alone
    core 1  the fake upstream(s) and the load generator (the orchestrator's own process), shared

The load generator shares core 1 with the fake in *every* run, the direct ones included, so the difference
between a direct run and a gateway run is what the gateway adds. ``taskset`` execs the command, so the pid we
hold is the target's own: ``/proc/<pid>/stat`` (utime + stime, all threads) gives its CPU time and
``/proc/<pid>/status`` its RSS and peak RSS (VmHWM, which ``/proc/<pid>/clear_refs`` resets between phases).

A new target (another gateway) is a :class:`Target`: a command, a generated config, a readiness URL, and how it
names the fake upstreams' models.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
GATEWAY_CORE = 0
UPSTREAM_CORE = 1
LOADGEN_CORE = 1
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin_self(core: int = LOADGEN_CORE) -> None:
    """Pin the calling process (the load generator) to ``core``."""
    if core in os.sched_getaffinity(0) or core < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {core})


@dataclass(frozen=True, slots=True)
class ProcSample:
    cpu_s: float  # user + system seconds, all threads
    rss_kb: int
    peak_kb: int  # VmHWM since start or since the last reset_peak()
    wait_s: float = 0.0  # time its main thread was runnable but not running (something else had the core)


def runqueue_wait(pid: int | str) -> float:
    """Seconds the process's main thread (the event loop) spent runnable but waiting for a CPU
    (``/proc/<pid>/schedstat``, second field). Its own other threads (a store writer) can cause a little of it;
    much more means other processes got in the way. 0.0 when the kernel keeps no schedstats."""
    with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[1]) / 1e9
    return 0.0


def sample(pid: int) -> ProcSample:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2 :].split()  # after "pid (comm) "; field 3 (state) is fields[0]
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime: fields 14 and 15 of proc(5)
    rss = peak = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    return ProcSample(cpu, rss, peak, runqueue_wait(pid))


@dataclass(frozen=True, slots=True)
class SystemSample:
    busy_s: float  # all cores: user + nice + system + irq + softirq
    steal_s: float  # taken by the hypervisor
    self_s: float  # this process (the load generator)
    self_wait_s: float = 0.0  # this process's run-queue wait


def system_sample() -> SystemSample:
    """Machine-wide CPU time from ``/proc/stat``, to tell how much CPU something other than the benchmark used."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    t = os.times()
    return SystemSample((v[0] + v[1] + v[2] + v[5] + v[6]) / CLK_TCK, (v[7] if len(v) > 7 else 0) / CLK_TCK,
                        t.user + t.system, runqueue_wait("self"))


def foreign_cpu(before: SystemSample, after: SystemSample, ours_s: float, seconds: float) -> dict[str, float]:
    """Cores' worth of CPU used by other processes (and the kernel's share not charged to ours) over a phase,
    given what our processes (``ours_s``, besides this one) used; and the hypervisor's steal, in cores."""
    if seconds <= 0:
        return {"foreign_cores": 0.0, "steal_cores": 0.0}
    other = (after.busy_s - before.busy_s) - (after.self_s - before.self_s) - ours_s
    return {"foreign_cores": round(max(0.0, other) / seconds, 3),
            "steal_cores": round((after.steal_s - before.steal_s) / seconds, 3)}


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (proc(5), clear_refs value 5). False when the kernel refuses."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def http_ok(port: int, path: str, timeout: float = 0.5) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("GET", path)
            return conn.getresponse().status == 200
        finally:
            conn.close()
    except OSError:
        return False


@dataclass
class Managed:
    """One pinned subprocess: started, waited on until its readiness URL answers 200, stopped by its own pid."""

    name: str
    argv: list[str]
    core: int | str  # a core, or a taskset list ("0,1")
    port: int
    ready_path: str
    log_path: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    ready_s: float | None = None  # spawn to first 200 from the readiness URL
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, ready_timeout: float = 30.0) -> float:
        if shutil.which("taskset") is None:
            raise RuntimeError("taskset (util-linux) is needed to pin the targets to cores")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, **(self.env or {})}
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(["taskset", "-c", str(self.core), *self.argv], stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO,
                                     start_new_session=True)
        deadline = t0 + ready_timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before it was ready; "
                                   f"log: {self.log_path}\n{self.log_tail()}")
            if http_ok(self.port, self.ready_path):
                self.ready_s = time.perf_counter() - t0
                return self.ready_s
            time.sleep(0.005)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready after {ready_timeout:.0f} s; log: {self.log_path}")

    def sample(self) -> ProcSample:
        return sample(self.pid)

    def settle(self, busy_below: float = 0.05, window: float = 0.2, max_s: float = 15.0) -> float:
        """Wait until the process is idle (CPU share over ``window`` below ``busy_below``), e.g. after an
        overload left a backlog, so that it does not spill into the next phase. Returns the seconds waited."""
        t0 = time.perf_counter()
        last = self.sample().cpu_s
        while time.perf_counter() - t0 < max_s:
            time.sleep(window)
            now = self.sample().cpu_s
            if now - last < busy_below * window:
                break
            last = now
        return time.perf_counter() - t0

    def stop(self, grace: float = 5.0) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(grace)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


# --- the fake upstream -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpstreamSpec:
    """One fake upstream: its name (e.g. ``50ms``) and its timing."""

    name: str
    latency_ms: float
    chunks: int = 16
    chunk_interval_ms: float = 0.0

    def argv(self, port: int) -> list[str]:
        return [sys.executable, "-m", "benchmarks.fake_upstream", "--port", str(port), "--latency-ms",
                f"{self.latency_ms:g}", "--chunks", str(self.chunks), "--chunk-interval-ms",
                f"{self.chunk_interval_ms:g}"]


def fake_upstream(spec: UpstreamSpec, workdir: Path, core: int = UPSTREAM_CORE) -> Managed:
    port = free_port()
    return Managed(f"fake-{spec.name}", spec.argv(port), core, port, "/health", workdir / f"fake-{spec.name}.log")


# --- targets: what the load is sent to -----------------------------------------------------------------------


class Target:
    """Where the load goes. ``upstreams`` maps a fake's name to its port."""

    name = "target"
    api_key: str | None = None

    def __init__(self, upstreams: dict[str, int]) -> None:
        self.upstreams = upstreams
        self.process: Managed | None = None

    def start(self) -> None:
        """Start the target's own process, if it has one."""

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def url(self, endpoint: str, upstream: str) -> str:  # endpoint: "chat/completions" or "embeddings"
        raise NotImplementedError

    def model(self, upstream: str, endpoint: str = "chat/completions") -> str:
        """The model name that reaches the fake ``upstream`` through this target."""
        return f"bench-{upstream}" + ("-embed" if endpoint == "embeddings" else "")

    def request_headers(self, upstream: str) -> dict[str, str]:
        """Headers each request to ``upstream`` must carry, besides ``content-type`` and the API key."""
        return {}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "command": self.process.argv if self.process else None}


class DirectTarget(Target):
    """No gateway: the client calls the fake upstream itself."""

    name = "direct"

    def url(self, endpoint: str, upstream: str) -> str:
        return f"http://127.0.0.1:{self.upstreams[upstream]}/v1/{endpoint}"


class SwitchyardTarget(Target):
    """``switchyard serve`` with a generated config: one ``openai`` provider per fake, one deployment each, a
    static key, a SQLite store in the work dir (the request log is written, as in production), metrics on and a
    JSON log line per request at ``--log-level info``. No governance:
    :class:`benchmarks.compare.GovernedSwitchyardTarget` adds it. ``workers`` > 1 runs ``serve --workers N``
    (then ``core`` is a taskset list such as ``"0,1"``)."""

    name = "switchyard"
    api_key: str | None = "sk-bench-0123456789abcdef"

    def __init__(self, upstreams: dict[str, int], workdir: Path, core: int | str = GATEWAY_CORE,
                 src: Path | None = None, workers: int = 1) -> None:
        super().__init__(upstreams)
        self.workdir = workdir
        self.src = src  # a snapshot's src/ to run instead of the working tree (put first on PYTHONPATH)
        self.port = free_port()
        self.config_path = workdir / f"{self.name}.yaml"
        self.core = core
        self.workers = workers

    def config_text(self) -> str:
        # metrics on, and one JSON log line per request (``--log-level info``): as an operator runs it
        lines = [f"store: sqlite:///{self.workdir / self.name}.db", "server:", "  host: 127.0.0.1",
                 f"  port: {self.port}", "  log_format: json", "metrics:", "  enabled: true",
                 "ledger:", "  spool:", f"    dir: {self.workdir / (self.name + '-spool')}",
                 "keys:", "  - key: sk-bench-0123456789abcdef", "    name: bench", "providers:"]
        for name, port in self.upstreams.items():
            lines += [f"  fake-{name}:", "    type: openai", f"    base_url: http://127.0.0.1:{port}/v1",
                      "    api_key: sk-fake-upstream"]
        lines.append("deployments:")
        for name in self.upstreams:
            lines += [f"  - name: {self.model(name)}", f"    provider: fake-{name}", "    model: fake",
                      "    capabilities: [chat, tools, json]", "    price: {input: 0.15, output: 0.6}",
                      f"  - name: {self.model(name, 'embeddings')}", f"    provider: fake-{name}",
                      "    model: fake-embed", "    capabilities: [embeddings]", "    price: {input: 0.02}"]
        return "\n".join(lines) + "\n"

    def new_process(self) -> Managed:
        for f in self.workdir.glob(f"{self.name}.db*"):
            f.unlink()
        self.config_path.write_text(self.config_text())
        exe = str(Path(sys.executable).parent / "switchyard")
        argv = [exe, "serve", "--config", str(self.config_path), "--port", str(self.port), "--log-level", "info"]
        if self.workers > 1:
            argv += ["--workers", str(self.workers)]
        env = {"PYTHONPATH": str(self.src)} if self.src is not None else None
        return Managed(self.name, argv, self.core, self.port, "/health/ready", self.workdir / f"{self.name}.log",
                       env=env)

    def start(self) -> None:
        self.process = self.new_process()
        self.process.start()

    def url(self, endpoint: str, upstream: str) -> str:
        return f"http://127.0.0.1:{self.port}/v1/{endpoint}"


def startup_times(make: Any, samples: int) -> list[float]:
    """Spawn-to-ready seconds of ``samples`` fresh processes from ``make()`` (each stopped afterwards)."""
    out: list[float] = []
    for _ in range(samples):
        m: Managed = make()
        try:
            out.append(m.start())
        finally:
            m.stop()
    return out
