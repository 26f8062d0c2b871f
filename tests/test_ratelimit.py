"""Rate limits: requests per minute (a sliding minute, also at a window boundary), tokens per minute, and requests
in flight, per key, user or team; embedded and in Redis. A refusal is a 429 with Retry-After."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchyard.config.ledger import SpoolSettings
from switchyard.governance.ratelimit import InFlight, RequestWindow, TokenWindow
from switchyard.governance.spend import SpendWriter
from switchyard.store import Store
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.governance import Admin, store_url
from tests.support.ledger import HI, ledger_config, redis_prefix, redis_url, tenant, wait_for

MODES = ["embedded", "redis"]


def test_a_sliding_minute_has_no_boundary_burst() -> None:
    w = RequestWindow()
    for i in range(60):
        assert w.check(60, 30.0 + i * 0.5) is None
        w.admit(30.0 + i * 0.5)
    assert w.check(60, 59.9) == pytest.approx(30.1)  # full: the first admission leaves at 90.0
    assert w.check(60, 61.0) == pytest.approx(29.0)  # a fixed window would have reset at 60
    assert w.check(60, 90.0) is None  # 60 s after the first one


def test_tokens_per_minute_count_the_estimate_then_the_real_total() -> None:
    w = TokenWindow()
    assert w.check(100, 10, 0.0) is None
    e = w.admit(10, 0.0)
    w.correct(e, 80, 1.0)  # the request really used 80
    assert w.total == 80
    assert w.check(100, 30, 2.0) == pytest.approx(58.0)  # 80 + 30 > 100 until the first leaves at 60
    assert w.check(100, 20, 2.0) is None
    assert w.check(100, 1000, 61.0) is None  # an empty window admits even a request larger than the limit
    e = w.admit(5, 61.0)
    w.correct(e, 7, 200.0)  # settled after it left the window: nothing to correct
    assert w.total == 0


def test_token_entries_stay_addressable_when_departed_ones_are_dropped() -> None:
    w = TokenWindow()
    early = [w.admit(1, i * 0.01) for i in range(3000)]  # one token every 10 ms, from 0 to 29.99 s
    late = w.admit(10, 50.0)
    assert w.check(10**6, 1, 85.0) is None  # 2,501 entries left the window (t <= 25 s) and were dropped
    assert len(w.times) == 500 and w.total == 499 + 10
    w.correct(late, 20, 85.0)
    w.correct(early[0], 99, 85.0)  # long gone: nothing to correct
    w.correct(early[2999], 5, 85.0)  # still in the window, found by its number after the drop
    assert w.total == 499 + 20 + 4
    assert w.check(524, 2, 85.0) == pytest.approx(25.01 + 60 - 85.0)  # room once the oldest left leaves


def test_in_flight() -> None:
    f = InFlight()
    f.admit("a")
    assert f.check(1) == 1.0
    f.release("a")
    assert f.check(1) is None


@contextlib.contextmanager
def gateway(mode: str, tmp: Path, **kw: Any) -> Iterator[tuple[RunningGateway, Admin]]:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(store_url("sqlite", tmp))
        extra: dict[str, Any] = {}
        if mode == "redis":
            extra = {"redis": redis_url(), "prefix": stack.enter_context(redis_prefix())}
        store = Store.open(url)
        stack.callback(store.close)
        writer = SpendWriter(store.engine, SpoolSettings(dir=str(tmp / "spool")))
        gw = stack.enter_context(run_gateway(ledger_config(url, tmp / "spool", **extra, **kw), recorder=writer))
        admin = Admin(gw.url)
        stack.callback(admin.close)
        yield gw, admin


async def fire(base: str, secret: str, n: int, **body: Any) -> list[httpx.Response]:
    payload = {"model": "exact", "messages": HI, "max_tokens": 50, **body}
    async with httpx.AsyncClient(base_url=base, timeout=30,
                                 limits=httpx.Limits(max_connections=n, max_keepalive_connections=0)) as c:
        return list(await asyncio.gather(*(c.post("/v1/chat/completions", json=payload,
                                                  headers={"authorization": f"Bearer {secret}"})
                                           for _ in range(n))))


@pytest.mark.parametrize("mode", MODES)
async def test_requests_per_minute_per_key_user_and_team(mode: str, tmp_path: Path) -> None:
    with gateway(mode, tmp_path) as (gw, admin):
        for scope in ("key", "user", "team"):
            t = tenant(admin, rate_limit={"rpm": 5}, scope=scope)
            replies = await fire(gw.url, t["secret"], 8)
            codes = sorted(r.status_code for r in replies)
            assert codes == [200] * 5 + [429] * 3, (scope, codes)
            refused = next(r for r in replies if r.status_code == 429)
            assert 55 <= int(refused.headers["retry-after"]) <= 60
            assert refused.headers["x-switchyard-rate-limit"] == t["rate_limit"]["id"]
            assert "5 requests per minute" in refused.json()["error"]["message"]
        # a team limit binds every key of the team together
        t = tenant(admin, rate_limit={"rpm": 4}, scope="team")
        other = admin.new_key(team_id=t["team"])
        a = await fire(gw.url, t["secret"], 3)
        b = await fire(gw.url, other["secret"], 3)
        assert sorted(r.status_code for r in a + b) == [200] * 4 + [429] * 2


@pytest.mark.parametrize("mode", MODES)
async def test_tokens_per_minute(mode: str, tmp_path: Path) -> None:
    with gateway(mode, tmp_path) as (gw, admin):
        t = tenant(admin, rate_limit={"tpm": 100})
        codes = [(await fire(gw.url, t["secret"], 1))[0].status_code for _ in range(3)]
        assert codes == [200, 200, 429]  # ~55 real tokens each: the third would pass 100
        r = (await fire(gw.url, t["secret"], 1))[0]
        assert "tokens per minute" in r.json()["error"]["message"] and int(r.headers["retry-after"]) >= 1


@pytest.mark.parametrize("mode", MODES)
async def test_requests_in_flight(mode: str, tmp_path: Path) -> None:
    with gateway(mode, tmp_path, ttft_ms=300) as (gw, admin):
        t = tenant(admin, rate_limit={"max_concurrent": 2})
        replies = await fire(gw.url, t["secret"], 5)
        assert sorted(r.status_code for r in replies) == [200, 200, 429, 429, 429]
        ledger = gw.gateway.ledger
        assert ledger is not None
        wait_for(lambda: not ledger.holds)
        if ledger.redis is not None:
            wait_for(ledger.redis.idle)
        assert sorted(r.status_code for r in await fire(gw.url, t["secret"], 2)) == [200, 200]
