"""Org policy sets: each organization's Cedar policies, as versions (revision ``0005_governance_data``).

A ``PUT /admin/orgs/{id}/policies`` adds version n+1 of its org's set; nothing is ever updated in place, so every
earlier version can still be read (``?version=N``) and the audit log's hash of each can be checked against it.
Registered on :data:`switchyard.store.tables.metadata`.
"""

from __future__ import annotations

from sqlalchemy import Column, Integer, String, Table, Text, UniqueConstraint

from .tables import ID, UTCDateTime, metadata

org_policies = Table(
    "org_policies",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),  # grows with every version of every org's set
    Column("org_id", String(40), nullable=False),  # no foreign key: an org is deleted with its sets (same tx)
    Column("version", Integer, nullable=False),  # 1, 2, ... per org
    Column("text", Text, nullable=False),  # the Cedar policies
    Column("comment", Text, nullable=True),
    Column("sha256", String(64), nullable=False),  # of the text, as the audit record keeps it
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", Text, nullable=True),  # the actor id
    UniqueConstraint("org_id", "version"),
)

POLICY_TABLES = (org_policies,)
