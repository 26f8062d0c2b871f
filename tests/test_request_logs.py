"""Request logs over HTTP: one line per call at ``info`` with ids, route, deployment, attempts, status, latency,
TTFT, tokens and cost; never the prompt, the completion or a key; upstream failures and breaker changes logged;
``server.log_format: json`` from a real ``switchyard serve``."""

from __future__ import annotations

import io
import logging
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from switchyard.telemetry.logs import Fields, JsonFormatter
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import USER_KEY, base_config, run_gateway
from tests.support.ledger import write_config
from tests.support.servers import free_port, run_process

HI: Any = [{"role": "user", "content": "hi"}]
FIELDS = {"request_id", "principal", "protocol", "endpoint", "route", "deployment", "attempts", "status",
          "http_status", "latency_ms", "input_tokens", "output_tokens", "cost_usd"}


def config(upstream: str) -> dict[str, Any]:
    return base_config(
        providers={"up": {"type": "openai", "base_url": upstream + "/v1", "api_key": "sk-upstream-secret"},
                   "sim": {"type": "simulated", "output_tokens": 5}},
        deployments=[{"name": "gpt-4o-mini", "provider": "up", "price": {"input": 1.0, "output": 2.0}},
                     {"name": "sim-b", "provider": "sim"}],
        routes={"r": {"strategy": "priority", "targets": ["gpt-4o-mini", "sim-b"],
                      "breaker": {"consecutive_failures": 1}}},
    )


def request_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "switchyard.request"]


def test_one_line_per_request_without_prompt_completion_or_key(fake_openai: FakeOpenAI,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    prompt, completion = f"PROMPT-{uuid.uuid4().hex}", f"COMPLETION-{uuid.uuid4().hex}"
    assert fake_openai.base_url is not None
    fake_openai.set_reply(completion)
    caplog.set_level(logging.INFO)
    with run_gateway(config(fake_openai.base_url)) as gw, \
            openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0) as c:
        r = c.chat.completions.with_raw_response.create(
            model="r", messages=[{"role": "user", "content": prompt}], extra_headers={"x-request-id": "mine-1"})
        assert completion in (r.parse().choices[0].message.content or "")
        chunks = list(c.chat.completions.create(model="r", messages=[{"role": "user", "content": prompt}],
                                                stream=True))
        assert chunks
        lines = request_lines(caplog)
    assert len(lines) == 2 and all(rec.levelno == logging.INFO for rec in lines)
    first, stream = (rec.msg.fields for rec in lines if isinstance(rec.msg, Fields))
    assert first.keys() >= FIELDS
    assert first["client_request_id"] == "mine-1" and first["request_id"].startswith("req_")
    assert first["principal"] == "key:user" and first["protocol"] == "openai"
    assert (first["route"], first["deployment"], first["attempts"], first["status"]) == ("r", "gpt-4o-mini", 1, "ok")
    assert first["http_status"] == 200 and first["latency_ms"] > 0 and first["cost_usd"] > 0
    assert first["output_tokens"] > 0 and first["input_tokens"] > 0
    assert stream["ttft_ms"] is not None and 0 < stream["ttft_ms"] <= stream["latency_ms"]
    everything = caplog.text + "".join(str(rec.msg) for rec in caplog.records)
    for secret in (prompt, completion, USER_KEY, "sk-upstream-secret"):
        assert secret not in everything


def test_json_lines_parse_and_upstream_failures_and_breakers_are_logged(fake_openai: FakeOpenAI,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    assert fake_openai.base_url is not None
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logging.getLogger("switchyard").addHandler(handler)
    caplog.set_level(logging.INFO)
    try:
        with run_gateway(config(fake_openai.base_url)) as gw, \
                openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0) as c:
            fake_openai.fail_next(500)
            r = c.chat.completions.with_raw_response.create(model="r", messages=HI)
            assert r.headers["x-switchyard-deployment"] == "sim-b"
    finally:
        logging.getLogger("switchyard").removeHandler(handler)
    objs = [orjson.loads(line) for line in out.getvalue().splitlines()]
    requests = [o for o in objs if o["logger"] == "switchyard.request"]
    assert len(requests) == 1
    req = requests[0]
    assert req.keys() >= FIELDS and req["level"] == "info" and req["msg"] == "request"
    assert (req["route"], req["deployment"], req["attempts"], req["status"]) == ("r", "sim-b", 2, "ok")
    failure = [o for o in objs if o["msg"] == "upstream failure"]
    assert len(failure) == 1 and failure[0]["deployment"] == "gpt-4o-mini" and failure[0]["status"] == 502
    assert failure[0]["request_id"] == req["request_id"] and failure[0]["level"] == "warning"
    breaker = [o for o in objs if o["msg"] == "breaker"]
    assert breaker == [{**breaker[0], "deployment": "gpt-4o-mini", "endpoint": "chat", "state": "open",
                        "level": "warning"}]


def test_quiet_at_warning(fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    assert fake_openai.base_url is not None
    caplog.set_level(logging.WARNING)
    with run_gateway(config(fake_openai.base_url)) as gw, \
            openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0) as c:
        c.chat.completions.create(model="r", messages=HI)
    assert request_lines(caplog) == []


def test_serve_writes_json_lines(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "gateway.yaml", {
        "store": f"sqlite:///{tmp_path}/gw.db",
        "server": {"log_format": "json"},
        "keys": [{"key": USER_KEY, "name": "user"}],
        "providers": {"sim": {"type": "simulated", "output_tokens": 3}},
        "deployments": [{"name": "sim-a", "provider": "sim"}],
        "ledger": {"spool": {"dir": str(tmp_path / "spool"), "flush_interval": 0.05}},
    })
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "switchyard.cli.main", "serve", "--config", str(cfg), "--port", str(port),
           "--log-level", "info"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    with run_process(cmd, f"{base}/health/ready", env=env, timeout=30) as proc:
        with openai.OpenAI(base_url=f"{base}/v1", api_key=USER_KEY, max_retries=0) as c:
            for _ in range(3):
                c.chat.completions.create(model="sim-a", messages=HI)
        os.killpg(proc.proc.pid, signal.SIGTERM)
        proc.proc.wait(15)
        printed = proc.output()
    objs = [orjson.loads(line) for line in printed.splitlines() if line.startswith("{")]
    requests = [o for o in objs if o["logger"] == "switchyard.request"]
    assert len(requests) == 3, printed[-3000:]
    assert {o["deployment"] for o in requests} == {"sim-a"} and len({o["request_id"] for o in requests}) == 3
    assert USER_KEY not in printed
