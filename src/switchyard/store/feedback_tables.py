"""Feedback on calls (``POST /v1/feedback``): the outcome a caller reports for one of its own requests.

Registered on :data:`switchyard.store.tables.metadata`; revision ``0007_feedback`` creates it and must match.
What a row keeps of the prompt depends on the key's logging mode (see :mod:`switchyard.governance.feedback`):
``prompt`` only when the call's payload kept the text (``full``), ``embedding`` (float32 little-endian) only when
the call computed one; under zero retention (``none``) never the text and never the comment.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, LargeBinary, String, Table, Text

from .tables import ID, UTCDateTime, metadata

feedback = Table(
    "feedback",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("request_id", String(255), nullable=False, unique=True),  # ours (request_log.request_id)
    Column("ts", UTCDateTime(), nullable=False),
    Column("principal_id", Text, nullable=False),
    Column("key_id", String(40), nullable=True),
    Column("org_id", String(40), nullable=True),
    Column("model", Text, nullable=True),  # what the call asked for
    Column("route", Text, nullable=True),
    Column("deployment", Text, nullable=True),  # what served it
    Column("score", Float, nullable=False),  # the outcome in [0, 1]
    Column("label", String(32), nullable=True),  # the label as given, when a label was given
    Column("comment", Text, nullable=True),
    Column("logging", String(8), nullable=False),  # the key's logging mode when the feedback was stored
    Column("prompt", Text, nullable=True),
    Column("embedding", LargeBinary, nullable=True),
    Index(None, "org_id", "ts"),
    Index(None, "deployment", "ts"),
)
