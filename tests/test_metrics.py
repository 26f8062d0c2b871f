"""``GET /metrics`` over HTTP: counters and histograms that move with real calls (ok, stream, upstream failure with
a fallback, a retry, a breaker that opens, budget and rate-limit refusals), label values that never carry request
text, access control (loopback, or a key), and ``serve --workers 2`` adding up both workers."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from switchyard.config import ConfigError, parse_config
from switchyard.config.ledger import SpoolSettings
from switchyard.governance.spend import SpendWriter
from switchyard.server.factory import build
from switchyard.store import Store
from switchyard.telemetry.logs import Fields
from switchyard.telemetry.stage import Telemetry
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import MASTER_KEY, USER_KEY, RunningGateway, base_config, run_gateway
from tests.support.governance import Admin
from tests.support.ledger import ledger_config, tenant, write_config
from tests.support.scaleout import Pinned, serve_workers

HI: Any = [{"role": "user", "content": "hi"}]


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 when there are none)."""
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def scrape(url: str, key: str | None = None) -> str:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    r = httpx.get(url + "/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


def sim_config(**overrides: Any) -> dict[str, Any]:
    cfg = base_config(
        providers={"sim": {"type": "simulated", "output_tokens": 5}},
        deployments=[{"name": "sim-a", "provider": "sim", "price": {"input": 1.0, "output": 2.0}},
                     {"name": "sim-b", "provider": "sim"}],
        routes={"fast": {"targets": ["sim-a"]}},
    )
    cfg.update(overrides)
    return cfg


def upstream_config(upstream: str, **overrides: Any) -> dict[str, Any]:
    cfg = base_config(
        providers={"up": {"type": "openai", "base_url": upstream + "/v1", "api_key": "sk-upstream-secret"},
                   "sim": {"type": "simulated", "output_tokens": 5}},
        deployments=[{"name": "gpt-4o-mini", "provider": "up"}, {"name": "gpt-4o", "provider": "up"},
                     {"name": "sim-b", "provider": "sim"}],
        routes={"r": {"strategy": "priority", "targets": ["gpt-4o-mini", "sim-b"]},
                "again": {"targets": ["gpt-4o-mini"], "retries": {"max": 2, "backoff_base_ms": 1}},
                "fragile": {"targets": ["gpt-4o"], "breaker": {"consecutive_failures": 1}}},
    )
    cfg.update(overrides)
    return cfg


@contextlib.contextmanager
def client(gw: RunningGateway, key: str = USER_KEY) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.openai_base, api_key=key, max_retries=0) as c:
        yield c


def test_calls_move_the_counters_and_histograms() -> None:
    marker = f"MARKER-{uuid.uuid4().hex}"
    with run_gateway(sim_config()) as gw, client(gw) as c:
        before = scrape(gw.url)
        assert sample(before, "switchyard_requests_total") == 0
        c.chat.completions.create(model="fast", messages=[{"role": "user", "content": f"say {marker}"}])
        list(c.chat.completions.create(model="fast", messages=HI, stream=True))
        with anthropic.Anthropic(base_url=gw.url, api_key=USER_KEY, max_retries=0) as a:
            a.messages.create(model="sim-b", max_tokens=10, messages=[{"role": "user", "content": marker}])
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model=marker, messages=HI)  # the model name is the caller's text
        text = scrape(gw.url)

    ok = {"route": "fast", "deployment": "sim-a", "protocol": "openai", "status": "200"}
    assert sample(text, "switchyard_requests_total", **ok) == 2
    assert sample(text, "switchyard_requests_total", deployment="sim-b", protocol="anthropic", status="200") == 1
    assert sample(text, "switchyard_request_duration_seconds_count", deployment="sim-a") == 2
    assert sample(text, "switchyard_time_to_first_token_seconds_count", deployment="sim-a") == 1  # the stream
    assert sample(text, "switchyard_time_to_first_token_seconds_count", deployment="sim-b") == 0
    assert sample(text, "switchyard_tokens_total", deployment="sim-a", direction="input") > 0
    assert sample(text, "switchyard_tokens_total", deployment="sim-a", direction="output") == 10
    assert sample(text, "switchyard_cost_usd_total", route="fast", deployment="sim-a") > 0
    assert sample(text, "switchyard_breaker_state", deployment="sim-a", endpoint="chat") == 0
    assert sample(text, "switchyard_upstream_in_flight", deployment="sim-a") == 0
    # an unknown model is a call too (404), labelled with neither route nor deployment: never the caller's text
    assert sample(text, "switchyard_requests_total", route="", deployment="", status="404") == 1
    assert sample(text, "switchyard_requests_total") == 4
    assert marker not in text


