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
from tests.support.gateway import MASTER_KEY, USER_KEY, RunningGateway, base_config, run_gateway
from tests.support.tool_server import ToolServer

OTHER_KEY = "sk-test-other-0123456789"
FULL_KEY = "sk-test-full-0123456789"


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
        keys=[{"key": USER_KEY, "name": "user"}, {"key": OTHER_KEY, "name": "other"},
              {"key": FULL_KEY, "name": "full", "logging": "full"}],
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


ERRORS = {
    "name": "errors",
    "steps": [
        {"id": "flaky", "type": "tool", "tool": "flaky", "input": {"x": "`1`"},
         "retry": {"attempts": 3, "backoff_s": 0.01}},
        {"id": "bad_input", "type": "tool", "tool": "echo", "input": {"q": "`5`"}, "on_error": "continue",
         "retry": {"attempts": 3, "backoff_s": 0.01}},
        {"id": "private", "type": "tool", "tool": "public", "input": {"q": "'x'"}, "on_error": "rescue"},
        {"id": "rescue", "type": "transform", "jmespath": "'rescued'"},
        {"id": "redirected", "type": "tool", "tool": "hop", "input": {"q": "'x'"}, "on_error": "continue"},
        {"id": "items", "type": "map", "over": "input.qs", "partial": "null",
         "step": {"type": "tool", "tool": "echo", "input": {"q": "item"}}},
        {"id": "strict", "type": "map", "over": "input.qs", "partial": "skip",
         "step": {"type": "tool", "tool": "echo", "input": {"q": "item"}}},
    ],
    "output": {"flaky": "steps.flaky.n", "private": "steps.private", "items": "steps.items[*].echo.q",
               "strict": "length(steps.strict)", "bad": "steps.bad_input"},
}


def test_error_paths_retry_continue_fallback_ssrf_and_partial_maps(tmp_path: Path, fake_openai: FakeOpenAI,
                                                                   tools: tuple[ToolServer, str]) -> None:
    server, url = tools
    server.fail_times["/flaky"] = 2  # two 503s, then an answer: the step's third attempt succeeds
    server.redirect_to = "http://127.0.0.2:9/elsewhere"  # a host that is not on the tool's allow-list
    assert fake_openai.base_url is not None
    with _gateway(tmp_path, fake_openai.base_url, url, [ERRORS]) as gw, _client(gw) as c:
        before = server.calls["/echo"]
        r = c.post("/v1/workflows/errors/runs", json={"input": {"qs": ["a", 7, "c"]}})
        run = _wait(c, r.json()["id"])
    assert run["status"] == "completed", run
    steps = run["steps"]
    assert steps["flaky"]["attempts"] == 3 and run["output"]["flaky"] == 3
    # an input that fails the tool's schema is not retried, and on_error: continue leaves a null
    assert steps["bad_input"]["status"] == "failed" and steps["bad_input"]["attempts"] == 1
    assert "does not match its schema at q" in steps["bad_input"]["error"] and run["output"]["bad"] is None
    # a tool without allow_private may not call a loopback address; its fallback step answers instead
    assert "non-public" in steps["private"]["error"] and steps["private"]["fallback"] == "rescue"
    assert run["output"]["private"] == "rescued" and steps["private"]["status"] == "completed"
    assert "not on its allow-list" in steps["redirected"]["error"]
    # partial: null keeps a hole for the failed item; partial: skip drops it
    assert run["output"]["items"] == ["a", "c"] and steps["items"]["items"] == {"total": 3, "failed": [1]}
    assert run["output"]["strict"] == 2
    assert server.calls["/echo"] - before == 4  # the item 7 fails its schema before any call, in both maps


def test_a_failing_step_fails_the_run_naming_it_and_schema_failures_are_fed_back(
        tmp_path: Path, fake_openai: FakeOpenAI, tools: tuple[ToolServer, str]) -> None:
    wf = {"name": "strict", "steps": [
        {"id": "ask", "type": "model", "model": "cheap", "schema_retries": 2,
         "messages": [{"role": "user", "content": "give JSON"}],
         "output_schema": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}},
        {"id": "after", "type": "transform", "needs": ["ask"], "jmespath": "steps.ask"}]}
    fake_openai.set_reply('{"n": "three"}')
    assert fake_openai.base_url is not None
    with _gateway(tmp_path, fake_openai.base_url, tools[1], [wf]) as gw, _client(gw) as c:
        run = _wait(c, c.post("/v1/workflows/strict/runs", json={"input": {}}).json()["id"])
    assert run["status"] == "failed"
    assert run["error"]["step"] == "ask" and run["error"]["code"] == "schema_mismatch"
    with _gateway(tmp_path, fake_openai.base_url, tools[1], [wf]) as gw, _client(gw) as c:  # the same database
        assert [r["status"] for r in c.get("/v1/workflows/runs").json()["data"]] == ["failed"]
    assert "at n: 'three' is not of type 'integer'" in run["error"]["message"]
    assert run["steps"]["after"]["status"] == "pending"
    assert len(fake_openai.requests) == 3  # the first try and two retries
    last = fake_openai.requests[-1].json["messages"]
    assert last[-2] == {"role": "assistant", "content": '{"n": "three"}'}
    assert "does not match the required JSON schema: at n" in last[-1]["content"]


