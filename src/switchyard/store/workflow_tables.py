"""Org workflow definitions, as versions (revision ``0010_workflows``).

``PUT /admin/orgs/{id}/workflows/{name}`` adds version n+1 of the org's workflow ``name``; nothing is updated in
place, so a run records the version it ran and that version can always be read again. Registered on
:data:`switchyard.store.tables.metadata`.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text, UniqueConstraint

from .tables import ID, UTCDateTime, metadata

workflow_definitions = Table(
    "workflow_definitions",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("org_id", String(40), nullable=False),  # no foreign key: an org is deleted with its definitions
    Column("name", String(64), nullable=False),
    Column("version", Integer, nullable=False),  # 1, 2, ... per org and name
    Column("definition", Text, nullable=False),  # the YAML (or JSON) text, as sent
    Column("comment", Text, nullable=True),
    Column("sha256", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", Text, nullable=True),
    UniqueConstraint("org_id", "name", "version"),
    Index("ix_workflow_definitions_org_name", "org_id", "name"),
)

WORKFLOW_TABLES = (workflow_definitions,)
