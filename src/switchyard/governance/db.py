"""Governance's access to the store: transactions on a worker thread, and store failures as clear errors.

The engine is sync (SQLAlchemy Core); every call from async code goes through :meth:`Db.run`, which runs it on a
thread. A failure to reach the database becomes :class:`GovernanceUnavailable` (503), never a 401; a unique
violation becomes a 409.

Write transactions on SQLite start with ``BEGIN IMMEDIATE`` so that a read-then-write transaction (the audit
chain's append reads the head, then writes) takes the write lock up front instead of failing on upgrade. On
PostgreSQL, writers serialize on the row locks they take (``identity_version``, ``audit_head``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from ..errors import InvalidRequest, SwitchyardError
from .errors import Conflict, GovernanceUnavailable

log = logging.getLogger("switchyard.governance")

T = TypeVar("T")


def _is_memory_sqlite(engine: sa.Engine) -> bool:
    db = engine.url.database or ""
    return engine.dialect.name == "sqlite" and (db in ("", ":memory:") or "mode=memory" in db)


class Db:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        # An in-memory SQLite database is one shared connection: it must not be used by two threads at once.
        self._serial: threading.Lock | None = threading.Lock() if _is_memory_sqlite(engine) else None

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A write transaction (committed at the end of the block, rolled back on an exception)."""
        with self._guard(), self.engine.begin() as conn:
            if self.sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with self._guard(), self.engine.connect() as conn:
            yield conn

    def _guard(self) -> contextlib.AbstractContextManager[object]:
        return self._serial if self._serial is not None else contextlib.nullcontext()

    def guard(self) -> contextlib.AbstractContextManager[object]:
        """Hold while using a connection of the engine outside :meth:`read` and :meth:`write` (the one connection
        of an in-memory SQLite database is not to be used by two threads at once)."""
        return self._guard()

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on a worker thread, with store failures translated (see :func:`translate`)."""
        try:
            return await asyncio.to_thread(fn, *args)
        except SwitchyardError:
            raise
        except Exception as e:
            raise translate(e) from e

    def describe(self, exc: BaseException) -> str:
        """One line about a failure, without statements, parameters or the password."""
        cause: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        text = (str(cause).strip().splitlines() or [""])[0][:200]
        password = self.engine.url.password
        if password:
            text = text.replace(str(password), "***")
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def translate(exc: Exception) -> Exception:
    """A store exception as the error a caller should see."""
    if isinstance(exc, IntegrityError):
        return Conflict("The change conflicts with an existing object (a name or email already in use).")
    if isinstance(exc, DataError):
        return InvalidRequest("A value is out of range for the store.")
    if isinstance(exc, DBAPIError | PoolTimeout | OSError):
        return GovernanceUnavailable("The governance store is unavailable; try again shortly.")
    return exc


def is_store_failure(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError | PoolTimeout | OSError) and not isinstance(exc, IntegrityError | DataError)
