"""Spend reports from the hourly rollups: ``GET /admin/spend`` and ``switchyard spend report`` both use this.

Group by any of ``org``, ``team``, ``user``, ``key``, ``route``, ``deployment``, ``provider``, ``model``, ``tag``,
``hour`` and ``day`` (UTC); an org, team, user or key comes with its name (a user: its email and name; a key: its
name and prefix) beside its id. Tags have their own rollup (per tag, org, route, deployment, provider and model), so
``tag`` combines with those only. The time range is ``[from, to)``, on whole UTC hours (the rollups' grain):
``from`` is rounded down to its hour, ``to`` up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from ..errors import InvalidRequest
from ..store.identity_tables import api_keys, orgs, teams, users
from ..store.spend_tables import spend_hourly, spend_hourly_tags

COLUMNS = {"org": "org_id", "team": "team_id", "user": "user_id", "key": "key_id", "route": "route",
           "deployment": "deployment", "provider": "provider", "model": "model", "tag": "tag"}
TIME_GROUPS = ("hour", "day")
GROUPS = (*COLUMNS, *TIME_GROUPS)
_TAG_OK = {"tag", "org", "route", "deployment", "provider", "model", *TIME_GROUPS}
FILTERS = ("org_id", "team_id", "user_id", "key_id", "deployment", "model", "tag")
METRIC_COLUMNS = ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")


@dataclass(slots=True)
class SpendQuery:
    group_by: list[str]
    start: dt.datetime
    end: dt.datetime
    filters: dict[str, str] = field(default_factory=dict)


def parse_group_by(text: str | None) -> list[str]:
    names = [g.strip() for g in (text or "").split(",") if g.strip()]
    for g in names:
        if g not in GROUPS:
            raise InvalidRequest(f"Cannot group spend by {g!r}; choose from {', '.join(GROUPS)}.", param="group_by",
                                 code="invalid_value")
    if len(set(names)) != len(names):
        raise InvalidRequest("group_by names a dimension twice.", param="group_by", code="invalid_value")
    if "hour" in names and "day" in names:
        raise InvalidRequest("Group by hour or by day, not both.", param="group_by", code="invalid_value")
    return names


_EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
_LATEST_HOUR = dt.datetime.max.replace(minute=0, second=0, microsecond=0, tzinfo=dt.UTC)
_DEFAULT_SPAN = dt.timedelta(days=30)


def _utc(t: dt.datetime, param: str) -> dt.datetime:
    """``t`` in UTC (naive: taken as UTC)."""
    if t.tzinfo is None:
        return t.replace(tzinfo=dt.UTC)
    try:
        return t.astimezone(dt.UTC)
    except OverflowError:
        raise InvalidRequest(f"'{param}' is outside the years 1 to 9999 in UTC.", param=param,
                             code="invalid_value") from None


def time_range(start: dt.datetime | None, end: dt.datetime | None,
               now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` on whole hours; defaults: the last 30 days up to now (from the year 1, if that is sooner).

    A range that cannot be expressed (a UTC form before the year 1, an end that rounds up past the year 9999) is a
    400 naming the parameter, never an overflow."""
    e = _utc(end, "to") if end is not None else (now or dt.datetime.now(dt.UTC))
    default = e - _DEFAULT_SPAN if e - _EARLIEST >= _DEFAULT_SPAN else _EARLIEST
    s = _utc(start, "from") if start is not None else default
    s = s.replace(minute=0, second=0, microsecond=0)
    floor = e.replace(minute=0, second=0, microsecond=0)
    if floor != e:
        if floor == _LATEST_HOUR:
            raise InvalidRequest(f"'to' rounds up past the last hour there is ({_LATEST_HOUR:%Y-%m-%dT%H:%M:%SZ}).",
                                 param="to", code="invalid_value")
        floor += dt.timedelta(hours=1)
    if floor <= s:
        raise InvalidRequest("'to' must come after 'from'.", param="to", code="invalid_value")
    return s, floor


