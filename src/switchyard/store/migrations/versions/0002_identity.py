"""identity: orgs, teams, users, virtual keys, budget and rate-limit definitions, change notices.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "orgs",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_orgs"),
        sa.UniqueConstraint("name", name="uq_orgs_name"),
    )
    op.create_table(
        "teams",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("models", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_teams"),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name="fk_teams_org_id_orgs"),
        sa.UniqueConstraint("org_id", "name", name="uq_teams_org_id_name"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("team_id", sa.String(40), nullable=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name="fk_users_org_id_orgs"),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name="fk_users_team_id_teams"),
        sa.UniqueConstraint("org_id", "email", name="uq_users_org_id_email"),
    )
    op.create_index("ix_users_team_id", "users", ["team_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("team_id", sa.String(40), nullable=True),
        sa.Column("user_id", sa.String(40), nullable=True),
        sa.Column("models", sa.JSON(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("logging", sa.String(16), nullable=False),
        _ts("expires_at", nullable=True),
        _ts("revoked_at", nullable=True),
        sa.Column("created_by", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
        sa.CheckConstraint("team_id IS NOT NULL OR user_id IS NOT NULL", name="ck_api_keys_owner"),
    )
    op.create_index("ix_api_keys_org_id", "api_keys", ["org_id"])
    op.create_index("ix_api_keys_team_id", "api_keys", ["team_id"])
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])
    op.create_table(
        "budgets",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("scope_id", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("max_usd", sa.Numeric(18, 8), nullable=True),
        sa.Column("max_tokens", sa.BigInteger(), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_budgets"),
        sa.CheckConstraint("max_usd IS NOT NULL OR max_tokens IS NOT NULL", name="ck_budgets_limit"),
    )
    op.create_index("ix_budgets_scope_scope_id", "budgets", ["scope", "scope_id"])
    op.create_index("ix_budgets_org_id", "budgets", ["org_id"])
    op.create_table(
        "rate_limits",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("scope_id", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("tpm", sa.BigInteger(), nullable=True),
        sa.Column("max_concurrent", sa.Integer(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_rate_limits"),
        sa.CheckConstraint("rpm IS NOT NULL OR tpm IS NOT NULL OR max_concurrent IS NOT NULL",
                           name="ck_rate_limits_limit"),
    )
    op.create_index("ix_rate_limits_scope_scope_id", "rate_limits", ["scope", "scope_id"])
    op.create_index("ix_rate_limits_org_id", "rate_limits", ["org_id"])
    version = op.create_table(
        "identity_version",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_identity_version"),
    )
    op.bulk_insert(version, [{"id": 1, "version": 0}])
    op.create_table(
        "identity_changes",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("entity_id", sa.String(255), nullable=False),
        _ts("at"),
        sa.PrimaryKeyConstraint("id", name="pk_identity_changes"),
    )
    op.create_index("ix_identity_changes_version", "identity_changes", ["version"])


def downgrade() -> None:
    op.drop_index("ix_identity_changes_version", table_name="identity_changes")
    op.drop_table("identity_changes")
    op.drop_table("identity_version")
    for table in ("rate_limits", "budgets"):
        op.drop_index(f"ix_{table}_org_id", table_name=table)
        op.drop_index(f"ix_{table}_scope_scope_id", table_name=table)
        op.drop_table(table)
    for col in ("user_id", "team_id", "org_id"):
        op.drop_index(f"ix_api_keys_{col}", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_index("ix_users_team_id", table_name="users")
    op.drop_table("users")
    op.drop_table("teams")
    op.drop_table("orgs")
