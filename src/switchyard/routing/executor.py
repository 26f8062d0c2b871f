"""Executing a plan: attempts, failover, retries, fallbacks by error class, hedging, timeouts.

One request walks its plan once, in order: each failure moves it to the next candidate at once (a 429 included).
Breakers are consulted at each step (an attempt takes a ticket from the deployment's Health; the half-open probe
is a ticket too). When the route's own candidates are spent, its ``fallbacks`` are expanded; an upstream's
context-window or content-policy error switches to that kind's fallbacks instead. When every candidate has been
tried, up to ``retries.max`` retries follow, each after a full-jitter exponential backoff (or the deployment's
``Retry-After``, if it is no longer than ``retry_after_cap_s``), each paid for with a token of the route's retry
budget. A 4xx that the caller caused ends the request at once. Nothing waits past the request's deadline.

Timeouts: ``ttft_s`` bounds each attempt until its first chunk (a non-streamed reply is its own first chunk) and
counts as the deployment's failure; the deadline (``total_s``, the server's limit, or the caller's
``x-switchyard-timeout``) bounds everything and counts as nobody's. Connecting is bounded by the provider's
``connect_timeout``; the gap between chunks (``idle_s``) is enforced while the stream is followed, by the caller
of :meth:`Executor.open_stream` through the returned :class:`StreamLease`.

Hedging (routes with ``hedge``): when the running attempt has produced nothing by the chosen percentile of its
deployment's recent latency, the next candidate is started too; the first success wins and the others are
cancelled. A loser's cost is estimated (its prompt, at its input price: the provider has likely read it) and kept
on its :class:`Attempt`. A hedge costs a retry-budget token, so hedging cannot double the load in a slowdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from ..catalog import Deployment
from ..errors import InvalidRequest, ServiceUnavailable, SwitchyardError, UpstreamError, UpstreamTimeout
from ..messages import Chunk, Usage
from .health import Clock, Health, Outcome
from .router import Plan, Router
from .strategies import Entry

log = logging.getLogger("switchyard.routing")
R = TypeVar("R")

# error classes
TRANSIENT = "transient"  # 5xx, connection, timeout, malformed reply: next candidate; retryable; breaker failure
THROTTLED = "throttled"  # 429: next candidate at once; retryable after Retry-After; rests the deployment
DEPLOYMENT = "deployment"  # upstream 401/403 (our credentials): next candidate; not retried; breaker failure
UNFIT = "unfit"  # the provider refused the request before calling (an unsupported parameter): next candidate
CALLER = "caller"  # a 4xx the caller caused: the request ends
CONTEXT = "context_window"  # the prompt is too large for this deployment: context_window_fallbacks
POLICY = "content_policy"  # the provider's content policy refused it: content_policy_fallbacks

_CONTEXT_MARKS = ("context_length", "context length", "context window", "maximum context", "prompt is too long",
                  "input is too long", "too many tokens", "reduce the length")
_POLICY_MARKS = ("content_policy", "content policy", "content_filter", "content filter", "content management",
                 "responsibleaipolicyviolation")


def classify(err: SwitchyardError) -> str:
    if not isinstance(err, UpstreamError):
        return UNFIT
    status = err.upstream_status
    if status == 429:
        return THROTTLED
    if status in (401, 403):
        return DEPLOYMENT
    if err.retryable or status is None or status >= 500:
        return TRANSIENT
    text = f"{err.message} {err.upstream_type or ''} {err.code or ''}".lower()
    if any(m in text for m in _CONTEXT_MARKS):
        return CONTEXT
    if any(m in text for m in _POLICY_MARKS):
        return POLICY
    return CALLER


_OUTCOME = {TRANSIENT: Outcome.FAILURE, DEPLOYMENT: Outcome.FAILURE, THROTTLED: Outcome.THROTTLED,
            UNFIT: Outcome.NEUTRAL, CALLER: Outcome.SUCCESS, CONTEXT: Outcome.SUCCESS, POLICY: Outcome.SUCCESS}


@dataclass(slots=True)
class Attempt:
    """One upstream attempt. ``outcome``: pending | ok | error | lost (a hedge loser) | cancelled | broken
    (a stream that failed after its first chunk). A loser's ``cost`` is an estimate."""

    deployment: str
    error: str | None = None
    seconds: float = 0.0
    outcome: str = "pending"
    provider: str | None = None
    status: int | None = None
    usage: Usage | None = None
    cost: float = 0.0
    hedge: bool = False


