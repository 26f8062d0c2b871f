"""spend: request_log owners and tags, hourly spend rollups, budget period totals.

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
SPEND_DIMS = ("org_id", "team_id", "user_id", "key_id", "route", "deployment", "provider", "model")
TAG_DIMS = ("tag", "org_id", "route", "deployment", "provider", "model")


def _metrics() -> list[sa.Column[object]]:
    return [
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_e8", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
    ]


def upgrade() -> None:
    with op.batch_alter_table("request_log") as batch:
        batch.add_column(sa.Column("key_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("user_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("team_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("org_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=True))
    op.create_index("ix_request_log_org_id_ts", "request_log", ["org_id", "ts"])
    op.create_index("ix_request_log_team_id_ts", "request_log", ["team_id", "ts"])
    op.create_table(
        "spend_hourly",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(d, sa.String(255), nullable=False) for d in SPEND_DIMS),
        *_metrics(),
        sa.PrimaryKeyConstraint("id", name="pk_spend_hourly"),
        sa.UniqueConstraint("hour", *SPEND_DIMS, name="uq_spend_hourly_dims"),
    )
    op.create_index("ix_spend_hourly_org_id_hour", "spend_hourly", ["org_id", "hour"])
    op.create_table(
        "spend_hourly_tags",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(d, sa.String(255), nullable=False) for d in TAG_DIMS),
        *_metrics(),
        sa.PrimaryKeyConstraint("id", name="pk_spend_hourly_tags"),
        sa.UniqueConstraint("hour", *TAG_DIMS, name="uq_spend_hourly_tags_dims"),
    )
    op.create_table(
        "budget_spend",
        sa.Column("budget_id", sa.String(40), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("usd_e8", sa.BigInteger(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("budget_id", "period", name="pk_budget_spend"),
    )
    op.create_index("ix_budget_spend_updated_at", "budget_spend", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_budget_spend_updated_at", table_name="budget_spend")
    op.drop_table("budget_spend")
    op.drop_table("spend_hourly_tags")
    op.drop_index("ix_spend_hourly_org_id_hour", table_name="spend_hourly")
    op.drop_table("spend_hourly")
    op.drop_index("ix_request_log_team_id_ts", table_name="request_log")
    op.drop_index("ix_request_log_org_id_ts", table_name="request_log")
    with op.batch_alter_table("request_log") as batch:
        for name in ("tags", "org_id", "team_id", "user_id", "key_id"):
            batch.drop_column(name)
