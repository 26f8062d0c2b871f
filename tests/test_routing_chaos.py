"""Chaos tests: a real gateway over HTTP, the official ``openai`` SDK (no SDK retries), and chaos upstreams that
fail in every way. Every failure before the first byte fails over invisibly; after it, the stream ends with an
error event and the record says what happened; under load with one broken deployment every request succeeds
within its deadline, the broken one sees only probes once its breaker is open, and the breaker closes when it
recovers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from switchyard.server.admin.routes_health import RoutesHealth
from tests.support.chaos import ChaosUpstream, Fault, closed_port_url
from tests.support.gateway import MASTER_KEY, USER_KEY, ListRecorder, RunningGateway, base_config, run_gateway

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def ups() -> Iterator[tuple[ChaosUpstream, ChaosUpstream]]:
    with ChaosUpstream(name="broken") as broken, ChaosUpstream(name="healthy") as healthy:
        yield broken, healthy


@pytest.fixture
def broken(ups: tuple[ChaosUpstream, ChaosUpstream]) -> Iterator[ChaosUpstream]:
    ups[0].reset()
    ups[1].reset()
    yield ups[0]
    ups[0].up()


@pytest.fixture
def healthy(ups: tuple[ChaosUpstream, ChaosUpstream]) -> ChaosUpstream:
    return ups[1]


def chaos_config(broken: ChaosUpstream, healthy: ChaosUpstream, routes: dict[str, Any],
                 routing: dict[str, Any] | None = None) -> dict[str, Any]:
    def prov(url: str) -> dict[str, Any]:
        # connect_timeout is generous: under CI load, a chaos upstream holding many hung connections can be slow to
        # accept, and no test here is about connect timeouts (refusals are instant; hangs happen after accept)
        return {"type": "openai", "base_url": url, "api_key": "sk-chaos", "connect_timeout": 2.0, "timeout": 5}

    caps = ["chat", "embeddings"]
    return base_config(
        providers={"broken": prov(broken.base_url), "healthy": prov(healthy.base_url),
                   "dead": prov(closed_port_url() + "/v1")},
        deployments=[{"name": "broken", "provider": "broken", "model": "gpt-b", "capabilities": caps},
                     {"name": "healthy", "provider": "healthy", "model": "gpt-h", "capabilities": caps},
                     {"name": "dead", "provider": "dead", "model": "gpt-d", "capabilities": caps}],
        routes=routes,
        routing=routing or {},
    )


async def client_for(gw: RunningGateway, key: str = USER_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.openai_base, api_key=key, max_retries=0, timeout=10)


# --- every failure before the first byte fails over invisibly ----------------------------------------------

FIRST_BYTE_FAULTS = {
    "500": Fault.error(500),
    "503 with Retry-After": Fault.error(503, retry_after=1),
    "429": Fault.error(429, retry_after=2),
    "reset mid-body": Fault.reset(after=0),
    "hang before headers": Fault.hang(5),
    "malformed JSON": Fault.malformed(),
    "truncated before a chunk": Fault.truncated(after=0),
}


@pytest.fixture(scope="module")
def failover_gw(ups: tuple[ChaosUpstream, ChaosUpstream]) -> Iterator[tuple[RunningGateway, ListRecorder]]:
    rec = ListRecorder()
    routes = {"r": {"strategy": "priority", "targets": ["broken", "healthy"]},
              "refused": {"strategy": "priority", "targets": ["dead", "healthy"]}}
    routing = {"breaker": {"enabled": False, "throttle_s": 0, "throttle_max_s": 0},
               "timeouts": {"ttft_s": 0.3, "idle_s": 0.3}}
    with run_gateway(chaos_config(*ups, routes, routing), recorder=rec) as gw:
        yield gw, rec


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("fault", list(FIRST_BYTE_FAULTS), ids=list(FIRST_BYTE_FAULTS))
async def test_failures_before_the_first_byte_fail_over_invisibly(
        failover_gw: tuple[RunningGateway, ListRecorder], broken: ChaosUpstream, healthy: ChaosUpstream,
        fault: str, stream: bool) -> None:
    if fault == "truncated before a chunk" and not stream:
        fault = "reset mid-body"
    gw, _ = failover_gw
    broken.script(FIRST_BYTE_FAULTS[fault])
    async with await client_for(gw) as client:
        started = time.monotonic()
        raw = await client.chat.completions.with_raw_response.create(model="r", messages=MSG, stream=stream)
        if stream:
            text = "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
        else:
            text = raw.parse().choices[0].message.content or ""
    assert text == "chaos ok from healthy"
    assert raw.headers["x-switchyard-deployment"] == "healthy"
    assert raw.headers["x-switchyard-attempts"] == "2"
    assert "broken: " in raw.headers["x-switchyard-route-reason"]
    assert broken.count() == 1 and healthy.count() == 1
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_connection_refused_fails_over(failover_gw: tuple[RunningGateway, ListRecorder],
                                             healthy: ChaosUpstream, broken: ChaosUpstream, stream: bool) -> None:
    gw, _ = failover_gw
    async with await client_for(gw) as client:
        raw = await client.chat.completions.with_raw_response.create(model="refused", messages=MSG, stream=stream)
        if stream:
            [c async for c in raw.parse()]
    assert raw.headers["x-switchyard-deployment"] == "healthy" and raw.headers["x-switchyard-attempts"] == "2"
    assert "dead: " in raw.headers["x-switchyard-route-reason"]


# --- after the first byte: an error event, and a record that says so -----------------------------------------

AFTER_FIRST_BYTE = {
    "reset mid-stream": (Fault.reset(after=2), "was reset"),  # a TCP reset mid-body
    "hang mid-stream": (Fault.hang_mid_stream(5, after=2), "sent nothing for 0.3s"),
    "truncated SSE stream": (Fault.truncated(after=2), "ended the stream early"),
    "slow drip past idle": (Fault.drip(0.6), "sent nothing for 0.3s"),
}


@pytest.mark.parametrize("fault", list(AFTER_FIRST_BYTE), ids=list(AFTER_FIRST_BYTE))
async def test_failures_after_the_first_byte_end_the_stream_with_an_error_event(
        failover_gw: tuple[RunningGateway, ListRecorder], broken: ChaosUpstream, fault: str) -> None:
    gw, rec = failover_gw
    script, what = AFTER_FIRST_BYTE[fault]
    broken.script(script)
    async with await client_for(gw) as client:
        stream = await client.chat.completions.create(model="r", messages=MSG, stream=True)
        got: list[str] = []
        started = time.monotonic()
        with pytest.raises(openai.APIError) as info:
            async for c in stream:
                got.extend(ch.delta.content or "" for ch in c.choices)
    assert time.monotonic() - started < 1.5
    assert got, "the client saw the first chunks"
    assert what in info.value.message
    assert broken.count() == 1, "no failover after the first byte"
    r = next(r for r in reversed(rec.records) if r.deployment == "broken")
    assert r.status == "error" and r.error is not None and r.error.startswith("stream failed after ")
    assert what in r.error


async def test_a_slow_drip_within_the_idle_limit_succeeds(failover_gw: tuple[RunningGateway, ListRecorder],
                                                        broken: ChaosUpstream) -> None:
    gw, _ = failover_gw
    broken.script(Fault.drip(0.05))
    async with await client_for(gw) as client:
        stream = await client.chat.completions.create(model="r", messages=MSG, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "chaos ok from broken"


async def test_errors_carry_the_routing_headers_and_respect_the_deadline(
        failover_gw: tuple[RunningGateway, ListRecorder], broken: ChaosUpstream, healthy: ChaosUpstream) -> None:
    gw, _ = failover_gw
    broken.script(Fault.error(500))
    healthy.script(Fault.error(503))
    async with await client_for(gw) as client:
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(model="r", messages=MSG)
        h = info.value.response.headers
        assert info.value.status_code == 502
        assert h["x-switchyard-deployment"] == "healthy" and h["x-switchyard-attempts"] == "2"
        assert "broken: HTTP 500; healthy: HTTP 503" in h["x-switchyard-route-reason"]
        broken.script(Fault.hang(2))  # ttft_s (0.3) moves on to healthy, which hangs past the deadline
        healthy.script(Fault.hang(2))
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(model="r", messages=MSG, extra_headers={"x-switchyard-timeout": "0.4"})
        assert info.value.status_code == 504 and time.monotonic() - started < 0.6


# --- under load ------------------------------------------------------------------------------------------------

LOAD_ROUTING = {
    "timeouts": {"ttft_s": 1.0},  # generous: client, gateway and upstreams share two cores in this process
    "breaker": {"consecutive_failures": 3, "failure_rate": 0.5, "window_s": 10, "min_requests": 10,
                "cooldown_s": 0.3, "cooldown_max_s": 0.6},
}


async def _load(client: openai.AsyncOpenAI, n: int, concurrency: int, deadline: float) -> tuple[list[float], list[str]]:
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    served: list[str] = []

    async def one(i: int) -> None:
        async with sem:
            started = time.monotonic()
            stream = i % 4 == 0
            raw = await client.chat.completions.with_raw_response.create(
                model="r", messages=MSG, stream=stream, extra_headers={"x-switchyard-timeout": str(deadline)})
            if stream:
                assert "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
            else:
                assert raw.parse().choices[0].message.content
            latencies.append(time.monotonic() - started)
            served.append(raw.headers["x-switchyard-deployment"])

    await asyncio.gather(*(one(i) for i in range(n)))
    return latencies, served


async def _health(gw: RunningGateway) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        r = await http.get(gw.url + "/admin/routes/health", headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert r.status_code == 200
    RoutesHealth.model_validate(r.json())  # what the admin OpenAPI document says it returns, in every state
    return {(d["deployment"], d["endpoint"]): d for d in r.json()["deployments"]}  # type: ignore[misc]


@pytest.mark.parametrize("mode", ["500", "hang", "refused"])
async def test_load_with_one_broken_deployment(broken: ChaosUpstream, healthy: ChaosUpstream, mode: str) -> None:
    routes = {"r": {"targets": ["broken", "healthy"]}}  # weighted, 1:1
    rec = ListRecorder()
    with run_gateway(chaos_config(broken, healthy, routes, LOAD_ROUTING), recorder=rec) as gw:
        if mode == "500":
            broken.default = Fault.error(500)
        elif mode == "hang":
            broken.default = Fault.hang(5)
        else:
            broken.down()
        async with await client_for(gw) as client:
            started = time.monotonic()
            latencies, served = await _load(client, 200, 20, deadline=3.0)
            duration = time.monotonic() - started
            assert len(latencies) == 200, "every request succeeded"
            # none waited past its deadline (3 s), give or take what a loaded CI machine adds to a client's clock
            assert max(latencies) < 6.0, "none waited past its deadline"
            assert set(served) == {"healthy"}
            # attempts on the broken deployment: one wave of concurrent requests before its breaker opens (it
            # takes ttft_s to learn of a hang), then one probe per cooldown
            on_broken = sum(r.attempts for r in rec.records) - 200
            assert on_broken <= 20 + 3 + duration / 0.3 + 1, (on_broken, duration)
            opened_by = started + (1.0 if mode == "hang" else 0.0) + 0.5
            late = broken.count(since=opened_by)
            assert late <= max(duration - (opened_by - started), 0) / 0.3 + 1, (late, duration)
            state = await _health(gw)
            assert state[("broken", "chat")]["breaker"] in ("open", "half_open")
            assert state[("healthy", "chat")]["breaker"] == "closed"
            assert state[("broken", "embeddings")]["breaker"] == "closed", "endpoints are independent"

            # recovery: the next probe succeeds and the breaker closes
            broken.default = Fault.ok()
            broken.up()
            await asyncio.sleep(0.65)
            served = []
            for _ in range(10):
                raw = await client.chat.completions.with_raw_response.create(model="r", messages=MSG)
                served.append(raw.headers["x-switchyard-deployment"])
            assert "broken" in served
            state = await _health(gw)
            assert state[("broken", "chat")]["breaker"] == "closed"


async def test_embedding_failures_do_not_open_the_chat_breaker(broken: ChaosUpstream, healthy: ChaosUpstream) -> None:
    routes = {"r": {"strategy": "priority", "targets": ["broken", "healthy"]}}
    with run_gateway(chaos_config(broken, healthy, routes, LOAD_ROUTING)) as gw:
        async with await client_for(gw) as client:
            broken.script(*[Fault.error(503)] * 3)
            for _ in range(3):
                raw = await client.embeddings.with_raw_response.create(model="r", input=["x"])
                assert raw.headers["x-switchyard-deployment"] == "healthy"
            state = await _health(gw)
            assert state[("broken", "embeddings")]["breaker"] == "open"
            assert state[("broken", "chat")]["breaker"] == "closed"
            raw = await client.chat.completions.with_raw_response.create(model="r", messages=MSG)
            assert raw.headers["x-switchyard-deployment"] == "broken"


# --- hedging ---------------------------------------------------------------------------------------------------


async def test_a_hedge_wins_and_the_losers_cost_is_recorded(broken: ChaosUpstream, healthy: ChaosUpstream) -> None:
    routes = {"r": {"strategy": "priority", "targets": ["broken", "healthy"],
                    "hedge": {"after_percentile": 50, "min_samples": 5, "min_delay_ms": 30}}}
    rec = ListRecorder()
    with run_gateway(chaos_config(broken, healthy, routes), recorder=rec) as gw:
        async with await client_for(gw) as client:
            for _ in range(6):
                await client.chat.completions.create(model="r", messages=MSG)
            assert healthy.count() == 0
            broken.script(Fault.ok(ttft=2))
            started = time.monotonic()
            raw = await client.chat.completions.with_raw_response.create(model="r", messages=MSG)
            assert time.monotonic() - started < 1
        assert raw.headers["x-switchyard-deployment"] == "healthy" and raw.headers["x-switchyard-attempts"] == "2"
        assert "hedged to healthy" in raw.headers["x-switchyard-route-reason"]
        r = rec.records[-1]
        assert [a.deployment for a in r.losers] == ["broken"] and r.losers[0].outcome == "lost"


# --- the admin endpoint ----------------------------------------------------------------------------------------


async def test_route_health_is_for_admins_only(broken: ChaosUpstream, healthy: ChaosUpstream) -> None:
    with run_gateway(chaos_config(broken, healthy, {"r": {"targets": ["broken", "healthy"]}})) as gw:
        async with httpx.AsyncClient(base_url=gw.url) as http:
            r = await http.get("/admin/routes/health", headers={"authorization": f"Bearer {USER_KEY}"})
            assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
            r = await http.get("/admin/routes/health")
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
            r = await http.get("/admin/routes/health", headers={"authorization": f"Bearer {MASTER_KEY}"})
        body = r.json()
        assert r.status_code == 200
        assert {d["deployment"] for d in body["deployments"]} == {"broken", "healthy", "dead"}
        d = body["deployments"][0]
        for key in ("breaker", "ttft_ewma_ms", "latency_ewma_ms", "error_rate", "in_flight", "endpoint", "provider"):
            assert key in d
        assert body["routes"][0]["route"] == "r" and body["routes"][0]["strategy"] == "weighted"
        RoutesHealth.model_validate(body)
        async with httpx.AsyncClient(base_url=gw.url) as http:
            r = await http.get("/admin/openapi.json")
        op = r.json()["paths"]["/admin/routes/health"]["get"]
        assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/RoutesHealth")
        assert "RoutesHealth" in r.json()["components"]["schemas"]



async def test_every_response_carries_the_routing_headers(failover_gw: tuple[RunningGateway, ListRecorder],
                                                          broken: ChaosUpstream) -> None:
    gw, _ = failover_gw
    async with httpx.AsyncClient(base_url=gw.openai_base) as http:
        auth = {"authorization": f"Bearer {USER_KEY}"}
        cases = [
            (await http.post("/chat/completions", json={"model": "r", "messages": MSG}, headers=auth), 200),
            (await http.post("/chat/completions", json={"model": "ghost", "messages": MSG}, headers=auth), 404),
            (await http.post("/chat/completions", json={"model": "r", "messages": MSG}), 401),
            (await http.post("/chat/completions", json={"model": "r"}, headers=auth), 400),
        ]
    for resp, status in cases:
        assert resp.status_code == status
        for h in ("x-switchyard-deployment", "x-switchyard-attempts", "x-switchyard-route-reason"):
            assert h in resp.headers, (status, h)
    assert cases[1][0].headers["x-switchyard-route-reason"] == "no deployment or route named 'ghost'"
    assert cases[2][0].headers["x-switchyard-route-reason"] == "not routed"
