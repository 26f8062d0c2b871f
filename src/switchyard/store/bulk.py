"""Many-row INSERTs for the batch writers, without SQLAlchemy's per-row statement work.

``conn.execute(table.insert(), [dict, ...])`` builds a parameter dict for every row, walks every column's bind
processor for it and then turns it into the driver's format: for a batch of audit records that was a third of the
batch's CPU (``benchmarks/notes.md``). :func:`insert_many` takes rows as tuples in a fixed column order, applies
only the bind processors that the dialect really has (the same ones SQLAlchemy would apply, taken from the column
types), and hands the rows to the driver's ``executemany`` in one call, inside the caller's transaction.

Drivers with positional placeholders (SQLite's ``?``, psycopg's ``%s``) take this path; any other falls back to
SQLAlchemy's own executemany.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

_Processor = Callable[[Any], Any]
_Plan = tuple[str, tuple[tuple[int, _Processor], ...]]

_PLACEHOLDER = {"qmark": "?", "format": "%s", "pyformat": "%s"}
_plans: dict[tuple[str, str, str, tuple[str, ...]], _Plan | None] = {}


def _plan(dialect: sa.Dialect, table: sa.Table, columns: tuple[str, ...]) -> _Plan | None:
    key = (dialect.name, dialect.driver, table.name, columns)
    if key in _plans:
        return _plans[key]
    mark = _PLACEHOLDER.get(dialect.paramstyle)
    plan: _Plan | None = None
    if mark is not None:
        q = dialect.identifier_preparer
        sql = (f"INSERT INTO {q.format_table(table)} ({', '.join(q.quote(c) for c in columns)}) "
               f"VALUES ({', '.join([mark] * len(columns))})")
        procs = []
        for i, name in enumerate(columns):
            proc = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)  # what SQLAlchemy applies
            if proc is not None:
                procs.append((i, proc))
        plan = (sql, tuple(procs))
    _plans[key] = plan
    return plan


def insert_many(conn: sa.Connection, table: sa.Table, columns: tuple[str, ...],
                rows: Sequence[Sequence[Any]]) -> None:
    """INSERT ``rows`` (each a sequence of values in ``columns`` order) in the connection's transaction."""
    if not rows:
        return
    plan = _plan(conn.dialect, table, columns)
    if plan is None:
        conn.execute(sa.insert(table), [dict(zip(columns, r, strict=True)) for r in rows])
        return
    sql, procs = plan
    if procs:
        out = []
        for r in rows:
            values = list(r)
            for i, proc in procs:
                v = values[i]
                if v is not None:
                    values[i] = proc(v)
            out.append(tuple(values))
        conn.exec_driver_sql(sql, out)
    else:
        conn.exec_driver_sql(sql, [tuple(r) for r in rows])
