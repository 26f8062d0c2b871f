"""Stored Responses API responses (``state/responses.py``): one row per response a key asked to keep."""

from __future__ import annotations

from sqlalchemy import Column, Index, String, Table, Text

from .tables import UTCDateTime, metadata

responses = Table(
    "responses",
    metadata,
    Column("id", String(80), primary_key=True),  # resp_...: the id the client saw
    Column("owner", String(255), nullable=False),  # the principal id of the key that created it
    Column("org_id", String(40), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("previous_response_id", String(80), nullable=True),
    Column("input", Text, nullable=False),  # this turn's input items, as JSON (the wire's format)
    Column("response", Text, nullable=False),  # the response object, as JSON
    Index(None, "owner", "created_at"),
)
