"""What the console reads from the store, always within what the actor may see.

The bound of every read is the admin API's: :func:`switchyard.server.admin.spend.visible` (a super admin sees
everything; an org admin or auditor their org; a team admin their team) for spend and the request log, and
:func:`switchyard.governance.rbac.sees_audit` for the audit log and call payloads. A ``team`` filter may only
narrow that bound: a team the actor does not see is a 404, as in the admin API. Names (teams, users, keys, orgs)
are looked up only for ids already inside the bound.

Every function here is synchronous over an open connection; pages run them through ``Db.run``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import sqlalchemy as sa

from ...governance.rbac import Actor, not_found, sees_audit, sees_team
from ...governance.spend_report import SpendQuery, report
from ...store.audit_tables import audit_log
from ...store.identity_tables import api_keys, orgs, teams, users
from ...store.spend_tables import request_log
from .stats import quantile

Bound = dict[str, str]  # column -> value, as server.admin.spend.visible gives it ({} : everything)
WINDOW_S = 300  # the overview's "last five minutes"
MAX_WINDOW_ROWS = 50_000  # latencies read for the quantiles, at most


def with_team(conn: sa.Connection, actor: Actor, bound: Bound, team_id: str | None) -> Bound:
    """``bound`` narrowed to one team, which the actor must see (else 404, as the admin API answers)."""
    if team_id is None:
        return bound
    row = conn.execute(sa.select(teams.c.id, teams.c.org_id).where(teams.c.id == team_id)).one_or_none()
    if row is None or not sees_team(actor, row.org_id, row.id) or bound.get("team_id", team_id) != team_id:
        raise not_found("team", team_id)
    return {**bound, "org_id": row.org_id, "team_id": team_id}


def _where(table: sa.Table, bound: Mapping[str, str]) -> list[sa.ColumnElement[bool]]:
    return [table.c[k] == v for k, v in bound.items()]


# --- the overview ------------------------------------------------------------------------------------------------


def window_stats(conn: sa.Connection, bound: Bound, now: dt.datetime, seconds: int = WINDOW_S) -> dict[str, Any]:
    """Calls in the last ``seconds`` within ``bound``: count, errors, rate, p50 and p99 latency (request log)."""
    since = now - dt.timedelta(seconds=seconds)
    q = (sa.select(request_log.c.latency_ms, request_log.c.http_status)
         .where(request_log.c.ts >= since, *_where(request_log, bound))
         .order_by(request_log.c.ts.desc()).limit(MAX_WINDOW_ROWS))
    rows = conn.execute(q).all()
    latencies = sorted(float(r.latency_ms) for r in rows)
    return {"window_s": seconds, "requests": len(rows), "rps": len(rows) / seconds,
            "client_errors": sum(1 for r in rows if 400 <= r.http_status < 500),
            "server_errors": sum(1 for r in rows if r.http_status >= 500),
            "p50_ms": quantile(latencies, 0.5), "p99_ms": quantile(latencies, 0.99)}


def spend_total(conn: sa.Connection, bound: Bound, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    rows = report(conn, SpendQuery([], start, end, dict(bound)))
    return rows[0] if rows else {"requests": 0, "errors": 0, "cost_usd": 0, "input_tokens": 0, "output_tokens": 0}


def spend_rows(conn: sa.Connection, bound: Bound, group_by: list[str], start: dt.datetime,
               end: dt.datetime) -> list[dict[str, Any]]:
    return report(conn, SpendQuery(group_by, start, end, dict(bound)))


# --- recent requests ---------------------------------------------------------------------------------------------


def recent_requests(conn: sa.Connection, bound: Bound, limit: int = 100, errors_only: bool = False,
                    key_id: str | None = None) -> list[dict[str, Any]]:
    """The newest calls in the request log within ``bound``: metadata only (the log holds no payload)."""
    q = sa.select(request_log).where(*_where(request_log, bound)).order_by(request_log.c.ts.desc(),
                                                                          request_log.c.id.desc()).limit(limit)
    if errors_only:
        q = q.where(request_log.c.http_status >= 400)
    if key_id is not None:
        q = q.where(request_log.c.key_id == key_id)
    return [dict(r._mapping) for r in conn.execute(q)]


def request_detail(conn: sa.Connection, actor: Actor, bound: Bound,
                   request_id: str) -> tuple[dict[str, Any], dict[str, Any] | None, bool]:
    """One call's log row (404 outside the bound), its audit record's details and payload (if the key's logging
    mode kept one and the actor may read the org's audit log), and whether a payload exists that the actor may not
    see."""
    row = conn.execute(sa.select(request_log).where(request_log.c.request_id == request_id,
                                                    *_where(request_log, bound))).one_or_none()
    if row is None:
        raise not_found("request", request_id)
    rec = conn.execute(sa.select(audit_log.c.seq, audit_log.c.details, audit_log.c.payload, audit_log.c.org_id)
                       .where(audit_log.c.request_id == request_id, audit_log.c.kind == "call")
                       .order_by(audit_log.c.seq.desc()).limit(1)).one_or_none()
    if rec is None:
        return dict(row._mapping), None, False
    audit: dict[str, Any] = {"seq": rec.seq, "details": orjson.loads(rec.details) if rec.details else None}
    hidden = False
    if rec.payload is not None:
        if sees_audit(actor, rec.org_id):
            audit["payload"] = orjson.loads(rec.payload)
        else:
            hidden = True
    return dict(row._mapping), audit, hidden


# --- the audit log -----------------------------------------------------------------------------------------------


def audit_newest(conn: sa.Connection, actor: Actor, limit: int = 100, kind: str | None = None,
                 action: str | None = None, before: int | None = None) -> list[dict[str, Any]]:
    """The newest audit records the actor may read (its org's; a super admin's: all), newest first."""
    q = sa.select(audit_log).order_by(audit_log.c.seq.desc()).limit(limit)
    if not actor.super:
        q = q.where(audit_log.c.org_id == (actor.org_id or ""))
    for col, value in ((audit_log.c.kind, kind), (audit_log.c.action, action)):
        if value is not None:
            q = q.where(col == value)
    if before is not None:
        q = q.where(audit_log.c.seq < before)
    out = []
    for r in conn.execute(q):
        d = dict(r._mapping)
        d["details"] = orjson.loads(d["details"]) if d["details"] else None
        d["payload"] = orjson.loads(d["payload"]) if d["payload"] else None
        out.append(d)
    return out


def org_seqs(conn: sa.Connection, org_id: str | None, seqs: Iterable[int]) -> set[int]:
    """Which of ``seqs`` are records of ``org_id`` (to show an org's verifier only the problems on its records)."""
    wanted = sorted(set(seqs))
    if not wanted:
        return set()
    q = sa.select(audit_log.c.seq).where(audit_log.c.org_id == (org_id or ""), audit_log.c.seq.in_(wanted))
    return {int(s) for s in conn.execute(q).scalars()}


# --- names -------------------------------------------------------------------------------------------------------


def names(conn: sa.Connection, *, org: Iterable[str | None] = (), team: Iterable[str | None] = (),
          user: Iterable[str | None] = (), key: Iterable[str | None] = ()) -> dict[str, dict[str, str]]:
    """Display names of the given ids, by kind: an org's or team's name, a user's email, a key's name or prefix."""
    out: dict[str, dict[str, str]] = {"org": {}, "team": {}, "user": {}, "key": {}}
    columns: dict[str, tuple[sa.Table, Any]] = {
        "org": (orgs, orgs.c.name), "team": (teams, teams.c.name), "user": (users, users.c.email),
        "key": (api_keys, sa.func.coalesce(api_keys.c.name, api_keys.c.prefix + "…"))}
    for kind, ids in (("org", org), ("team", team), ("user", user), ("key", key)):
        table, name = columns[kind]
        wanted = sorted({i for i in ids if i})
        for i in range(0, len(wanted), 500):
            for obj_id, text in conn.execute(sa.select(table.c.id, name).where(table.c.id.in_(wanted[i:i + 500]))):
                out[kind][obj_id] = text
    return out


def user_teams(conn: sa.Connection, user_ids: Iterable[str], key_ids: Iterable[str]) -> dict[str, str | None]:
    """The team of each user and key (for placing a budget under a team)."""
    out: dict[str, str | None] = {}
    u = sorted(set(user_ids))
    k = sorted(set(key_ids))
    if u:
        out.update({r.id: r.team_id for r in conn.execute(sa.select(users.c.id, users.c.team_id)
                                                          .where(users.c.id.in_(u)))})
    if k:
        out.update({r.id: r.team_id for r in conn.execute(sa.select(api_keys.c.id, api_keys.c.team_id)
                                                          .where(api_keys.c.id.in_(k)))})
    return out
