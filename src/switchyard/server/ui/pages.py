"""The console's reading pages: overview, spend, budgets, deployments and routes.

Each handler takes a :class:`~.web.View` (the signed-in actor, already checked) and reads within the actor's bound
(:mod:`.data`). Page views are not audited (the overview refreshes every few seconds); what the console changes
is, through the admin API's own operations (:mod:`.keys`), and so are reads of the audit log (:mod:`.activity`).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from starlette.responses import Response

from ...governance import budget_status as budget_state
from ...governance import limits
from ...governance.identity import Ops
from ...governance.models import LimitQuery
from ...governance.rbac import Actor
from ...routing.explain import health_report
from ..admin.spend import visible
from . import charts, data, stats
from .web import View

RANGES = {"24h": (dt.timedelta(hours=24), "hour"), "7d": (dt.timedelta(days=7), "day"),
          "30d": (dt.timedelta(days=30), "day")}
DIMENSIONS = ("team", "user", "key", "model")
TOP = 7  # groups drawn in a chart; the rest are "other"


def bound_of(actor: Actor) -> data.Bound:
    return visible(actor) or {}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _hours(end: dt.datetime, span: dt.timedelta, grain: str) -> list[str]:
    """The x axis: every hour (ISO, as the spend report keys it) or day in ``[end - span, end)``."""
    if grain == "hour":
        last = end.replace(minute=0, second=0, microsecond=0)
        n = int(span.total_seconds() // 3600)
        return [(last - dt.timedelta(hours=n - 1 - i)).isoformat() for i in range(n)]
    last_day = end.date()
    n = span.days
    return [(last_day - dt.timedelta(days=n - 1 - i)).isoformat() for i in range(n)]


def _x_label(x: str, grain: str) -> str:
    return x[11:16] if grain == "hour" else x[5:10]


def series(rows: Sequence[dict[str, Any]], dim: str | None, grain: str, xs: list[str],
           label: dict[str, str]) -> list[tuple[str, list[float]]]:
    """Rows of a spend report grouped by (``dim``, time) as chart series: the costliest ``TOP`` groups, then the
    rest as "other"."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for r in rows:
        totals[str(r.get(dim) or "") if dim else "spend"] += r["cost_usd"]
    ranked = sorted(totals, key=lambda k: -totals[k])
    shown = ranked if len(ranked) <= TOP + 1 else ranked[:TOP]
    index = {x: i for i, x in enumerate(xs)}
    values: dict[str, list[float]] = {k: [0.0] * len(xs) for k in shown}
    other = [0.0] * len(xs)
    for r in rows:
        i = index.get(str(r[grain]))
        if i is None:
            continue
        k = str(r.get(dim) or "") if dim else "spend"
        values.get(k, other)[i] += float(r["cost_usd"])
    out = [(label.get(k, k) or "(none)", values[k]) for k in shown]
    if any(other):
        out.append(("other", other))
    return out


# --- overview ----------------------------------------------------------------------------------------------------


async def _overview(v: View) -> dict[str, Any]:
    bound = bound_of(v.actor)
    now = _now()
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    span, grain = RANGES["24h"]
    end = now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)

    def work() -> dict[str, Any]:
        with v.gov.db.read() as conn:
            return {"window": data.window_stats(conn, bound, now),
                    "today": data.spend_total(conn, bound, day_start, end),
                    "hourly": data.spend_rows(conn, bound, ["hour"], end - span, end)}

    got = await v.gov.db.run(work)
    xs = _hours(now, span, grain)
    chart = charts.stacked_bars([_x_label(x, grain) for x in xs], series(got["hourly"], None, grain, xs, {}),
                                title="Spend per hour, last 24 hours (UTC)")
    gateway = None
    metrics = getattr(v.request.app.state, "metrics", None)
    if v.actor.super and metrics is not None:
        cur = stats.sample(metrics)
        gateway = stats.between(v.console.last_sample, cur)
        v.console.last_sample = cur
    return {"window": got["window"], "today": got["today"], "chart": chart, "gateway": gateway,
            "scope": _scope_text(v.actor)}


def _scope_text(a: Actor) -> str:
    if a.super:
        return "every organization"
    if a.role == "team_admin":
        return "your team"
    return "your organization"


async def overview(v: View) -> Response:
    return v.page("overview.html", **await _overview(v))


async def overview_stats(v: View) -> Response:
    """The overview's numbers alone: the fragment the page refreshes every few seconds."""
    return v.page("_overview_stats.html", **await _overview(v))


