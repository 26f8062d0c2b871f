"""The ledger's data: money as integers, budget periods, holds (reservations) and charges.

Money is counted in integer units of 1e-8 USD (``E8``), the precision of ``request_log.cost`` (NUMERIC(18, 8)): a
request's cost is rounded once, to that unit, and the same integer is settled against its budgets and written to
its spend record, so that settled spend and the sum of the records agree exactly. Lua (in Redis) keeps integers
exact up to 2**53 units, about 90 million dollars per budget period.

A period key names a calendar period in a time zone: ``d2025-06-01`` (a day), ``w2025-06-02`` (the ISO week that
starts on that Monday), ``m2025-06`` (a month), or ``total`` (never resets).
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal
from zoneinfo import ZoneInfo

from ..records import E8 as E8  # money units and charges are the call record's (re-exported here)
from ..records import Charge as Charge
from ..records import usd_e8 as usd_e8
from .auth import BudgetDef, RateLimitDef

WINDOW_S = 60.0  # the rate limits' sliding window


def fmt_usd(units: int) -> str:
    """``$1.25`` (cents), or more digits when a value is smaller than a cent."""
    dollars = units / E8
    if units == 0 or abs(units) >= E8 // 100:
        return f"${dollars:,.2f}"
    return f"${dollars:.8f}".rstrip("0")


# --- periods ---------------------------------------------------------------------------------------------------

_zones: dict[str, ZoneInfo] = {}
_periods: dict[tuple[str, str], tuple[str, float, float | None]] = {}  # (period, zone) -> (key, start, end)


def zone(name: str) -> ZoneInfo:
    z = _zones.get(name)
    if z is None:
        z = _zones[name] = ZoneInfo(name)
    return z


def _bounds(period: str, tz: ZoneInfo, now: float) -> tuple[str, float, float | None]:
    if period == "total":
        return "total", 0.0, None
    local = dt.datetime.fromtimestamp(now, tz)
    day = local.date()
    if period == "daily":
        start, end = day, day + dt.timedelta(days=1)
        key = f"d{start.isoformat()}"
    elif period == "weekly":
        start = day - dt.timedelta(days=day.weekday())
        end = start + dt.timedelta(days=7)
        key = f"w{start.isoformat()}"
    elif period == "monthly":
        start = day.replace(day=1)
        end = (start + dt.timedelta(days=32)).replace(day=1)
        key = f"m{start.year:04d}-{start.month:02d}"
    else:
        raise ValueError(f"unknown budget period {period!r}")

    def epoch(d: dt.date) -> float:
        return dt.datetime(d.year, d.month, d.day, tzinfo=tz).timestamp()

    return key, epoch(start), epoch(end)


def period_bounds(period: str, tz_name: str, now: float) -> tuple[str, float, float | None]:
    """The key of the period that holds ``now``, when it starts and when it ends (epoch seconds; no end for
    ``total``)."""
    cache_key = (period, tz_name)
    hit = _periods.get(cache_key)
    if hit is not None and hit[1] <= now and (hit[2] is None or now < hit[2]):
        return hit
    found = _bounds(period, zone(tz_name), now)
    if len(_periods) > 10_000:
        _periods.clear()
    _periods[cache_key] = found
    return found


def reset_text(resets_at: float | None, tz_name: str) -> str | None:
    if resets_at is None:
        return None
    return dt.datetime.fromtimestamp(resets_at, zone(tz_name)).isoformat()


# --- holds -----------------------------------------------------------------------------------------------------

NO_LIMIT = 1 << 62  # above any amount a budget can reach (Redis keeps integers exact to 2**53)
_PPM = 1_000_000  # thresholds are fractions, counted in millionths to turn them into exact integer amounts


def _marks(thresholds: Sequence[float], limit: int) -> tuple[int, ...]:
    """The amount at which each threshold is reached (the least integer >= threshold x limit); none without a
    limit. A total reaches a threshold when it is at or past that amount."""
    if limit <= 0:
        return ()
    return tuple(-(-round(t * _PPM) * limit // _PPM) for t in thresholds)


@dataclass(frozen=True, slots=True)
class BudgetPeriod:
    """One budget in one of its periods, as reservations see it: its bucket, its limits and the amounts at which
    its thresholds are reached. Made once per budget definition and period (the ledger keeps one for every
    principal's shape) and shared by every hold taken in that period."""

    budget: BudgetDef
    tz: str
    period: str
    resets_at: float | None
    limit_usd: int  # E8 units; -1: no USD limit
    limit_tokens: int  # -1: no token limit
    bucket: str  # "<budget id>:<period>"
    cap_usd: int  # the limits again, with NO_LIMIT for none: one comparison each, whether there is one or not
    cap_tokens: int
    thresholds: tuple[float, ...]  # ascending
    marks_usd: tuple[int, ...]  # one per threshold (empty without a USD limit)
    marks_tokens: tuple[int, ...]

    @classmethod
    def make(cls, budget: BudgetDef, tz: str, period: str, resets_at: float | None, limit_usd: int,
             limit_tokens: int) -> BudgetPeriod:
        ts = tuple(sorted(budget.thresholds))
        return cls(budget, tz, period, resets_at, limit_usd, limit_tokens, f"{budget.id}:{period}",
                   limit_usd if limit_usd >= 0 else NO_LIMIT, limit_tokens if limit_tokens >= 0 else NO_LIMIT, ts,
                   _marks(ts, limit_usd), _marks(ts, limit_tokens))

    def next_marks(self, usd: int, tokens: int) -> tuple[int, int]:
        """The amounts at which the next threshold not yet reached would be (NO_LIMIT: none left)."""
        i = self.reached(usd, tokens)
        mu, mt = self.marks_usd, self.marks_tokens
        return (mu[i] if i < len(mu) else NO_LIMIT), (mt[i] if i < len(mt) else NO_LIMIT)

    def reached(self, usd: int, tokens: int) -> int:
        """How many of the thresholds (from the lowest) these totals have reached, by either limit."""
        return max(bisect_right(self.marks_usd, usd), bisect_right(self.marks_tokens, tokens))


@dataclass(slots=True)
class Hold:
    """Everything one request reserved, until it is settled. Every budget holds the same worst case."""

    request_id: str
    budgets: Sequence[BudgetPeriod]
    usd: int  # held against each budget: E8 units
    tokens: int
    limits: Sequence[RateLimitDef]  # every rate limit in scope; and the same by kind:
    rpm: Sequence[RateLimitDef]
    tpm: Sequence[RateLimitDef]
    concurrent: Sequence[RateLimitDef]
    prompt: int  # tokens counted against each ``tpm`` limit at admission: the prompt estimate
    renewable: bool = field(default=False)  # holds that expire unless renewed (budgets, concurrency): Redis only
    reserved: bool = True  # False: passed unchecked (fail-open); its spend is still charged when it settles
    entries: list[int] | None = None  # the embedded ledger's entry numbers, one per limit in ``limits``

    @property
    def empty(self) -> bool:
        return not (self.budgets or self.limits)


RefusalKind = Literal["budget", "rpm", "tpm", "concurrent"]


class Refused(Exception):
    """A backend's refusal, before it is worded for the caller. ``index`` points into the hold's list of that
    kind; ``retry_after`` is in seconds; the four amounts describe a budget's state (E8 units and tokens)."""

    def __init__(self, kind: RefusalKind, index: int, retry_after: float | None = None, spent_usd: int = 0,
                 spent_tokens: int = 0, reserved_usd: int = 0, reserved_tokens: int = 0, used: int = 0) -> None:
        super().__init__(kind)
        self.kind = kind
        self.index = index
        self.retry_after = retry_after
        self.spent_usd = spent_usd
        self.spent_tokens = spent_tokens
        self.reserved_usd = reserved_usd
        self.reserved_tokens = reserved_tokens
        self.used = used


@dataclass(slots=True)
class Settled:
    """One budget's settled totals before and after a settlement (for the threshold webhooks)."""

    slot: BudgetPeriod
    usd_before: int
    usd_after: int
    tokens_before: int
    tokens_after: int

    def crossed(self) -> list[float]:
        """The budget's thresholds that this settlement crossed (fractions: 0.5, 0.8, 1.0), lowest first."""
        b = self.slot
        return list(b.thresholds[b.reached(self.usd_before, self.tokens_before):
                                 b.reached(self.usd_after, self.tokens_after)])


def used_fraction(b: BudgetPeriod, usd: int, tokens: int) -> float:
    """How much of the budget ``usd`` and ``tokens`` use: the larger of its two limits' fractions."""
    f = usd / b.limit_usd if b.limit_usd > 0 else 0.0
    return max(f, tokens / b.limit_tokens) if b.limit_tokens > 0 else f
