"""A throwaway PostgreSQL database per test.

:func:`pg_database_url` creates ``sy_test_<random hex>`` on the server at ``$SWITCHYARD_TEST_PG_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``, trust auth), yields its URL and drops it (``WITH (FORCE)``)
afterwards. The test is skipped only when nothing listens at the server's address; any other failure (auth,
permissions) fails it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

__all__ = ["DEFAULT_PG_URL", "pg_database_url"]


def _server_url() -> URL:
    return make_url(os.environ.get("SWITCHYARD_TEST_PG_URL", DEFAULT_PG_URL)).set(drivername="postgresql+psycopg")


def _require_reachable(url: URL) -> None:
    host, port = url.host or "127.0.0.1", url.port or 5432
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as e:
        pytest.skip(f"PostgreSQL is not reachable at {host}:{port}: {e}")


def _admin(url: URL) -> sa.Engine:
    return sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)


@contextlib.contextmanager
def pg_database_url() -> Iterator[str]:
    """Create a fresh database, yield its ``postgresql://`` URL (password included), drop it on exit."""
    server = _server_url()
    _require_reachable(server)
    name = f"sy_test_{secrets.token_hex(6)}"
    admin = _admin(server)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