def report(conn: sa.Connection, q: SpendQuery) -> list[dict[str, Any]]:
    """One row per group (every group when ``group_by`` is empty: a single total row), costliest first."""
    tagged = "tag" in q.group_by or "tag" in q.filters
    if tagged:
        bad = [g for g in q.group_by if g not in _TAG_OK] + [f for f in q.filters if f in ("team_id", "user_id",
                                                                                           "key_id")]
        if bad:
            raise InvalidRequest(f"Tag spend is kept per tag, org, route, deployment, provider and model; it cannot "
                                 f"be split by {', '.join(bad)}.", param="group_by", code="invalid_value")
    table = spend_hourly_tags if tagged else spend_hourly
    dims = [g for g in q.group_by if g in COLUMNS]
    cols: list[Any] = [table.c[COLUMNS[g]].label(g) for g in dims]
    timed = next((g for g in q.group_by if g in TIME_GROUPS), None)
    if timed is not None:
        cols.append(table.c.hour.label("hour"))
    sums = [sa.func.sum(table.c[m]).label(m) for m in (*METRIC_COLUMNS, "cost_e8", "latency_ms")]
    stmt = sa.select(*cols, *sums).where(table.c.hour >= q.start, table.c.hour < q.end)
    for name, value in q.filters.items():
        stmt = stmt.where(table.c[name] == value)
    if cols:
        stmt = stmt.group_by(*cols)
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in conn.execute(stmt).mappings():
        if r["requests"] is None:
            continue
        key: list[Any] = [r[g] for g in dims]
        if timed is not None:
            hour: dt.datetime = _utc(r["hour"], "hour")
            key.append(hour.date().isoformat() if timed == "day" else hour.isoformat())
        row = merged.get(tuple(key))
        if row is None:
            row = merged[tuple(key)] = {**{g: (v or None) for g, v in zip(dims, key, strict=False)},
                                        **({timed: key[-1]} if timed else {}),
                                        **dict.fromkeys(METRIC_COLUMNS, 0), "cost": 0, "latency_ms": 0.0}
        for m in METRIC_COLUMNS:
            row[m] += int(r[m])
        row["cost"] += int(r["cost_e8"])
        row["latency_ms"] += float(r["latency_ms"])
    out = []
    for row in merged.values():
        n = row["requests"]
        out.append({**{k: v for k, v in row.items() if k not in ("cost", "latency_ms")},
                    "cost_usd": Decimal(row["cost"]).scaleb(-8),
                    "avg_latency_ms": round(row["latency_ms"] / n, 3) if n else None})
    out.sort(key=lambda x: (-x["cost_usd"], *(str(x.get(g) or "") for g in q.group_by)))
    _name(conn, out, dims)
    return out


#: what names each id dimension: (its table, the columns shown beside the id, as which labels)
NAMES: dict[str, tuple[sa.Table, tuple[tuple[str, str], ...]]] = {
    "org": (orgs, (("name", "org_name"),)),
    "team": (teams, (("name", "team_name"),)),
    "user": (users, (("email", "user_email"), ("name", "user_name"))),
    "key": (api_keys, (("name", "key_name"), ("prefix", "key_prefix"))),
}


def _name(conn: sa.Connection, rows: list[dict[str, Any]], dims: Sequence[str]) -> None:
    """Put the names (and emails) of the orgs, teams, users and keys grouped by beside their ids: one query per
    dimension, of the ids in the report. An id whose object is gone (a deleted user) keeps null names."""
    for g in dims:
        if g not in NAMES:
            continue
        table, labels = NAMES[g]
        ids = sorted({r[g] for r in rows if r.get(g)})
        found: dict[str, Any] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for r in conn.execute(sa.select(table.c.id, *(table.c[c] for c, _ in labels))
                                  .where(table.c.id.in_(chunk))):
                found[r.id] = r
        for row in rows:
            hit = found.get(row.get(g) or "")
            for col, label in labels:
                value = getattr(hit, col) if hit is not None else None
                row[label] = f"{value}…" if label == "key_prefix" and value else value  # as listings show it


def clean_filters(values: Mapping[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in values.items() if k in FILTERS and v}


def headers_for(group_by: Sequence[str]) -> list[str]:
    """The report's columns: each dimension (with the names of an org, team, user or key beside its id), then the
    metrics."""
    named = [c for g in group_by for c in (g, *(label for _, label in NAMES.get(g, (None, ()))[1]))]
    return [*named, *METRIC_COLUMNS, "cost_usd", "avg_latency_ms"]
