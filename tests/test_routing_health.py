"""Breakers, latency statistics and retry budgets, driven by an injected clock: no sleeps."""

from __future__ import annotations

import pytest

from switchyard.config.routing import BreakerConfig, RetryConfig
from switchyard.routing.health import CLOSED, HALF_OPEN, OPEN, Health, HealthRegistry, LatencyStat, Outcome, RetryBudget


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def health(clock: Clock, **cfg: object) -> Health:
    return Health("a", "chat", BreakerConfig(**cfg), clock)  # type: ignore[arg-type]


def fail(h: Health, n: int = 1) -> None:
    for _ in range(n):
        h.release(h.acquire(h.clock()), Outcome.FAILURE)


def succeed(h: Health, n: int = 1) -> None:
    for _ in range(n):
        h.release(h.acquire(h.clock()), Outcome.SUCCESS)


def test_consecutive_failures_open_then_half_open_probe_closes() -> None:
    clock = Clock()
    h = health(clock, consecutive_failures=3, cooldown_s=10)
    fail(h, 2)
    succeed(h)  # resets the run
    fail(h, 2)
    assert h.state == CLOSED
    fail(h)
    assert h.state == OPEN and h.acquire(clock()) == 0 and h.available_at(clock()) == clock() + 10
    clock.advance(9.9)
    assert h.acquire(clock()) == 0 and not h.is_probe_ready(clock())
    clock.advance(0.2)
    assert h.is_probe_ready(clock())
    ticket = h.acquire(clock())
    assert ticket == 2 and h.state == HALF_OPEN
    assert h.acquire(clock()) == 0, "only one probe at a time"
    h.latency.add(5.0)
    h.release(ticket, Outcome.SUCCESS)
    assert h.state == CLOSED and h.acquire(clock()) == 1
    assert h.latency.ewma is None, "a recovered deployment is measured afresh"


def test_failed_probe_reopens_with_a_longer_cooldown_up_to_the_cap() -> None:
    clock = Clock()
    h = health(clock, consecutive_failures=1, cooldown_s=1, cooldown_max_s=3)
    fail(h)
    waits = []
    for _ in range(4):
        waits.append(round(h.reopen_at - clock(), 3))
        clock.t = h.reopen_at
        h.release(h.acquire(clock()), Outcome.FAILURE)
    assert waits == [1, 2, 3, 3]
    clock.t = h.reopen_at
    h.release(h.acquire(clock()), Outcome.SUCCESS)
    fail(h)
    assert h.reopen_at - clock() == 1, "closing resets the cooldown"


def test_neutral_probe_frees_the_slot_without_deciding() -> None:
    clock = Clock()
    h = health(clock, consecutive_failures=1, cooldown_s=1)
    fail(h)
    clock.advance(1)
    ticket = h.acquire(clock())
    h.release(ticket, Outcome.NEUTRAL)
    assert h.state == HALF_OPEN and h.is_probe_ready(clock())
    assert h.acquire(clock()) == 2


def test_failure_rate_over_the_window_with_minimum_volume() -> None:
    clock = Clock()
    h = health(clock, consecutive_failures=100, failure_rate=0.5, window_s=10, min_requests=10)
    for _ in range(4):
        succeed(h)
        fail(h)
    assert h.state == CLOSED, "8 outcomes are below the minimum volume"
    succeed(h)
    fail(h)  # 5 of 10
    assert h.state == OPEN


def test_old_outcomes_leave_the_window() -> None:
    clock = Clock()
    h = health(clock, consecutive_failures=100, failure_rate=0.5, window_s=10, min_requests=4)
    fail(h, 3)
    succeed(h)
    assert h.window(clock()) == (1, 3) and h.state == CLOSED  # the rate is checked on failures only
    clock.advance(11)
    assert h.window(clock()) == (0, 0) and h.error_rate(clock()) is None
    succeed(h, 3)
    fail(h)
    assert h.state == CLOSED and h.error_rate(clock()) == 0.25


def test_caller_errors_throttles_and_cancellations_do_not_trip() -> None:
    clock = Clock()
    h = health(clock, consecutive_failures=2, throttle_s=1.5, throttle_max_s=5)
    for outcome in (Outcome.NEUTRAL, Outcome.THROTTLED, Outcome.NEUTRAL, Outcome.THROTTLED):
        h.release(h.acquire(clock()), outcome)
    assert h.state == CLOSED and h.window(clock()) == (0, 0)
    assert h.throttled(clock()) and h.throttled_until == clock() + 1.5
    h.release(h.acquire(clock()), Outcome.THROTTLED, retry_after=60)
    assert h.throttled_until == clock() + 5, "Retry-After is honoured up to throttle_max_s"
    assert h.acquire(clock()) == 1, "a throttled deployment is not refused, only tried last"


def test_a_stale_success_does_not_close_an_open_breaker() -> None:
    clock = Clock()
    h = health(clock, consecutive_failures=2, cooldown_s=5)
    early = h.acquire(clock())
    fail(h, 2)
    assert h.state == OPEN
    h.release(early, Outcome.SUCCESS)
    assert h.state == OPEN and h.in_flight == 0


def test_disabled_breaker_never_opens() -> None:
    clock = Clock()
    h = health(clock, enabled=False, consecutive_failures=1)
    fail(h, 10)
    assert h.state == CLOSED and h.acquire(clock()) == 1
    assert h.snapshot(clock())["breaker"] == "disabled"


def test_in_flight_counts_and_snapshot() -> None:
    clock = Clock()
    h = health(clock)
    t1, t2 = h.acquire(clock()), h.acquire(clock())
    assert h.in_flight == 2
    h.release(t1, Outcome.SUCCESS)
    h.observe_latency(0.25, stream=True)
    snap = h.snapshot(clock())
    assert snap["in_flight"] == 1 and snap["ttft_ewma_ms"] == 250.0 and snap["breaker"] == "closed"
    h.release(t2, Outcome.FAILURE)
    assert h.snapshot(clock())["error_rate"] == 0.5


def test_endpoints_have_independent_breakers() -> None:
    clock = Clock()
    reg = HealthRegistry(["a", "b"], {"b": BreakerConfig(consecutive_failures=1)}, BreakerConfig(), clock)
    fail(reg.get("b", "embeddings"))
    assert reg.get("b", "embeddings").state == OPEN
    assert reg.get("b", "chat").state == CLOSED
    assert reg.get("a", "chat").cfg.consecutive_failures == 5
    assert len(reg.snapshot()) == 4


def test_latency_ewma_and_cached_percentile() -> None:
    s = LatencyStat()
    assert s.percentile(95) is None
    for v in range(1, 101):
        s.add(v / 100)
    assert s.count == 100
    assert s.percentile(95) == pytest.approx(0.96)
    assert s.percentile(50) == pytest.approx(0.51)
    assert s.ewma is not None and 0.9 < s.ewma < 1.0
    for _ in range(200):  # the ring keeps the recent 128
        s.add(2.0)
    assert s.percentile(50) == 2.0


def test_retry_budget_is_a_token_bucket() -> None:
    clock = Clock()
    b = RetryBudget(RetryConfig(budget_ratio=0.5, budget_min_per_s=1, budget_burst=2), clock)
    assert b.try_spend() and b.try_spend() and not b.try_spend()
    b.deposit()
    assert not b.try_spend()
    b.deposit()
    assert b.try_spend(), "two requests at ratio 0.5 earn one retry"
    clock.advance(1.0)
    assert b.try_spend() and not b.try_spend(), "time earns budget_min_per_s"
    clock.advance(100)
    assert b.level() == 2, "never more than the burst"
