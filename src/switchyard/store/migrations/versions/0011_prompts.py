"""prompts: managed prompts (versions, labels), experiments, metric feedback; request_log's prompt and variant.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("request_log") as b:
        b.add_column(sa.Column("prompt", sa.String(255), nullable=True))
        b.add_column(sa.Column("experiment_id", sa.String(40), nullable=True))
        b.add_column(sa.Column("variant", sa.String(64), nullable=True))
    op.create_index("ix_request_log_experiment_id", "request_log", ["experiment_id"])
    op.create_table(
        "prompts",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=True),
        sa.Column("team_id", sa.String(40), nullable=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_prompts"),
        sa.UniqueConstraint("org_id", "name", name="uq_prompts_org_id_name"),
    )
    op.create_table(
        "prompt_versions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("prompt_id", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_prompt_versions"),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"], name="fk_prompt_versions_prompt_id_prompts",
                                ondelete="CASCADE"),
        sa.UniqueConstraint("prompt_id", "version", name="uq_prompt_versions_prompt_id_version"),
    )
    op.create_table(
        "prompt_labels",
        sa.Column("prompt_id", sa.String(40), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("updated_by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("prompt_id", "label", name="pk_prompt_labels"),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"], name="fk_prompt_labels_prompt_id_prompts",
                                ondelete="CASCADE"),
    )
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=True),
        sa.Column("team_id", sa.String(40), nullable=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("prompt", sa.String(128), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("stopped_at", _TS, nullable=True),
        sa.Column("stop_reason", sa.Text(), nullable=True),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_experiments"),
    )
    op.create_index("ix_experiments_status", "experiments", ["status"])
    op.create_table(
        "feedback_metrics",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(255), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("ts", _TS, nullable=False),
        sa.Column("principal_id", sa.Text(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feedback_metrics"),
        sa.UniqueConstraint("request_id", "metric", "principal_id",
                            name="uq_feedback_metrics_request_id_metric_principal_id"),
    )
    op.create_index("ix_feedback_metrics_pending", "feedback_metrics", ["pending"])


def downgrade() -> None:
    op.drop_index("ix_feedback_metrics_pending", table_name="feedback_metrics")
    op.drop_table("feedback_metrics")
    op.drop_index("ix_experiments_status", table_name="experiments")
    op.drop_table("experiments")
    op.drop_table("prompt_labels")
    op.drop_table("prompt_versions")
    op.drop_table("prompts")
    op.drop_index("ix_request_log_experiment_id", table_name="request_log")
    with op.batch_alter_table("request_log") as b:
        b.drop_column("variant")
        b.drop_column("experiment_id")
        b.drop_column("prompt")
