"""Budgets in Redis (one gateway here; three in test_budgets_replicas): the Lua reservation, leases that release
a dead replica's holds, idempotent settlement, and Redis state rebuilt from the store after it is lost."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis

from switchyard.config.ledger import SpoolSettings
from switchyard.governance.auth import BudgetDef
from switchyard.governance.ledger_model import BudgetPeriod, Hold, period_bounds
from switchyard.governance.ledger_redis import RedisBackend
from switchyard.governance.spend import SpendWriter
from switchyard.store import Store
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.governance import BACKENDS, Admin, store_url
from tests.support.ledger import (
    budget_total,
    delete_prefix,
    ledger_config,
    redis_prefix,
    redis_url,
    spend_of,
    tenant,
    wait_for,
)
from tests.test_budgets import ONE_DOLLAR, fire


@contextlib.contextmanager
def redis_gateway(backend: str, tmp: Path, prefix: str, **kw: Any) -> Iterator[tuple[RunningGateway, Store, Admin]]:
    with store_url(backend, tmp) as url:
        store = Store.open(url)
        cfg = ledger_config(url, tmp / "spool", redis=redis_url(), prefix=prefix, **kw)
        writer = SpendWriter(store.engine, SpoolSettings(dir=str(tmp / "spool"), flush_interval=0.05))
        try:
            with run_gateway(cfg, recorder=writer) as gw:
                admin = Admin(gw.url)
                yield gw, store, admin
                admin.close()
        finally:
            store.close()


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix() as p:
        yield p


def bucket(prefix: str, budget_id: str) -> dict[str, str]:
    r = redis.Redis.from_url(redis_url(), decode_responses=True)
    try:
        keys = [k for k in r.scan_iter(match=f"{prefix}b:{budget_id}:*") if not k.endswith((":h", ":x"))]
        assert len(keys) == 1, keys
        return {str(k): str(v) for k, v in r.hgetall(keys[0]).items()}
    finally:
        r.close()


def drain(gw: RunningGateway) -> None:
    ledger = gw.gateway.ledger
    assert ledger is not None and ledger.redis is not None
    backend = ledger.redis
    wait_for(backend.idle, what="settlements to reach Redis")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_200_concurrent_requests_give_exactly_20_through_redis(backend: str, tmp_path: Path,
                                                                     prefix: str) -> None:
    with redis_gateway(backend, tmp_path, prefix, ttft_ms=30) as (gw, store, admin):
        t = tenant(admin, budget=ONE_DOLLAR)
        replies = await fire(gw.url, t["secret"], 200)
        assert sum(r.status_code == 200 for r in replies) == 20, {r.text for r in replies if r.status_code != 200}
        assert sum(r.status_code == 429 for r in replies) == 180, {r.text for r in replies if r.status_code != 429}
        drain(gw)
        b = bucket(prefix, t["budget"]["id"])
        assert (int(b["su"]), int(b["ru"]), int(b["rt"])) == (100_000_000, 0, 0)
        wait_for(lambda: spend_of(store.engine, t["key"])[0] == 200, what="200 spend records")
        assert spend_of(store.engine, t["key"])[1] == Decimal("1.00")
        assert budget_total(store.engine, t["budget"]["id"]) == (Decimal("1.00"), 20)


async def test_a_dead_replicas_hold_expires_with_its_lease(tmp_path: Path, prefix: str) -> None:
    """A hold taken by a replica that then died (never settled, never renewed) is released after the lease, and a
    settlement that arrives after that still counts its spend exactly once."""
    with redis_gateway("sqlite", tmp_path, prefix, ledger={"reservation_lease": 5}) as (gw, _store, admin):
        t = tenant(admin, budget={"max_usd": 0.05, "period": "daily"})
        b = t["budget"]
        # another replica, in this test's event loop: it reserves, then "dies" (no settlement, no renewal)
        other = RedisBackend(gw.config.ledger, _no_rows, lambda s: None, lambda: [])
        await other.start()
        try:
            period, _, resets = period_bounds("daily", "UTC", time.time())
            bd = BudgetDef(id=b["id"], scope="key", scope_id=t["key"], period="daily", max_usd=Decimal("0.05"),
                           max_tokens=None)
            hold = Hold("req_dead", [BudgetPeriod.make(bd, "UTC", period, resets, 5_000_000, -1)], 5_000_000, 55,
                        [], [], [], [], 0)
            await other.reserve(hold)
            assert int(bucket(prefix, b["id"])["ru"]) == 5_000_000
            assert [r.status_code for r in await fire(gw.url, t["secret"], 1)] == [429]  # held by the dead one
            await asyncio.sleep(5.1)
            assert [r.status_code for r in await fire(gw.url, t["secret"], 1)] == [200]  # its lease ran out
            drain(gw)
            assert (int(bucket(prefix, b["id"])["su"]), int(bucket(prefix, b["id"])["ru"])) == (5_000_000, 0)
            for _ in range(2):  # a late settlement counts once; its retry counts nothing
                other.settle(hold, 1_000_000, 10)
                await other.drain()
            assert int(bucket(prefix, b["id"])["su"]) == 6_000_000
        finally:
            await other.aclose()


async def _no_rows() -> list[tuple[str, str, int, int]]:
    return []


async def test_lost_redis_state_is_rebuilt_from_the_store(tmp_path: Path, prefix: str) -> None:
    with redis_gateway("postgresql", tmp_path, prefix) as (gw, store, admin):
        t = tenant(admin, budget={"max_usd": 0.2, "period": "monthly"})
        assert [r.status_code for r in await fire(gw.url, t["secret"], 3)] == [200] * 3
        wait_for(lambda: budget_total(store.engine, t["budget"]["id"])[1] == 3, what="the totals in the store")
        delete_prefix(prefix)  # Redis loses everything (a restart without persistence, a FLUSHALL)
        replies = await fire(gw.url, t["secret"], 3)
        assert sorted(r.status_code for r in replies) == [200, 429, 429]  # $0.15 was rebuilt: one more fits
        drain(gw)
        assert int(bucket(prefix, t["budget"]["id"])["su"]) == 20_000_000


async def test_an_evicted_bucket_is_repaired_from_the_store(tmp_path: Path, prefix: str) -> None:
    with redis_gateway("sqlite", tmp_path, prefix, ledger={"reconcile_interval": 1}) as (gw, store, admin):
        t = tenant(admin, budget={"max_usd": 0.2, "period": "monthly"})
        assert [r.status_code for r in await fire(gw.url, t["secret"], 2)] == [200] * 2
        wait_for(lambda: budget_total(store.engine, t["budget"]["id"])[1] == 2, what="the totals in the store")
        r = redis.Redis.from_url(redis_url(), decode_responses=True)
        try:
            key = next(k for k in r.scan_iter(match=f"{prefix}b:{t['budget']['id']}:*") if k.count(":") == 3)
            r.delete(key)  # evicted alone: the ready marker is still there
        finally:
            r.close()
        def restored() -> bool:
            with contextlib.suppress(AssertionError):
                return int(bucket(prefix, t["budget"]["id"]).get("su", 0)) == 10_000_000
            return False

        wait_for(restored, timeout=5, what="the reconciler to restore the bucket")
        assert sorted(r.status_code for r in await fire(gw.url, t["secret"], 3)) == [200, 200, 429]


async def test_reserve_and_settle_latency(tmp_path: Path, prefix: str) -> None:
    """One EVALSHA to reserve (three budgets and a rate limit), one to settle: measured here, printed."""
    from switchyard.config.ledger import LedgerConfig
    from switchyard.governance.auth import RateLimitDef
    from switchyard.governance.ledger_memory import MemoryBackend

    settings = LedgerConfig(redis=redis_url(), key_prefix=prefix)
    backend = RedisBackend(settings, _no_rows, lambda s: None, lambda: [])
    await backend.start()
    period, _, resets = period_bounds("daily", "UTC", time.time())

    def hold(i: int) -> Hold:
        budgets = [BudgetPeriod.make(BudgetDef(id=f"bud_{s}", scope="key", scope_id="k", period="daily",
                                               max_usd=Decimal(10**6), max_tokens=None), "UTC", period, resets,
                                     10**14, -1) for s in ("key", "team", "org")]
        rpm = [RateLimitDef(id="rl_1", scope="key", scope_id="k", rpm=10**6)]
        return Hold(f"req_{i}", budgets, 5_000_000, 55, rpm, rpm, [], [], 0)

    try:
        await backend.reserve(hold(-1))  # the first call rebuilds the (empty) state and loads the script
        reserve, settle = [], []
        for i in range(300):
            h = hold(i)
            t0 = time.perf_counter()
            await backend.reserve(h)
            t1 = time.perf_counter()
            await backend._send_settlements([(h, 5_000_000, 55)])  # one settlement, timed alone
            t2 = time.perf_counter()
            reserve.append(t1 - t0)
            settle.append(t2 - t1)
        mem = MemoryBackend()
        t0 = time.perf_counter()
        for i in range(3000):
            h = hold(i)
            mem.reserve(h, time.time())
            mem.settle(h, 5_000_000, 55, time.time())
        embedded = (time.perf_counter() - t0) / 3000
    finally:
        await backend.aclose()

    def pct(xs: list[float], p: float) -> float:
        return sorted(xs)[int(len(xs) * p)] * 1e6

    print(f"\nreserve (Redis, 3 budgets + rpm): p50 {pct(reserve, .5):.0f} us, p99 {pct(reserve, .99):.0f} us; "
          f"settle: p50 {pct(settle, .5):.0f} us, p99 {pct(settle, .99):.0f} us; "
          f"embedded reserve+settle: {embedded * 1e6:.1f} us")
    assert pct(reserve, .5) < 5000 and embedded < 0.001
