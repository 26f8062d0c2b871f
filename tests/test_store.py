"""The store: engines, migrations and the request log, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from switchyard.governance.db import Db
from switchyard.governance.spend import ship
from switchyard.messages import Usage
from switchyard.records import CallRecord, stored
from switchyard.store import Store, create_engine_for, migrate
from switchyard.store.db import HEAD_REVISION, _at_head, alembic_config
from switchyard.store.tables import metadata
from tests.support.pg import pg_database_url

PASSWORD = "s3cret-pw"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/nested/store.db"
    else:
        with pg_database_url() as url:
            yield url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url)
    yield s
    s.close()


def rec(i: int | str, **kw: Any) -> CallRecord:
    fields: dict[str, Any] = dict(
        request_id=i if isinstance(i, str) else f"req_{i:06d}", ts=1_700_000_000.5, principal_id="key_a",
        endpoint="chat", model="gpt-x", route="fast", deployment="dep-1", provider="openai", status="ok",
        http_status=200, usage=Usage(input_tokens=10, output_tokens=5, cached_tokens=2, cache_write_tokens=1,
                                     reasoning_tokens=3),
        cost=0.00012345, latency_ms=12.5, ttft_ms=3.25, attempts=1, error=None,
    )
    fields.update(kw)
    return CallRecord(**fields)


# --- engines ---------------------------------------------------------------------------------------------------


def test_sqlite_engine_creates_parent_dir_and_sets_pragmas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    engine = create_engine_for("sqlite:///data/sub/store.db")
    try:
        assert (tmp_path / "data" / "sub").is_dir()
        for _ in range(2):  # every new connection, not just the first
            with engine.connect() as conn:
                conn.invalidate()  # force a fresh DBAPI connection next time
        with engine.connect() as conn:

            def pragma(name: str) -> Any:
                return conn.exec_driver_sql(f"PRAGMA {name}").scalar()

            assert pragma("journal_mode") == "wal"
            assert pragma("synchronous") == 1  # NORMAL
            assert pragma("busy_timeout") == 5000
            assert pragma("foreign_keys") == 1
        assert (tmp_path / "data" / "sub" / "store.db").exists()
    finally:
        engine.dispose()


def test_postgres_url_uses_psycopg_with_pre_ping() -> None:
    engine = create_engine_for(f"postgresql://user:{PASSWORD}@db.invalid:5432/sy")
    try:
        assert engine.url.drivername == "postgresql+psycopg"
        assert engine.pool._pre_ping
        assert PASSWORD not in repr(engine) and PASSWORD not in repr(Store("x", engine).engine.url)
    finally:
        engine.dispose()


def test_unsupported_url_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported store URL"):
        create_engine_for("mysql://u@h/db")


# --- migrations ------------------------------------------------------------------------------------------------


def test_migrations_create_request_log_and_rerun_is_a_noop(store: Store, db_url: str) -> None:
    insp = sa.inspect(store.engine)
    cols = {c["name"] for c in insp.get_columns("request_log")}
    assert cols == {
        "id", "request_id", "client_request_id", "ts", "principal_id", "endpoint", "model", "route", "deployment",
        "provider", "status",
        "http_status", "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens",
        "cost", "latency_ms", "ttft_ms", "attempts", "error",
        "prompt", "experiment_id", "variant",  # 0011_prompts: the managed prompt and the experiment variant
        "key_id", "user_id", "team_id", "org_id", "tags",  # 0004_spend: who each request belongs to
    }
    indexed = {tuple(ix["column_names"]) for ix in insp.get_indexes("request_log")}
    assert {("ts",), ("principal_id", "ts")} <= indexed
    uniques = [u["column_names"] for u in insp.get_unique_constraints("request_log")]
    assert ["request_id"] in uniques

    def version() -> list[str]:
        with store.engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert version() == [head] == [HEAD_REVISION]  # a store at HEAD_REVISION starts without Alembic
    with store.engine.connect() as conn:  # the hand-written migrations match the table modules exactly
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, metadata) == []
    migrate(store.engine)
    Store.open(db_url).close()
    assert version() == [head]
    with store.engine.begin() as conn:  # a store one revision behind is upgraded, not mistaken for current
        assert _at_head(conn)
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0003'"))
        assert not _at_head(conn)
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": HEAD_REVISION})
    assert {"alembic_version", "request_log"} <= set(sa.inspect(store.engine).get_table_names())



def test_an_isolated_migration_runs_in_a_child_and_keeps_alembic_out(tmp_path: Path) -> None:
    """`serve` migrates in a child interpreter: the serving process never imports Alembic (about 10 MB)."""
    url = f"sqlite:///{tmp_path / 'iso.db'}"
    script = (f"import sys; from switchyard.store import Store; s = Store.open({url!r}, isolated=True); "
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako'))); s.close()")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            assert _at_head(conn)
            assert conn.execute(sa.text("SELECT version FROM identity_version")).scalar() == 0  # seeds ran too
    finally:
        engine.dispose()
    Store.open(url, isolated=True).close()  # at head: nothing to do, no child


def test_a_failed_isolated_migration_is_an_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'future.db'}"
    engine = create_engine_for(url)
    with engine.begin() as conn:  # a revision this version does not know: the child's Alembic refuses it
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('9999')"))
    engine.dispose()
    with pytest.raises(RuntimeError, match=r"the store migration failed: .*9999"):
        Store.open(url, isolated=True)


# --- the writer ------------------------------------------------------------------------------------------------


def test_recent_requests_round_trips_fields(store: Store) -> None:
    records = [rec(1, ts=1_700_000_000.25, principal_id=None, route=None, ttft_ms=None, error="bad\x00thing",
                   status="error", http_status=502, cost=1.5), rec(2, ts=1_700_000_100.0)]
    assert ship(Db(store.engine), [stored(r) for r in records]) == 2

    newest, older = store.recent_requests()
    assert newest["request_id"] == "req_000002"
    assert newest["ts"] == datetime.fromtimestamp(1_700_000_100.0, UTC)
    assert newest["cost"] == Decimal("0.00012345")
    assert (newest["input_tokens"], newest["output_tokens"], newest["cached_tokens"],
            newest["cache_write_tokens"], newest["reasoning_tokens"]) == (10, 5, 2, 1, 3)
    assert newest["ttft_ms"] == 3.25 and newest["latency_ms"] == 12.5 and newest["attempts"] == 1
    assert older["ts"] == datetime.fromtimestamp(1_700_000_000.25, UTC)
    assert older["ts"].tzinfo is not None
    assert older["principal_id"] is None and older["route"] is None and older["ttft_ms"] is None
    assert older["error"] == "badthing"  # NUL removed: PostgreSQL text cannot hold it
    assert (older["status"], older["http_status"], older["cost"]) == ("error", 502, Decimal("1.5"))
    assert store.recent_requests(limit=1) == [newest]


def test_ping(store: Store) -> None:
    assert store.ping()
    down = Store("postgresql://postgres@127.0.0.1:1/x",
                 create_engine_for("postgresql://postgres@127.0.0.1:1/x?connect_timeout=1"))
    try:
        assert not down.ping()
    finally:
        down.close()
