"""Reading Principals from the store (the key cache's loader) and the change notices that keep caches fresh."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal

import sqlalchemy as sa

from ..classification import highest
from ..store.identity_tables import api_keys, budgets, identity_changes, identity_version, rate_limits, teams, users
from . import member_budget
from .auth import BudgetDef, Principal, RateLimitDef, retention_seconds

REVOKED: Literal["revoked"] = "revoked"
Loaded = Principal | Literal["revoked"]


def load_versioned(conn: sa.Connection, hashes: Sequence[str]) -> tuple[int, dict[str, Loaded]]:
    """The identity version, then :func:`load_principals`. The version is read first: every change at or below it
    had committed before the rows were read, so the rows reflect it (a later change has a higher version)."""
    version = read_version(conn)
    return version, load_principals(conn, hashes)


def load_principals(conn: sa.Connection, hashes: Sequence[str]) -> dict[str, Loaded]:
    """The Principal of each known key hash (``"revoked"`` for a revoked key); unknown hashes are absent."""
    if not hashes:
        return {}
    q = (sa.select(api_keys, users.c.role, users.c.id.label("user_row"), teams.c.models.label("team_models"),
                   teams.c.data_class.label("team_data_class"), teams.c.pii_mode.label("team_pii_mode"),
                   teams.c.retention.label("team_retention"))
         .select_from(api_keys.outerjoin(users, users.c.id == api_keys.c.user_id)
                      .outerjoin(teams, teams.c.id == api_keys.c.team_id))
         .where(api_keys.c.key_hash.in_(list(hashes))))
    rows = conn.execute(q).all()
    out: dict[str, Loaded] = {}
    live = []
    for r in rows:
        if r.revoked_at is not None or (r.user_id is not None and r.user_row is None):
            out[r.key_hash] = REVOKED
        else:
            live.append(r)
    if not live:
        return out
    budget_defs = _budgets(conn, live)
    limit_defs = _rate_limits(conn, live)
    for r in live:
        tags = frozenset(r.tags or ())
        scopes = {("key", r.id), ("user", r.user_id), ("team", r.team_id), ("org", r.org_id)}
        scopes |= {("tag", t) for t in tags}
        in_scope = tuple(b for b in budget_defs if (b.scope, b.scope_id) in scopes
                         and (b.scope != "tag" or b.org_id in (None, r.org_id)))
        in_scope += member_budget.copies(budget_defs, r.team_id, r.user_id)  # its own copy of its team's template
        limits = tuple(x for x in limit_defs if (x.scope, x.scope_id) in scopes)
        out[r.key_hash] = Principal(
            id=r.id, name=r.name, models=_models(r.models, r.team_models), user_id=r.user_id, team_id=r.team_id,
            org_id=r.org_id, key_id=r.id, roles=frozenset([r.role]) if r.role else frozenset(), tags=tags,
            logging=r.logging, expires_at=r.expires_at.timestamp() if r.expires_at is not None else None,
            metadata=MappingProxyType(dict(r.metadata or {})), budgets=in_scope, rate_limits=limits,
            data_class=highest(r.data_class, r.team_data_class), pii_mode=r.pii_mode or r.team_pii_mode,
            retention=retention_seconds(r.team_retention, r.retention))
    return out


def _models(key_models: list[str] | None, team_models: list[str] | None) -> frozenset[str] | None:
    if key_models is None and team_models is None:
        return None
    if key_models is None:
        return frozenset(team_models or ())
    if team_models is None:
        return frozenset(key_models)
    return frozenset(key_models) & frozenset(team_models)


def _scope_clause(table: sa.Table, live: Sequence[Any], scopes: Sequence[str]) -> sa.ColumnElement[bool]:
    ids = {"key": {r.id for r in live}, "user": {r.user_id for r in live}, "team": {r.team_id for r in live},
           "org": {r.org_id for r in live}, "tag": {t for r in live for t in (r.tags or ())},
           "members": {r.team_id for r in live if r.user_id is not None}}
    return sa.or_(*(sa.and_(table.c.scope == s, table.c.scope_id.in_(sorted(i for i in ids[s] if i)))
                    for s in scopes))


def _budgets(conn: sa.Connection, live: Sequence[Any]) -> list[BudgetDef]:
    where = _scope_clause(budgets, live, ("key", "user", "team", "org", "tag", "members"))
    return [BudgetDef(id=b.id, scope=b.scope, scope_id=b.scope_id, period=b.period,
                      max_usd=Decimal(b.max_usd) if b.max_usd is not None else None, max_tokens=b.max_tokens,
                      timezone=b.timezone, thresholds=tuple(b.thresholds or ()), webhook_url=b.webhook_url,
                      name=b.name, org_id=b.org_id)
            for b in conn.execute(sa.select(budgets).where(where).order_by(budgets.c.id))]


def _rate_limits(conn: sa.Connection, live: Sequence[Any]) -> list[RateLimitDef]:
    where = _scope_clause(rate_limits, live, ("key", "user", "team"))
    return [RateLimitDef(id=x.id, scope=x.scope, scope_id=x.scope_id, rpm=x.rpm, tpm=x.tpm,
                         max_concurrent=x.max_concurrent, name=x.name)
            for x in conn.execute(sa.select(rate_limits).where(where).order_by(rate_limits.c.id))]


# --- change notices ------------------------------------------------------------------------------------------


def read_version(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(identity_version.c.version).where(identity_version.c.id == 1)).scalar_one())


def read_changes(conn: sa.Connection, after: int) -> tuple[list[tuple[int, str, str]], int | None]:
    """Changes with a version above ``after``, and the oldest version still kept (None: none kept)."""
    rows = conn.execute(sa.select(identity_changes.c.version, identity_changes.c.kind, identity_changes.c.entity_id)
                        .where(identity_changes.c.version > after).order_by(identity_changes.c.id)).all()
    oldest = conn.execute(sa.select(sa.func.min(identity_changes.c.version))).scalar_one_or_none()
    return [(int(v), k, e) for v, k, e in rows], (int(oldest) if oldest is not None else None)


def count_keys(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(api_keys)).scalar_one())
