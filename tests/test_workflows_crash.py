"""A run survives SIGKILL of its gateway: after a restart it completes, and no completed step runs twice."""

from __future__ import annotations

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
