"""Spend records: one per request, through the local durable spool, into ``request_log`` and its rollups.

:class:`SpendWriter` is the gateway's :class:`~switchyard.records.Recorder`. ``record()`` appends the request's
record to the spool (:mod:`switchyard.store.spool`) as one JSON line, before the response completes. A background
task ships the spool in batches, each in one transaction that

1. inserts the batch into ``request_log`` with ``ON CONFLICT (request_id) DO NOTHING RETURNING request_id``,
2. adds the rows that were new (and only those) to ``spend_hourly``, ``spend_hourly_tags`` and ``budget_spend``
   (``INSERT ... ON CONFLICT DO UPDATE SET x = x + excluded.x``, in key order so concurrent writers cannot
   deadlock),

and advances the spool past the batch once it has committed. A record shipped twice (a crash between commit and
advance, or two replicas adopting one dead replica's file) is stored and rolled up once. While the store is down
the spool grows on disk and the writer retries with backoff; nothing is lost, and nothing waits for it.

A record that the database refuses for its content (it fails alone, too) is set aside in ``rejected.jsonl`` in
the spool directory, with an error in the log, so that it cannot block the records behind it.

The spool also carries each admitted call's *intent* (:mod:`.intents`): skipped when shipped, and turned into an
``interrupted`` record when a dead gateway's files are adopted with intents that never got their outcome.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, IntegrityError

from .. import background
from ..config.ledger import SpoolSettings
from ..records import CallRecord, Intent, Stored, clip, dump, encode, is_intent, read_line
from ..store.spend_tables import (
    DIM,
    METRICS,
    SPEND_DIMS,
    TAG_DIMS,
    budget_spend,
    request_log,
    spend_hourly,
    spend_hourly_tags,
)
from ..store.spool import Batch, Segment, Spool
from ..worker import Worker
from . import intents
from .audit_calls import call_record
from .db import Db

if TYPE_CHECKING:
    from ..config import Config
    from .audit import AuditLog

log = logging.getLogger("switchyard.spend")

_UNWRITABLE = (DataError, IntegrityError, ValueError, TypeError, ArithmeticError, KeyError)
_ADOPT_EVERY = 5.0
Rows = list[tuple[str, str, int, int]]


# --- the spool line ----------------------------------------------------------------------------------------------


def log_row(d: Stored) -> dict[str, Any]:
    """A ``request_log`` row from a decoded spool record."""
    return {
        "request_id": d.request_id, "client_request_id": clip(d.client_request_id, 255),
        "ts": datetime.fromtimestamp(d.ts, UTC), "principal_id": clip(d.principal_id), "endpoint": d.endpoint,
        "model": clip(d.model), "route": clip(d.route), "deployment": clip(d.deployment),
        "provider": clip(d.provider), "status": d.status, "http_status": int(d.http_status),
        "input_tokens": int(d.input_tokens), "output_tokens": int(d.output_tokens),
        "cached_tokens": int(d.cached_tokens), "cache_write_tokens": int(d.cache_write_tokens),
        "reasoning_tokens": int(d.reasoning_tokens), "cost": Decimal(int(d.cost)).scaleb(-8),
        "latency_ms": float(d.latency_ms), "ttft_ms": d.ttft_ms, "attempts": int(d.attempts),
        "error": clip(d.error), "key_id": d.key_id, "user_id": d.user_id, "team_id": d.team_id,
        "org_id": d.org_id, "tags": d.tags, **_prompt_columns(d.decisions),
    }


def _prompt_columns(decisions: dict[str, Any] | None) -> dict[str, Any]:
    """The managed prompt (name@version) and the experiment's variant that served, from the call's decisions."""
    prompt = (decisions or {}).get("prompt")
    exp = (decisions or {}).get("experiment")
    return {"prompt": clip(prompt, 255) if isinstance(prompt, str) else None,
            "experiment_id": str(exp["id"])[:40] if isinstance(exp, dict) and exp.get("id") else None,
            "variant": str(exp["variant"])[:64] if isinstance(exp, dict) and exp.get("variant") else None}


# --- shipping (on a worker thread) --------------------------------------------------------------------------------


def _dim(v: str | None) -> str:
    return (v or "")[:DIM]


def _add(acc: dict[tuple[Any, ...], list[Any]], key: tuple[Any, ...], d: Stored) -> None:
    m = acc.get(key)
    if m is None:
        m = acc[key] = [0, 0, 0, 0, 0, 0, 0, 0.0]
    m[0] += 1
    m[1] += d.status != "ok"
    m[2] += int(d.input_tokens)
    m[3] += int(d.output_tokens)
    m[4] += int(d.cached_tokens)
    m[5] += int(d.reasoning_tokens)
    m[6] += int(d.cost)
    m[7] += float(d.latency_ms)


def _rollup_rows(groups: dict[tuple[Any, ...], list[Any]], dims: Sequence[str]) -> list[dict[str, Any]]:
    """Rows for a rollup table, each dimension cut to size, in key order (so that concurrent writers cannot
    deadlock). Groups that are equal once cut become rows with one key: the upserts add them up in turn."""
    rows = sorted((((hour, *(_dim(v) for v in values)), m) for (hour, *values), m in groups.items()),
                  key=lambda r: r[0])
    return [{"hour": datetime.fromtimestamp(k[0], UTC), **dict(zip(dims, k[1:], strict=True)),
             **dict(zip(METRICS, m, strict=True))} for k, m in rows]


def _insert(dialect: str, table: sa.Table) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"spend records do not support the {dialect!r} dialect")


@functools.cache
def _upsert_stmt(dialect: str, table: sa.Table, keys: tuple[str, ...], adds: tuple[str, ...],
                 also: tuple[str, ...]) -> Any:
    """One statement per (dialect, table): built once, so SQLAlchemy compiles it once and then only binds rows."""
    stmt = _insert(dialect, table)
    sets = {c: table.c[c] + stmt.excluded[c] for c in adds}
    sets.update({c: stmt.excluded[c] for c in also})
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=sets)


def _upsert(conn: sa.Connection, table: sa.Table, keys: Sequence[str], rows: list[dict[str, Any]],
            adds: Sequence[str], also: Sequence[str] = ()) -> None:
    if rows:  # a handful of rolled-up rows per batch: executemany of one cached statement
        conn.execute(_upsert_stmt(conn.dialect.name, table, tuple(keys), tuple(adds), tuple(also)), rows)


# ship() builds its rollup keys in these orders, without looking the names up for every record
assert SPEND_DIMS == ("org_id", "team_id", "user_id", "key_id", "route", "deployment", "provider", "model")
assert TAG_DIMS == ("tag", "org_id", "route", "deployment", "provider", "model")

_URGENT_SPOOL_BYTES = 1 << 20  # unshipped spool bytes (about 3,000 records) past which shipping is urgent


def ship(db: Db, records: Sequence[Stored], audit: AuditLog | None = None) -> int:
    """Store a batch of decoded records in one transaction; returns how many were new. With ``audit``, the new
    ones are also chained into the audit log, in the same transaction (so exactly once)."""
    rows = [log_row(d) for d in records]  # in spool order: request_log ids follow the order calls ended
    with db.write() as conn:
        # One statement, compiled once and cached; SQLAlchemy batches the rows into multi-row VALUES itself
        # ("insertmanyvalues") and still returns the ids that were new.
        stmt = (_insert(conn.dialect.name, request_log)
                .on_conflict_do_nothing(index_elements=["request_id"]).returning(request_log.c.request_id))
        new: set[str] = set(conn.execute(stmt, rows).scalars()) if rows else set()
        fresh = [d for d in records if d.request_id in new]
        if audit is not None and fresh:
            audit.append_prepared(conn, [call_record(d) for d in fresh])
        # Grouped by the raw values (the hour as epoch seconds); each group's dimensions are cut to size once.
        hourly: dict[tuple[Any, ...], list[Any]] = {}
        tagged: dict[tuple[Any, ...], list[Any]] = {}
        budgets: dict[tuple[str, str], list[int]] = {}
        for d in fresh:
            hour = int(d.ts) // 3600 * 3600
            # in SPEND_DIMS order: org, team, user, key, route, deployment, provider, model
            org, route, dep, prov, model = d.org_id, d.route, d.deployment, d.provider, d.model
            _add(hourly, (hour, org, d.team_id, d.user_id, d.key_id, route, dep, prov, model), d)
            for tag in d.tags or ():  # in TAG_DIMS order: tag, org, route, deployment, provider, model
                _add(tagged, (hour, tag, org, route, dep, prov, model), d)
            for budget_id, period, usd, tokens in d.charges or ():
                b = budgets.setdefault((budget_id, period), [0, 0, 0])
                b[0] += int(usd)
                b[1] += int(tokens)
                b[2] += 1
        _upsert(conn, spend_hourly, ("hour", *SPEND_DIMS), _rollup_rows(hourly, SPEND_DIMS), METRICS)
        _upsert(conn, spend_hourly_tags, ("hour", *TAG_DIMS), _rollup_rows(tagged, TAG_DIMS), METRICS)
        now = datetime.now(UTC)
        _upsert(conn, budget_spend, ("budget_id", "period"),
                [{"budget_id": k[0], "period": k[1], "usd_e8": v[0], "tokens": v[1], "requests": v[2],
                  "updated_at": now} for k, v in sorted(budgets.items())],
                ("usd_e8", "tokens", "requests"), ("updated_at",))
    return len(fresh)


def read_budget_totals(db: Db) -> Rows:
    """(budget_id, period, usd E8, tokens) of every period that may still be current."""
    since = datetime.now(UTC) - timedelta(days=40)
    q = (sa.select(budget_spend.c.budget_id, budget_spend.c.period, budget_spend.c.usd_e8, budget_spend.c.tokens)
         .where(sa.or_(budget_spend.c.period == "total", budget_spend.c.updated_at >= since)))
    with db.read() as conn:
        return [(b, p, int(u), int(t)) for b, p, u, t in conn.execute(q)]


# --- the writer ------------------------------------------------------------------------------------------------


class SpendWriter:
    """The request-log Recorder: durable on the hot path, batched to the store off it."""

    def __init__(self, engine: sa.Engine, settings: SpoolSettings | None = None) -> None:
        self.settings = s = settings or SpoolSettings()
        self.db = Db(engine)
        self.spool = Spool(s.dir, fsync=s.fsync, rotate_bytes=s.rotate_bytes)
        # ships every flush_interval, backs off while the store refuses, drains on stop
        self.worker = Worker("spend-writer", self._tick, interval=s.flush_interval,
                             backoff_initial=min(0.25, s.retry_max), backoff_max=s.retry_max, jitter=0.2)
        self._last_sync = self._last_adopt = 0.0
        self._lock = asyncio.Lock()
        self.shipped = 0  # records that were new in the store
        self.rejected = 0
        self._unspooled: list[bytes] = []  # records the spool could not take (a full or broken disk)
        self.audit: AuditLog | None = None  # set by audit_calls_into(): chain each call into the audit log
        self._warned = 0.0
        # told of the intents a dead gateway left without an outcome (the ledger settles their holds in Redis)
        self.on_interrupted: Callable[[list[Intent]], None] | None = None
        self.interrupted = 0  # interrupted records written (calls a dead gateway left in flight)

    @classmethod
    def for_config(cls, config: Config, engine: sa.Engine) -> SpendWriter:
        return cls(engine, config.ledger.spool)

    def audit_calls_into(self, audit: AuditLog) -> None:
        """Chain every call shipped from now on into ``audit`` (in the transaction that stores its row)."""
        self.audit = audit

    # --- the Recorder protocol ---------------------------------------------------------------------------------

    def record(self, rec: CallRecord) -> None:
        """Append the record to the spool: one write, durable against process death when this returns.

        If the disk refuses (full, read-only), the record is kept in memory and shipped from there: the call is
        not failed for it, and an error is logged (at most every 10 s)."""
        line = encode(rec)
        try:
            self.spool.append(line, rec.request_id)
        except OSError as e:
            if len(self._unspooled) < 100_000:
                self._unspooled.append(line)
            self._cannot_write(e)

    def intend(self, line: bytes, request_id: str) -> None:
        """Append an admitted call's intent line (:mod:`.intents`); a disk that refuses it fails nothing."""
        try:
            self.spool.append_intent(line, request_id)
        except OSError as e:
            self._cannot_write(e)

    def _cannot_write(self, e: OSError) -> None:
        now = time.monotonic()
        if now - self._warned > 10:
            self._warned = now
            log.error("spend: the spool cannot be written (%s); %d records are held in memory only", e,
                      len(self._unspooled))

    # --- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open this process's spool file, adopt any left by dead processes, and try once to ship them (so that
        budget totals read at start-up include them)."""
        if self.worker.running:
            return
        self.spool.open()
        self._recover(self._adopt())
        if self.spool.pending():
            await self.worker.run_step(self.flush)
        self._last_sync = self._last_adopt = self.worker.clock()
        self.worker.start()

    async def stop(self, drain_timeout: float = 3.0) -> None:
        """Ship what is left (retrying for ``drain_timeout`` s), then close the spool; what could not be shipped
        stays on disk for the next process."""
        if not await self.worker.stop(drain_timeout, self.flush):
            log.error("spend: %d bytes of records stay in the spool (%s) for the next start",
                      self.spool.pending(), self.spool.dir)
        self.spool.close()

    async def flush(self) -> bool:
        """Ship everything spooled so far. True when nothing is left; failures are logged, not raised."""
        async with self._lock:
            while self._unspooled:
                lines = self._unspooled[:self.settings.batch_size]
                try:
                    self.shipped += await background.run(self._ship_lines, lines, urgent=self._urgent())
                except Exception as e:
                    log.warning("spend: the store refused a batch (%s); retrying in %.1fs", self.db.describe(e),
                                self.worker.backoff(self.worker.failures + 1))
                    return False
                del self._unspooled[:len(lines)]
            while True:
                batch = self.spool.read(max_lines=self.settings.batch_size)
                if batch is None:
                    break
                try:
                    n = await background.run(self._ship_batch, batch, urgent=self._urgent())
                except Exception as e:
                    log.warning("spend: the store refused a batch (%s); %d bytes wait in the spool, retrying in "
                                "%.1fs", self.db.describe(e), self.spool.pending(),
                                self.worker.backoff(self.worker.failures + 1))
                    return False
                self.shipped += n
                self.spool.commit(batch)
            if self.worker.failures:
                log.info("spend: writes recovered after %d failed attempts", self.worker.failures)
            return True

    def _urgent(self) -> bool:
        """Past this backlog the batches run at normal priority (see :mod:`switchyard.background`)."""
        return len(self._unspooled) > background.URGENT_BACKLOG or self.spool.pending() > _URGENT_SPOOL_BYTES

    async def _tick(self) -> bool:
        """One turn of the worker: fsync (policy ``interval``), adopt dead gateways' files, ship."""
        s = self.settings
        now = self.worker.clock()
        if s.fsync == "interval" and now - self._last_sync >= s.fsync_interval:
            self._last_sync = now
            await background.run(self.spool.sync)
        if now - self._last_adopt >= _ADOPT_EVERY:
            self._last_adopt = now
            self._recover(await background.run(self._adopt))
        if self.spool.pending() or self._unspooled:
            return await self.flush()
        return True

    # --- the calls a dead gateway left in flight ---------------------------------------------------------------

    def _adopt(self) -> list[tuple[list[Segment], list[Intent]]]:
        """Adopt dead gateways' files; for each dead gateway, its files and the intents they hold without an
        outcome (worker thread: this reads the files)."""
        self.spool.adopt(scan=True)
        found, self.spool.unscanned = self.spool.unscanned, []
        out = []
        for segments in found:
            try:
                lines = [x for s in segments for x in self.spool.read_all(s)]
            except OSError as e:
                log.error("spend: an adopted spool file cannot be read (%s); its calls in flight stay unrecorded", e)
                lines = []
            out.append((segments, intents.orphans(lines)))
        return out

    def _recover(self, found: list[tuple[list[Segment], list[Intent]]]) -> None:
        """Append an ``interrupted`` record for each orphan intent (behind the adopted files, so that they ship
        first), then let the adopted files go."""
        for segments, orphans in found:
            if orphans:
                try:
                    for d in orphans:
                        self.spool.append(intents.interrupted_record(d))
                except OSError as e:  # keep the files: the next start finds the intents again
                    log.error("spend: interrupted calls cannot be recorded (%s); the next start retries", e)
                    continue
                self.interrupted += len(orphans)
                log.warning("spend: %d call(s) were in flight when a gateway stopped; recorded as interrupted, "
                            "charged at their reservation", len(orphans))
                if self.on_interrupted is not None:
                    self.on_interrupted(orphans)
            self.spool.release(segments)

    # --- one batch (worker thread) -----------------------------------------------------------------------------

    def _ship_batch(self, batch: Batch) -> int:
        return self._ship_lines(batch.lines)

    def _ship_lines(self, lines: Sequence[bytes]) -> int:
        records: list[Stored] = []
        for line in lines:
            if is_intent(line):
                continue  # an intent: its outcome is the record (or, after a crash, the interrupted one)
            try:
                d = read_line(line)
                if not isinstance(d, Stored):
                    raise ValueError("not a spend record")
                records.append(d)
            except ValueError as e:
                self._set_aside([line], f"undecodable ({e})")
        if not records:
            return 0
        try:
            return ship(self.db, records, self.audit)
        except _UNWRITABLE:
            pass
        n = 0
        for d in records:  # find the record the store refuses by writing them one at a time
            try:
                n += ship(self.db, [d], self.audit)
            except _UNWRITABLE as e:
                self._set_aside([dump(d)], self.db.describe(e))
        return n

    def _set_aside(self, lines: Iterable[bytes], why: str) -> None:
        path = Path(self.spool.dir) / "rejected.jsonl"
        with path.open("ab") as f:
            for line in lines:
                f.write(line.rstrip(b"\n") + b"\n")
                self.rejected += 1
        log.error("spend: a record was set aside in %s: %s", path, why)
