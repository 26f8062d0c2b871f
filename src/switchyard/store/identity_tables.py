"""Identity tables: organizations → teams → users, virtual keys, and budget and rate-limit definitions.

Registered on :data:`switchyard.store.tables.metadata`; revision ``0002_identity`` creates them and must match.
Ids are short random strings with a type prefix (``org_``, ``team_``, ``user_``, ``vk_``, ``bud_``, ``rl_``).

``identity_version`` (one row) and ``identity_changes`` carry change notices to every replica: a transaction that
changes identity data bumps the version while holding that row's lock and logs what it changed under the new
version, so versions commit in order and a replica polling ``identity_version`` misses nothing.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from .tables import ID, UTCDateTime, metadata

ID_LEN = 40

orgs = Table(
    "orgs",
    metadata,
    Column("id", String(ID_LEN), primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("metadata", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

teams = Table(
    "teams",
    metadata,
    Column("id", String(ID_LEN), primary_key=True),
    Column("org_id", String(ID_LEN), ForeignKey("orgs.id"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("models", JSON, nullable=True),  # deployments and routes the team's keys may use; null: all
    Column("metadata", JSON, nullable=False),
    Column("data_class", String(16), nullable=True),  # its keys' lowest data class (revision 0005); null: none
    Column("pii_mode", String(8), nullable=True),  # its keys' PII mode unless a key sets one; null: the config's
    Column("retention", JSON, nullable=True),  # payload retention, e.g. {"conversations": "30d"}; null: none
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("org_id", "name"),
)

users = Table(
    "users",
    metadata,
    Column("id", String(ID_LEN), primary_key=True),
    Column("org_id", String(ID_LEN), ForeignKey("orgs.id"), nullable=False),
    Column("team_id", String(ID_LEN), ForeignKey("teams.id"), nullable=True),
    Column("email", String(320), nullable=False),
    Column("name", String(255), nullable=True),
    Column("role", String(16), nullable=False),  # org_admin | team_admin | member | auditor
    Column("metadata", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("org_id", "email"),
    Index(None, "team_id"),
)

# Keys keep their owner's ids as plain strings (no foreign keys): a revoked key outlives its user or team.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(ID_LEN), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),  # HMAC-SHA256(key_secret, key), hex
    Column("prefix", String(16), nullable=False),  # the key's first characters, for display
    Column("name", String(255), nullable=True),
    Column("org_id", String(ID_LEN), nullable=False),
    Column("team_id", String(ID_LEN), nullable=True),
    Column("user_id", String(ID_LEN), nullable=True),
    Column("models", JSON, nullable=True),  # null: every deployment and route (within the team's)
    Column("tags", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("logging", String(16), nullable=False),  # none | metadata | full
    Column("data_class", String(16), nullable=True),  # the lowest data class of its calls (revision 0005)
    Column("pii_mode", String(8), nullable=True),  # off | detect | redact | mask | block; null: its team's
    Column("retention", JSON, nullable=True),  # payload retention per kind (its own wins); null: its team's
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("created_by", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    CheckConstraint("team_id IS NOT NULL OR user_id IS NOT NULL", name="owner"),
    Index(None, "org_id"),
    Index(None, "team_id"),
    Index(None, "user_id"),
)

budgets = Table(
    "budgets",
    metadata,
    Column("id", String(ID_LEN), primary_key=True),
    Column("org_id", String(ID_LEN), nullable=True),  # the tenant; null only for a global tag budget
    Column("scope", String(8), nullable=False),  # key | user | team | org | tag
    Column("scope_id", String(255), nullable=False),  # the key, user, team or org id, or the tag
    Column("name", String(255), nullable=True),
    Column("period", String(8), nullable=False),  # daily | weekly | monthly | total
    Column("max_usd", Numeric(18, 8), nullable=True),
    Column("max_tokens", BigInteger, nullable=True),
    Column("timezone", String(64), nullable=True),  # null: the gateway's configured zone
    Column("thresholds", JSON, nullable=False),  # fractions that call the webhook, e.g. [0.5, 0.8, 1.0]
    Column("webhook_url", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    CheckConstraint("max_usd IS NOT NULL OR max_tokens IS NOT NULL", name="limit"),
    Index(None, "scope", "scope_id"),
    Index(None, "org_id"),
)

rate_limits = Table(
    "rate_limits",
    metadata,
    Column("id", String(ID_LEN), primary_key=True),
    Column("org_id", String(ID_LEN), nullable=False),
    Column("scope", String(8), nullable=False),  # key | user | team
    Column("scope_id", String(255), nullable=False),
    Column("name", String(255), nullable=True),
    Column("rpm", Integer, nullable=True),  # requests per minute
    Column("tpm", BigInteger, nullable=True),  # tokens per minute
    Column("max_concurrent", Integer, nullable=True),  # requests in flight
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    CheckConstraint("rpm IS NOT NULL OR tpm IS NOT NULL OR max_concurrent IS NOT NULL", name="limit"),
    Index(None, "scope", "scope_id"),
    Index(None, "org_id"),
)

identity_version = Table(
    "identity_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("version", BigInteger, nullable=False),
)

identity_changes = Table(
    "identity_changes",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("version", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),  # key | user | team | org | budget | rate_limit
    Column("entity_id", String(255), nullable=False),  # for budget/rate_limit: "<scope>:<scope_id>"
    Column("at", UTCDateTime(), nullable=False),
    Index(None, "version"),
)

# Console sessions that were signed out before they expired (revision 0012): every process and replica refuses
# them, not only the one that took the sign-out. A row is kept until the session would have expired anyway.
console_signouts = Table(
    "console_signouts",
    metadata,
    Column("session_id", String(64), primary_key=True),
    Column("expires", BigInteger, nullable=False),  # unix seconds: when the session's token expires
    Index(None, "expires"),
)

IDENTITY_TABLES = (orgs, teams, users, api_keys, budgets, rate_limits, identity_version, identity_changes,
                   console_signouts)
