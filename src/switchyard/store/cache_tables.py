"""The semantic cache's entries (revision ``0006_cache``), for ``cache.store: embedded``.

A row keeps no prompt and no tenant id: its keys are digests of the scope (org or key), the request's shape and
its question (:mod:`switchyard.cache.keys`); ``vector`` is the question's embedding (float32), ``payload`` the
answer. Registered on :data:`switchyard.store.tables.metadata`.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, LargeBinary, String, Table

from .tables import ID, metadata

cache_entries = Table(
    "cache_entries",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),  # grows with every write: readers follow it
    Column("key", String(32), nullable=False, unique=True),  # the exact key (scope, shape, question)
    Column("bucket", String(32), nullable=False),  # the scope and shape's key
    Column("vector", LargeBinary, nullable=True),  # the question's embedding; none: exact matches only
    Column("payload", LargeBinary, nullable=False),  # the answer (switchyard.cache.codec)
    Column("cost", Float, nullable=False),  # the answer's original cost (USD)
    Column("latency_ms", Float, nullable=False),
    Column("route", String(255), nullable=False),
    Column("created", Float, nullable=False),  # epoch seconds
    Column("expires", Float, nullable=False),  # epoch seconds
    Index(None, "expires"),
)

CACHE_TABLES = (cache_entries,)
