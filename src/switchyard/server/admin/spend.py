"""``GET /admin/spend``: spend from the hourly rollups, grouped as asked, within what the caller may see.

Super admins see every org; an ``org_admin`` or ``auditor`` its org; a ``team_admin`` its team; a ``member`` its own
spend. Filters narrow that view, never widen it. Spend by tag is org-wide, so only org-level roles may ask for it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, create_model

from ...governance.identity import Ops
from ...governance.query_time import UtcTime
from ...governance.rbac import AUDITOR, ORG_ADMIN, TEAM_ADMIN, Actor, forbid
from ...governance.spend_report import SpendQuery, clean_filters, parse_group_by, report, time_range
from .api import AdminContext, operation
from .identity_routes import run

_GROUP_HELP = ("comma-separated: org, team, user, key, route, deployment, provider, model, tag, hour, day "
               "(empty: one total)")

_QUERY_FIELDS: dict[str, Any] = {
    "group_by": (str, Field("team", description=_GROUP_HELP)),
    "from": (UtcTime | None, Field(None, description="start, rounded down to the hour; default: 30 days before "
                                                     "'to'. A date or date-time without a time zone is UTC")),
    "to": (UtcTime | None, Field(None, description="end (exclusive), rounded up to the hour; default: now")),
    **{name: (str | None, Field(None, description="only this one")) for name in
       ("org_id", "team_id", "user_id", "key_id", "deployment", "model", "tag")},
}
# "from" is a Python keyword: a model built from a dict of fields can still have it
SpendQueryParams: type[BaseModel] = create_model("SpendQuery", __config__=ConfigDict(extra="forbid"),
                                                 **_QUERY_FIELDS)


class SpendRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    org: str | None = Field(None, description="the dimensions grouped by; the others are null")
    org_name: str | None = Field(None, description="beside an id grouped by: its org's, team's, user's or key's "
                                                   "name (a user's email too; a key's prefix), null when it is gone")
    team: str | None = None
    team_name: str | None = None
    user: str | None = None
    user_email: str | None = None
    user_name: str | None = None
    key: str | None = None
    key_name: str | None = None
    key_prefix: str | None = None
    route: str | None = None
    deployment: str | None = None
    provider: str | None = None
    model: str | None = None
    tag: str | None = None
    hour: str | None = None
    day: str | None = None
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: float = Field(description="what the requests cost, hedge losers included (USD)")
    avg_latency_ms: float | None


class SpendReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["spend_report"] = "spend_report"
    group_by: list[str]
    start: dt.datetime = Field(description="the range's start, on the hour (UTC)")
    end: dt.datetime = Field(description="the range's end, exclusive, on the hour (UTC)")
    data: list[SpendRow]


def visible(actor: Actor) -> dict[str, str] | None:
    """The filters that bound what ``actor`` may see (None: everything): ``rbac.visible_filter``, except that an
    auditor reads its whole org's spend."""
    if actor.super:
        return None
    org = actor.org_id or "\x00none"
    if actor.role in (ORG_ADMIN, AUDITOR):
        return {"org_id": org}
    if actor.role == TEAM_ADMIN and actor.team_id is not None:
        return {"org_id": org, "team_id": actor.team_id}
    return {"org_id": org, "user_id": actor.user_id or "\x00nobody"}


def _read(conn: sa.Connection, ops: Ops, q: SpendQuery | None) -> list[dict[str, Any]]:
    return [] if q is None else report(conn, q)


@operation("GET", "/admin/spend", summary="Spend report", tag="spend", action="spend.read", response=SpendReport,
           query=SpendQueryParams, errors=(400, 401, 403, 503))
async def spend_report(ctx: AdminContext) -> SpendReport:
    """Requests, tokens and cost from the hourly rollups, grouped by any of org, team, user, key, route,
    deployment, provider, model, tag, hour or day, over ``[from, to)``. Example:
    ``GET /admin/spend?group_by=team,deployment&from=2025-06-01&to=2025-07-01``."""
    params = ctx.query
    group_by = parse_group_by(params.group_by)
    start, end = time_range(getattr(params, "from"), params.to)
    filters = clean_filters({k: getattr(params, k) for k in ("org_id", "team_id", "user_id", "key_id", "deployment",
                                                             "model", "tag")})
    bound = visible(ctx.actor)
    q: SpendQuery | None = SpendQuery(group_by, start, end, filters)
    if bound is not None:
        if ("tag" in group_by or "tag" in filters) and ("team_id" in bound or "user_id" in bound):
            raise forbid("see spend by tag (it is kept per org)")
        if any(filters.get(k, v) != v for k, v in bound.items()):
            q = None  # a filter outside the caller's view: nothing to see
        else:
            filters.update(bound)
    rows = await run(ctx, "spend.read", _read, q)
    return SpendReport(group_by=group_by, start=start, end=end,
                       data=[SpendRow(**{**r, "cost_usd": float(r["cost_usd"])}) for r in rows])
