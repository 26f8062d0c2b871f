"""The request-log writer: call records are queued in memory on the hot path and written in batches.

``record()`` only appends to a deque. A background task writes what is pending every ``interval`` seconds, or
sooner once ``batch_size`` records wait, as one multi-row ``INSERT ... ON CONFLICT (request_id) DO NOTHING`` per
batch, in a transaction, on a worker thread (the engine is sync). A record delivered twice is stored once.

When the database is unreachable the records stay queued and the writer retries with exponential backoff; they
are removed from the queue only once their transaction has committed. A record that the database rejects for its
content (a constraint or data error that persists when the record is written alone) can never be written: it
is logged with its request id and set aside, so that it does not block the records behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import sqlite3
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from .. import background
from ..pipeline import CallRecord
from .tables import request_log

log = logging.getLogger("switchyard.store")

_CENT_FRACTION = Decimal("1e-8")  # request_log.cost is NUMERIC(18, 8)
_MAX_TEXT = 4000  # longest free text kept (an error message, a client-chosen model name)
_COLUMNS = len(request_log.c) - 1  # bound parameters per row (id is generated)
# Failures caused by a record's content, not by the database being unavailable: retrying cannot help.
_UNWRITABLE = (DataError, IntegrityError, ValueError, TypeError, ArithmeticError)


class BatchWriter:
    """A :class:`~switchyard.pipeline.Recorder` that stores call records in ``request_log`` off the hot path."""

    def __init__(self, engine: Engine, *, interval: float = 0.25, batch_size: int = 500,
                 retry_initial: float = 0.5, retry_max: float = 30.0, drain_timeout: float = 10.0) -> None:
        if interval <= 0 or batch_size < 1 or retry_initial <= 0 or retry_max < retry_initial:
            raise ValueError("interval, batch_size and retry delays must be positive (retry_max >= retry_initial)")
        self.engine = engine
        self.interval = interval
        self.batch_size = batch_size
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.drain_timeout = drain_timeout
        self._pending: deque[CallRecord] = deque()
        self._failures = 0  # consecutive failed writes; while > 0 the writer is backing off
        self._rows_per_insert = min(batch_size, _max_params(engine) // _COLUMNS)
        self._lock = asyncio.Lock()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # --- the Recorder protocol (hot path) ------------------------------------------------------------------

    def record(self, rec: CallRecord) -> None:
        """Queue a record. Never blocks and does no I/O; safe to call from any thread."""
        self._pending.append(rec)
        if len(self._pending) >= self.batch_size and self._failures == 0 and self._wake is not None:
            self._wake_up()

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background writer (idempotent)."""
        if self._task is not None and not self._task.done():
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="switchyard-store-writer")

    async def stop(self) -> None:
        """Stop the background writer and write everything still queued, retrying for ``drain_timeout`` s.

        Records that could not be written by then stay queued (see :meth:`pending`) and an error is logged.
        """
        self._stopping = True
        if self._task is not None:
            self._wake_up()
            await self._task
            self._task = None
        deadline = time.monotonic() + self.drain_timeout
        while self._pending:
            if await self.flush():
                break
            left = deadline - time.monotonic()
            if left <= 0:
                log.error("request log: %d records could not be written before shutdown", len(self._pending))
                break
            await asyncio.sleep(min(self._backoff(), left))

    def pending(self) -> int:
        """How many records wait to be written."""
        return len(self._pending)

    async def flush(self) -> bool:
        """Write everything queued now. True when the queue is empty afterwards; failures are logged, not raised."""
        async with self._lock:
            while self._pending:
                n = min(len(self._pending), self._rows_per_insert)
                batch = list(itertools.islice(self._pending, n))
                try:
                    await background.run(self._write, batch, urgent=len(self._pending) > background.URGENT_BACKLOG)
                except _UNWRITABLE:
                    # Something in the batch is unwritable; find it by writing the records one at a time.
                    if not await self._write_one_by_one(n):
                        return self._failed_write()
                    continue
                except Exception as e:
                    return self._failed_write(e)
                for _ in range(n):
                    self._pending.popleft()
            if self._failures:
                log.info("request log: writes recovered after %d failed attempts", self._failures)
            self._failures = 0
            return True

    # --- internals ------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            delay = self._backoff() if self._failures else self.interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            if self._stopping:
                break
            if self._pending:
                await self.flush()

    def _wake_up(self) -> None:
        if self._wake is None or self._loop is None:
            return
        try:
            same_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            same_loop = False
        if same_loop:
            self._wake.set()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    def _backoff(self) -> float:
        return min(self.retry_max, self.retry_initial * 2.0 ** max(0, self._failures - 1))

    def _failed_write(self, exc: BaseException | None = None) -> bool:
        self._failures += 1
        if exc is not None:
            log.warning("request log write failed (%s); %d records kept, retrying in %.2fs",
                        self._describe(exc), len(self._pending), self._backoff())
        return False

    async def _write_one_by_one(self, n: int) -> bool:
        """Write the first ``n`` queued records singly, setting aside those the database rejects."""
        for _ in range(n):
            rec = self._pending[0]
            try:
                await background.run(self._write, [rec])
            except _UNWRITABLE as e:
                log.error("request log: record %r cannot be stored and is set aside (%s)",
                          rec.request_id, self._describe(e))
            except Exception as e:
                self._failed_write(e)
                return False
            self._pending.popleft()
        return True

    def _write(self, batch: Sequence[CallRecord]) -> None:
        rows = [_row(r) for r in batch]
        with self.engine.begin() as conn:
            conn.execute(_insert(conn.dialect.name, rows))

    def _describe(self, exc: BaseException) -> str:
        """A one-line description of a failure, without the statement, its parameters or the DB password."""
        cause: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        text = (str(cause).strip().splitlines() or [""])[0][:300]
        password = self.engine.url.password
        if password:
            text = text.replace(str(password), "***")
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _insert(dialect: str, rows: list[dict[str, Any]]) -> Insert:
    if dialect == "postgresql":
        return postgresql.insert(request_log).values(rows).on_conflict_do_nothing(index_elements=["request_id"])
    if dialect == "sqlite":
        return sqlite.insert(request_log).values(rows).on_conflict_do_nothing(index_elements=["request_id"])
    raise RuntimeError(f"the request log does not support the {dialect!r} dialect")


