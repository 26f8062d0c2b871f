"""The ledger: budgets that never overshoot, and rate limits, enforced around every upstream call.

The pipeline calls two methods (see ``Gateway._reserve`` and ``Gateway._record``):

* :meth:`Ledger.reserve`, after planning and before the upstream call: one atomic step holds the worst-case cost
  of the request against every budget in scope, and takes a slot in every rate limit in scope, or refuses the
  request (429 naming the budget or limit, with ``Retry-After``). The worst case is the estimated prompt times the
  input price plus the output cap (the request's ``max_tokens``, else the deployment's ``max_output_tokens``, else
  ``ledger.default_max_tokens``, times ``n``) times the output price, on the most expensive deployment the plan
  may use; a hedged route holds that once more for each possible hedge (a loser may have answered in full).
* :meth:`Ledger.settle`, when the call is recorded (success, failure, cancellation, or a client gone mid-stream):
  the hold is released and the real cost (hedge losers included) is added. Exactly once per request: the hold is
  popped from this process's table, so a second call finds nothing.

A principal with no budgets and no rate limits costs one attribute test: the pipeline does not even call in.

Backends: in-process (:mod:`.ledger_memory`) without ``ledger.redis``; Redis (:mod:`.ledger_redis`, Lua scripts)
with it. Settled totals persist in the store's ``budget_spend`` through the spend spool (:mod:`.spend`), which is
what both backends start from. Threshold crossings (50%, 80%, 100%...) go to the webhook notifier.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import time
from collections.abc import Coroutine, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..errors import RateLimited
from ..messages import ChatRequest, EmbeddingRequest
from .auth import BudgetDef, Principal, RateLimitDef
from .errors import GovernanceUnavailable
from .ledger_memory import MemoryBackend
from .ledger_model import (
    E8,
    BudgetPeriod,
    Charge,
    Hold,
    Refused,
    Settled,
    fmt_usd,
    period_bounds,
    reset_text,
    usd_e8,
    used_fraction,
)
from .webhooks import WebhookNotifier
from .worst_case import embedding_tokens, worst_case

if TYPE_CHECKING:
    from ..records import Intent
    from ..routing import Plan
    from ..stages import Outcome
    from .db import Db
    from .ledger_redis import RedisBackend

log = logging.getLogger("switchyard.ledger")

Rows = list[tuple[str, str, int, int]]


class _Shape:
    """What a principal's holds always look like: its budgets (limits in E8 units, zones) in their current
    periods, and its rate limits, all and by kind. Worked out once per principal object; the periods are
    refreshed when the first of them ends."""

    __slots__ = ("budgets", "concurrent", "end", "limits", "periods", "principal", "rpm", "start", "tpm")

    def __init__(self, principal: Principal, budget_timezone: str) -> None:
        self.principal = principal  # held, so that its id() stays its own while the shape is cached
        self.budgets = tuple((b, b.timezone or budget_timezone,
                              int((b.max_usd * E8).to_integral_value()) if b.max_usd is not None else -1,
                              b.max_tokens if b.max_tokens is not None else -1) for b in principal.budgets)
        self.limits = rl = principal.rate_limits
        self.rpm = tuple(x for x in rl if x.rpm is not None)
        self.tpm = tuple(x for x in rl if x.tpm is not None)
        self.concurrent = tuple(x for x in rl if x.max_concurrent is not None)
        self.periods: tuple[BudgetPeriod, ...] = ()
        self.start, self.end = 0.0, -1.0 if self.budgets else math.inf

    def periods_at(self, now: float, shared: dict[tuple[Any, ...], BudgetPeriod]) -> tuple[BudgetPeriod, ...]:
        """The budgets in the periods that hold ``now``: one BudgetPeriod object per budget definition and period
        in ``shared``, whichever principal's shape asks (the embedded ledger keeps per-bucket state by it)."""
        if self.start <= now < self.end:
            return self.periods
        periods = []
        self.start, self.end = -math.inf, math.inf
        for budget, tz, limit_usd, limit_tokens in self.budgets:
            key, start, end = period_bounds(budget.period, tz, now)
            found = shared.get((budget, tz, key))
            if found is None:
                if len(shared) > 10_000:
                    shared.clear()
                found = shared[(budget, tz, key)] = BudgetPeriod.make(budget, tz, key, end, limit_usd,
                                                                      limit_tokens)
            periods.append(found)
            self.start = max(self.start, start)
            self.end = min(self.end, end if end is not None else math.inf)
        self.periods = tuple(periods)
        return self.periods


