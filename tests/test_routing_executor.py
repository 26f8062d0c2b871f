"""The executor and its pipeline integration, against in-process scripted providers (no network).

Backoff sleeps are recorded instead of slept; timeouts use small real durations.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from switchyard.catalog import Catalog
from switchyard.config import parse_config
from switchyard.errors import InvalidRequest, ServiceUnavailable, UnsupportedParameter, UpstreamError, UpstreamTimeout
from switchyard.governance.auth import Principal
from switchyard.messages import ChatRequest, Chunk, EmbeddingRequest, Message, Role, TextDelta, TextPart
from switchyard.pipeline import CallContext, Gateway
from switchyard.routing import Attempt, Executor, Router
from switchyard.routing.health import OPEN, Outcome
from switchyard.server.factory import build_gateway
from tests.support.chaos import ScriptedProvider, scripted_router
from tests.support.gateway import ListRecorder

PROVIDERS = ("p1", "p2", "p3")


def config(routes: dict[str, Any], routing: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "providers": {p: {"type": "simulated"} for p in PROVIDERS},
        "deployments": [
            {"name": "a", "provider": "p1", "price": {"input": 1000000, "output": 0}, "context_window": 100000,
             "capabilities": ["chat", "embeddings"]},
            {"name": "b", "provider": "p2", "capabilities": ["chat", "embeddings"]},
            {"name": "c", "provider": "p3", "context_window": 1000000},
        ],
        "routes": routes,
        "routing": routing or {},
    }


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def setup(routes: dict[str, Any], routing: dict[str, Any] | None = None
          ) -> tuple[Router, Executor, dict[str, ScriptedProvider], Sleeps]:
    sleeps = Sleeps()
    router, ex, provs = scripted_router(config(routes, routing), sleep=sleeps)
    return router, ex, provs, sleeps


def chat_req(model: str, stream: bool = False) -> ChatRequest:
    return ChatRequest(model=model, messages=[Message(Role.USER, [TextPart("hello")])], wire="test", stream=stream)


async def run(router: Router, ex: Executor, model: str, deadline: float | None = None,
              attempts: list[Attempt] | None = None) -> tuple[str, list[Attempt]]:
    attempts = [] if attempts is None else attempts
    req = chat_req(model)
    plan = router.plan(model, set(), prompt_tokens=10)
    dep, _ = await ex.call(plan, lambda d: d.provider.chat(req, d.target), attempts, deadline)
    return dep.name, attempts


def err(status: int, message: str = "boom", retry_after: float | None = None) -> UpstreamError:
    return UpstreamError(message, provider="p", upstream_status=status, retryable=status == 429 or status >= 500,
                         retry_after=retry_after)


PRIORITY = {"strategy": "priority", "targets": ["a", "b", "c"]}


async def test_a_5xx_moves_to_the_next_deployment_at_once() -> None:
    router, ex, p, sleeps = setup({"r": PRIORITY})
    p["p1"].script(("error", 503))
    name, attempts = await run(router, ex, "r")
    assert name == "b" and [a.deployment for a in attempts] == ["a", "b"] and sleeps.calls == []
    assert attempts[0].outcome == "error" and attempts[0].status == 502 and attempts[1].outcome == "ok"
    assert router.health.get("a", "chat").window(router.clock()) == (0, 1)


async def test_a_429_moves_on_at_once_and_rests_the_deployment() -> None:
    router, ex, p, sleeps = setup({"r": PRIORITY})
    p["p1"].script(("error", err(429, retry_after=3)))
    assert (await run(router, ex, "r"))[0] == "b" and sleeps.calls == []
    ha = router.health.get("a", "chat")
    assert ha.throttled(router.clock()) and ha.window(router.clock()) == (0, 0)
    plan = router.plan("r", set())
    assert [e.name for e in plan.entries] == ["b", "c", "a"] and "a rate limited" in plan.reason


async def test_a_caller_error_is_never_retried_and_does_not_trip_the_breaker() -> None:
    router, ex, p, _ = setup({"r": {**PRIORITY, "retries": {"max": 3}}})
    p["p1"].script(("error", 400))
    with pytest.raises(UpstreamError) as info:
        await run(router, ex, "r")
    assert info.value.status == 400 and p["p2"].calls == 0
    assert router.health.get("a", "chat").window(router.clock()) == (1, 0)


async def test_retries_back_off_with_full_jitter() -> None:
    router, ex, p, sleeps = setup({"r": {"targets": ["a"], "retries": {"max": 3, "backoff_base_ms": 100,
                                                                        "backoff_max_ms": 300}}})
    p["p1"].script(("error", 500), ("error", 502), ("error", 503))
    name, attempts = await run(router, ex, "r")
    assert name == "a" and len(attempts) == 4
    assert len(sleeps.calls) == 3
    for i, s in enumerate(sleeps.calls):
        assert 0 <= s <= min(0.3, 0.1 * 2 ** i)
    p["p1"].script(*[("error", 500)] * 4)
    with pytest.raises(UpstreamError):
        await run(router, ex, "r")
    assert p["p1"].calls == 8, "max 3 retries"


async def test_retry_after_is_honoured_up_to_the_cap() -> None:
    router, ex, p, sleeps = setup({"r": {"targets": ["a"], "retries": {"max": 2, "retry_after_cap_s": 1}}})
    p["p1"].script(("error", err(429, retry_after=0.5)))
    assert (await run(router, ex, "r"))[0] == "a"
    assert sleeps.calls and 0.45 <= sleeps.calls[0] <= 0.5
    p["p1"].script(("error", err(429, retry_after=5)))
    with pytest.raises(UpstreamError) as info:
        await run(router, ex, "r")
    assert info.value.status == 429 and info.value.headers["retry-after"] == "5", "the caller learns when"


async def test_the_retry_budget_stops_retry_storms() -> None:
    router, ex, p, _ = setup({"r": {"targets": ["a"], "retries": {"max": 5, "budget_burst": 2, "budget_ratio": 0,
                                                                   "budget_min_per_s": 0}}},
                             {"breaker": {"consecutive_failures": 100}})
    p["p1"].script(*[("error", 503)] * 20)
    for _ in range(3):
        with pytest.raises(UpstreamError):
            await run(router, ex, "r")
    assert p["p1"].calls == 3 + 2, "two retries in all, then none"
    plan = router.plan("r", set())
    with pytest.raises(UpstreamError):
        await ex.call(plan, lambda d: d.provider.chat(chat_req("r"), d.target), [])
    assert "retry budget spent" in plan.reason


async def test_context_window_and_content_policy_errors_use_their_fallbacks() -> None:
    routes = {"r": {"strategy": "priority", "targets": ["a", "b"], "context_window_fallbacks": ["c"],
                    "content_policy_fallbacks": ["b"]}}
    router, ex, p, _ = setup(routes)
    p["p1"].script(("error", err(400, "This model's maximum context length is 8192 tokens")))
    name, attempts = await run(router, ex, "r")
    assert name == "c" and p["p2"].calls == 0 and len(attempts) == 2
    p["p1"].script(("error", err(400, "Your request was rejected by our content management policy")))
    name, _ = await run(router, ex, "r")
    assert name == "b"
    router, ex, p, _ = setup({"plain": {"strategy": "priority", "targets": ["a", "b"]}})
    p["p1"].script(("error", err(400, "prompt is too long")))
    with pytest.raises(UpstreamError) as info:
        await run(router, ex, "plain")
    assert info.value.status == 400 and p["p2"].calls == 0


async def test_a_provider_that_refuses_the_request_passes_it_on_in_a_route() -> None:
    router, ex, p, _ = setup({"r": PRIORITY})

    async def refuse(req: ChatRequest, target: Any) -> Any:
        raise UnsupportedParameter("top_k is not supported", param="top_k")

    p["p1"].chat = refuse  # type: ignore[method-assign]
    assert (await run(router, ex, "r"))[0] == "b"
    assert router.health.get("a", "chat").window(router.clock()) == (0, 0)
    with pytest.raises(InvalidRequest):
        await run(router, ex, "a")


async def test_when_every_breaker_is_open_the_route_fails_fast_with_503() -> None:
    router, ex, p, _ = setup({"r": {"targets": ["a", "b"]}},
                             {"breaker": {"consecutive_failures": 1, "cooldown_s": 7}})
    for name in ("a", "b"):
        h = router.health.get(name, "chat")
        h.release(h.acquire(router.clock()), Outcome.FAILURE)
    with pytest.raises(ServiceUnavailable) as info:
        await run(router, ex, "r")
    assert "route 'r'" in info.value.message and info.value.headers["retry-after"] == "7"
    assert p["p1"].calls == p["p2"].calls == 0


async def test_a_hang_before_the_first_token_fails_over_after_ttft() -> None:
    router, ex, p, _ = setup({"r": {**PRIORITY, "timeouts": {"ttft_s": 0.05}}})
    p["p1"].script(("hang", 5))
    started = time.monotonic()
    name, attempts = await run(router, ex, "r")
    assert name == "b" and time.monotonic() - started < 1
    assert "within 0.05s" in (attempts[0].error or "") and p["p1"].cancelled == 1
    assert router.health.get("a", "chat").window(router.clock()) == (0, 1)


async def test_nothing_waits_past_the_deadline() -> None:
    router, ex, p, _ = setup({"r": PRIORITY})
    for prov in p.values():
        prov.script(("hang", 5))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as info:
        await run(router, ex, "r", deadline=time.monotonic() + 0.1)
    assert time.monotonic() - started < 0.3 and info.value.status == 504
    assert "deadline" in info.value.message
    assert router.health.get("a", "chat").window(router.clock()) == (0, 0), "our deadline is nobody's failure"
    assert router.health.get("a", "chat").in_flight == 0


async def test_total_s_bounds_the_request() -> None:
    router, ex, p, _ = setup({"r": {**PRIORITY, "timeouts": {"total_s": 0.1}}})
    p["p1"].script(("hang", 5))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await run(router, ex, "r")
    assert time.monotonic() - started < 0.3


async def test_a_half_open_probe_goes_first_and_fails_over_invisibly() -> None:
    router, ex, p, _ = setup({"r": {"strategy": "priority", "targets": ["b", "a"]}},
                             {"breaker": {"consecutive_failures": 1, "cooldown_s": 0.05}})
    ha = router.health.get("a", "chat")
    ha.release(ha.acquire(router.clock()), Outcome.FAILURE)
    assert (await run(router, ex, "r"))[0] == "b" and p["p1"].calls == 0
    await asyncio.sleep(0.06)
    p["p1"].script(("error", 500))
    name, attempts = await run(router, ex, "r")
    assert name == "b" and [a.deployment for a in attempts] == ["a", "b"] and ha.state == OPEN
    await asyncio.sleep(0.11)  # the cooldown doubled
    name, attempts = await run(router, ex, "r")
    assert name == "a" and ha.state == "closed"


async def test_embeddings_failures_do_not_open_the_chat_breaker() -> None:
    router, ex, p, _ = setup({"e": {"strategy": "priority", "targets": ["a", "b"]}},
                             {"breaker": {"consecutive_failures": 2}})
    p["p1"].script(("error", 503), ("error", 503))
    for _ in range(2):
        plan = router.plan("e", set(), endpoint="embeddings")
        req = EmbeddingRequest(model="e", input=["x"], wire="test")
        dep, _ = await ex.call(plan, lambda d, r=req: d.provider.embed(r, d.target), [])
        assert dep.name == "b"
    assert router.health.get("a", "embeddings").state == OPEN
    assert router.health.get("a", "chat").state == "closed"
    assert (await run(router, ex, "a"))[0] == "a"


# --- hedging -------------------------------------------------------------------------------------------------


def warm(router: Router, name: str, seconds: float, n: int = 20, stream: bool = False) -> None:
    for _ in range(n):
        router.health.get(name, "chat").observe_latency(seconds, stream)


HEDGED = {"strategy": "priority", "targets": ["a", "b"], "hedge": {"after_percentile": 90, "min_delay_ms": 20}}


async def test_hedging_sends_a_late_request_elsewhere_and_cancels_the_loser() -> None:
    router, ex, p, _ = setup({"r": HEDGED})
    warm(router, "a", 0.01)
    p["p1"].script(("hang", 2))
    started = time.monotonic()
    name, attempts = await run(router, ex, "r")
    assert name == "b" and time.monotonic() - started < 0.5
    assert [(a.deployment, a.outcome, a.hedge) for a in attempts] == [("a", "lost", False), ("b", "ok", True)]
    assert attempts[0].cost == pytest.approx(10.0), "the loser's prompt at its input price ($1/token here)"
    await asyncio.sleep(0.01)
    assert p["p1"].cancelled == 1 and router.health.get("a", "chat").in_flight == 0
    assert router.health.get("a", "chat").state == "closed"
    plan = router.plan("r", set())
    assert plan.spec.hedge is not None


async def test_no_hedge_without_enough_samples_or_when_the_primary_is_quick() -> None:
    router, ex, p, _ = setup({"r": HEDGED})
    warm(router, "a", 0.01, n=5)
    p["p1"].script(("ok", 0.1))
    name, attempts = await run(router, ex, "r")
    assert name == "a" and len(attempts) == 1
    warm(router, "a", 0.2, n=20)
    p["p1"].script(("ok", 0.02))
    name, attempts = await run(router, ex, "r")
    assert name == "a" and len(attempts) == 1


async def test_a_hedged_failure_still_fails_over() -> None:
    router, ex, p, _ = setup({"r": {**HEDGED, "targets": ["a", "b", "c"]}})
    p["p1"].script(("error", 503))
    name, attempts = await run(router, ex, "r")
    assert name == "b" and len(attempts) == 2


async def test_hedged_streams_close_the_loser() -> None:
    router, ex, p, _ = setup({"r": HEDGED})
    warm(router, "a", 0.01, stream=True)
    p["p1"].script(("hang", 2))
    req = chat_req("r", stream=True)
    plan = router.plan("r", set(), prompt_tokens=10, stream=True)
    attempts: list[Attempt] = []
    dep, first, rest, lease = await ex.open_stream(plan, lambda d: d.provider.stream(req, d.target), attempts)
    assert dep.name == "b" and [a.outcome for a in attempts] == ["lost", "ok"]
    texts = [ev.text for c in [first] + [c async for c in rest] for ev in c.events if isinstance(ev, TextDelta)]
    assert "".join(texts) == "from b again done"
    lease.finish(Outcome.SUCCESS)
    await asyncio.sleep(0.01)  # the cancelled loser unwinds
    assert router.health.get("b", "chat").in_flight == 0 and router.health.get("a", "chat").in_flight == 0


# --- through the pipeline ------------------------------------------------------------------------------------


def gateway(routes: dict[str, Any], routing: dict[str, Any] | None = None
            ) -> tuple[Gateway, dict[str, ScriptedProvider], ListRecorder]:
    cfg = parse_config(config(routes, routing), "<t>", {})
    provs: dict[str, ScriptedProvider] = {}

    def factory(name: str, pc: Any) -> ScriptedProvider:
        provs[name] = ScriptedProvider(name, pc)
        return provs[name]

    rec = ListRecorder()
    return build_gateway(cfg, catalog=Catalog.from_config(cfg, factory), recorder=rec), provs, rec


def ctx() -> CallContext:
    return CallContext(request_id="req_t", principal=Principal(id="t", name="t"))


async def drain(it: AsyncIterator[Chunk]) -> str:
    return "".join(ev.text for c in [c async for c in it] for ev in c.events if isinstance(ev, TextDelta))


async def test_stream_fails_over_before_the_first_chunk_invisibly() -> None:
    gw, p, rec = gateway({"r": PRIORITY})
    p["p1"].script(("error", 503))
    c = ctx()
    text = await drain(await gw.chat_stream(c, chat_req("r", stream=True)))
    assert text == "from b again done"
    h = c.response_headers()
    assert h["x-switchyard-deployment"] == "b" and h["x-switchyard-attempts"] == "2"
    assert "a: HTTP 503" in h["x-switchyard-route-reason"]
    r = rec.records[-1]
    assert (r.status, r.deployment, r.attempts, r.error) == ("ok", "b", 2, None)


async def test_a_stream_that_breaks_after_its_first_chunk_ends_with_an_error_and_says_so() -> None:
    gw, p, rec = gateway({"r": PRIORITY}, {"breaker": {"consecutive_failures": 1}})
    p["p1"].script(("break", 2))
    c = ctx()
    it = await gw.chat_stream(c, chat_req("r", stream=True))
    with pytest.raises(UpstreamError):
        await drain(it)
    r = rec.records[-1]
    assert r.status == "error" and r.http_status == 502 and r.deployment == "a"
    assert r.error is not None and r.error.startswith("stream failed after 2 chunks: ")
    assert c.attempts[0].outcome == "broken"
    ha = gw.router.health.get("a", "chat")
    assert ha.state == OPEN and ha.in_flight == 0, "a mid-stream break is the deployment's failure"


async def test_idle_time_between_chunks_is_bounded() -> None:
    gw, p, rec = gateway({"r": {**PRIORITY, "timeouts": {"idle_s": 0.05}}})
    p["p1"].script(("drip", 0.5))
    c = ctx()
    it = await gw.chat_stream(c, chat_req("r", stream=True))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as info:
        await drain(it)
    assert time.monotonic() - started < 0.3 and "sent nothing for 0.05s" in info.value.message
    assert rec.records[-1].error is not None and "after 1 chunk:" in rec.records[-1].error
    assert gw.router.health.get("a", "chat").window(gw.router.clock()) == (0, 1)


async def test_the_deadline_holds_mid_stream_too() -> None:
    gw, p, _ = gateway({"r": PRIORITY})
    p["p1"].script(("drip", 0.2))
    c = ctx()
    c.deadline = time.monotonic() + 0.15
    it = await gw.chat_stream(c, chat_req("r", stream=True))
    with pytest.raises(UpstreamTimeout) as info:
        await drain(it)
    assert "deadline" in info.value.message and time.monotonic() < c.deadline + 0.1
    assert gw.router.health.get("a", "chat").window(gw.router.clock()) == (0, 0)


async def test_a_hedge_losers_cost_is_recorded() -> None:
    gw, p, rec = gateway({"r": HEDGED})
    for _ in range(20):
        gw.router.health.get("a", "chat").observe_latency(0.01, False)
    p["p1"].script(("hang", 2))
    c = ctx()
    await gw.chat(c, chat_req("r"))
    r = rec.records[-1]
    assert r.deployment == "b" and r.attempts == 2
    assert [a.deployment for a in r.losers] == ["a"] and r.losers[0].cost > 0
    assert r.total_cost == pytest.approx(r.cost + r.losers[0].cost)
    assert "hedged to b" in c.response_headers()["x-switchyard-route-reason"]


async def test_errors_carry_the_routing_headers() -> None:
    gw, p, rec = gateway({"r": {"strategy": "priority", "targets": ["a", "b"]}})
    p["p1"].script(("error", 500))
    p["p2"].script(("error", 503))
    c = ctx()
    with pytest.raises(UpstreamError):
        await gw.chat(c, chat_req("r"))
    h = c.response_headers()
    assert h["x-switchyard-deployment"] == "b" and h["x-switchyard-attempts"] == "2"
    assert "a: HTTP 500; b: HTTP 503" in h["x-switchyard-route-reason"]
    assert rec.records[-1].attempts == 2


async def test_a_stream_dropped_before_it_is_read_frees_its_deployment() -> None:
    gw, _, _ = gateway({"r": PRIORITY}, {"breaker": {"consecutive_failures": 1, "cooldown_s": 0.01}})
    ha = gw.router.health.get("a", "chat")
    ha.release(ha.acquire(gw.router.clock()), Outcome.FAILURE)
    await asyncio.sleep(0.02)
    it = await gw.chat_stream(ctx(), chat_req("r", stream=True))  # the half-open probe serves it
    assert ha.in_flight == 1 and not ha.is_probe_ready(gw.router.clock())
    del it  # never iterated: its client went away at once
    assert ha.in_flight == 0 and ha.is_probe_ready(gw.router.clock())
