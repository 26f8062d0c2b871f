"""Where a budget stands now: spent, held, remaining, and when it resets.

``spent`` is the current period's settled total: the running gateway's own ledger when it is at hand (the admin API,
``GET /v1/me``), which includes what is settled but not yet written to the store; else the store's ``budget_spend``
row (the CLI). ``held`` is what calls in flight have reserved and not settled yet: known to the gateway's in-memory
ledger, and to none else (with Redis, each replica sees only its own holds; the CLI sees none), so it is ``null``
when unknown. ``remaining`` is the limit less spent and held, never below zero. A team's member budget (scope
``members``) lists each member's copy under ``members``, with their total as its ``spent``.
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel

from ..store.spend_tables import budget_spend
from . import member_budget
from .auth import BudgetDef
from .ledger_model import period_bounds

E8 = Decimal("1e-8")


class BudgetStatus(BaseModel):
    object: Literal["budget_status"] = "budget_status"
    budget_id: str
    name: str | None
    scope: str
    scope_id: str
    period: str
    period_key: str  # d2025-06-01 | w2025-06-02 | m2025-06 | total
    timezone: str
    max_usd: str | None  # decimal strings, exact
    spent_usd: str
    held_usd: str | None  # null: not known here
    remaining_usd: str | None  # null: no USD limit
    max_tokens: int | None
    spent_tokens: int
    held_tokens: int | None
    remaining_tokens: int | None
    resets_at: dt.datetime | None  # null: a total budget, which never resets
    template_id: str | None = None  # a member's copy: the team's member budget it follows
    email: str | None = None  # a member's copy, in its template's status: whose it is
    members: list[BudgetStatus] | None = None  # a member budget (scope members): each member's copy


Live = tuple[int, int, int, int]  # spent usd e8, spent tokens, held usd e8, held tokens


def usd(e8: int) -> str:
    """Fixed-point USD to 1e-8 (``0.00000000``, never ``0E-8``)."""
    return format((Decimal(e8) * E8).quantize(E8), "f")


def status(conn: sa.Connection | None, b: BudgetDef | Any, default_tz: str, *, now: float | None = None,
           live: Live | None = None, holds_known: bool = False,
           settled: tuple[int, int] | None = None) -> BudgetStatus:
    """``b``: a BudgetDef or the admin API's Budget. ``conn``: the store, for the settled total when ``live`` (the
    gateway ledger's bucket) is not given. ``holds_known``: no live bucket, but a ledger that would have one if
    anything were held (so held is zero, not unknown). ``settled``: the store's (usd e8, tokens), already read."""
    now = time.time() if now is None else now
    tz = b.timezone or default_tz
    key, _start, end = period_bounds(b.period, tz, now)
    held_usd: int | None = None
    held_tokens: int | None = None
    if live is not None:
        spent_usd, spent_tokens, held_usd, held_tokens = live
    else:
        spent_usd = spent_tokens = 0
        if holds_known:
            held_usd = held_tokens = 0
        if settled is not None:
            spent_usd, spent_tokens = settled
        elif conn is not None:
            row = conn.execute(sa.select(budget_spend.c.usd_e8, budget_spend.c.tokens).where(
                budget_spend.c.budget_id == b.id, budget_spend.c.period == key)).first()
            if row is not None:
                spent_usd, spent_tokens = int(row.usd_e8), int(row.tokens)
    limit_e8 = None if b.max_usd is None else int((Decimal(str(b.max_usd)) / E8).to_integral_value())
    remaining_usd = None if limit_e8 is None else usd(max(limit_e8 - spent_usd - (held_usd or 0), 0))
    remaining_tokens = None if b.max_tokens is None else max(b.max_tokens - spent_tokens - (held_tokens or 0), 0)
    if b.scope == member_budget.SCOPE and conn is not None:
        return _template(conn, b, default_tz, now, key, end)
    return BudgetStatus(
        budget_id=b.id, name=b.name, scope=b.scope, scope_id=b.scope_id, period=b.period, period_key=key,
        timezone=tz, max_usd=None if limit_e8 is None else usd(limit_e8), spent_usd=usd(spent_usd),
        held_usd=None if held_usd is None else usd(held_usd), remaining_usd=remaining_usd, max_tokens=b.max_tokens,
        spent_tokens=spent_tokens, held_tokens=held_tokens, remaining_tokens=remaining_tokens,
        resets_at=None if end is None else dt.datetime.fromtimestamp(end, dt.UTC),
        template_id=getattr(b, "template_id", None))


def _template(conn: sa.Connection, b: Any, default_tz: str, now: float, key: str, end: float | None) -> BudgetStatus:
    """A team's member budget: each member's copy (from the store), and their total as ``spent``. Remaining is
    per member, so the template's own is null."""
    people = [(member_budget.copy_id(b.id, user_id), user_id, email)
              for user_id, email, _name in member_budget.members(conn, b.scope_id)]
    totals: dict[str, tuple[int, int]] = {}
    for i in range(0, len(people), 500):  # the copies' settled totals, a few queries for a whole team
        ids = [copy_id for copy_id, _, _ in people[i:i + 500]]
        for r in conn.execute(sa.select(budget_spend.c.budget_id, budget_spend.c.usd_e8, budget_spend.c.tokens)
                              .where(budget_spend.c.budget_id.in_(ids), budget_spend.c.period == key)):
            totals[r.budget_id] = (int(r.usd_e8), int(r.tokens))
    copies = []
    for copy_id, user_id, email in people:
        copy = SimpleNamespace(id=copy_id, name=b.name, scope="user", scope_id=user_id, period=b.period,
                               timezone=b.timezone, max_usd=b.max_usd, max_tokens=b.max_tokens, template_id=b.id)
        copies.append(status(None, copy, default_tz, now=now, settled=totals.get(copy_id, (0, 0)))
                      .model_copy(update={"email": email}))
    limit = None if b.max_usd is None else usd(int((Decimal(str(b.max_usd)) / E8).to_integral_value()))
    return BudgetStatus(
        budget_id=b.id, name=b.name, scope=b.scope, scope_id=b.scope_id, period=b.period, period_key=key,
        timezone=b.timezone or default_tz, max_usd=limit,
        spent_usd=usd(sum(int((Decimal(c.spent_usd) / E8).to_integral_value()) for c in copies)), held_usd=None,
        remaining_usd=None, max_tokens=b.max_tokens, spent_tokens=sum(c.spent_tokens for c in copies),
        held_tokens=None, remaining_tokens=None,
        resets_at=None if end is None else dt.datetime.fromtimestamp(end, dt.UTC), members=copies)


def live_bucket(ledger: Any, b: BudgetDef | Any, default_tz: str, now: float | None = None) -> Live | None:
    """The in-memory ledger's bucket of the budget's current period, if this gateway keeps one."""
    memory = getattr(ledger, "memory", None) if ledger is not None else None
    if memory is None:
        return None
    key, _, _ = period_bounds(b.period, b.timezone or default_tz, time.time() if now is None else now)
    bucket = memory.buckets.get(f"{b.id}:{key}")
    if bucket is None:
        return None
    return bucket.spent_usd, bucket.spent_tokens, bucket.held_usd, bucket.held_tokens