class Ledger:
    def __init__(self, config: Config, db: Db | None) -> None:
        s = config.ledger
        self.settings = s
        self.db = db
        self.webhooks = WebhookNotifier(s.webhooks)
        self.holds: dict[str, Hold] = {}  # requests in flight that hold something
        self._shapes: dict[int, _Shape] = {}
        self._periods: dict[tuple[Any, ...], BudgetPeriod] = {}  # (budget, zone, period key) -> its BudgetPeriod
        self.memory: MemoryBackend | None = None
        self.redis: RedisBackend | None = None
        if s.redis:
            from .ledger_redis import RedisBackend

            self.redis = RedisBackend(s, self.load_totals, self._on_settled, lambda: list(self.holds.values()))
            self.loaded = True
        else:
            self.memory = MemoryBackend()
            self.loaded = False  # totals not read from the store yet: budgets fail per the fail mode
        self._loader: asyncio.Task[None] | None = None
        self._recovering: set[asyncio.Task[None]] = set()  # releasing the holds of calls a dead gateway left
        self._warned = 0.0

    # --- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.redis is None and os.environ.get("SWITCHYARD_WORKER"):
            log.warning("ledger: embedded (no ledger.redis) in one of several worker processes: each worker enforces "
                        "budgets and rate limits on its own; configure ledger.redis to enforce them across workers")
        await self.webhooks.start()
        if self.redis is not None:
            await self.redis.start()
        elif not await self._load_memory():
            log.warning("ledger: the store is unreachable; budgets answer per governance_fail_mode until it is back")
            self._loader = asyncio.create_task(self._load_until_done(), name="switchyard-ledger-load")

    async def aclose(self) -> None:
        for t in list(self._recovering):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(t, 5.0)
        if self._loader is not None:
            self._loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loader
        if self.redis is not None:
            await self.redis.aclose()
        await self.webhooks.aclose()

    async def drain(self) -> None:
        """Wait until every settlement has been applied (Redis) and every webhook sent (for tests)."""
        if self.redis is not None:
            await self.redis.drain()
        await self.webhooks.drain()

    async def load_totals(self) -> Rows:
        """Settled totals of recent budget periods from the store (the source of truth)."""
        from .spend import read_budget_totals

        if self.db is None:
            return []
        return await self.db.run(read_budget_totals, self.db)

    async def _load_memory(self) -> bool:
        assert self.memory is not None
        try:
            rows = await self.load_totals()
        except Exception as e:
            log.debug("ledger: loading budget totals failed: %s", e)
            return False
        self.memory.load(rows)
        self.loaded = True
        return True

    async def _load_until_done(self) -> None:
        while True:
            if await self._load_memory():
                break
            await asyncio.sleep(2.0)
        log.info("ledger: budget totals loaded from the store")

    # --- reserve -----------------------------------------------------------------------------------------------

    def worst_case(self, plan: Plan, prompt_tokens: int, max_tokens: int | None, choices: int = 1,
                   output: bool = True) -> tuple[int, int]:
        """(E8 units, tokens) that the request may cost at most (``choices``: the request's ``n``)."""
        return worst_case(plan, prompt_tokens, max_tokens, self.settings.default_max_tokens, choices, output)

    def _hold(self, request_id: str, p: Principal, plan: Plan, request: Any, now: float) -> Hold:
        choices = 1
        if isinstance(request, EmbeddingRequest):
            prompt, max_tokens, output = embedding_tokens(request), None, False
        else:
            prompt, max_tokens, output = plan.prompt_tokens, plan.max_tokens, True
            if isinstance(request, ChatRequest) and request.n:
                choices = request.n
        shape = self._shapes.get(id(p))
        if shape is None or shape.principal is not p:
            shape = self._shape(p)
        if shape.budgets:
            usd, tokens = self.worst_case(plan, prompt, max_tokens, choices, output)
            periods = shape.periods if shape.start <= now < shape.end else shape.periods_at(now, self._periods)
        else:
            usd, tokens, periods = 0, 0, ()
        return Hold(request_id, periods, usd, tokens, shape.limits, shape.rpm, shape.tpm, shape.concurrent, prompt)

    def _shape(self, p: Principal) -> _Shape:
        """The key directory hands out the same Principal object until the key changes: one shape each."""
        if len(self._shapes) > 10_000:
            self._shapes.clear()
        shape = self._shapes[id(p)] = _Shape(p, self.settings.budget_timezone)
        return shape

    def reserve(self, request_id: str, principal: Principal, plan: Plan,
                request: Any = None) -> Coroutine[Any, Any, None] | None:
        """Hold the request's worst case against every budget and limit in scope, or raise (429, or 503 when the
        ledger cannot tell and the fail mode is closed). The embedded ledger does it at once and returns None;
        with Redis, this returns the coroutine that does it, for the caller to await."""
        now = time.time()
        hold = self._hold(request_id, principal, plan, request, now)
        if hold.empty:
            return None
        if self.redis is not None:
            return self._reserve_redis(hold)
        assert self.memory is not None
        try:
            if hold.budgets and not self.loaded:
                raise GovernanceUnavailable("The ledger has not read the budgets' totals from the store yet.")
            self.memory.reserve(hold, now)
        except (Refused, GovernanceUnavailable) as e:
            self._not_reserved(hold, e)
        self.holds[request_id] = hold
        return None

    async def _reserve_redis(self, hold: Hold) -> None:
        assert self.redis is not None
        try:
            await self.redis.reserve(hold)
        except (Refused, GovernanceUnavailable) as e:
            self._not_reserved(hold, e)
        self.holds[hold.request_id] = hold

    def _not_reserved(self, hold: Hold, e: Refused | GovernanceUnavailable) -> None:
        """A refusal becomes the caller's 429. A ledger that cannot tell refuses too (fail mode closed: 503), or
        lets the request pass unchecked (open)."""
        if isinstance(e, Refused):
            raise refusal(hold, e) from None
        if self.settings.governance_fail_mode != "open":
            raise e
        self._warn_open()
        hold.reserved = False  # nothing held; its real cost is still charged to its budgets at settlement
        hold.limits, hold.rpm, hold.tpm, hold.concurrent, hold.renewable = (), (), (), (), False

    def _warn_open(self) -> None:
        now = time.monotonic()
        if now - self._warned > 10:
            self._warned = now
            log.warning("ledger: budgets and rate limits cannot be checked; requests pass unchecked "
                        "(governance_fail_mode: open)")

    # --- settle ------------------------------------------------------------------------------------------------

    def settle(self, request_id: str, rec: Outcome) -> list[Charge] | None:
        """Release the request's hold and charge its real cost; the charges go into its spend record (None: the
        request held nothing)."""
        hold = self.holds.pop(request_id, None)
        if hold is None:
            return None
        usd = usd_e8(rec.total_cost)
        tokens = rec.usage.total_tokens
        if rec.losers:
            tokens += sum(a.usage.total_tokens for a in rec.losers if a.usage is not None)
        if self.redis is not None:
            if hold.budgets or hold.tpm or hold.concurrent:  # a requests-per-minute entry needs no settling
                self.redis.settle(hold, usd, tokens)
        else:
            assert self.memory is not None
            settled = self.memory.settle(hold, usd, tokens, time.time())
            if settled:
                self._on_settled(settled)
        return [(b.budget.id, b.period, usd, tokens) for b in hold.budgets]

    def settle_interrupted(self, intents: list[Intent]) -> None:
        """Calls that a stopped gateway left in flight are charged at their reservation by their ``interrupted``
        spend records (which reach ``budget_spend``, and so the embedded ledger's totals when it loads them). With
        Redis, their holds may still be there (until their lease ends): settle each one now at the amount it held,
        so that Redis counts it once and frees the hold at once (idempotent: a hold already gone counts nothing)."""
        if self.redis is None:
            return
        held = [d for d in intents if d.reserved and (d.charges or d.concurrent)]
        if held:
            task = asyncio.get_running_loop().create_task(self.redis.settle_interrupted(held),
                                                          name="switchyard-ledger-interrupted")
            self._recovering.add(task)
            task.add_done_callback(self._recovering.discard)

    def _on_settled(self, settled: Iterable[Settled]) -> None:
        for s in settled:
            for threshold in s.crossed():
                self.webhooks.notify(s.slot.budget.webhook_url, threshold_event(s, threshold))