def test_an_upstream_failure_counts_a_fallback_a_retry_and_an_opened_breaker(fake_openai: FakeOpenAI) -> None:
    assert fake_openai.base_url is not None
    with run_gateway(upstream_config(fake_openai.base_url)) as gw, client(gw) as c:
        fake_openai.fail_next(500)
        r = c.chat.completions.with_raw_response.create(model="r", messages=HI)
        assert r.headers["x-switchyard-deployment"] == "sim-b" and r.headers["x-switchyard-attempts"] == "2"
        fake_openai.fail_next(503)
        c.chat.completions.create(model="again", messages=HI)  # the same deployment, once more
        fake_openai.fail_next(500)
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="fragile", messages=HI)
        text = scrape(gw.url)
    assert sample(text, "switchyard_fallbacks_total", route="r", deployment="sim-b") == 1
    assert sample(text, "switchyard_fallbacks_total") == 1
    assert sample(text, "switchyard_retries_total", route="again", deployment="gpt-4o-mini") == 1
    assert sample(text, "switchyard_retries_total") == 1
    assert sample(text, "switchyard_hedges_total") == 0
    assert sample(text, "switchyard_upstream_failures_total", deployment="gpt-4o-mini") == 2
    assert sample(text, "switchyard_upstream_failures_total", deployment="gpt-4o") == 1
    assert sample(text, "switchyard_requests_total", route="r", deployment="sim-b", status="200") == 1
    assert sample(text, "switchyard_breaker_transitions_total", deployment="gpt-4o", endpoint="chat",
                  state="open") == 1
    assert sample(text, "switchyard_breaker_transitions_total") == 1
    assert sample(text, "switchyard_breaker_state", deployment="gpt-4o", endpoint="chat") == 2
    assert sample(text, "switchyard_breaker_state", deployment="gpt-4o-mini", endpoint="chat") == 0


