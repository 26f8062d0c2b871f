"""``cache.store: embedded``: entries in the config's store (SQLite or PostgreSQL), served from memory.

Lookups never touch the database: the process keeps every live entry in a :class:`~.index.MemoryIndex`, warmed
from the table at start. Writes are queued and written behind, off the request path, by one background loop
(``sync_interval``) on a batch thread (:mod:`switchyard.background`); the same step drops expired rows, keeps the
table within ``max_entries`` (oldest first) and reads the rows that other workers or replicas wrote since its last
step, so that they are served here too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import sqlalchemy as sa

from .. import background
from ..store.cache_tables import cache_entries as T
from ..worker import Worker
from .index import Entry
from .memory import MemoryStore

log = logging.getLogger("switchyard.cache")

_READ_BATCH = 5000  # rows read per step


class EmbeddedStore(MemoryStore):
    def __init__(self, url: str, max_entries: int, max_per_shape: int, interval: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(max_entries, max_per_shape)
        self.url = url
        self.clock = clock
        self.engine: sa.Engine | None = None
        self.pending: dict[str, Entry] = {}  # written by the next step
        self.last_id = 0  # the newest row this process has read
        self.worker = Worker("cache-store", self._step, interval=interval, backoff_max=30.0)

    async def start(self) -> None:
        from ..store import create_engine_for
        from ..store.db import migrate_isolated

        url = self.url
        self.engine = engine = create_engine_for(url)
        await background.run(migrate_isolated, engine, url)
        rows = await background.run(self._warm, self.clock())
        self._load(rows)
        self.worker.start()

    async def aclose(self) -> None:
        await self.worker.stop(grace=5.0)
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None

    def put(self, entry: Entry) -> None:
        self.index.put(entry)
        self.pending[entry.key] = entry
        if len(self.pending) >= 256:
            self.worker.wake()

    async def flush(self) -> None:
        """Write what is pending and read what others wrote, now (tests; the loop does it every interval)."""
        await self._step()

    # --- the background step -------------------------------------------------------------------------------

    async def _step(self) -> bool:
        batch, self.pending = self.pending, {}
        try:
            rows = await background.run(self._sync, list(batch.values()), self.clock(), self.last_id)
        except Exception as e:
            log.warning("the cache store could not be written: %s", type(e).__name__)
            for k, v in batch.items():  # kept for the next step (newer puts win)
                self.pending.setdefault(k, v)
            return False
        self._load(rows)
        self.index.expire(self.clock())
        return True

    def _load(self, rows: list[Any]) -> None:
        now = self.clock()
        index = self.index
        for r in rows:
            self.last_id = max(self.last_id, r.id)
            if r.expires <= now:
                continue
            mine = index.entries.get(r.key)
            if mine is not None and mine.created >= r.created:
                continue
            vector = np.frombuffer(r.vector, dtype=np.float32) if r.vector is not None else None
            index.put(Entry(r.key, r.bucket, vector, bytes(r.payload), r.cost, r.latency_ms, r.created, r.expires,
                            r.route))

    def _warm(self, now: float) -> list[Any]:
        assert self.engine is not None
        q = sa.select(T).where(T.c.expires > now).order_by(T.c.id.desc()).limit(self.index.max_entries)
        with self.engine.connect() as conn:
            rows = list(conn.execute(q))
        rows.reverse()
        if not rows:
            with self.engine.connect() as conn:
                self.last_id = conn.execute(sa.select(sa.func.max(T.c.id))).scalar() or 0
        return rows

    def _sync(self, batch: list[Entry], now: float, after_id: int) -> list[Any]:
        assert self.engine is not None
        with self.engine.begin() as conn:
            if batch:
                conn.execute(T.delete().where(T.c.key.in_([e.key for e in batch])))
                conn.execute(T.insert(), [
                    {"key": e.key, "bucket": e.bucket, "vector": e.vector.tobytes() if e.vector is not None else None,
                     "payload": e.payload, "cost": e.cost, "latency_ms": e.latency_ms, "route": e.route[:255],
                     "created": e.created, "expires": e.expires} for e in batch])
            conn.execute(T.delete().where(T.c.expires <= now))
            count = conn.execute(sa.select(sa.func.count()).select_from(T)).scalar() or 0
            over = count - self.index.max_entries
            if over > 0:
                oldest = sa.select(T.c.id).order_by(T.c.id).limit(over).scalar_subquery()
                conn.execute(T.delete().where(T.c.id.in_(oldest)))
            q = sa.select(T).where(T.c.id > after_id).order_by(T.c.id).limit(_READ_BATCH)
            return list(conn.execute(q))
