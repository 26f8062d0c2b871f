"""Persistent state: the request log (and, later, keys, budgets and spend), on SQLite or PostgreSQL.

    store = Store.open(config.store)          # engine + migrations to head
    store.ping()                              # readiness
    store.recent_requests(limit=20)
    store.close()

Schema changes and how to write a revision: see :mod:`switchyard.store.db`.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from . import (  # noqa: F401  (each registers on the shared metadata)
    audit_tables,
    cache_tables,
    feedback_tables,
    identity_tables,
    policy_tables,
    prompt_tables,
    responses_tables,
    spend_tables,
    state_tables,
    workflow_tables,
)
from .db import create_engine_for, migrate, migrate_isolated, normalize_url
from .tables import request_log

log = logging.getLogger("switchyard.store")


class Store:
    """A database holding the gateway's state. Methods are sync: call them from a thread in async code."""

    def __init__(self, url: str, engine: sa.Engine) -> None:
        self.url = url
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, run_migrations: bool = True, isolated: bool = False) -> Store:
        """Connect to ``url`` (``sqlite:///path`` or ``postgresql://...``) and bring its schema to head
        (``isolated``: in a child interpreter, see :func:`~switchyard.store.db.migrate_isolated`)."""
        engine = create_engine_for(url)
        try:
            if run_migrations and isolated:
                migrate_isolated(engine, url)
            elif run_migrations:
                migrate(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(url, engine)

    def __repr__(self) -> str:
        return f"Store({normalize_url(self.url).render_as_string(hide_password=True)!r})"

    def ping(self) -> bool:
        """True when the database answers ``SELECT 1``."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as e:
            log.debug("store ping failed: %s", type(e).__name__)
            return False
        return True

    def recent_requests(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` request-log rows, newest first, as dicts (``ts`` an aware UTC datetime)."""
        q = sa.select(request_log).order_by(request_log.c.ts.desc(), request_log.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(q).mappings()]

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


__all__ = ["Store", "create_engine_for", "migrate"]
