"""conversations: retention on keys and teams; conversations and their stored messages.

Revision ID: 0008
Revises: 0007
Create Date: 2025-01-11
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("teams", "api_keys"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("retention", sa.JSON(), nullable=True))
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(96), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("next_seq", sa.Integer(), nullable=False),
        sa.Column("meta", sa.LargeBinary(), nullable=True),
        sa.Column("system", sa.LargeBinary(), nullable=True),
        sa.Column("summary", sa.LargeBinary(), nullable=True),
        sa.Column("summary_through", sa.Integer(), nullable=False),
        sa.Column("pad", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_conversations"),
    )
    op.create_index("ix_conversations_expires_at", "conversations", ["expires_at"])
    op.create_table(
        "conversation_items",
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(32), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("conversation_id", "seq", name="pk_conversation_items"),
    )
    op.create_index("ix_conversation_items_conversation_id_id", "conversation_items", ["conversation_id", "id"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("ix_conversation_items_conversation_id_id", table_name="conversation_items")
    op.drop_table("conversation_items")
    op.drop_index("ix_conversations_expires_at", table_name="conversations")
    op.drop_table("conversations")
    for table in ("api_keys", "teams"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("retention")
