"""the semantic cache's entries (cache.store: embedded).

Revision ID: 0006
Revises: 0005
Create Date: 2025-01-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cache_entries",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("bucket", sa.String(32), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("route", sa.String(255), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("expires", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cache_entries"),
        sa.UniqueConstraint("key", name="uq_cache_entries_key"),
    )
    op.create_index("ix_cache_entries_expires", "cache_entries", ["expires"])


def downgrade() -> None:
    op.drop_index("ix_cache_entries_expires", table_name="cache_entries")
    op.drop_table("cache_entries")
