"""Faults in our own infrastructure: Redis down (503 ``governance_unavailable`` by default, or pass with a warning
when the config says fail-open; recovery when it is back), PostgreSQL down (calls go on, spend waits in the spool
and flushes when the store is back, nothing answers 401)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from switchyard.config.ledger import SpoolSettings
from switchyard.governance.spend import SpendWriter
from switchyard.store import Store
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.governance import Admin, store_url
from tests.support.ledger import (
    Proxy,
    budget_total,
    ledger_config,
    redis_prefix,
    redis_url,
    spend_of,
    tenant,
    wait_for,
)
from tests.support.pg import pg_database_url
from tests.support.servers import free_port
from tests.test_budgets import fire


@contextlib.contextmanager
def gateway(url: str, tmp: Path, **kw: Any) -> Iterator[tuple[RunningGateway, Store, Admin]]:
    store = Store.open(url)
    writer = SpendWriter(store.engine, SpoolSettings(dir=str(tmp / "spool"), flush_interval=0.05, retry_max=0.5))
    try:
        with run_gateway(ledger_config(url, tmp / "spool", **kw), recorder=writer) as gw:
            admin = Admin(gw.url)
            yield gw, store, admin
            admin.close()
    finally:
        store.close()


@pytest.mark.parametrize("mode", ["closed", "open"])
async def test_redis_down_is_503_by_default_or_passes_with_a_warning(mode: str, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with store_url("sqlite", tmp_path) as url, \
            gateway(url, tmp_path, redis=dead, ledger={"governance_fail_mode": mode}) as (gw, store, admin):
        limited = tenant(admin, budget={"max_usd": 1.0, "period": "daily"})
        free = tenant(admin)  # no budget, no rate limit: the ledger is not even asked
        assert [r.status_code for r in await fire(gw.url, free["secret"], 2)] == [200, 200]
        with caplog.at_level(logging.WARNING, logger="switchyard.ledger"):
            replies = await fire(gw.url, limited["secret"], 3)
        if mode == "closed":
            assert [r.status_code for r in replies] == [503] * 3
            err = replies[0].json()["error"]
            assert err["code"] == "governance_unavailable" and "Redis" in err["message"]
        else:
            assert [r.status_code for r in replies] == [200] * 3
            assert "requests pass unchecked (governance_fail_mode: open)" in caplog.text
            # unchecked, but still charged: the store's budget totals (what Redis is rebuilt from) have them
            wait_for(lambda: budget_total(store.engine, limited["budget"]["id"]) == (Decimal("0.15"), 3))
        wait_for(lambda: spend_of(store.engine, limited["key"])[0] == 3, what="spend records, refused or not")


async def test_redis_going_away_and_coming_back(tmp_path: Path) -> None:
    target = redis.Redis.from_url(redis_url()).connection_pool.connection_kwargs
    proxy = Proxy((target.get("host", "127.0.0.1"), int(target.get("port", 6379))))
    proxy.up()
    db = target.get("db", 0)
    with redis_prefix() as prefix, store_url("sqlite", tmp_path) as url, \
            gateway(url, tmp_path, redis=f"redis://{proxy.address}/{db}", prefix=prefix,
                    ledger={"redis_timeout": 0.3}) as (gw, store, admin):
        t = tenant(admin, budget={"max_usd": 0.5, "period": "daily"})
        assert [r.status_code for r in await fire(gw.url, t["secret"], 4)] == [200] * 4
        proxy.down()
        down = await fire(gw.url, t["secret"], 3)
        assert {r.status_code for r in down} == {503}
        assert all(r.json()["error"]["code"] == "governance_unavailable" for r in down)
        proxy.up()
        replies = await fire(gw.url, t["secret"], 10)
        assert sum(r.status_code == 200 for r in replies) == 6  # $0.20 spent before: six more fit, not more
        wait_for(lambda: spend_of(store.engine, t["key"])[0] == 17, what="every call's record")
        assert spend_of(store.engine, t["key"])[1] == Decimal("0.50")
        proxy.down()


async def test_postgres_down_spend_waits_in_the_spool_and_nothing_is_401(tmp_path: Path) -> None:
    with pg_database_url() as real, redis_prefix() as prefix:
        u = make_url(real)
        proxy = Proxy((u.host or "127.0.0.1", u.port or 5432))
        proxy.up()
        url = u.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        with gateway(url, tmp_path, redis=redis_url(), prefix=prefix) as (gw, _store, admin):
            t = tenant(admin, budget={"max_usd": 1.0, "period": "daily"})
            assert [r.status_code for r in await fire(gw.url, t["secret"], 2)] == [200, 200]  # the key is cached
            engine = sa.create_engine(real.replace("postgresql://", "postgresql+psycopg://"))
            try:
                wait_for(lambda: spend_of(engine, t["key"])[0] == 2)
                proxy.down()
                replies = await fire(gw.url, t["secret"], 30)
                codes = [r.status_code for r in replies]
                assert 401 not in codes
                assert codes.count(200) == 18 and codes.count(429) == 12  # the budget still holds, in Redis
                spool = tmp_path / "spool"
                assert sum(f.stat().st_size for f in spool.glob("spend-*.jsonl")) > 30 * 200  # waiting on disk
                assert spend_of(engine, t["key"])[0] == 2
                proxy.up()
                wait_for(lambda: spend_of(engine, t["key"])[0] == 32, timeout=15, what="the spool to flush")
                assert spend_of(engine, t["key"])[1] == Decimal("1.00")
                wait_for(lambda: budget_total(engine, t["budget"]["id"]) == (Decimal("1.00"), 20))
            finally:
                engine.dispose()
                proxy.down()
