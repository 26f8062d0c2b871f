"""The router and its strategies: ordering, fitness and health filtering, fallbacks, reasons. No network."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from switchyard.config import ConfigError, parse_config
from switchyard.errors import InvalidRequest, ModelNotFound
from switchyard.routing.health import Outcome
from switchyard.routing.router import Router
from tests.support.chaos import scripted_router


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def config(routes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "providers": {p: {"type": "simulated"} for p in ("p1", "p2", "p3", "p4")},
        "deployments": [
            {"name": "a", "provider": "p1", "weight": 3, "price": {"input": 1, "output": 10}, "context_window": 1000},
            {"name": "b", "provider": "p2", "price": {"input": 5, "output": 2}, "context_window": 4000,
             "capabilities": ["chat", "tools", "vision"]},
            {"name": "c", "provider": "p3", "price": {"input": 3, "output": 3}, "context_window": 100000},
            {"name": "d", "provider": "p4", "capabilities": ["embeddings"]},
        ],
        "routes": routes,
        **extra,
    }


def router_for(routes: dict[str, Any], clock: Clock | None = None, **extra: Any) -> Router:
    router, _, _ = scripted_router(config(routes, **extra), clock=clock)
    return router  # type: ignore[no-any-return]


def firsts(router: Router, model: str, n: int, **kw: Any) -> list[str]:
    return [router.plan(model, set(), **kw).entries[0].name for _ in range(n)]


def test_weighted_is_the_default_and_interleaves_exactly() -> None:
    r = router_for({"r": {"targets": ["a", "b"]}})
    assert r.specs["r"].group.strategy.name == "weighted"
    seq = firsts(r, "r", 8)
    assert seq == ["a", "a", "b", "a"] * 2, "weights 3:1, smooth"
    plan = r.plan("r", set())
    assert [e.name for e in plan.entries] == ["a", "b"], "the others follow as failovers"


def test_route_target_weights_override_deployment_weights() -> None:
    r = router_for({"r": {"targets": [{"deployment": "a", "weight": 1}, {"deployment": "c", "weight": 4}]}})
    assert Counter(firsts(r, "r", 50)) == {"a": 10, "c": 40}
    assert "weight 4 (80%)" in r.plan("r", set()).reason


def test_priority_keeps_the_configured_order() -> None:
    r = router_for({"r": {"strategy": "priority", "targets": ["c", "a", "b"]}})
    assert [e.name for e in r.plan("r", set()).entries] == ["c", "a", "b"]


def test_least_busy_prefers_fewest_in_flight_and_rotates_ties() -> None:
    clock = Clock()
    r = router_for({"r": {"strategy": "least-busy", "targets": ["a", "b", "c"]}}, clock)
    assert set(firsts(r, "r", 3)) == {"a", "b", "c"}, "ties rotate"
    ha, hb = r.health.get("a", "chat"), r.health.get("b", "chat")
    ha.acquire(clock())
    ha.acquire(clock())
    hb.acquire(clock())
    assert firsts(r, "r", 4) == ["c"] * 4
    assert [e.name for e in r.plan("r", set()).entries] == ["c", "b", "a"]


def test_lowest_latency_measures_the_unknown_first_then_follows_the_ewma() -> None:
    r = router_for({"r": {"strategy": "lowest-latency", "exploration": 0, "targets": ["a", "b", "c"]}})
    for name, ttft in (("a", 0.3), ("b", 0.1)):
        r.health.get(name, "chat").observe_latency(ttft, stream=True)
    assert firsts(r, "r", 3, stream=True) == ["c"] * 3, "c has no samples yet"
    r.health.get("c", "chat").observe_latency(0.2, stream=True)
    assert [e.name for e in r.plan("r", set(), stream=True).entries] == ["b", "c", "a"]
    # non-streamed calls use their own statistic
    r.health.get("a", "chat").observe_latency(0.5, stream=False)
    r.health.get("b", "chat").observe_latency(0.9, stream=False)
    r.health.get("c", "chat").observe_latency(0.7, stream=False)
    assert r.plan("r", set(), stream=False).entries[0].name == "a"
    assert "ttft ewma 100ms" in r.plan("r", set(), stream=True).reason


def test_lowest_latency_explores_a_little() -> None:
    r = router_for({"r": {"strategy": "lowest-latency", "exploration": 0.1, "targets": ["a", "b", "c"]}})
    for name, ttft in (("a", 0.3), ("b", 0.1), ("c", 0.2)):
        r.health.get(name, "chat").observe_latency(ttft, stream=True)
    counts = Counter(firsts(r, "r", 2000, stream=True))
    assert 120 < counts["a"] + counts["c"] < 280 and counts["a"] > 40 and counts["c"] > 40


def test_lowest_cost_uses_prices_and_the_expected_size() -> None:
    r = router_for({"r": {"strategy": "lowest-cost", "targets": ["a", "b", "c"]}})
    # a: 1 in / 10 out; b: 5 in / 2 out; c: 3 in / 3 out (USD per million tokens)
    assert [e.name for e in r.plan("r", set(), prompt_tokens=10, max_tokens=900).entries] == ["b", "c", "a"]
    assert [e.name for e in r.plan("r", set(), prompt_tokens=900, max_tokens=10).entries] == ["a", "c", "b"]
    assert "est. $" in r.plan("r", set(), prompt_tokens=10).reason


def test_capabilities_and_context_windows_filter_before_any_call() -> None:
    r = router_for({"r": {"strategy": "priority", "targets": ["a", "b", "c"]}})
    plan = r.plan("r", {"vision"})
    assert [e.name for e in plan.entries] == ["b"]
    assert plan.skipped == [("a", "lacks vision"), ("c", "lacks vision")]
    assert "skipped a (lacks vision), c (lacks vision)" in plan.reason
    plan = r.plan("r", set(), prompt_tokens=1500, max_tokens=100)
    assert [e.name for e in plan.entries] == ["b", "c"]
    assert plan.skipped == [("a", "context window 1000 < 1600 tokens")]
    with pytest.raises(InvalidRequest) as info:
        r.plan("r", {"vision"}, prompt_tokens=5000)
    assert info.value.code == "no_suitable_deployment"
    assert "a lacks vision" in info.value.message and "b context window 4000" in info.value.message
    assert info.value.headers["x-switchyard-attempts"] == "0"
    assert "skipped" in info.value.headers["x-switchyard-route-reason"]


def test_a_prompt_too_large_for_the_route_goes_to_its_context_window_fallbacks() -> None:
    r = router_for({"small": {"targets": ["a"], "context_window_fallbacks": ["big"], "fallbacks": ["b"]},
                    "big": {"targets": ["c"]}, "plain": {"targets": ["a"]}})
    plan = r.plan("small", set(), prompt_tokens=5000)
    assert [e.name for e in plan.entries] == ["c"] and plan.context_routed
    assert "context_window_fallbacks" in plan.reason
    assert r.expand(plan) and [e.name for e in plan.entries] == ["c"], "b is too small as well"
    assert [e.name for e in r.plan("small", set(), prompt_tokens=10).entries] == ["a"]
    with pytest.raises(InvalidRequest) as info:
        r.plan("plain", set(), prompt_tokens=5000)
    assert info.value.code == "context_length_exceeded" and info.value.param == "messages"


def test_fallbacks_are_expanded_only_when_needed_and_never_twice() -> None:
    r = router_for({"r": {"strategy": "priority", "targets": ["a", "b"], "fallbacks": ["other", "a", "c"]},
                    "other": {"strategy": "priority", "targets": ["b", "c"]}})
    plan = r.plan("r", set())
    assert [e.name for e in plan.entries] == ["a", "b"]
    assert r.expand(plan) and [e.name for e in plan.entries] == ["a", "b", "c"]
    assert r.expand(plan) and r.expand(plan) and not r.expand(plan)
    assert [e.name for e in plan.entries] == ["a", "b", "c"]
    assert "fallback other" in plan.reason


def test_open_breakers_are_skipped_probes_go_first_throttled_go_last() -> None:
    clock = Clock()
    r = router_for({"r": {"strategy": "priority", "targets": ["a", "b", "c"]}}, clock,
                   routing={"breaker": {"consecutive_failures": 1, "cooldown_s": 5}})
    hc = r.health.get("c", "chat")
    hc.release(hc.acquire(clock()), Outcome.FAILURE)
    plan = r.plan("r", set())
    assert [e.name for e in plan.entries] == ["a", "b"] and [e.name for e in plan.resting] == ["c"]
    assert "c (circuit open, 5.0s left)" in plan.reason
    ha = r.health.get("a", "chat")
    ha.release(ha.acquire(clock()), Outcome.THROTTLED, retry_after=10)
    assert [e.name for e in r.plan("r", set()).entries] == ["b", "a"]
    clock.t += 5
    plan = r.plan("r", set())
    assert [e.name for e in plan.entries] == ["c", "b", "a"], "the half-open probe first, the throttled last"


def test_embeddings_need_the_capability() -> None:
    r = router_for({"emb": {"targets": ["a", "d"]}})
    assert [e.name for e in r.plan("emb", set(), endpoint="embeddings").entries] == ["d"]
    with pytest.raises(InvalidRequest) as info:
        r.plan("a", set(), endpoint="embeddings")
    assert info.value.code == "unsupported_model"


def test_direct_deployments_and_unknown_names() -> None:
    r = router_for({})
    plan = r.plan("b", {"vision"})
    assert plan.route is None and plan.reason == "deployment b"
    with pytest.raises(InvalidRequest) as info:
        r.plan("a", {"vision"})
    assert info.value.code == "unsupported_capability" and info.value.param == "messages"
    with pytest.raises(InvalidRequest) as info:
        r.plan("a", set(), prompt_tokens=2000)
    assert info.value.code == "context_length_exceeded"
    with pytest.raises(ModelNotFound):
        r.plan("nope", set())


# --- config ------------------------------------------------------------------------------------------------


def test_route_config_merges_over_routing_defaults() -> None:
    r = router_for({"r": {"targets": ["a"], "retries": {"max": 3}, "timeouts": {"ttft_s": 2},
                          "hedge": {"after_percentile": 90}}},
                   routing={"strategy": "priority", "retries": {"backoff_base_ms": 7},
                            "timeouts": {"idle_s": 4, "ttft_s": 9}})
    spec = r.specs["r"]
    assert spec.group.strategy.name == "priority"
    assert (spec.retries.max, spec.retries.backoff_base_ms) == (3, 7)
    assert (spec.timeouts.ttft_s, spec.timeouts.idle_s) == (2, 4)
    assert spec.hedge is not None and spec.hedge.after_percentile == 90 and spec.hedge.max_extra == 1
    assert r.specs["a"].timeouts.ttft_s == 9, "direct calls use the routing section"
    off = router_for({"r": {"targets": ["a"], "hedge": {"enabled": False}}}, routing={"hedge": {}})
    assert off.specs["r"].hedge is None and off.specs["a"].hedge is None


def test_route_config_errors_name_the_key() -> None:
    bad = config({"r": {"targets": ["a", {"deployment": "ghost"}], "fallbacks": ["nowhere", "r"],
                        "breaker": {"cooldown_s": 3}},
                  "s": {"targets": ["a"], "breaker": {"cooldown_s": 4}, "strategy": "fastest"}})
    with pytest.raises(ConfigError) as info:
        parse_config(bad, "<t>", {})
    problems = "\n".join(info.value.problems)
    assert "routes.s.strategy" in problems
    bad["routes"]["s"].pop("strategy")
    with pytest.raises(ConfigError) as info:
        parse_config(bad, "<t>", {})
    problems = "\n".join(info.value.problems)
    assert "routes.r.targets[1]: unknown deployment 'ghost'" in problems
    assert "routes.r.fallbacks[0]: unknown route or deployment 'nowhere'" in problems
    assert "routes.r.fallbacks[1]: a route cannot fall back to itself" in problems
    assert "routes.s.breaker: deployment 'a' already has different breaker settings from routes.r.breaker" in problems
    with pytest.raises(ConfigError) as info:
        parse_config(config({"r": {"targets": ["a", "a"]}}), "<t>", {})
    assert "'a' is listed twice" in info.value.problems[0]


def test_breaker_settings_come_from_the_route_that_lists_the_deployment() -> None:
    r = router_for({"r": {"targets": ["a"], "breaker": {"cooldown_s": 3}}, "s": {"targets": ["a", "b"]}},
                   routing={"breaker": {"consecutive_failures": 2}})
    assert r.health.get("a", "chat").cfg.cooldown_s == 3
    assert r.health.get("a", "chat").cfg.consecutive_failures == 2
    assert r.health.get("b", "embeddings").cfg.cooldown_s == 15
