"""governance data: data class and PII mode on keys and teams; versioned org policy sets.

Revision ID: 0005
Revises: 0004
Create Date: 2025-01-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    for table in ("teams", "api_keys"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("data_class", sa.String(16), nullable=True))
            batch.add_column(sa.Column("pii_mode", sa.String(8), nullable=True))
    op.create_table(
        "org_policies",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_org_policies"),
        sa.UniqueConstraint("org_id", "version", name="uq_org_policies_org_id_version"),
    )


def downgrade() -> None:
    op.drop_table("org_policies")
    for table in ("api_keys", "teams"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("pii_mode")
            batch.drop_column("data_class")