def test_budget_and_rate_limit_refusals_are_counted_by_key_id(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/gov.db"
    store = Store.open(url)
    writer = SpendWriter(store.engine, SpoolSettings(dir=str(tmp_path / "spool"), flush_interval=0.05))
    try:
        with run_gateway(ledger_config(url, tmp_path / "spool"), recorder=writer) as gw:
            admin = Admin(gw.url)
            poor = tenant(admin, budget={"max_usd": 0.000001, "period": "daily"})
            slow = tenant(admin, rate_limit={"rpm": 1})
            admin.close()
            with client(gw, poor["secret"]) as c, pytest.raises(openai.RateLimitError):
                c.chat.completions.create(model="exact", messages=HI, max_tokens=50)
            with client(gw, slow["secret"]) as c:
                c.chat.completions.create(model="cheap", messages=HI, max_tokens=5)
                with pytest.raises(openai.RateLimitError):
                    c.chat.completions.create(model="cheap", messages=HI, max_tokens=5)
            text = scrape(gw.url)
    finally:
        store.close()
    assert sample(text, "switchyard_refusals_total", kind="budget", key=poor["key"]) == 1
    assert sample(text, "switchyard_refusals_total", kind="rate_limit", key=slow["key"]) == 1
    assert sample(text, "switchyard_refusals_total") == 2
    assert sample(text, "switchyard_requests_total", status="429") == 2
    assert sample(text, "switchyard_spool_backlog_bytes") >= 0
    assert "switchyard_spool_backlog_bytes" in text  # the spend spool's backlog is exposed
    assert poor["secret"] not in text and slow["secret"] not in text


def test_metrics_behind_a_key() -> None:
    metrics_key = "sk-metrics-0123456789abcdef"
    with run_gateway(sim_config(metrics={"access": "key", "key": metrics_key})) as gw:
        assert httpx.get(gw.url + "/metrics").status_code == 401
        wrong = httpx.get(gw.url + "/metrics", headers={"authorization": f"Bearer {MASTER_KEY}"})
        assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "permission_denied"
        assert httpx.get(gw.url + "/metrics", headers={"authorization": "Bearer nope"}).status_code == 403
        assert sample(scrape(gw.url, metrics_key), "switchyard_requests_total") == 0
    with run_gateway(sim_config(metrics={"access": "key"})) as gw:  # no metrics.key: the master key
        assert httpx.get(gw.url + "/metrics", headers={"authorization": f"Bearer {USER_KEY}"}).status_code == 403
        scrape(gw.url, MASTER_KEY)


async def test_loopback_access_refuses_other_peers() -> None:
    cfg = parse_config(sim_config(), "<test>", {})
    app = build(cfg)
    far = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    near = httpx.ASGITransport(app=app, client=("::1", 40000))
    async with httpx.AsyncClient(transport=far, base_url="http://gw") as c:
        r = await c.get("/metrics")
        assert r.status_code == 403 and "loopback" in r.json()["error"]["message"]
    async with httpx.AsyncClient(transport=near, base_url="http://gw") as c:
        assert (await c.get("/metrics")).status_code == 200


def test_metrics_off_is_a_404_and_costs_no_observer() -> None:
    with run_gateway(sim_config(metrics={"enabled": False})) as gw:
        assert httpx.get(gw.url + "/metrics").status_code == 404
        telemetry = [s for s in gw.gateway.chain.stages if isinstance(s, Telemetry)]
        assert len(telemetry) == 1 and telemetry[0].metrics is None  # the request log only
        with pytest.raises(ConfigError, match=r"metrics\.access"):
            parse_config(sim_config(master_key=None, metrics={"access": "key"}), "<test>", {})


def test_serve_workers_2_adds_up_both_workers(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "gateway.yaml", {
        "store": f"sqlite:///{tmp_path}/gw.db",
        "keys": [{"key": USER_KEY, "name": "user"}],
        "providers": {"sim": {"type": "simulated", "output_tokens": 3}},
        "deployments": [{"name": "sim-a", "provider": "sim"}],
        "ledger": {"spool": {"dir": str(tmp_path / "spool"), "flush_interval": 0.05}},
    })
    body = {"model": "sim-a", "messages": HI}
    auth = {"authorization": f"Bearer {USER_KEY}"}
    with serve_workers(cfg, 2) as w:
        pinned = [Pinned(w.url, pid, auth) for pid in sorted(w.pids)]
        try:
            for i, p in enumerate(pinned):
                for _ in range(3 + i):  # 3 on one worker, 4 on the other
                    assert p.request("POST", "/v1/chat/completions", json=body).status_code == 200
            for p in pinned:  # whichever worker answers, it reports both
                text = p.request("GET", "/metrics").text
                assert sample(text, "switchyard_requests_total", deployment="sim-a", status="200") == 7
                assert sample(text, "switchyard_request_duration_seconds_count", deployment="sim-a") == 7
        finally:
            for p in pinned:
                p.close()


def test_callers_refused_at_admission_are_counted_and_logged_without_their_key(
        caplog: pytest.LogCaptureFixture) -> None:
    bad = "sk-not-a-key-0123456789abcdef"
    caplog.set_level(logging.INFO)
    with run_gateway(sim_config(metrics={"enabled": True})) as gw:
        with openai.OpenAI(base_url=gw.openai_base, api_key=bad, max_retries=0) as c, \
                pytest.raises(openai.AuthenticationError):
            c.chat.completions.create(model="sim-a", messages=HI)
        with anthropic.Anthropic(base_url=gw.url, api_key=bad, max_retries=0) as a, \
                pytest.raises(anthropic.AuthenticationError):
            a.messages.create(model="sim-a", max_tokens=5, messages=HI)
        text = scrape(gw.url)
    assert sample(text, "switchyard_requests_total", status="401", protocol="openai", deployment="") == 1
    assert sample(text, "switchyard_requests_total", status="401", protocol="anthropic", deployment="") == 1
    lines = [r.msg.fields for r in caplog.records if r.name == "switchyard.request" and isinstance(r.msg, Fields)]
    assert [(f["status"], f["http_status"], f["protocol"]) for f in lines] == [
        ("refused", 401, "openai"), ("refused", 401, "anthropic")]
    assert bad not in caplog.text and all(bad not in str(f) for f in lines)
