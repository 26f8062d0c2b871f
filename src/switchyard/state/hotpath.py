"""The two statements every conversation call pays, the load of its history and the append of its turn, run on the
database driver's own connection (taken from the SQLAlchemy pool) instead of through SQLAlchemy's execution layer.

Why (issue 15's budget is 2 ms p99 for the two together; ``benchmarks/state_micro.py``): of a PostgreSQL load of 30
messages, SQLAlchemy's execution context, result metadata and row objects were about 0.2 ms, more than the
database's own work; the driver's cursor does the same in a few microseconds. Each statement is one round trip:

* **load**: the conversation's row joined to its messages after the summary (one row of nulls when it has none),
  in autocommit on PostgreSQL (no BEGIN and ROLLBACK), prepared on the server (``prepare=True``) and read in the
  binary format (the content column arrives as bytes, not hex text).
* **append**, PostgreSQL: one statement, atomic by itself. A CTE updates the conversation's row (renewing its
  life, bumping ``next_seq``, and so locking it) and hands the new ``next_seq`` to one multi-row insert of the turn's
  messages, passed as three arrays (``unnest``): one prepared statement serves a turn of any length. Two replicas
  appending to one conversation take consecutive ranges of seqs in turn.
* **append**, SQLite: ``BEGIN IMMEDIATE`` (the write lock up front), the same update with ``RETURNING``, one
  ``executemany`` insert, ``COMMIT``.

Either append stores nothing (and says so: ``False``) when the conversation is not the scope's, has expired, or
would pass ``max_items``. Driver errors propagate as the driver's own (``dbapi_error`` names their base class); on a
lost connection the pool's connections are replaced, as SQLAlchemy does (no pre-ping: it would cost a round trip).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from ..governance.db import Db

# the row of a load: system, summary, summary_through, seq, item id, origin, data
LoadRow = tuple[Any, ...]

_LOAD = ("SELECT c.system, c.summary, c.summary_through, i.seq, i.id, i.origin, i.data FROM conversations c "
         "LEFT OUTER JOIN conversation_items i ON i.conversation_id = c.id AND i.seq > c.summary_through "
         "WHERE c.id = {id} AND c.scope = {scope} AND c.expires_at > {now} ORDER BY i.seq")
_PG_LOAD = _LOAD.format(id="%(id)s", scope="%(scope)s", now="%(now)s::float8")
_SQLITE_LOAD = _LOAD.format(id=":id", scope=":scope", now=":now")

_BUMP = ("UPDATE conversations SET next_seq = next_seq + {n}, updated_at = {now}, "
         "expires_at = COALESCE({exp}, expires_at), system = COALESCE({system}, system) "
         "WHERE id = {id} AND scope = {scope} AND expires_at > {now} AND next_seq + {n} <= {max} RETURNING next_seq")
_PG_BUMP = _BUMP.format(n="%(n)s::int4", now="%(now)s::float8", exp="%(exp)s::float8", system="%(system)s::bytea",
                        id="%(id)s", scope="%(scope)s", max="%(max)s::int4")
_PG_APPEND = (
    f"WITH b AS ({_PG_BUMP}) INSERT INTO conversation_items (conversation_id, seq, id, origin, created_at, data) "
    "SELECT %(id)s, b.next_seq - %(n)s::int4 + v.ord::int4 - 1, v.item_id, v.origin, %(now)s::float8, v.data "
    "FROM b, unnest(%(ids)s::varchar[], %(origins)s::varchar[], %(data)s::bytea[]) "
    "WITH ORDINALITY AS v(item_id, origin, data, ord) RETURNING seq")
_SQLITE_BUMP = _BUMP.format(n=":n", now=":now", exp=":exp", system=":system", id=":id", scope=":scope", max=":max")
_SQLITE_INSERT = ("INSERT INTO conversation_items (conversation_id, seq, id, origin, created_at, data) "
                  "VALUES (?, ?, ?, ?, ?, ?)")


class HotPath:
    """The load and the append on one engine's pooled driver connections (see the module's docstring)."""

    def __init__(self, db: Db) -> None:
        self.db = db
        self.engine = db.engine
        self.pg = self.engine.dialect.name == "postgresql"
        self.dbapi_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error

    @contextlib.contextmanager
    def _conn(self) -> Iterator[Any]:
        """A pooled driver connection; on PostgreSQL in autocommit for the duration (restored before it goes back:
        the rest of the store shares the pool). A connection an error left unusable is invalidated."""
        with self.db.guard():
            raw = self.engine.raw_connection()
            try:
                conn: Any = raw.driver_connection
                if self.pg:
                    conn.autocommit = True
                try:
                    yield conn
                finally:
                    if self.pg and not conn.closed:
                        conn.autocommit = False
            except self.dbapi_error as e:
                if self.engine.dialect.is_disconnect(e, raw.dbapi_connection, None) or _closed(raw):  # type: ignore[arg-type]
                    # as SQLAlchemy's own execution does on a disconnect: this connection is dropped, and every
                    # other one the pool made before it is replaced at its next checkout (the server restarted)
                    self.engine.pool._invalidate(raw, e)
                raise
            finally:
                raw.close()

    def load(self, scope: str, conv_id: str, now: float) -> list[LoadRow]:
        """The rows of a conversation's history (none: not the scope's, or expired)."""
        params = {"id": conv_id, "scope": scope, "now": now}
        with self._conn() as conn:
            if self.pg:
                with conn.cursor(binary=True) as cur:
                    cur.execute(_PG_LOAD, params, prepare=True)
                    return list(cur.fetchall())
            return list(conn.execute(_SQLITE_LOAD, params).fetchall())

    def append(self, scope: str, conv_id: str, now: float, *, max_items: int, exp: float | None,
               system: bytes | None, ids: Sequence[str], origins: Sequence[str | None],
               data: Sequence[bytes]) -> bool:
        """Store a turn's messages after the newest; False when nothing could be stored (see the module)."""
        n = len(ids)
        params: dict[str, Any] = {"id": conv_id, "scope": scope, "now": now, "n": n, "max": max_items, "exp": exp,
                                  "system": system}
        with self._conn() as conn:
            if self.pg:
                with conn.cursor() as cur:
                    if n:
                        params.update(ids=list(ids), origins=list(origins), data=list(data))
                        cur.execute(_PG_APPEND, params, prepare=True)
                    else:
                        cur.execute(_PG_BUMP, params, prepare=True)
                    return cur.fetchone() is not None
            conn.execute("BEGIN IMMEDIATE")  # the write lock up front: concurrent appends take their seqs in turn
            try:
                row = conn.execute(_SQLITE_BUMP, params).fetchall()
                if row and n:
                    first = row[0][0] - n
                    conn.executemany(_SQLITE_INSERT, [(conv_id, first + i, ids[i], origins[i], now, data[i])
                                                      for i in range(n)])
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            return bool(row)


def _closed(raw: sa.PoolProxiedConnection) -> bool:
    conn = raw.driver_connection
    return bool(getattr(conn, "closed", False) or getattr(conn, "broken", False))
