"""What the router knows about each deployment, per endpoint: a circuit breaker, a 429 rest, latency and requests
in flight; and each route's retry budget.

All of it is plain state mutated from the event loop: no locks, no I/O, O(1) per update (the failure-rate window
is a ring of ten buckets). Time comes from an injected clock so that tests need no sleeps.

Breaker states::

    closed --(N failures in a row, or failure rate >= r over the window with >= min outcomes)--> open
    open --(cooldown passed; the next request takes the single probe slot)--> half_open
    half_open --(probe succeeded)--> closed          (latency stats are reset: the deployment is measured afresh)
    half_open --(probe failed)--> open               (cooldown doubles, up to cooldown_max_s)

Only outcomes of attempts admitted in the current state move the state: a stale success of a request admitted
before the breaker opened does not close it. A failure is a retryable upstream failure (5xx, a broken or refused
connection, a timeout, a malformed reply) or an upstream 401/403. A 429 is not a failure: it rests the deployment
for its Retry-After (capped), or ``throttle_s``, and the router tries it after the others meanwhile. A 4xx that
the caller caused counts as a success (the deployment answered); an attempt cancelled (a lost hedge, a client
gone, the caller's deadline) counts as neither, and so does a request refused before any call (our own
validation, a provider that cannot encode it): nothing a caller sends can open a breaker for other tenants.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any

from ..config.routing import BreakerConfig, RetryConfig

Clock = Callable[[], float]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
_BUCKETS = 10
_EWMA_ALPHA = 0.25
_RING = 128  # latency samples kept for percentiles
_RECOMPUTE_EVERY = 16  # samples between two percentile recomputations


class Outcome(Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    THROTTLED = "throttled"  # a 429: rest, but not a breaker failure
    NEUTRAL = "neutral"  # cancelled: says nothing about the deployment


class LatencyStat:
    """An EWMA and a ring of recent samples (seconds), with a cached percentile."""

    __slots__ = ("_cache", "_fresh", "_pos", "_ring", "count", "ewma")

    def __init__(self) -> None:
        self.ewma: float | None = None
        self.count = 0
        self._ring: list[float] = []
        self._pos = 0
        self._cache: dict[float, float] = {}
        self._fresh = 0  # samples since the cache was filled

    def add(self, seconds: float) -> None:
        self.ewma = seconds if self.ewma is None else self.ewma + _EWMA_ALPHA * (seconds - self.ewma)
        self.count += 1
        if len(self._ring) < _RING:
            self._ring.append(seconds)
        else:
            self._ring[self._pos] = seconds
            self._pos = (self._pos + 1) % _RING
        self._fresh += 1
        if self._fresh >= _RECOMPUTE_EVERY or self.count < _RECOMPUTE_EVERY:
            self._cache.clear()
            self._fresh = 0

    def percentile(self, p: float) -> float | None:
        """The p-th percentile (0-100) of recent samples; recomputed every few samples, so O(1) amortised."""
        if not self._ring:
            return None
        v = self._cache.get(p)
        if v is None:
            ordered = sorted(self._ring)
            v = ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]
            self._cache[p] = v
        return v

    def reset(self) -> None:
        self.ewma = None
        self.count = 0
        self._ring = []
        self._pos = 0
        self._cache = {}
        self._fresh = 0


class Health:
    """One deployment's health for one endpoint (``chat`` or ``embeddings``)."""

    __slots__ = ("_buckets", "_consecutive", "_cooldown", "_epoch", "_opened_at", "_probe_out", "cfg", "clock",
                 "deployment", "endpoint", "in_flight", "latency", "on_change", "reopen_at", "state", "throttled_until",
                 "ttft")

    def __init__(self, deployment: str, endpoint: str, cfg: BreakerConfig, clock: Clock = time.monotonic) -> None:
        self.deployment = deployment
        self.endpoint = endpoint
        self.cfg = cfg
        self.clock = clock
        self.state = CLOSED
        self.on_change: Callable[[Health, str], Any] | None = None  # told each new state (logs and metrics)
        self.in_flight = 0
        self.ttft = LatencyStat()  # streams: time to the first chunk
        self.latency = LatencyStat()  # whole replies (non-streamed chat, embeddings)
        self.throttled_until = 0.0
        self.reopen_at = 0.0
        self._opened_at = 0.0
        self._cooldown = cfg.cooldown_s
        self._consecutive = 0
        self._probe_out = False
        self._epoch = [-1] * _BUCKETS  # the bucket number each slot counts for
        self._buckets = [[0, 0] for _ in range(_BUCKETS)]  # [successes, failures]

    # --- admission ----------------------------------------------------------------------------------------

    def available_at(self, now: float) -> float:
        """When the breaker next admits a request: ``now`` or earlier if it does now. Side-effect free."""
        if self.state == CLOSED or not self.cfg.enabled:
            return 0.0
        if self.state == OPEN:
            return self.reopen_at
        return now + self.cfg.cooldown_s if self._probe_out else 0.0  # half open: one probe at a time

    def is_probe_ready(self, now: float) -> bool:
        """An open breaker whose cooldown passed, with its probe slot free."""
        return self.cfg.enabled and self.state != CLOSED and not self._probe_out and now >= self.reopen_at

    def throttled(self, now: float) -> bool:
        """Resting after a 429: the router tries it after the others (it is not refused: it may have room)."""
        return now < self.throttled_until

    def acquire(self, now: float) -> int:
        """Admit one attempt: 0 (refused), 1 (a normal attempt) or 2 (the half-open probe). Counts it in flight."""
        if self.state == CLOSED or not self.cfg.enabled:
            self.in_flight += 1
            return 1
        if self._probe_out or now < self.reopen_at:
            return 0
        if self.state != HALF_OPEN:
            self._set(HALF_OPEN)
        self._probe_out = True
        self.in_flight += 1
        return 2

    def release(self, ticket: int, outcome: Outcome, retry_after: float | None = None) -> None:
        """The end of an attempt admitted with ``ticket``."""
        if ticket == 0:
            return
        self.in_flight -= 1
        now = self.clock()
        if outcome is Outcome.THROTTLED:
            rest = self.cfg.throttle_s if retry_after is None else min(retry_after, self.cfg.throttle_max_s)
            self.throttled_until = max(self.throttled_until, now + rest)
        if ticket == 2:
            self._probe_out = False
            if outcome is Outcome.SUCCESS:
                self._close()
            elif outcome is Outcome.FAILURE:
                self._cooldown = min(self._cooldown * 2, max(self.cfg.cooldown_max_s, self.cfg.cooldown_s))
                self._open(now)
            return
        if outcome is Outcome.SUCCESS:
            self._count(now, 0)
            self._consecutive = 0
        elif outcome is Outcome.FAILURE:
            self._count(now, 1)
            self._consecutive += 1
            if self.state == CLOSED and self.cfg.enabled and self._should_open(now):
                self._open(now)

    # --- the failure-rate window --------------------------------------------------------------------------

    def _slot(self, now: float) -> list[int]:
        n = int(now / (self.cfg.window_s / _BUCKETS))
        i = n % _BUCKETS
        if self._epoch[i] != n:
            self._epoch[i] = n
            b = self._buckets[i]
            b[0] = b[1] = 0
        return self._buckets[i]

    def _count(self, now: float, index: int) -> None:
        self._slot(now)[index] += 1

    def window(self, now: float) -> tuple[int, int]:
        """(successes, failures) over the last ``window_s``."""
        oldest = int(now / (self.cfg.window_s / _BUCKETS)) - _BUCKETS + 1
        ok = bad = 0
        for e, (s, f) in zip(self._epoch, self._buckets, strict=True):
            if e >= oldest:
                ok += s
                bad += f
        return ok, bad

    def error_rate(self, now: float) -> float | None:
        ok, bad = self.window(now)
        return bad / (ok + bad) if ok + bad else None

    def _should_open(self, now: float) -> bool:
        if self._consecutive >= self.cfg.consecutive_failures:
            return True
        ok, bad = self.window(now)
        return ok + bad >= self.cfg.min_requests and bad / (ok + bad) >= self.cfg.failure_rate

    def _set(self, state: str) -> None:
        self.state = state
        if self.on_change is not None:
            self.on_change(self, state)

    def _open(self, now: float) -> None:
        self._set(OPEN)
        self._opened_at = now
        self.reopen_at = now + self._cooldown

    def _close(self) -> None:
        self._set(CLOSED)
        self._cooldown = self.cfg.cooldown_s
        self._consecutive = 0
        self._epoch = [-1] * _BUCKETS
        self.ttft.reset()  # measured afresh, so lowest-latency does not shun a recovered deployment
        self.latency.reset()

    # --- samples ------------------------------------------------------------------------------------------

    def observe_latency(self, seconds: float, stream: bool) -> None:
        (self.ttft if stream else self.latency).add(seconds)

    def snapshot(self, now: float) -> dict[str, object]:
        ok, bad = self.window(now)
        return {
            "deployment": self.deployment,
            "endpoint": self.endpoint,
            "breaker": self.state if self.cfg.enabled else "disabled",
            "reopens_in_s": round(max(self.reopen_at - now, 0.0), 3) if self.state == OPEN else None,
            "consecutive_failures": self._consecutive,
            "window": {"seconds": self.cfg.window_s, "successes": ok, "failures": bad},
            "error_rate": round(bad / (ok + bad), 4) if ok + bad else None,
            "in_flight": self.in_flight,
            "throttled_for_s": round(self.throttled_until - now, 3) if self.throttled_until > now else None,
            "ttft_ewma_ms": _ms(self.ttft.ewma),
            "latency_ewma_ms": _ms(self.latency.ewma),
            "samples": {"ttft": self.ttft.count, "latency": self.latency.count},
        }


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 2)