def test_the_workflow_budget_stops_a_run_and_the_key_allow_list_applies(
        tmp_path: Path, fake_openai: FakeOpenAI, tools: tuple[ToolServer, str]) -> None:
    wf = {"name": "spendy", "budget_usd": 0.0000001, "steps": [
        {"id": "a", "type": "model", "model": "cheap", "messages": [{"role": "user", "content": "one two"}]},
        {"id": "b", "type": "model", "model": "cheap", "needs": ["a"],
         "messages": [{"role": "user", "content": "three"}]}]}
    limited = {"key": "sk-test-limited-0123456789", "name": "limited", "models": ["nothing-else"]}
    assert fake_openai.base_url is not None
    extra_dep = {"name": "nothing-else", "provider": "up", "model": "gpt-4o"}
    (tmp_path / "spendy.yaml").write_text(yaml.safe_dump(wf))
    cfg_keys = [{"key": USER_KEY, "name": "user"}, limited]
    files = [str(tmp_path / "spendy.yaml")]
    cfg = base_config(keys=cfg_keys,
                      providers={"up": {"type": "openai", "base_url": fake_openai.base_url + "/v1", "api_key": "k"}},
                      deployments=[{"name": "cheap", "provider": "up", "model": "gpt-4o-mini",
                                    "price": {"input": 1.0, "output": 2.0}}, extra_dep],
                      workflows={"files": files, "database": f"sqlite:///{tmp_path}/wf2.sqlite"})
    with run_gateway(cfg) as gw2, _client(gw2) as c, _client(gw2, limited["key"]) as lc:
        run = _wait(c, c.post("/v1/workflows/spendy/runs", json={"input": {}}).json()["id"])
        assert run["status"] == "failed" and run["error"]["code"] == "budget_exceeded"
        assert run["error"]["step"] == "b" and run["steps"]["a"]["status"] == "completed"
        n = len(fake_openai.requests)
        # a workflow can never do what its key could not: this key may not use "cheap"
        denied = _wait(lc, lc.post("/v1/workflows/spendy/runs", json={"input": {}}).json()["id"])
        assert denied["status"] == "failed" and denied["error"]["code"] == "model_not_allowed"
        assert len(fake_openai.requests) == n