# --- spend -------------------------------------------------------------------------------------------------------


async def spend(v: View) -> Response:
    by = v.arg("by") or ("user" if v.actor.role == "team_admin" else "team")
    rng = v.arg("range") or "7d"
    if by not in DIMENSIONS:
        by = "team"
    if rng not in RANGES:
        rng = "7d"
    span, grain = RANGES[rng]
    now = _now()
    end = now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    start = end - span if grain == "hour" else dt.datetime.combine(
        (now - span).date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    team = v.arg("team")

    def work() -> dict[str, Any]:
        with v.gov.db.read() as conn:
            bound = data.with_team(conn, v.actor, bound_of(v.actor), team)
            timed = data.spend_rows(conn, bound, [by, grain], start, end)
            totals = data.spend_rows(conn, bound, [by], start, end)
            ids = [r[by] for r in totals]
            found = data.names(conn, **{by: ids}) if by != "model" else {}
            return {"timed": timed, "totals": totals, "names": found.get(by, {}),
                    "team_name": data.names(conn, team=[team])["team"].get(team or "") if team else None}

    got = await v.gov.db.run(work)
    xs = _hours(now, span, grain)
    chart = charts.stacked_bars([_x_label(x, grain) for x in xs], series(got["timed"], by, grain, xs, got["names"]),
                                title=f"Spend by {by}, {rng} (UTC)")
    total = sum((r["cost_usd"] for r in got["totals"]), Decimal(0))
    return v.page("spend.html", by=by, rng=rng, ranges=list(RANGES), dims=DIMENSIONS, chart=chart,
                  rows=got["totals"], names=got["names"], total=total, team=team, team_name=got["team_name"])


# --- budgets -----------------------------------------------------------------------------------------------------


async def budgets(v: View) -> Response:
    gov = v.gov
    tz = gov.config.ledger.budget_timezone
    ledger = v.gw.ledger
    holds_known = ledger is not None and ledger.memory is not None
    team = v.arg("team")
    ops: Ops = gov.ops(v.actor, v.request_id)

    def work() -> dict[str, Any]:
        with gov.db.read() as conn:
            if team is not None:
                data.with_team(conn, v.actor, bound_of(v.actor), team)
            defs = limits.list_budgets(conn, ops, LimitQuery(limit=1000))
            of = {s: [b.scope_id for b in defs if b.scope == s] for s in ("org", "team", "user", "key")}
            found = data.names(conn, **of)
            placed = data.user_teams(conn, of["user"], of["key"])
            rows = []
            for b in defs:
                team_of = b.scope_id if b.scope == "team" else placed.get(b.scope_id)
                if team is not None and team_of != team:
                    continue
                live = budget_state.live_bucket(ledger, b, tz)
                st = (budget_state.status(None, b, tz, live=live) if live is not None
                      else budget_state.status(conn, b, tz, holds_known=holds_known))
                who = b.scope_id if b.scope == "tag" else found.get(b.scope, {}).get(b.scope_id, b.scope_id)
                rows.append({"budget": b, "status": st, "who": who})
            return {"rows": rows, "team_name": data.names(conn, team=[team])["team"].get(team) if team else None}

    got = await gov.db.run(work)
    for r in got["rows"]:
        st = r["status"]
        spent, held = float(st.spent_usd), float(st.held_usd or 0)
        limit = float(st.max_usd) if st.max_usd is not None else None
        r["bar"] = charts.budget_bar(spent, held, limit)
    return v.page("budgets.html", rows=got["rows"], team=team, team_name=got["team_name"], holds_known=holds_known)


# --- deployments and routes --------------------------------------------------------------------------------------

TRAFFIC_FIELDS = ("consecutive_failures", "window", "error_rate", "in_flight", "throttled_for_s", "ttft_ewma_ms",
                  "latency_ewma_ms", "samples")


async def deployments(v: View) -> Response:
    """Every deployment's breaker per endpoint, and each route's shape. The traffic numbers (error rates, latency,
    calls in flight) count every tenant's calls: only a super admin sees them, as only a super admin may read
    ``GET /admin/routes/health``."""
    report: dict[str, Any] = health_report(v.gw.router)
    rows: list[dict[str, Any]] = list(report["deployments"])
    if not v.actor.super:
        rows = [{k: val for k, val in d.items() if k not in TRAFFIC_FIELDS} for d in rows]
    return v.page("deployments.html", deployments=rows, routes=report["routes"], traffic=v.actor.super)

