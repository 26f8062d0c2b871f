"""Audit tables: the hash-chained log, its signed head, and signed checkpoints.

Registered on :data:`switchyard.store.tables.metadata`; revision ``0003_audit`` creates them and must match.
How records are chained and verified: :mod:`switchyard.governance.audit`.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, Numeric, String, Table, Text

from .tables import ID, UTCDateTime, metadata

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),  # 1, 2, 3 ... in chain order
    Column("ts", UTCDateTime(), nullable=False),
    Column("kind", String(8), nullable=False),  # admin | call | system
    Column("actor", Text, nullable=False),  # principal id: "master", "vk_...", "key:<name>", "cli:<user>"
    Column("actor_user_id", String(40), nullable=True),
    Column("org_id", String(40), nullable=True),
    Column("team_id", String(40), nullable=True),
    Column("action", String(64), nullable=False),  # "key.create", "chat", ...
    Column("target", Text, nullable=True),  # an object id, or the model asked for
    Column("decision", String(8), nullable=False),  # allow | deny
    Column("reason", Text, nullable=True),  # why: the route's reason, the denial, the error
    Column("status", Integer, nullable=True),  # HTTP status of the call or the admin request
    Column("deployment", Text, nullable=True),
    Column("cost", Numeric(18, 8), nullable=True),
    Column("request_id", String(255), nullable=True),
    Column("details", Text, nullable=True),  # canonical JSON
    Column("payload", Text, nullable=True),  # canonical JSON; only when the key's logging mode asks
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index(None, "ts"),
    Index(None, "org_id", "seq"),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1; appenders lock this row
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("signature", String(64), nullable=True),  # HMAC of (seq, hash); null before the first record
    Column("checkpoint_seq", BigInteger, nullable=False),
    Column("checkpoint_at", UTCDateTime(), nullable=True),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("ts", UTCDateTime(), nullable=False),
    Column("signature", String(64), nullable=False),  # HMAC of (seq, hash, ts)
    Index(None, "seq"),
)

AUDIT_TABLES = (audit_log, audit_head, audit_checkpoints)