class _Deadline(Exception):
    """The request's deadline passed during an attempt."""


@dataclass(slots=True, eq=False)
class _Walk:
    """One request's progress through its plan."""

    pos: int = 0
    retries: int = 0
    last: SwitchyardError | None = None
    retryable: list[Entry] | None = None  # candidates that failed in a way worth retrying

    def failed(self, e: Entry, err: SwitchyardError, cls: str) -> None:
        self.last = err
        if cls in (TRANSIENT, THROTTLED):
            if self.retryable is None:
                self.retryable = []
            if e not in self.retryable:
                self.retryable.append(e)


class StreamLease:
    """The winning stream's hold on its deployment: its caller reports how the stream ended.

    It bounds the gap between chunks (``idle_s``) and the whole stream (``deadline``) with one timer per stream,
    re-armed only when it fires early, rather than a timeout per chunk: a chunk costs a clock read."""

    __slots__ = ("_armed_at", "_by_idle", "_cancelling", "_health", "_idle_expired", "_limit", "_task", "_ticket",
                 "_timer", "_waiting", "attempt", "deadline", "idle_s")

    def __init__(self, health: Health, ticket: int, attempt: Attempt, deadline: float | None,
                 idle_s: float | None) -> None:
        self._health = health
        self._ticket = ticket
        self._idle_expired = False
        self.attempt = attempt
        self.deadline = deadline
        self.idle_s = idle_s
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = 0.0  # the time.monotonic() instant the timer is set for
        self._limit = 0.0  # when the chunk being waited for is late
        self._by_idle = False  # ... by idle_s (else by the deadline)
        self._waiting = False
        self._cancelling = False  # the timer cancelled the waiting task
        self._task: asyncio.Task[Any] | None = None

    async def next(self, rest: AsyncIterator[Chunk]) -> Chunk:
        """The stream's next chunk, within ``idle_s`` of the last one and before the deadline."""
        idle, deadline = self.idle_s, self.deadline
        if idle is None and deadline is None:
            return await rest.__anext__()
        now = time.monotonic()
        by_idle = idle is not None and (deadline is None or now + idle < deadline)
        limit = now + idle if by_idle and idle is not None else deadline
        assert limit is not None
        self._limit, self._by_idle = limit, by_idle
        if self._timer is None or self._armed_at > limit:  # not armed, or armed too late (the deadline moved)
            self._arm(limit, now)
        task = self._task
        if task is None:  # the task that reads the stream (the relay's, or a drain's after a rebind)
            task = self._task = asyncio.current_task()
        self._waiting = True
        try:
            return await rest.__anext__()
        except asyncio.CancelledError:
            if not self._cancelling:
                raise
            self._cancelling = False
            if task is not None and task.uncancel() > 0:  # cancelled by someone else too: that one wins
                raise
        finally:
            self._waiting = False
        a = self.attempt
        if by_idle:
            self._idle_expired = True
            raise UpstreamTimeout(f"provider {a.provider!r} sent nothing for {idle:g}s mid-stream",
                                  provider=a.provider or "", deployment=a.deployment) from None
        raise UpstreamTimeout("the request's deadline passed mid-stream", provider=a.provider or "",
                              deployment=a.deployment) from None

    def rebind(self) -> None:
        """Another task reads the stream from now on (a drain, once the client has left)."""
        self._task = None

    def _arm(self, at: float, now: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = at
        self._timer = asyncio.get_running_loop().call_later(max(at - now, 0.0), self._fire)

    def _fire(self) -> None:
        self._timer = None
        if not self._waiting:  # between chunks: the next wait arms it again
            return
        now = time.monotonic()
        if now < self._limit:  # chunks came since it was armed: wait for the current one's limit
            self._arm(self._limit, now)
        elif self._task is not None and not self._cancelling:
            self._cancelling = True
            self._task.cancel()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def outcome_of(self, err: SwitchyardError) -> Outcome:
        """What a mid-stream failure says of the deployment: its fault, unless it was our deadline."""
        if isinstance(err, UpstreamTimeout) and not self._idle_expired:
            return Outcome.NEUTRAL
        return Outcome.FAILURE if isinstance(err, UpstreamError) else Outcome.NEUTRAL

    def finish(self, outcome: Outcome, error: str | None = None) -> None:
        self._disarm()
        if self._ticket:
            self._health.release(self._ticket, outcome)
            self._ticket = 0
            if outcome is Outcome.FAILURE:
                self.attempt.outcome, self.attempt.error = "broken", error

    def __del__(self) -> None:
        # A stream dropped before it was ever iterated (its client left at once) never reaches ``finish``: free
        # the deployment's slot (and its half-open probe) anyway, saying nothing of its health.
        if self._ticket:
            self._health.release(self._ticket, Outcome.NEUTRAL)
            self._ticket = 0


def loop_time(deadline: float) -> float:
    """A time.monotonic() instant on the running loop's clock (uvloop's is not time.monotonic())."""
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())


