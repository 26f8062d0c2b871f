"""Budget and rate-limit definitions: the operations of the admin API.

These are data. The ledger enforces them; it finds every definition in scope on the Principal (``budgets``,
``rate_limits``), which the key cache loads with the key and refreshes when a definition changes.

A definition sits where its scope is: a key's or user's budget belongs to that key's or user's team and org, a
team's to its team, an org's and a tag's to the org. Rights follow (see :mod:`.rbac`): a definition binds every
principal in its scope, so only an actor that outranks them all may set, change or delete it. An org admin manages
its teams' and its users' and keys' definitions (not its peers'), and reads its org's and tags' (the operator's: a
super admin's); a team admin manages those of its team's members and of its team's keys, and reads its team's own.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..errors import InvalidRequest
from ..store.identity_tables import api_keys, budgets, orgs, rate_limits, teams, users
from . import member_budget
from .audit import utcnow
from .identity import Ops, bump
from .keys import new_id
from .models import Budget, BudgetCreate, BudgetUpdate, LimitQuery, RateLimit, RateLimitCreate, RateLimitUpdate
from .rbac import (
    ORG_ADMIN,
    TEAM_ADMIN,
    Owner,
    Rights,
    forbid,
    key_rights,
    not_found,
    outranks,
    scope_rights,
    sees_limit,
    sees_org,
)

Placed = tuple[Owner, Rights]  # where a definition sits, and the rights of what it binds


def _owner(conn: sa.Connection, ops: Ops, scope: str, scope_id: str, org_id: str | None) -> Placed | None:
    """Where a scope sits and what it binds, or None when its object does not exist (or the actor may not see it)."""
    holder = None
    if scope == "key":
        r = conn.execute(sa.select(api_keys.c.org_id, api_keys.c.team_id, api_keys.c.user_id, users.c.role)
                         .select_from(api_keys.outerjoin(users, users.c.id == api_keys.c.user_id))
                         .where(api_keys.c.id == scope_id)).one_or_none()
        owner = Owner(r.org_id, r.team_id, r.user_id) if r else None
        holder = key_rights(r.role, owner) if r and owner else None
    elif scope == "user":
        u = conn.execute(sa.select(users.c.org_id, users.c.team_id, users.c.role)
                         .where(users.c.id == scope_id)).one_or_none()
        owner = Owner(u.org_id, u.team_id, scope_id) if u else None
        holder = Rights(u.role, u.org_id, u.team_id) if u else None
    elif scope in ("team", member_budget.SCOPE):
        t = conn.execute(sa.select(teams.c.org_id).where(teams.c.id == scope_id)).one_or_none()
        owner = Owner(t.org_id, scope_id) if t else None
    elif scope == "org":
        exists = conn.execute(sa.select(orgs.c.id).where(orgs.c.id == scope_id)).one_or_none()
        owner = Owner(scope_id) if exists else None
    else:  # a tag: the budget's own org (None: every org)
        owner = Owner(org_id)
    if owner is None:
        return None
    placed = owner, scope_rights(scope, owner, holder)
    if scope == "tag" and owner.org_id is None:
        return placed if ops.actor.super else None
    if scope in ("org", "tag"):
        return placed if sees_org(ops.actor, owner.org_id or "") and (
            ops.actor.super or ops.actor.role == ORG_ADMIN) else None
    return placed if sees_limit(ops.actor, owner) else None


def _visible(table: sa.Table, ops: Ops) -> sa.ColumnElement[bool] | None:
    """A WHERE clause limiting ``table`` to the definitions the actor sees (None: all)."""
    a = ops.actor
    if a.super:
        return None
    in_org = table.c.org_id == (a.org_id or "")
    if a.role == ORG_ADMIN:
        return in_org
    if a.role == TEAM_ADMIN and a.team_id is not None:
        team_keys = sa.select(api_keys.c.id).where(api_keys.c.team_id == a.team_id)
        team_users = sa.select(users.c.id).where(users.c.team_id == a.team_id)
        return sa.and_(in_org, sa.or_(
            sa.and_(table.c.scope.in_(("team", member_budget.SCOPE)), table.c.scope_id == a.team_id),
            sa.and_(table.c.scope == "user", table.c.scope_id.in_(team_users)),
            sa.and_(table.c.scope == "key", table.c.scope_id.in_(team_keys))))
    own_keys = sa.select(api_keys.c.id).where(api_keys.c.user_id == (a.user_id or ""))
    return sa.and_(in_org, sa.or_(
        sa.and_(table.c.scope == "user", table.c.scope_id == (a.user_id or "")),
        sa.and_(table.c.scope == "key", table.c.scope_id.in_(own_keys))))


def _list(conn: sa.Connection, ops: Ops, table: sa.Table, q: LimitQuery) -> list[sa.Row[Any]]:
    query = sa.select(table).order_by(table.c.created_at, table.c.id).limit(q.limit).offset(q.offset)
    for col, value in ((table.c.org_id, q.org_id), (table.c.scope, q.scope), (table.c.scope_id, q.scope_id)):
        if value is not None:
            query = query.where(col == value)
    where = _visible(table, ops)
    if where is not None:
        query = query.where(where)
    return list(conn.execute(query))


def _get(conn: sa.Connection, ops: Ops, table: sa.Table, kind: str, obj_id: str,
         change: str | None = None) -> tuple[sa.Row[Any], Owner]:
    """The definition and where it sits; with ``change`` ("change", "delete"), checked that the actor may."""
    r = conn.execute(sa.select(table).where(table.c.id == obj_id)).one_or_none()
    if r is None and change is not None and table is budgets and member_budget.is_copy(obj_id) and _copy(
            conn, ops, obj_id) is not None:
        raise member_budget.refuse_change(obj_id, change)
    placed = _owner(conn, ops, r.scope, r.scope_id, r.org_id) if r is not None else None
    if r is None or placed is None:
        raise not_found(kind, obj_id)
    if change is not None and not outranks(ops.actor, placed[1]):
        raise forbid(f"{change} limits on this {r.scope} (only on what is below its own rights)")
    return r, placed[0]


def _place(conn: sa.Connection, ops: Ops, scope: str, scope_id: str, org_id: str | None) -> Owner:
    if scope == "tag":
        org_id = org_id or ops.actor.org_id
        if org_id is not None and conn.execute(sa.select(orgs.c.id).where(orgs.c.id == org_id)).one_or_none() is None:
            raise InvalidRequest(f"No org with id {org_id!r}.", param="org_id", code="invalid_value")
    elif org_id is not None:
        raise InvalidRequest("org_id is only for tag budgets (other scopes imply their org).", param="org_id",
                             code="invalid_value")
    placed = _owner(conn, ops, scope, scope_id, org_id)
    if placed is None:
        raise InvalidRequest(f"No {scope} {scope_id!r} that you can see.", param="scope_id", code="invalid_value")
    if not outranks(ops.actor, placed[1]):
        raise forbid(f"set limits on this {scope} (only on what is below its own rights)")
    return placed[0]


# --- budgets -------------------------------------------------------------------------------------------------


def budget_out(r: sa.Row[Any]) -> Budget:
    d = dict(r._mapping)
    d["max_usd"] = float(d["max_usd"]) if d["max_usd"] is not None else None
    return Budget.model_validate(d)


def list_budgets(conn: sa.Connection, ops: Ops, q: LimitQuery) -> list[Budget]:
    return [budget_out(r) for r in _list(conn, ops, budgets, q)]


def get_budget(conn: sa.Connection, ops: Ops, budget_id: str) -> Budget:
    """A budget definition, or a member's copy of its team's member budget (``<template id>~<user>``)."""
    if member_budget.is_copy(budget_id):
        found = _copy(conn, ops, budget_id)
        if found is None:
            raise not_found("budget", budget_id)
        return found
    return budget_out(_get(conn, ops, budgets, "budget", budget_id)[0])


def _copy(conn: sa.Connection, ops: Ops, budget_id: str) -> Budget | None:
    """A member's copy, as a budget of scope ``user``, if it exists and the actor sees that user's limits."""
    found = member_budget.resolve(conn, budget_id)
    if found is None:
        return None
    t, user_id = found
    if not sees_limit(ops.actor, Owner(t.org_id, t.scope_id, user_id)):
        return None
    return budget_out(t).model_copy(update={"id": budget_id, "scope": "user", "scope_id": user_id,
                                            "template_id": t.id})


def create_budget(conn: sa.Connection, ops: Ops, body: BudgetCreate) -> Budget:
    owner = _place(conn, ops, body.scope, body.scope_id, body.org_id)
    now = utcnow()
    budget_id = new_id("bud")
    conn.execute(sa.insert(budgets).values(
        id=budget_id, org_id=owner.org_id, scope=body.scope, scope_id=body.scope_id, name=body.name,
        period=body.period, max_usd=body.max_usd, max_tokens=body.max_tokens, timezone=body.timezone,
        thresholds=body.thresholds, webhook_url=body.webhook_url, created_at=now, updated_at=now))
    bump(conn, ops, [("budget", f"{body.scope}:{body.scope_id}")])
    ops.record(conn, "budget.create", budget_id, owner, body.model_dump(mode="json", exclude={"webhook_url"}))
    return get_budget(conn, ops, budget_id)


def update_budget(conn: sa.Connection, ops: Ops, budget_id: str, body: BudgetUpdate) -> Budget:
    r, owner = _get(conn, ops, budgets, "budget", budget_id, "change")
    values = body.model_dump(exclude_unset=True)
    if "thresholds" in values and values["thresholds"] is None:
        values["thresholds"] = []  # null clears: no webhook calls
    usd = values.get("max_usd", r.max_usd)
    tokens = values.get("max_tokens", r.max_tokens)
    if usd is None and tokens is None:
        raise InvalidRequest("A budget needs max_usd, max_tokens, or both.",
                             param="max_usd" if "max_usd" in values else "max_tokens", code="invalid_value")
    if values:
        conn.execute(sa.update(budgets).where(budgets.c.id == budget_id).values(**values, updated_at=utcnow()))
        bump(conn, ops, [("budget", f"{r.scope}:{r.scope_id}")])
    ops.record(conn, "budget.update", budget_id, owner, body.model_dump(mode="json", exclude_unset=True,
                                                                         exclude={"webhook_url"}))
    return get_budget(conn, ops, budget_id)


def delete_budget(conn: sa.Connection, ops: Ops, budget_id: str) -> None:
    r, owner = _get(conn, ops, budgets, "budget", budget_id, "delete")
    conn.execute(sa.delete(budgets).where(budgets.c.id == budget_id))
    bump(conn, ops, [("budget", f"{r.scope}:{r.scope_id}")])
    ops.record(conn, "budget.delete", budget_id, owner)


# --- rate limits ---------------------------------------------------------------------------------------------


def rate_limit_out(r: sa.Row[Any]) -> RateLimit:
    return RateLimit.model_validate(dict(r._mapping))


def list_rate_limits(conn: sa.Connection, ops: Ops, q: LimitQuery) -> list[RateLimit]:
    return [rate_limit_out(r) for r in _list(conn, ops, rate_limits, q)]


def get_rate_limit(conn: sa.Connection, ops: Ops, limit_id: str) -> RateLimit:
    return rate_limit_out(_get(conn, ops, rate_limits, "rate_limit", limit_id)[0])


def create_rate_limit(conn: sa.Connection, ops: Ops, body: RateLimitCreate) -> RateLimit:
    owner = _place(conn, ops, body.scope, body.scope_id, None)
    now = utcnow()
    limit_id = new_id("rl")
    conn.execute(sa.insert(rate_limits).values(
        id=limit_id, org_id=owner.org_id, scope=body.scope, scope_id=body.scope_id, name=body.name, rpm=body.rpm,
        tpm=body.tpm, max_concurrent=body.max_concurrent, created_at=now, updated_at=now))
    bump(conn, ops, [("rate_limit", f"{body.scope}:{body.scope_id}")])
    ops.record(conn, "rate_limit.create", limit_id, owner, body.model_dump(mode="json"))
    return get_rate_limit(conn, ops, limit_id)


def update_rate_limit(conn: sa.Connection, ops: Ops, limit_id: str, body: RateLimitUpdate) -> RateLimit:
    r, owner = _get(conn, ops, rate_limits, "rate_limit", limit_id, "change")
    values = body.model_dump(exclude_unset=True)
    merged = {k: values.get(k, getattr(r, k)) for k in ("rpm", "tpm", "max_concurrent")}
    if all(v is None for v in merged.values()):
        raise InvalidRequest("A rate limit needs rpm, tpm or max_concurrent.",
                             param=next((k for k in merged if k in values), "rpm"), code="invalid_value")
    if values:
        conn.execute(sa.update(rate_limits).where(rate_limits.c.id == limit_id)
                     .values(**values, updated_at=utcnow()))
        bump(conn, ops, [("rate_limit", f"{r.scope}:{r.scope_id}")])
    ops.record(conn, "rate_limit.update", limit_id, owner, values)
    return get_rate_limit(conn, ops, limit_id)


def delete_rate_limit(conn: sa.Connection, ops: Ops, limit_id: str) -> None:
    r, owner = _get(conn, ops, rate_limits, "rate_limit", limit_id, "delete")
    conn.execute(sa.delete(rate_limits).where(rate_limits.c.id == limit_id))
    bump(conn, ops, [("rate_limit", f"{r.scope}:{r.scope_id}")])
    ops.record(conn, "rate_limit.delete", limit_id, owner)