# --- wording -----------------------------------------------------------------------------------------------------


def _budget_name(b: BudgetDef) -> str:
    label = f"'{b.name}' ({b.id}; " if b.name else f"{b.id} ("
    return f"{label}{b.scope} {b.scope_id}, {b.period})"


def _limit_name(x: RateLimitDef) -> str:
    label = f"'{x.name}' ({x.id}; " if x.name else f"{x.id} ("
    return f"{label}{x.scope} {x.scope_id})"


def refusal(hold: Hold, r: Refused) -> RateLimited:
    if r.kind == "budget":
        b = hold.budgets[r.index]
        parts = []
        if b.limit_usd >= 0:
            parts.append(f"{fmt_usd(r.spent_usd)} of {fmt_usd(b.limit_usd)} spent, {fmt_usd(r.reserved_usd)} held "
                         f"by requests in flight, up to {fmt_usd(hold.usd)} needed by this one")
        if b.limit_tokens >= 0:
            parts.append(f"{r.spent_tokens:,} of {b.limit_tokens:,} tokens used, {r.reserved_tokens:,} held, up to "
                         f"{hold.tokens:,} needed")
        resets = reset_text(b.resets_at, b.tz)
        when = f"It resets at {resets}." if resets else "It is a total budget: it never resets."
        from ..errors import BudgetExceeded

        return BudgetExceeded(f"Budget {_budget_name(b.budget)} cannot cover this request: {'; '.join(parts)}. "
                              f"{when}", retry_after=r.retry_after, budget_id=b.budget.id, resets_at=resets)
    wait = max(r.retry_after or 0.0, 0.001)
    if r.kind == "rpm":
        x = hold.rpm[r.index]
        what = f"{x.rpm} requests per minute"
    elif r.kind == "tpm":
        x = hold.tpm[r.index]
        what = f"{x.tpm:,} tokens per minute ({r.used:,} used in the last minute, ~{hold.prompt:,} needed)"
    else:
        x = hold.concurrent[r.index]
        what = f"{x.max_concurrent} requests in flight"
    err = RateLimited(f"Rate limit {_limit_name(x)} reached: {what}. Retry after {wait:.1f}s.", retry_after=wait)
    err.headers["x-switchyard-rate-limit"] = x.id
    return err


def threshold_event(s: Settled, threshold: float) -> dict[str, Any]:
    b, h = s.slot.budget, s.slot
    return {
        "id": "evt_" + secrets.token_hex(12),
        "type": "budget.threshold",
        "created": int(time.time()),
        "threshold": threshold,
        "budget": {"id": b.id, "name": b.name, "scope": b.scope, "scope_id": b.scope_id, "period": b.period,
                   "max_usd": str(b.max_usd) if b.max_usd is not None else None, "max_tokens": b.max_tokens,
                   "timezone": h.tz, "org_id": b.org_id},
        "period": h.period,
        "resets_at": reset_text(h.resets_at, h.tz),
        "spent_usd": str(Decimal(s.usd_after).scaleb(-8).quantize(Decimal("1e-8"))),
        "spent_tokens": s.tokens_after,
        "fraction": round(used_fraction(h, s.usd_after, s.tokens_after), 6),
    }
