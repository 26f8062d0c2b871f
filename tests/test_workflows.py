"""Workflows over HTTP: definitions, each step type, error handling, idempotency, RBAC listing, events, cancel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import USER_KEY, RunningGateway, base_config, run_gateway
from tests.support.tool_server import ToolServer

OTHER_KEY = "sk-test-other-0123456789"


@pytest.fixture(scope="module")
def tools() -> Iterator[tuple[ToolServer, str]]:
    server = ToolServer()
    with server.serve() as url:
        yield server, url


def _gateway(tmp_path: Path, fake_url: str, tool_url: str, workflows: list[dict[str, Any]],
             **extra: Any) -> Any:
    files = []
    for wf in workflows:
        p = tmp_path / f"{wf['name']}.yaml"
        p.write_text(yaml.safe_dump(wf))
        files.append(str(p))
    host = httpx.URL(tool_url).host
    cfg = base_config(
        keys=[{"key": USER_KEY, "name": "user"}, {"key": OTHER_KEY, "name": "other"}],
        providers={"up": {"type": "openai", "base_url": fake_url + "/v1", "api_key": "sk-up"}},
        deployments=[{"name": "cheap", "provider": "up", "model": "gpt-4o-mini",
                      "price": {"input": 1.0, "output": 2.0}}],
        workflows={"files": files, "database": f"sqlite:///{tmp_path}/wf.sqlite", "event_poll_s": 0.05,
                   "tools": {"echo": {"url": tool_url + "/echo", "allow_hosts": [host], "allow_private": True,
                                      "input_schema": {"type": "object", "required": ["q"],
                                                       "properties": {"q": {"type": "string"}}}},
                             "flaky": {"url": tool_url + "/flaky", "allow_hosts": [host], "allow_private": True},
                             "public": {"url": tool_url + "/echo", "allow_hosts": [host]},
                             "hop": {"url": tool_url + "/redirect", "allow_hosts": [host], "allow_private": True}}},
        **extra,
    )
    return run_gateway(cfg)


def _wait(c: httpx.Client, run_id: str, timeout: float = 20) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while True:
        r = c.get(f"/v1/workflows/runs/{run_id}")
        assert r.status_code == 200, r.text
        run = r.json()
        if run["status"] not in ("running", "queued") or time.monotonic() > end:
            return run
        time.sleep(0.05)


def _client(gw: RunningGateway, key: str = USER_KEY) -> httpx.Client:
    return httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {key}"}, timeout=30)


CHAIN = {
    "name": "chain",
    "input_schema": {"type": "object", "required": ["ticket"], "properties": {"ticket": {"type": "string"}}},
    "steps": [
        {"id": "triage", "type": "model", "model": "cheap",
         "messages": [{"role": "user", "content": "Classify: {{ input.ticket }}"}],
         "output_schema": {"type": "object", "required": ["category"],
                           "properties": {"category": {"type": "string", "enum": ["billing", "tech"]}}}},
        {"id": "route", "type": "condition", "needs": ["triage"], "when": "steps.triage.category == 'billing'",
         "then": ["billing"], "else": ["tech"]},
        {"id": "billing", "type": "tool", "tool": "echo", "needs": ["route"], "input": {"q": "input.ticket"}},
        {"id": "tech", "type": "transform", "needs": ["route"], "template": "tech: {{ input.ticket }}"},
        {"id": "each", "type": "map", "needs": ["triage"], "over": "input.items || `[]`", "concurrency": 2,
         "step": {"type": "transform", "template": "{{ index }}={{ item }}"}},
        {"id": "summary", "type": "model", "model": "cheap", "needs": ["billing", "tech", "each"],
         "messages": [{"role": "user", "content": "Sum up {{ steps.billing | tojson }} {{ steps.each | tojson }}"}]},
    ],
    "output": {"category": "steps.triage.category", "summary": "steps.summary", "each": "steps.each",
               "tool": "steps.billing.echo"},
}


def test_a_chain_runs_each_step_type_through_the_gateway(tmp_path: Path, fake_openai: FakeOpenAI,
                                                          tools: tuple[ToolServer, str]) -> None:
    assert fake_openai.base_url is not None
    with _gateway(tmp_path, fake_openai.base_url, tools[1], [CHAIN]) as gw, _client(gw) as c:
        r = c.post("/v1/workflows/chain/runs", json={"input": {"ticket": "refund please", "items": ["a", "b", "c"]}})
        assert r.status_code == 202, r.text
        run = _wait(c, r.json()["id"])
        assert run["status"] == "completed", run
        out = run["output"]
        assert out["category"] == "billing"  # the fake samples the schema's first enum value
        assert out["tool"] == {"q": "refund please"}
        assert out["each"] == ["0=a", "1=b", "2=c"]
        assert out["summary"].startswith("Echo: Sum up")
        steps = run["steps"]
        assert steps["tech"]["status"] == "skipped" and steps["billing"]["status"] == "completed"
        assert steps["triage"]["deployments"] == ["cheap"] and steps["triage"]["duration_ms"] >= 0
        assert run["cost"] > 0 and abs(run["cost"] - steps["triage"]["cost"] - steps["summary"]["cost"]) < 1e-12
        assert len(fake_openai.requests) == 2
        # the model call carried the schema as response_format
        assert fake_openai.requests[0].json["response_format"]["type"] == "json_schema"