ENDPOINTS = ("chat", "embeddings")


class HealthRegistry:
    """Every deployment's Health for every endpoint, built at start-up and kept across reloads (:meth:`sync`)."""

    def __init__(self, deployments: Iterable[str], settings: dict[str, BreakerConfig], default: BreakerConfig,
                 clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._on_change: Callable[[Health, str], Any] | None = None
        self._by_endpoint: dict[str, dict[str, Health]] = {
            ep: {d: Health(d, ep, settings.get(d, default), clock) for d in deployments} for ep in ENDPOINTS
        }

    def get(self, deployment: str, endpoint: str) -> Health:
        return self._by_endpoint[endpoint][deployment]

    def table(self, endpoint: str) -> dict[str, Health]:
        return self._by_endpoint[endpoint]

    def all(self) -> Iterable[Health]:
        return (h for ep in ENDPOINTS for h in self._by_endpoint[ep].values())

    def watch(self, on_change: Callable[[Health, str], Any]) -> None:
        """Tell ``on_change`` of every breaker's every change of state (rare: no cost per request)."""
        self._on_change = on_change
        for h in self.all():
            h.on_change = on_change

    def sync(self, deployments: Iterable[str], settings: dict[str, BreakerConfig], default: BreakerConfig) -> None:
        """A reload: keep the Health (breaker state, latency) of each deployment that survives with the same breaker
        settings, add fresh ones, forget removed ones (calls in flight on them keep their own references)."""
        names = list(deployments)
        by_endpoint: dict[str, dict[str, Health]] = {}
        for ep in ENDPOINTS:
            old = self._by_endpoint[ep]
            table: dict[str, Health] = {}
            for d in names:
                cfg = settings.get(d, default)
                h = old.get(d)
                if h is None or h.cfg != cfg:
                    h = Health(d, ep, cfg, self.clock)
                    h.on_change = self._on_change
                table[d] = h
            by_endpoint[ep] = table
        self._by_endpoint = by_endpoint

    def snapshot(self) -> list[dict[str, object]]:
        now = self.clock()
        return [h.snapshot(now) for ep in ENDPOINTS for h in self._by_endpoint[ep].values()]


class RetryBudget:
    """A token bucket that bounds retries and hedges: each request earns ``budget_ratio`` tokens, time earns
    ``budget_min_per_s`` per second, the bucket holds at most ``budget_burst``; a retry spends one token."""

    __slots__ = ("_at", "burst", "clock", "per_s", "ratio", "tokens")

    def __init__(self, cfg: RetryConfig, clock: Clock = time.monotonic) -> None:
        self.ratio = cfg.budget_ratio
        self.per_s = cfg.budget_min_per_s
        self.burst = cfg.budget_burst
        self.clock = clock
        self.tokens = cfg.budget_burst
        self._at = clock()

    def _refill(self) -> None:
        now = self.clock()
        if self.per_s:
            self.tokens = min(self.burst, self.tokens + (now - self._at) * self.per_s)
        self._at = now

    def deposit(self) -> None:
        self.tokens = min(self.burst, self.tokens + self.ratio)

    def try_spend(self) -> bool:
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def level(self) -> float:
        self._refill()
        return self.tokens
