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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

from .auth import BudgetDef, RateLimitDef

E8 = 100_000_000
WINDOW_S = 60.0  # the rate limits' sliding window


def usd_e8(usd: float) -> int:
    """Dollars as integer units of 1e-8 USD (rounded half to even, once)."""
    return round(usd * E8)


def fmt_usd(units: int) -> str:
    """``$1.25`` (cents), or more digits when a value is smaller than a cent."""
    dollars = units / E8
    if units == 0 or abs(units) >= E8 // 100:
        return f"${dollars:,.2f}"
    return f"${dollars:.8f}".rstrip("0")


class Charge(NamedTuple):
    """What one request settled against one budget period (kept in its spend record, summed in budget_spend)."""

    budget_id: str
    period: str
    usd: int  # E8 units
    tokens: int


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


@dataclass(slots=True)
class BudgetHold:
    """One budget's part of a reservation: its period bucket, its limits and what is held against them."""

    budget: BudgetDef
    tz: str
    period: str
    resets_at: float | None
    limit_usd: int  # E8 units; -1: no USD limit
    limit_tokens: int  # -1: no token limit
    usd: int  # held
    tokens: int

    @property
    def bucket(self) -> str:
        return f"{self.budget.id}:{self.period}"


@dataclass(slots=True)
class Hold:
    """Everything one request reserved, until it is settled."""

    request_id: str
    budgets: list[BudgetHold]
    rpm: Sequence[RateLimitDef]
    tpm: Sequence[tuple[RateLimitDef, int]]  # (limit, tokens counted at admission: the prompt estimate)
    concurrent: Sequence[RateLimitDef]
    renewable: bool = field(default=False)  # holds that expire unless renewed (budgets, concurrency): Redis only
    reserved: bool = True  # False: passed unchecked (fail-open); its spend is still charged when it settles
    tpm_entries: list[int] | None = None  # the embedded ledger's window entry numbers, one per ``tpm`` limit

    @property
    def empty(self) -> bool:
        return not (self.budgets or self.rpm or self.tpm or self.concurrent)


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

    hold: BudgetHold
    usd_before: int
    usd_after: int
    tokens_before: int
    tokens_after: int

    def fraction(self, usd: int, tokens: int) -> float:
        return used_fraction(self.hold, usd, tokens)

    def crossed(self) -> list[float]:
        """The budget's thresholds that this settlement crossed (fractions: 0.5, 0.8, 1.0)."""
        before = used_fraction(self.hold, self.usd_before, self.tokens_before)
        after = used_fraction(self.hold, self.usd_after, self.tokens_after)
        return [t for t in self.hold.budget.thresholds if before < t <= after]


def used_fraction(b: BudgetHold, usd: int, tokens: int) -> float:
    """How much of the budget ``usd`` and ``tokens`` use: the larger of its two limits' fractions."""
    f = usd / b.limit_usd if b.limit_usd > 0 else 0.0
    return max(f, tokens / b.limit_tokens) if b.limit_tokens > 0 else f


def crosses(b: BudgetHold, usd_before: int, usd_after: int, tokens_before: int, tokens_after: int) -> bool:
    """Whether going from the ``before`` totals to the ``after`` ones crosses one of the budget's thresholds (the
    check :meth:`Settled.crossed` lists, without building the Settled)."""
    before, after = used_fraction(b, usd_before, tokens_before), used_fraction(b, usd_after, tokens_after)
    return any(before < t <= after for t in b.budget.thresholds)