class Executor:
    def __init__(self, router: Router, *, clock: Clock = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, rng: random.Random | None = None) -> None:
        self.router = router
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self._background: set[asyncio.Future[Any]] = set()
        self.tracer: Any = None  # spans for attempts (switchyard.telemetry.tracing); None: tracing is off

    # --- entry points --------------------------------------------------------------------------------------

    async def call(self, plan: Plan, call: Callable[[Deployment], Awaitable[R]], attempts: list[Attempt],
                   deadline: float | None = None, started: float | None = None) -> tuple[Deployment, R]:
        deadline = self._deadline(plan, deadline, started)
        e, result, _, _ = await self._run(plan, call, attempts, deadline)
        return e.deployment, result

    async def open_stream(self, plan: Plan, call: Callable[[Deployment], AsyncIterator[Chunk]],
                          attempts: list[Attempt], deadline: float | None = None, started: float | None = None
                          ) -> tuple[Deployment, Chunk, AsyncIterator[Chunk], StreamLease]:
        """Open the first deployment that yields a first chunk: it, that chunk, the rest, and its lease."""

        async def first(dep: Deployment) -> tuple[Chunk, AsyncIterator[Chunk]]:
            it = call(dep)
            try:
                chunk = await it.__anext__()
            except StopAsyncIteration:
                raise UpstreamError(f"provider {dep.provider_name!r} sent an empty stream",
                                    provider=dep.provider_name, deployment=dep.name, retryable=True) from None
            except BaseException:
                await _aclose(it)
                raise
            return chunk, it

        deadline = self._deadline(plan, deadline, started)
        e, (chunk, it), attempt, ticket = await self._run(plan, first, attempts, deadline)
        lease = StreamLease(e.health[plan.endpoint], ticket, attempt, deadline, plan.spec.timeouts.idle_s)
        return e.deployment, chunk, it, lease

    def _deadline(self, plan: Plan, deadline: float | None, started: float | None) -> float | None:
        if deadline is not None and not math.isfinite(deadline):
            deadline = None  # no instant to schedule (an infinite limit): none; never an attempt's failure
        total = plan.spec.timeouts.total_s
        if total is not None:
            end = (started if started is not None else time.monotonic()) + total
            deadline = end if deadline is None else min(deadline, end)
        return deadline

    # --- one attempt ---------------------------------------------------------------------------------------

    async def _attempt(self, plan: Plan, e: Entry, ticket: int, fn: Callable[[Deployment], Awaitable[R]],
                       rec: Attempt, deadline: float | None) -> tuple[R, int]:
        """Run one attempt; its result and, for a stream, the breaker ticket it still holds."""
        h = e.health[plan.endpoint]
        ttft = plan.spec.timeouts.ttft_s
        started = time.monotonic()
        limit = started + ttft if ttft is not None else None
        by_deadline = deadline is not None and (limit is None or deadline <= limit)
        if by_deadline:
            limit = deadline
        outcome, retry_after, held = Outcome.NEUTRAL, None, False
        traced = self.tracer.attempt(rec, e.deployment) if self.tracer is not None else None
        try:
            if limit is None:
                result = await fn(e.deployment)
            else:
                async with asyncio.timeout_at(loop_time(limit)) as cm:
                    try:
                        result = await fn(e.deployment)
                    except TimeoutError:
                        if cm.expired():
                            raise
                        raise UpstreamError(f"provider {e.deployment.provider_name!r} timed out",
                                            provider=e.deployment.provider_name, deployment=e.name,
                                            retryable=True) from None
            outcome = Outcome.SUCCESS
            h.observe_latency(time.monotonic() - started, plan.stream)
            rec.outcome = "ok"
            held = plan.stream  # a stream holds its ticket until it ends
            if traced is not None:
                result = self.tracer.attempt_result(traced, rec, result, plan.stream)
            return result, ticket if held else 0
        except TimeoutError:
            elapsed = time.monotonic() - started
            self._censored(h, elapsed, plan.stream)
            if by_deadline:
                rec.outcome, rec.error = "error", "the request's deadline passed"
                raise _Deadline() from None
            outcome = Outcome.FAILURE
            slow = UpstreamTimeout(f"no first token from provider {e.deployment.provider_name!r} within {ttft:g}s",
                                   provider=e.deployment.provider_name, deployment=e.name)
            rec.outcome, rec.error, rec.status = "error", slow.message, slow.status
            raise slow from None
        except SwitchyardError as err:
            cls = classify(err)
            outcome = _OUTCOME[cls]
            if isinstance(err, UpstreamError):
                retry_after = err.retry_after
            rec.outcome, rec.error, rec.status = "error", err.message, err.status
            raise
        except asyncio.CancelledError:
            self._censored(h, time.monotonic() - started, plan.stream)
            if rec.outcome == "pending":
                rec.outcome = "cancelled"
            raise
        except (RecursionError, orjson.JSONEncodeError) as exc:  # the request cannot be encoded: its fault, not the
            # deployment's (bounds.MAX_JSON_DEPTH keeps this from happening to any body the server parsed)
            rec.outcome, rec.error, rec.status = "error", f"request not encodable: {type(exc).__name__}", 400
            raise InvalidRequest(f"The request could not be encoded for provider {e.deployment.provider_name!r}: "
                                 f"{exc}.", param="body", code="invalid_request") from None
        except Exception as exc:  # a provider bug or a reply it could not parse: this deployment failed
            log.exception("provider %s failed unexpectedly", e.deployment.provider_name)
            outcome = Outcome.FAILURE
            bug = UpstreamError(f"provider {e.deployment.provider_name!r} failed: {type(exc).__name__}",
                                provider=e.deployment.provider_name, deployment=e.name, retryable=True)
            rec.outcome, rec.error, rec.status = "error", bug.message, bug.status
            raise bug from exc
        finally:
            rec.seconds = time.monotonic() - started
            if not held:
                h.release(ticket, outcome, retry_after)
            if traced is not None:
                self.tracer.attempt_done(traced, rec)

    @staticmethod
    def _censored(h: Health, elapsed: float, stream: bool) -> None:
        """An attempt cut short took at least ``elapsed``: let the latency stats know when that is news."""
        stat = h.ttft if stream else h.latency
        if stat.ewma is None or elapsed > stat.ewma:
            stat.add(elapsed)

    # --- choosing the next attempt -------------------------------------------------------------------------

    def _pick(self, plan: Plan, walk: _Walk) -> tuple[Entry, int] | None:
        """The next untried candidate that admits an attempt, expanding fallbacks as needed."""
        now = self.clock()
        while True:
            entries = plan.entries
            while walk.pos < len(entries):
                e = entries[walk.pos]
                walk.pos += 1
                ticket = e.health[plan.endpoint].acquire(now)
                if ticket:
                    return e, ticket
                plan.resting.append(e)
            if not self.router.expand(plan):
                return None

    def _retry_pick(self, plan: Plan, walk: _Walk, deadline: float | None) -> tuple[Entry, float] | None:
        """A candidate to retry and how long to wait first, or None if the request may not retry."""
        spec = plan.spec
        cfg = spec.retries
        if walk.retries >= cfg.max:
            return None
        now = self.clock()
        best: Entry | None = None
        best_wait = 0.0
        for group in (walk.retryable or (), plan.resting):
            for e in group:
                h = e.health[plan.endpoint]
                wait = max(h.available_at(now) - now, h.throttled_until - now, 0.0)
                if wait <= cfg.retry_after_cap_s and (best is None or wait < best_wait):
                    best, best_wait = e, wait
        if best is None:
            return None
        ceiling = min(cfg.backoff_max_ms, cfg.backoff_base_ms * (2 ** walk.retries)) / 1000
        delay = max(best_wait, self.rng.uniform(0, ceiling))
        if deadline is not None and time.monotonic() + delay >= deadline:
            return None
        if not spec.budget.try_spend():
            plan.notes.append("retry budget spent")
            return None
        return best, delay

    def _unavailable(self, plan: Plan) -> SwitchyardError:
        """Every candidate is resting and none may be waited for: fail fast, naming the route."""
        now = self.clock()
        soonest = min((max(e.health[plan.endpoint].available_at(now) - now, 0.0) for e in plan.resting),
                      default=1.0)
        if plan.spec.direct:
            msg = f"Deployment {plan.spec.name!r} is unavailable (its circuit breaker is open)"
        else:
            msg = f"Every deployment of route {plan.spec.name!r} is unavailable (circuit breakers open)"
        return ServiceUnavailable(f"{msg}; retry in {soonest:.1f}s.", code="route_unavailable",
                                  headers={"retry-after": str(max(1, int(soonest + 0.999)))})

    def _start(self, plan: Plan, e: Entry, attempts: list[Attempt], hedge: bool = False) -> Attempt:
        rec = Attempt(e.name, provider=e.deployment.provider_name, hedge=hedge)
        attempts.append(rec)
        return rec

    def _after_failure(self, plan: Plan, walk: _Walk, e: Entry, err: SwitchyardError) -> bool:
        """Book a failed attempt; False if the request must end with ``err``."""
        cls = classify(err)
        if cls == CALLER or (cls == UNFIT and plan.spec.direct):
            return False
        if cls in (CONTEXT, POLICY):
            walk.last = err
            plan.notes.append(f"{e.name}: {'context window exceeded' if cls == CONTEXT else 'content policy'}")
            if not self.router.switch(plan, cls):
                return False
            del plan.entries[walk.pos:]  # the rest of this group is not what the error calls for
            return True
        walk.failed(e, err, cls)
        plan.notes.append(f"{e.name}: {_short(err)}")
        return True

    # --- the walk --------------------------------------------------------------------------------------------

    async def _run(self, plan: Plan, fn: Callable[[Deployment], Awaitable[R]], attempts: list[Attempt],
                   deadline: float | None) -> tuple[Entry, R, Attempt, int]:
        walk = _Walk()
        picked = self._pick(plan, walk)
        if picked is not None and plan.spec.hedge is not None and self._hedge_delay(plan, picked[0]) is not None:
            return await self._race(plan, fn, attempts, deadline, walk, picked)
        while True:  # no hedging possible: no task, no timer
            if picked is None:
                picked = self._pick(plan, walk) or await self._wait_retry(plan, walk, deadline)
            e, ticket = picked
            picked = None
            rec = self._start(plan, e, attempts)
            try:
                result, held = await self._attempt(plan, e, ticket, fn, rec, deadline)
            except _Deadline:
                raise self._deadline_error(plan, e) from None
            except SwitchyardError as err:
                if not self._after_failure(plan, walk, e, err):
                    raise
                continue
            return e, result, rec, held

    async def _wait_retry(self, plan: Plan, walk: _Walk, deadline: float | None) -> tuple[Entry, int]:
        """Nothing untried is left: back off and retry, or raise the request's error."""
        while True:
            choice = self._retry_pick(plan, walk, deadline)
            if choice is None:
                if walk.last is not None:
                    raise walk.last
                raise self._unavailable(plan)
            e, delay = choice
            walk.retries += 1
            plan.notes.append(f"retry {walk.retries} on {e.name} after {delay * 1000:.0f}ms")
            if delay > 0:
                await self.sleep(delay)
            ticket = e.health[plan.endpoint].acquire(self.clock())
            if ticket:
                return e, ticket

    def _deadline_error(self, plan: Plan, e: Entry) -> UpstreamTimeout:
        plan.notes.append("deadline passed")
        return UpstreamTimeout("the request's deadline passed", provider=e.deployment.provider_name,
                               deployment=e.name)

    async def _race(self, plan: Plan, fn: Callable[[Deployment], Awaitable[R]], attempts: list[Attempt],
                    deadline: float | None, walk: _Walk, first: tuple[Entry, int]) -> tuple[Entry, R, Attempt, int]:
        """Attempts as tasks, so that a late one can be hedged; otherwise the same walk as ``_run``."""
        hedge = plan.spec.hedge
        assert hedge is not None
        running: dict[asyncio.Task[tuple[R, int]], tuple[Entry, Attempt]] = {}
        hedges_left = hedge.max_extra
        launched_at = 0.0
        launched: Entry | None = None

        def launch(e: Entry, ticket: int, is_hedge: bool) -> None:
            nonlocal launched_at, launched
            rec = self._start(plan, e, attempts, is_hedge)
            task = asyncio.ensure_future(self._attempt(plan, e, ticket, fn, rec, deadline))
            h = e.health[plan.endpoint]

            def never_ran(t: asyncio.Future[Any]) -> None:  # cancelled before its first step: free its ticket
                if rec.outcome == "pending":
                    rec.outcome = "cancelled"
                    h.release(ticket, Outcome.NEUTRAL)

            task.add_done_callback(never_ran)
            running[task] = (e, rec)
            launched_at, launched = time.monotonic(), e

        launch(*first, False)
        try:
            while True:
                if not running:
                    nxt = self._pick(plan, walk) or await self._wait_retry(plan, walk, deadline)
                    launch(*nxt, False)
                timeout = None
                if hedges_left and launched is not None:
                    delay = self._hedge_delay(plan, launched)
                    if delay is not None:
                        timeout = max(launched_at + delay - time.monotonic(), 0.0)
                done, _ = await asyncio.wait(running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not done:  # no first token by the percentile: hedge
                    hedges_left -= 1
                    if plan.spec.budget.try_spend():
                        picked = self._pick(plan, walk)
                        if picked is not None:
                            plan.notes.append(f"hedged to {picked[0].name} after "
                                              f"{(time.monotonic() - launched_at) * 1000:.0f}ms")
                            launch(*picked, True)
                    continue
                winner: tuple[Entry, R, Attempt, int] | None = None
                for task in done:
                    e, rec = running.pop(task)
                    exc = task.exception()
                    if exc is None:
                        result, held = task.result()
                        if winner is None:
                            winner = (e, result, rec, held)
                        else:
                            self._lost(plan, e, rec, result, held)
                    elif isinstance(exc, _Deadline):
                        raise self._deadline_error(plan, e)
                    elif isinstance(exc, SwitchyardError):
                        if not self._after_failure(plan, walk, e, exc):
                            raise exc
                    else:
                        raise exc
                if winner is not None:
                    if running:
                        plan.notes.append(f"{winner[0].name} won the hedge")
                    for task, (e, rec) in running.items():
                        self._lost(plan, e, rec, None, 0)
                        task.cancel()
                        self._keep(task)
                    running.clear()
                    return winner
        finally:
            for task in running:
                task.cancel()
                self._keep(task)

    def _hedge_delay(self, plan: Plan, e: Entry) -> float | None:
        hedge = plan.spec.hedge
        assert hedge is not None
        h = e.health[plan.endpoint]
        stat = h.ttft if plan.stream else h.latency
        if stat.count < hedge.min_samples:
            return None
        p = stat.percentile(hedge.after_percentile)
        return None if p is None else max(p, hedge.min_delay_ms / 1000)

    def _lost(self, plan: Plan, e: Entry, rec: Attempt, result: object, held: int) -> None:
        """A hedge loser: estimate what it cost, and close its stream if it had one."""
        d = e.deployment
        usage = getattr(result, "usage", None)
        if not isinstance(usage, Usage):
            usage = Usage(input_tokens=plan.prompt_tokens)
        rec.outcome, rec.usage, rec.cost = "lost", usage, d.cost(usage)
        if held:
            e.health[plan.endpoint].release(held, Outcome.NEUTRAL)
        if isinstance(result, tuple):  # a stream's first chunk and the rest
            self._keep(asyncio.ensure_future(_aclose(result[1])))

    def _keep(self, task: asyncio.Future[Any]) -> None:
        """Let a cancelled or closing task finish in the background, retrieving whatever it raises."""
        self._background.add(task)

        def done(t: asyncio.Future[Any]) -> None:
            self._background.discard(t)
            if not t.cancelled():
                t.exception()

        task.add_done_callback(done)


def _short(err: SwitchyardError) -> str:
    if isinstance(err, UpstreamError) and err.upstream_status is not None:
        return f"HTTP {err.upstream_status}"
    if isinstance(err, UpstreamTimeout):
        return "timeout"
    return err.code or type(err).__name__


async def _aclose(it: object) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()

