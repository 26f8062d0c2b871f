"""The store's schema, as SQLAlchemy Core tables. Migrations in ``migrations/versions`` must match it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that always comes back in UTC (SQLite keeps no zone: values are stored in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC timestamp column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements only an INTEGER PRIMARY KEY

request_log = Table(
    "request_log",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("request_id", String(255), nullable=False, unique=True),
    Column("client_request_id", String(255), nullable=True),  # the caller's x-request-id, if it sent one
    Column("ts", UTCDateTime(), nullable=False),
    Column("principal_id", Text, nullable=True),
    Column("endpoint", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("route", Text, nullable=True),
    Column("deployment", Text, nullable=True),
    Column("provider", Text, nullable=True),
    Column("status", String(16), nullable=False),
    Column("http_status", Integer, nullable=False),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("cached_tokens", Integer, nullable=False),
    Column("cache_write_tokens", Integer, nullable=False),
    Column("reasoning_tokens", Integer, nullable=False),
    Column("cost", Numeric(18, 8), nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Index(None, "ts"),
    Index(None, "principal_id", "ts"),
)