def _max_params(engine: Engine) -> int:
    if engine.dialect.name == "sqlite":
        return 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999
    return 65535


def _row(rec: CallRecord) -> dict[str, Any]:
    u = rec.usage
    if not math.isfinite(rec.cost):
        raise ValueError(f"cost is {rec.cost}")
    return {
        "request_id": _text(rec.request_id),
        "client_request_id": _opt_text(rec.client_request_id),
        "ts": datetime.fromtimestamp(rec.ts, UTC),
        "principal_id": _opt_text(rec.principal_id),
        "endpoint": _text(rec.endpoint),
        "model": _text(rec.model),
        "route": _opt_text(rec.route),
        "deployment": _opt_text(rec.deployment),
        "provider": _opt_text(rec.provider),
        "status": _text(rec.status),
        "http_status": int(rec.http_status),
        "input_tokens": int(u.input_tokens),
        "output_tokens": int(u.output_tokens),
        "cached_tokens": int(u.cached_tokens),
        "cache_write_tokens": int(u.cache_write_tokens),
        "reasoning_tokens": int(u.reasoning_tokens),
        "cost": Decimal(repr(float(rec.cost))).quantize(_CENT_FRACTION),
        "latency_ms": float(rec.latency_ms),
        "ttft_ms": None if rec.ttft_ms is None else float(rec.ttft_ms),
        "attempts": int(rec.attempts),
        "error": _opt_text(rec.error),
    }


def _text(s: str) -> str:
    # PostgreSQL text cannot hold NUL; an upstream error message might.
    return s[:_MAX_TEXT].replace("\x00", "")


def _opt_text(s: str | None) -> str | None:
    return None if s is None else _text(s)


__all__ = ["BatchWriter"]
