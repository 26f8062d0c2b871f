"""Spend: who each request belongs to (columns added to ``request_log``), hourly rollups, and budget totals.

Registered on :data:`switchyard.store.tables.metadata`; revision ``0004_spend`` creates them and must match.

* ``request_log`` gains ``key_id``, ``user_id``, ``team_id``, ``org_id`` and ``tags``; its ``cost`` is what the
  request cost in all (hedge losers included), exactly what was settled against its budgets.
* ``spend_hourly`` and ``spend_hourly_tags`` are rollups per UTC hour, kept by the spend writer in the same
  transaction that inserts the request rows (only rows that were new count, so a record shipped twice is rolled
  up once). A dimension that does not apply is ``''``, never NULL, so that the unique key works on every backend.
* ``budget_spend`` holds each budget period's settled totals: the source of truth the ledger rebuilds from.

Money in these tables is an integer count of 1e-8 USD (``*_e8``), exact on every backend (SQLite has no decimal
type: a NUMERIC column there is a float).
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Float, Index, String, Table, UniqueConstraint

from .tables import ID, UTCDateTime, metadata

DIM = 255  # longest dimension value kept in a rollup (longer model names are cut)

request_log_spend_columns = (
    Column("key_id", String(40), nullable=True),
    Column("user_id", String(40), nullable=True),
    Column("team_id", String(40), nullable=True),
    Column("org_id", String(40), nullable=True),
    Column("tags", JSON, nullable=True),
)

request_log = Table(
    "request_log",
    metadata,
    *request_log_spend_columns,
    Index(None, "org_id", "ts"),
    Index(None, "team_id", "ts"),
    extend_existing=True,
)


def _metrics() -> list[Column[object]]:
    return [
        Column("requests", BigInteger, nullable=False),
        Column("errors", BigInteger, nullable=False),
        Column("input_tokens", BigInteger, nullable=False),
        Column("output_tokens", BigInteger, nullable=False),
        Column("cached_tokens", BigInteger, nullable=False),
        Column("reasoning_tokens", BigInteger, nullable=False),
        Column("cost_e8", BigInteger, nullable=False),  # USD in units of 1e-8: exact on SQLite too
        Column("latency_ms", Float, nullable=False),  # the sum: divide by requests for the mean
    ]


SPEND_DIMS = ("org_id", "team_id", "user_id", "key_id", "route", "deployment", "provider", "model")
TAG_DIMS = ("tag", "org_id", "route", "deployment", "provider", "model")
METRICS = ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "cost_e8",
           "latency_ms")

spend_hourly = Table(
    "spend_hourly",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("hour", UTCDateTime(), nullable=False),
    *(Column(d, String(DIM), nullable=False) for d in SPEND_DIMS),
    *_metrics(),
    UniqueConstraint("hour", *SPEND_DIMS, name="uq_spend_hourly_dims"),
    Index(None, "org_id", "hour"),
)

spend_hourly_tags = Table(
    "spend_hourly_tags",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("hour", UTCDateTime(), nullable=False),
    *(Column(d, String(DIM), nullable=False) for d in TAG_DIMS),
    *_metrics(),
    UniqueConstraint("hour", *TAG_DIMS, name="uq_spend_hourly_tags_dims"),
)

budget_spend = Table(
    "budget_spend",
    metadata,
    Column("budget_id", String(40), primary_key=True),
    Column("period", String(16), primary_key=True),  # d2025-06-01 | w2025-06-02 | m2025-06 | total
    Column("usd_e8", BigInteger, nullable=False),  # settled USD in units of 1e-8
    Column("tokens", BigInteger, nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index(None, "updated_at"),
)

SPEND_TABLES = (spend_hourly, spend_hourly_tags, budget_spend)

__all__ = ["DIM", "METRICS", "SPEND_DIMS", "SPEND_TABLES", "TAG_DIMS", "budget_spend", "request_log",
           "spend_hourly", "spend_hourly_tags"]