def test_idempotency_listing_events_and_cancel(tmp_path: Path, fake_openai: FakeOpenAI,
                                               tools: tuple[ToolServer, str]) -> None:
    server, url = tools
    wf = {"name": "waits", "steps": [
        {"id": "hello", "type": "transform", "template": "hi {{ input.who }}"},
        {"id": "wait", "type": "tool", "tool": "echo", "needs": ["hello"], "input": {"q": "steps.hello"}}]}
    assert fake_openai.base_url is not None
    with _gateway(tmp_path, fake_openai.base_url, url, [wf]) as gw, _client(gw) as c, \
            _client(gw, OTHER_KEY) as other, _client(gw, MASTER_KEY) as admin:
        # idempotency: the same key and Idempotency-Key give the same run; another caller's same key does not
        h = {"idempotency-key": "order-42"}
        first = c.post("/v1/workflows/waits/runs", json={"input": {"who": "a"}}, headers=h)
        again = c.post("/v1/workflows/waits/runs", json={"input": {"who": "a"}}, headers=h)
        theirs = other.post("/v1/workflows/waits/runs", json={"input": {"who": "b"}}, headers=h)
        assert first.status_code == 202 and again.status_code == 200
        assert again.headers["idempotent-replayed"] == "true" and again.json()["id"] == first.json()["id"]
        assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]
        run = _wait(c, first.json()["id"])
        assert run["output"] == {"path": "/echo", "echo": {"q": "hi a"}, "n": run["output"]["n"]}
        _wait(other, theirs.json()["id"])
        # listing: each key sees its own runs; another key's run is a 404; the master key sees every run
        mine = c.get("/v1/workflows/runs").json()["data"]
        assert [(r["id"], r["status"]) for r in mine] == [(first.json()["id"], "completed")]
        assert other.get(f"/v1/workflows/runs/{first.json()['id']}").status_code == 404
        assert c.get("/v1/workflows/runs", params={"scope": "org"}).status_code == 403
        everyone = admin.get("/v1/workflows/runs", params={"scope": "org"}).json()["data"]
        assert {r["id"] for r in everyone} >= {first.json()["id"], theirs.json()["id"]}
        # events: a stream of step events, then the run
        with c.stream("GET", f"/v1/workflows/runs/{first.json()['id']}/events") as s:
            assert s.headers["content-type"].startswith("text/event-stream")
            text = "".join(s.iter_text())
        events = [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")]
        assert events == ["step", "step", "run"]
        # cancel: a run stalled in a tool call is cancelled, and its events end with the cancelled run
        server.stall["/echo"] = 30.0
        try:
            stalled = c.post("/v1/workflows/waits/runs", json={"input": {"who": "z"}}).json()["id"]
            end = time.monotonic() + 10
            while c.get(f"/v1/workflows/runs/{stalled}").json()["steps"].get("hello", {}).get("status") != "completed":
                assert time.monotonic() < end
                time.sleep(0.05)
            assert other.post(f"/v1/workflows/runs/{stalled}/cancel").status_code == 404
            cancelled = c.post(f"/v1/workflows/runs/{stalled}/cancel")
            assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        finally:
            server.stall["/echo"] = 0.0
        # bad requests name what is wrong
        bad = c.post("/v1/workflows/nope/runs", json={"input": {}})
        assert bad.status_code == 404 and bad.json()["error"]["code"] == "workflow_not_found"
        assert c.post("/v1/workflows/waits/runs", content=b"[").status_code == 400
        assert c.get("/v1/workflows/runs", params={"scope": "all"}).json()["error"]["param"] == "scope"
        assert httpx.get(gw.url + "/v1/workflows/runs").status_code == 401


def test_input_schema_and_unconfigured_gateway(tmp_path: Path, fake_openai: FakeOpenAI,
                                               tools: tuple[ToolServer, str]) -> None:
    assert fake_openai.base_url is not None
    with _gateway(tmp_path, fake_openai.base_url, tools[1], [CHAIN]) as gw, _client(gw) as c:
        r = c.post("/v1/workflows/chain/runs", json={"input": {"ticket": 3}})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input"
        assert "at ticket" in r.json()["error"]["message"]
        assert [w["name"] for w in c.get("/v1/workflows").json()["data"]] == ["chain"]
    with run_gateway(base_config()) as plain, _client(plain) as c:
        assert c.post("/v1/workflows/chain/runs", json={}).status_code == 404
        assert plain.gateway.workflows is None


def test_step_outputs_are_kept_only_for_a_key_that_logs_in_full(tmp_path: Path, fake_openai: FakeOpenAI,
                                                                 tools: tuple[ToolServer, str]) -> None:
    from switchyard.workflows.retention import step_outputs

    assert fake_openai.base_url is not None
    body = {"input": {"ticket": "secret ticket text", "items": ["x"]}}
    with _gateway(tmp_path, fake_openai.base_url, tools[1], [CHAIN]) as gw, _client(gw) as c, \
            _client(gw, FULL_KEY) as full:
        plain = _wait(c, c.post("/v1/workflows/chain/runs", json=body).json()["id"])
        kept = _wait(full, full.post("/v1/workflows/chain/runs", json=body).json()["id"])
        assert plain["status"] == kept["status"] == "completed"
        assert "output" not in plain["steps"]["triage"] and kept["steps"]["triage"]["output"] == {"category": "billing"}
        end = time.monotonic() + 10
        while any(o is not None for o in step_outputs(plain["id"])) and time.monotonic() < end:
            time.sleep(0.05)
        assert step_outputs(plain["id"]) and all(o is None for o in step_outputs(plain["id"]))
        assert all(o is not None for o in step_outputs(kept["id"]))
        assert plain["output"]["category"] == "billing"  # the run's own output stays for its caller


def test_step_timeouts_retry_and_the_workflow_deadline_ends_a_run(tmp_path: Path, fake_openai: FakeOpenAI,
                                                                  tools: tuple[ToolServer, str]) -> None:
    server, url = tools
    timeouts = {"name": "timeouts", "steps": [
        {"id": "slow", "type": "tool", "tool": "flaky", "input": {"x": "`1`"}, "timeout_s": 0.3,
         "retry": {"attempts": 2, "backoff_s": 0.01}}]}
    deadline = {"name": "deadline", "deadline_s": 1.0, "steps": [
        {"id": "first", "type": "tool", "tool": "flaky", "input": {"x": "`2`"}},
        {"id": "second", "type": "transform", "needs": ["first"], "jmespath": "`1`"}]}
    assert fake_openai.base_url is not None
    server.stall["/flaky"] = 3.0
    try:
        with _gateway(tmp_path, fake_openai.base_url, url, [timeouts, deadline]) as gw, _client(gw) as c:
            before = server.calls["/flaky"]
            t = _wait(c, c.post("/v1/workflows/timeouts/runs", json={"input": {}}).json()["id"])
            between = server.calls["/flaky"]
            d = _wait(c, c.post("/v1/workflows/deadline/runs", json={"input": {}}).json()["id"])
    finally:
        server.stall["/flaky"] = 0.0
    assert t["status"] == "failed" and t["error"]["code"] == "timeout" and t["steps"]["slow"]["attempts"] == 2
    assert between - before == 2  # the first run's two tries reached the tool
    # the second run's one try, unless its deadline (1 s) passed before the step could send it (a loaded machine)
    assert server.calls["/flaky"] - between <= 1
    assert d["status"] == "failed" and d["error"]["step"] == "first"
    assert d["error"]["code"] in ("timeout", "deadline_exceeded") and d["steps"]["second"]["status"] == "pending"
