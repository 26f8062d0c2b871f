"""Two gateway replicas (two ``serve`` processes, each its own executor id) sharing one PostgreSQL database: a run
whose replica is killed mid-run is taken over by the other, live, replica; a killed replica that restarts at once
races the takeover, and still every run executes exactly once; a third process that claims a live replica's
executor id refuses to start; and when every replica dies and comes back under new executor ids (replaced pods),
their runs complete (``switchyard.workflows.liveness``)."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.servers import ManagedProcess, free_port, run_process
from tests.support.tool_server import ToolServer

KEY = "sk-test-replicas-0123456789"
FLOW = {"name": "relay", "steps": [
    {"id": "a", "type": "tool", "tool": "echo", "input": {"run": "input.n", "step": "'a'"}},
    {"id": "b", "type": "tool", "tool": "slow", "needs": ["a"], "input": {"run": "input.n", "step": "'b'"},
     "timeout_s": 120},
    {"id": "c", "type": "tool", "tool": "echo", "needs": ["b"], "input": {"run": "input.n", "step": "'c'"}}]}


def _config(tmp: Path, store: str, tools_url: str) -> Path:
    (tmp / "relay.yaml").write_text(yaml.safe_dump(FLOW))
    tool = {"allow_hosts": [httpx.URL(tools_url).host], "allow_private": True, "timeout_s": 120}
    cfg = {"store": store, "keys": [{"key": KEY, "name": "replicas"}],
           "workflows": {"files": ["relay.yaml"], "recovery_interval_s": 0.5, "lease_s": 3,
                         "tools": {"echo": {"url": f"{tools_url}/echo", **tool},
                                   "slow": {"url": f"{tools_url}/slow", **tool}}}}
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cmd(cfg: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "switchyard.cli.main", "serve", "--config", str(cfg), "--port", str(port)]


def _env(executor: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")},
            "SWITCHYARD_EXECUTOR_ID": executor}


def _replica(cfg: Path, port: int, executor: str) -> contextlib.AbstractContextManager[ManagedProcess]:
    return run_process(_cmd(cfg, port), f"http://127.0.0.1:{port}/health/ready", env=_env(executor), timeout=90)


def _start(port: int, n: int) -> str:
    r = httpx.post(f"http://127.0.0.1:{port}/v1/workflows/relay/runs", json={"input": {"n": n}},
                   headers={"authorization": f"Bearer {KEY}"}, timeout=30)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _wait_all(port: int, ids: list[str], timeout: float = 120) -> dict[str, dict[str, Any]]:
    """Poll until every run has ended (a generous deadline: the machine is shared); the runs as last read."""
    end = time.monotonic() + timeout
    runs: dict[str, dict[str, Any]] = {}
    while time.monotonic() < end:
        for rid in ids:
            if runs.get(rid, {}).get("status") in (None, "running", "queued"):
                runs[rid] = httpx.get(f"http://127.0.0.1:{port}/v1/workflows/runs/{rid}",
                                      headers={"authorization": f"Bearer {KEY}"}, timeout=10).json()
        if all(r["status"] not in ("running", "queued") for r in runs.values()):
            break
        time.sleep(0.2)
    return runs


def _until(cond: Any, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.05)
    assert cond()


def _kill(proc: ManagedProcess) -> None:
    os.killpg(proc.proc.pid, signal.SIGKILL)
    proc.proc.wait(10)


def test_a_dead_replicas_runs_are_taken_over_once(tmp_path: Path) -> None:
    from tests.support.pg import pg_database_url

    tools = ToolServer()
    with pg_database_url() as url, tools.serve() as tools_url:
        cfg = _config(tmp_path, url, tools_url)
        port_a, port_b = free_port(), free_port()

        # 1. A dies with a run in its second step; B, alive, takes the run over and completes it
        tools.stall["/slow"] = 30.0
        with _replica(cfg, port_a, "replica-a") as a, _replica(cfg, port_b, "replica-b") as b:
            first = _start(port_a, 1)
            _until(lambda: tools.calls["/slow"] == 1)
            _kill(a)
            tools.stall["/slow"] = 0.0
            got = _wait_all(port_b, [first])[first]
            assert got["status"] == "completed", got
            assert got["steps"]["c"]["status"] == "completed"

            # 2. A restarts (same executor id) and at once dies again with 8 runs in flight; it restarts at once,
            # racing B's takeover: whoever wins, each run runs once
            tools.stall["/slow"] = 30.0
            with _replica(cfg, port_a, "replica-a") as a2:
                ids = [_start(port_a, n) for n in range(10, 18)]
                _until(lambda: tools.calls["/slow"] == 1 + 1 + 8)  # run 1's two calls, then one per new run
                _kill(a2)
            tools.stall["/slow"] = 0.0
            with _replica(cfg, port_a, "replica-a") as a3:
                runs = _wait_all(port_b, ids)
                assert all(r["status"] == "completed" for r in runs.values()), runs

                # 3. a process that claims B's executor id while B lives refuses to start, naming it
                port_c = free_port()
                out = subprocess.run(_cmd(cfg, port_c), env=_env("replica-b"), capture_output=True, text=True,
                                     timeout=120)
                assert out.returncode != 0
                assert "'replica-b' is held by another live process" in out.stdout + out.stderr

                # 4. every replica dies with runs in flight, and they come back under new names (pods replaced)
                tools.stall["/slow"] = 30.0
                last = [_start(port_a, 20), _start(port_a, 21), _start(port_b, 22), _start(port_b, 23)]
                _until(lambda: tools.calls["/slow"] == 10 + 8 + 4)
                _kill(a3)
                _kill(b)
        tools.stall["/slow"] = 0.0
        with _replica(cfg, port_c, "replica-c"), _replica(cfg, port_b, "replica-d"):
            runs = _wait_all(port_c, last)
            assert all(r["status"] == "completed" for r in runs.values()), runs

    calls = collections.Counter((json.loads(b)["run"], json.loads(b)["step"]) for b in tools.bodies)
    for n in [1, *range(10, 18), *range(20, 24)]:
        # completed before a kill: never again; the call in flight at the kill: made once more, by one replica
        assert (calls[(n, "a")], calls[(n, "b")], calls[(n, "c")]) == (1, 2, 1), (n, calls)
