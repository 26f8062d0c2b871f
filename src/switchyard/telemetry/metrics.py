"""Prometheus metrics, through ``prometheus-client``: what each finished call did, and the state of the breakers,
of the upstream calls in flight and of the spend spool.

Every label value comes from the configuration (route and deployment names, breaker states) or from a key id
(refusals): never from what a request says (its model name, its text). The per-call cost is a dict lookup for the
call's labelled children (cached per route, deployment, protocol and status) and a few increments; the state gauges
are read when ``/metrics`` is scraped, and so cost nothing per call.

Multiprocess mode (``serve --workers N``): the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before it starts the
workers, each worker's counters and histograms are memory-mapped files there, and any worker's ``/metrics`` adds up
every worker's. The state gauges of a worker are written at each scrape it answers and, while it serves, at most
once a second; a breaker's state is the worst over the workers, in-flight calls and the backlog the sum over live
workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

if TYPE_CHECKING:
    from ..records import CallRecord
    from ..routing.health import Health, HealthRegistry
    from ..stages import CallContext

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# seconds: whole LLM calls run from tens of milliseconds to minutes; a first token comes sooner
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
BREAKER_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_REFRESH_S = 1.0  # multiprocess mode: the state gauges are written at most this often from the request path


_REFUSALS = {"budget_exceeded": "budget", "rate_limit_exceeded": "rate_limit"}  # error code -> refusal kind


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _Children:
    """The labelled children one kind of call updates, looked up once."""

    __slots__ = ("cost", "input", "latency", "output", "requests", "ttft")

    def __init__(self, m: Metrics, route: str, deployment: str, protocol: str, status: str) -> None:
        self.requests = m.requests.labels(route, deployment, protocol, status)
        self.latency = m.latency.labels(deployment)
        self.ttft = m.ttft.labels(deployment)
        self.input = m.tokens.labels(route, deployment, "input")
        self.output = m.tokens.labels(route, deployment, "output")
        self.cost = m.cost.labels(route, deployment)


class Metrics:
    def __init__(self, health: HealthRegistry, backlog: Callable[[], int] | None = None) -> None:
        self.health = health
        self.backlog = backlog
        self.multiproc = multiprocess_dir()
        reg = self.registry = CollectorRegistry(auto_describe=False)
        by_call = ["route", "deployment"]
        self.requests = Counter("switchyard_requests", "Finished calls, by route, deployment, inbound protocol and "
                                "HTTP status", [*by_call, "protocol", "status"], registry=reg)
        self.latency = Histogram("switchyard_request_duration_seconds", "Whole calls, from arrival to the last byte",
                                 ["deployment"], buckets=LATENCY_BUCKETS, registry=reg)
        self.ttft = Histogram("switchyard_time_to_first_token_seconds", "Streamed calls: arrival to the first chunk",
                              ["deployment"], buckets=TTFT_BUCKETS, registry=reg)
        self.tokens = Counter("switchyard_tokens", "Tokens, by direction (input, output)", [*by_call, "direction"],
                              registry=reg)
        self.cost = Counter("switchyard_cost_usd", "What calls cost, in US dollars (hedge losers included)", by_call,
                            registry=reg)
        self.retries = Counter("switchyard_retries", "Attempts on a deployment the call had already tried", by_call,
                               registry=reg)
        self.fallbacks = Counter("switchyard_fallbacks", "Attempts on another deployment after a failed one", by_call,
                                 registry=reg)
        self.hedges = Counter("switchyard_hedges", "Hedged attempts started", by_call, registry=reg)
        self.upstream_failures = Counter("switchyard_upstream_failures", "Failed upstream attempts, by the status "
                                         "the gateway mapped them to", ["deployment", "status"], registry=reg)
        self.refusals = Counter("switchyard_refusals", "Calls refused by a budget or a rate limit, by key id",
                                ["kind", "key"], registry=reg)
        self.breaker_changes = Counter("switchyard_breaker_transitions", "Breaker changes of state",
                                       ["deployment", "endpoint", "state"], registry=reg)
        self.breaker = Gauge("switchyard_breaker_state", "Breaker state: 0 closed, 1 half open, 2 open",
                             ["deployment", "endpoint"], multiprocess_mode="max", registry=reg)
        self.in_flight = Gauge("switchyard_upstream_in_flight", "Upstream calls in flight",
                               ["deployment", "endpoint"], multiprocess_mode="livesum", registry=reg)
        self.spool = Gauge("switchyard_spool_backlog_bytes", "Spend records spooled but not yet in the store", [],
                           multiprocess_mode="livesum", registry=reg)
        self._children: dict[tuple[str | None, str | None, str, int], _Children] = {}
        self._state = [(h, self.breaker.labels(h.deployment, h.endpoint), self.in_flight.labels(h.deployment,
                                                                                                 h.endpoint))
                       for h in health.all()]
        self._next_refresh = 0.0

    # --- per call -------------------------------------------------------------------------------------------

    def observe(self, ctx: CallContext, rec: CallRecord, code: str | None = None) -> None:
        """Count one finished call; ``code``: its error's code, if an error ended it."""
        key = (rec.route, rec.deployment, ctx.protocol, rec.http_status)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = _Children(self, rec.route or "", rec.deployment or "", ctx.protocol,
                                                str(rec.http_status))
        c.requests.inc()
        c.latency.observe(rec.latency_ms / 1000)
        if rec.deployment is not None:
            if rec.ttft_ms is not None and ctx.plan is not None and ctx.plan.stream:
                c.ttft.observe(rec.ttft_ms / 1000)
            u = rec.usage
            if u.input_tokens:
                c.input.inc(u.input_tokens)
            if u.output_tokens:
                c.output.inc(u.output_tokens)
            cost = rec.total_cost
            if cost:
                c.cost.inc(cost)
        if rec.attempts > 1 or (rec.attempts == 1 and ctx.attempts[0].outcome != "ok"):
            self._attempts(ctx, rec.route or "")
        elif code in _REFUSALS and rec.attempts == 0:  # the ledger refused it before any upstream call
            self.refusals.labels(_REFUSALS[code], rec.principal_id or "").inc()
        if self.multiproc is not None:
            now = time.monotonic()
            if now >= self._next_refresh:
                self._next_refresh = now + _REFRESH_S
                self.refresh()

    def refused_at_admission(self, protocol: str, status: int) -> None:
        """A caller refused before its request was read (no route, no deployment): a 401, or a 429 of the
        failed-authentication limit."""
        self.requests.labels("", "", protocol, str(status)).inc()

    def _attempts(self, ctx: CallContext, route: str) -> None:
        seen: set[str] = set()
        for a in ctx.attempts:
            if a.hedge:
                self.hedges.labels(route, a.deployment).inc()
            elif a.deployment in seen:
                self.retries.labels(route, a.deployment).inc()
            elif seen:
                self.fallbacks.labels(route, a.deployment).inc()
            seen.add(a.deployment)
            if a.outcome in ("error", "broken"):
                self.upstream_failures.labels(a.deployment, str(a.status or 0)).inc()

    # --- state --------------------------------------------------------------------------------------------------

    def breaker_changed(self, h: Health, state: str) -> None:
        self.breaker_changes.labels(h.deployment, h.endpoint, state).inc()
        self.breaker.labels(h.deployment, h.endpoint).set(BREAKER_VALUE.get(state, 0.0))

    def refresh(self) -> None:
        """Write the state gauges from the live state (this process's)."""
        for h, state, flight in self._state:
            state.set(BREAKER_VALUE.get(h.state, 0.0) if h.cfg.enabled else 0.0)
            flight.set(h.in_flight)
        if self.backlog is not None:
            self.spool.set(self.backlog())

    def render(self) -> bytes:
        """The exposition text: this process's metrics, or in multiprocess mode every worker's."""
        self.refresh()
        if self.multiproc is None:
            return generate_latest(self.registry)
        reg = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(reg, path=self.multiproc)  # type: ignore[no-untyped-call]
        return generate_latest(reg)


def backlog_of(recorder: Any) -> Callable[[], int] | None:
    """The spend spool's unshipped bytes, if the recorder (or one it tees to) writes through a spool."""
    for r in (recorder, *getattr(recorder, "recorders", ())):
        spool = getattr(r, "spool", None)
        pending = getattr(spool, "pending", None)
        if callable(pending):
            return pending  # type: ignore[no-any-return]
    return None
