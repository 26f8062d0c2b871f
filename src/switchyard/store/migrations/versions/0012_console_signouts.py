"""console_signouts: console sessions signed out before they expired, refused by every process and replica.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_signouts",
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("expires", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name="pk_console_signouts"),
    )
    op.create_index("ix_console_signouts_expires", "console_signouts", ["expires"])


def downgrade() -> None:
    op.drop_index("ix_console_signouts_expires", table_name="console_signouts")
    op.drop_table("console_signouts")
