"""A run survives SIGKILL of its gateway: after a restart it completes, and no completed step runs twice."""

from __future__ import annotations

import collections
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import free_port, run_process
from tests.support.tool_server import ToolServer

KEY = "sk-test-crash-0123456789"

FLOW = {
    "name": "crashy",
    "steps": [
        {"id": "first", "type": "model", "model": "m", "messages": [{"role": "user", "content": "first call"}]},
        {"id": "slow", "type": "tool", "tool": "slow", "needs": ["first"], "input": {"after": "steps.first"}},
        {"id": "second", "type": "model", "model": "m", "needs": ["slow"],
         "messages": [{"role": "user", "content": "second call {{ steps.slow.n }}"}]},
        {"id": "last", "type": "tool", "tool": "echo", "needs": ["second"], "input": {"said": "steps.second"}},
    ],
    "output": {"second": "steps.second", "last": "steps.last.echo"},
}


def _config(tmp_path: Path, upstream: str, tools: str) -> Path:
    (tmp_path / "crashy.yaml").write_text(yaml.safe_dump(FLOW))
    host = httpx.URL(tools).host
    cfg: dict[str, Any] = {
        "store": f"sqlite:///{tmp_path}/gw.db",
        "keys": [{"key": KEY, "name": "crash"}],
        "providers": {"up": {"type": "openai", "base_url": upstream + "/v1", "api_key": "sk-up"}},
        "deployments": [{"name": "m", "provider": "up", "model": "gpt-4o-mini"}],
        "workflows": {"files": ["crashy.yaml"], "database": f"sqlite:///{tmp_path}/wf.sqlite",
                      "tools": {n: {"url": f"{tools}/{n}", "allow_hosts": [host], "allow_private": True}
                                for n in ("slow", "echo")}},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _serve(cfg: Path, port: int) -> Any:
    cmd = [sys.executable, "-m", "switchyard.cli.main", "serve", "--config", str(cfg), "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    return run_process(cmd, f"http://127.0.0.1:{port}/health/ready", env=env, timeout=60)


def test_a_run_resumes_after_sigkill_without_repeating_completed_steps(tmp_path: Path,
                                                                       fake_openai: FakeOpenAI) -> None:
    tools = ToolServer()
    tools.stall["/slow"] = 60.0  # the first call of the slow tool hangs: the gateway dies during it
    assert fake_openai.base_url is not None
    with tools.serve() as tools_url:
        cfg = _config(tmp_path, fake_openai.base_url, tools_url)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        headers = {"authorization": f"Bearer {KEY}", "idempotency-key": "crash-1"}
        with _serve(cfg, port) as proc:
            r = httpx.post(f"{base}/v1/workflows/crashy/runs", json={"input": {}}, headers=headers, timeout=30)
            assert r.status_code == 202, r.text
            run_id = r.json()["id"]
            end = time.monotonic() + 30
            while tools.calls["/slow"] == 0 and time.monotonic() < end:
                time.sleep(0.02)
            assert tools.calls["/slow"] == 1
            assert [q.json["messages"][0]["content"] for q in fake_openai.requests] == ["first call"]
            os.killpg(proc.proc.pid, signal.SIGKILL)  # mid-run: "first" is done, "slow" is in flight
            proc.proc.wait(10)
        tools.stall["/slow"] = 0.0
        with _serve(cfg, port):
            deadline = time.monotonic() + 60
            while True:
                got = httpx.get(f"{base}/v1/workflows/runs/{run_id}", headers=headers, timeout=10).json()
                if got["status"] not in ("running", "queued") or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert got["status"] == "completed", got
            # the same Idempotency-Key after the restart finds the same run, and starts nothing
            again = httpx.post(f"{base}/v1/workflows/crashy/runs", json={"input": {}}, headers=headers, timeout=30)
            assert again.status_code == 200 and again.json()["id"] == run_id
    contents = [q.json["messages"][0]["content"] for q in fake_openai.requests]
    assert contents == ["first call", "second call 2"]  # each model step ran once; "first" was not repeated
    assert tools.calls["/slow"] == 2  # the call in flight at the kill ran again (it had not completed) ...
    assert tools.calls["/echo"] == 1  # ... and every other step exactly once
    assert got["output"]["second"] == "Echo: second call 2"
    assert got["output"]["last"] == {"said": "Echo: second call 2"}


def test_under_two_workers_on_postgres_each_run_executes_exactly_once(tmp_path: Path) -> None:
    """``serve --workers 2`` sharing PostgreSQL: runs started on either worker, the same Idempotency-Key sent to
    both at once, and a worker killed mid-run (its slot restarts and resumes its own runs): no completed step runs
    twice, and only a call in flight at the kill is made again."""
    import concurrent.futures

    from tests.support.pg import pg_database_url

    tools = ToolServer()
    tools.stall["/slow"] = 8.0  # every "b" hangs past the kill
    flow = {"name": "once", "steps": [
        {"id": "a", "type": "tool", "tool": "echo", "input": {"run": "input.n", "step": "'a'"}},
        {"id": "b", "type": "tool", "tool": "slow", "needs": ["a"], "input": {"run": "input.n", "step": "'b'"},
         "timeout_s": 60}]}
    (tmp_path / "once.yaml").write_text(yaml.safe_dump(flow))
    with pg_database_url() as url, tools.serve() as tools_url:
        host = httpx.URL(tools_url).host
        tool = {"allow_hosts": [host], "allow_private": True, "timeout_s": 60}
        cfg = {"store": url, "keys": [{"key": KEY, "name": "crash"}],
               "workflows": {"files": ["once.yaml"], "tools": {"echo": {"url": f"{tools_url}/echo", **tool},
                                                              "slow": {"url": f"{tools_url}/slow", **tool}}}}
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(cfg))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "switchyard.cli.main", "serve", "--config", str(path), "--port", str(port),
               "--workers", "2"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
        with run_process(cmd, f"{base}/health/ready", env=env, timeout=60):
            pids: set[int] = set()
            end = time.monotonic() + 20
            while len(pids) < 2 and time.monotonic() < end:  # both workers are up and answering
                with httpx.Client() as c:  # a new connection each time: SO_REUSEPORT spreads them
                    pids.add(c.get(f"{base}/health/live").json()["pid"])
            assert len(pids) == 2

            def post(n: int, key: str | None = None) -> str:
                headers = {"authorization": f"Bearer {KEY}", **({"idempotency-key": key} if key else {})}
                with httpx.Client() as c:
                    r = c.post(f"{base}/v1/workflows/once/runs", json={"input": {"n": n}}, headers=headers,
                               timeout=30)
                assert r.status_code in (200, 202), r.text
                return str(r.json()["id"])

            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                same = list(pool.map(lambda _: post(0, "same-key"), range(16)))
                ids = list(pool.map(post, range(1, 41)))
            assert len(set(same)) == 1 and len(set(ids)) == 40
            end = time.monotonic() + 30
            while tools.calls["/slow"] < 41 and time.monotonic() < end:  # every run is in "b": all "a" are done
                time.sleep(0.05)
            assert tools.calls["/echo"] == 41 and tools.calls["/slow"] == 41
            os.kill(sorted(pids)[0], signal.SIGKILL)  # one worker dies with its runs' "b" calls in flight
            time.sleep(0.5)
            tools.stall["/slow"] = 0.0  # the surviving worker's hanging calls still wait out their 8 s
            headers = {"authorization": f"Bearer {KEY}"}
            end = time.monotonic() + 90
            pending = {*ids, same[0]}
            while pending and time.monotonic() < end:
                for rid in list(pending):
                    got = httpx.get(f"{base}/v1/workflows/runs/{rid}", headers=headers, timeout=10).json()
                    if got["status"] == "completed":
                        pending.discard(rid)
                time.sleep(0.2)
            assert not pending
    calls = collections.Counter((json.loads(b)["run"], json.loads(b)["step"]) for b in tools.bodies)
    assert all(calls[(n, "a")] == 1 for n in range(41))  # completed before the kill: never again
    again = [n for n in range(41) if calls[(n, "b")] == 2]
    assert all(calls[(n, "b")] in (1, 2) for n in range(41))
    assert 0 < len(again) < 41  # the killed worker's runs, resumed by its restarted slot; the others ran "b" once
