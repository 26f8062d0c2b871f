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
from switchyard.governance.auth import RateLimitDef
from switchyard.governance.ledger_memory import MemoryBackend
from switchyard.governance.ledger_model import Hold, Refused
from switchyard.governance.ratelimit import LimitState
from switchyard.governance.spend import SpendWriter
from switchyard.store import Store
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.governance import Admin, store_url
from tests.support.ledger import HI, ledger_config, redis_prefix, redis_url, tenant, wait_for

MODES = ["embedded", "redis"]


RPM = RateLimitDef(id="rl_r", scope="key", scope_id="k", rpm=60)
TPM = RateLimitDef(id="rl_t", scope="key", scope_id="k", tpm=100)


def refusal(st: LimitState, lim: RateLimitDef, tokens: int, now: float) -> tuple[str, float]:
    with pytest.raises(Refused) as r:
        st.take(lim, tokens, "x", now)
    assert r.value.retry_after is not None
    return r.value.kind, r.value.retry_after


def test_a_sliding_minute_has_no_boundary_burst() -> None:
    st = LimitState()
    for i in range(60):
        st.take(RPM, 0, f"r{i}", 30.0 + i * 0.5)
    assert refusal(st, RPM, 0, 59.9) == ("rpm", pytest.approx(30.1))  # full: the first admission leaves at 90.0
    assert refusal(st, RPM, 0, 61.0) == ("rpm", pytest.approx(29.0))  # a fixed window would have reset at 60
    st.take(RPM, 0, "r60", 90.0)  # 60 s after the first one
    st.undo("r60")
    assert len(st.times) - st.head == 59


def test_tokens_per_minute_count_the_estimate_then_the_real_total() -> None:
    st = LimitState()
    e = st.take(TPM, 10, "a", 0.0)
    st.settle(e, 80, "a", 1.0)  # the request really used 80
    assert st.total == 80
    assert refusal(st, TPM, 30, 2.0) == ("tpm", pytest.approx(58.0))  # 80 + 30 > 100 until the first leaves at 60
    assert st.total == 80  # a refusal admits nothing
    st.take(TPM, 20, "b", 2.0)
    st.undo("b")  # given back (a later limit of the same reservation refused)
    assert st.total == 80
    e = st.take(TPM, 1000, "c", 61.0)  # an empty window admits even a request larger than the limit
    assert refusal(st, TPM, 5, 62.0) == ("tpm", pytest.approx(59.0))
    st.settle(e, 7, "c", 200.0)  # settled after it left the window: nothing to correct
    st.take(TPM, 1, "d", 200.0)
    assert st.total == 1


def test_entries_stay_addressable_when_departed_ones_are_dropped() -> None:
    st = LimitState()
    big = RateLimitDef(id="rl_t", scope="key", scope_id="k", tpm=10**6)
    early = [st.take(big, 1, f"e{i}", i * 0.01) for i in range(3000)]  # one token every 10 ms, to 29.99 s
    late = st.take(big, 10, "late", 50.0)
    st.take(big, 1, "now", 85.0)  # 2,501 entries left the window (t <= 25 s) and were dropped
    st.undo("now")
    assert len(st.times) == 500 and st.total == 499 + 10
    st.settle(late, 20, "late", 85.0)
    st.settle(early[0], 99, "e0", 85.0)  # long gone: nothing to correct
    st.settle(early[2999], 5, "e2999", 85.0)  # still in the window, found by its number after the drop
    assert st.total == 499 + 20 + 4
    tight = RateLimitDef(id="rl_t", scope="key", scope_id="k", tpm=524)
    assert refusal(st, tight, 2, 85.0) == ("tpm", pytest.approx(25.01 + 60 - 85.0))  # once the oldest leaves


def test_a_forgotten_state_is_made_anew_and_old_entries_correct_nothing_in_it() -> None:
    """A limit idle for a minute is pruned; a request admitted before that, settling after, changes nothing in the
    state that replaced it (entry numbers are never reused across states)."""
    mem = MemoryBackend()
    slow = Hold("slow", (), 0, 0, [TPM], [], [TPM], [], 10)
    mem.reserve(slow, 0.0)
    mem.prune(61.0)
    assert "rl_t" not in mem.limits
    fresh = Hold("fresh", (), 0, 0, [TPM], [], [TPM], [], 10)
    mem.reserve(fresh, 62.0)
    mem.settle(slow, 0, 90, 63.0)  # its entry was in the forgotten state
    assert mem.limits["rl_t"].total == 10


def test_in_flight() -> None:
    one = RateLimitDef(id="rl_c", scope="key", scope_id="k", max_concurrent=1)
    st = LimitState()
    e = st.take(one, 0, "a", 0.0)
    assert refusal(st, one, 0, 0.0) == ("concurrent", 1.0)
    st.settle(e, 0, "a", 1.0)
    st.take(one, 0, "b", 1.0)
    st.undo("b")
    assert not st.ids


def test_a_refusal_gives_back_the_limits_already_taken() -> None:
    """All or nothing: a reservation that one limit refuses leaves every other limit as it found it."""
    mem = MemoryBackend()
    rpm = RateLimitDef(id="rl_r", scope="key", scope_id="k", rpm=10)
    tpm = RateLimitDef(id="rl_t", scope="team", scope_id="t", tpm=100)
    conc = RateLimitDef(id="rl_c", scope="user", scope_id="u", max_concurrent=1)

    def hold(rid: str, prompt: int) -> Hold:
        return Hold(rid, (), 0, 0, [rpm, tpm, conc], [rpm], [tpm], [conc], prompt)

    def state() -> tuple[int, int, set[str]]:
        r, t, c = (mem.limits[x.id] for x in (rpm, tpm, conc))
        return len(r.times) - r.head, t.total, c.ids

    first = hold("a", 60)
    mem.reserve(first, 1.0)
    with pytest.raises(Refused) as refused:
        mem.reserve(hold("b", 60), 2.0)  # rpm passes, tpm refuses
    assert (refused.value.kind, refused.value.index) == ("tpm", 0)
    assert state() == (1, 60, {"a"})
    with pytest.raises(Refused) as refused:
        mem.reserve(hold("c", 10), 3.0)  # rpm and tpm pass, the one slot in flight is taken
    assert (refused.value.kind, refused.value.index) == ("concurrent", 0)
    assert state() == (1, 60, {"a"})
    mem.settle(first, 0, 30, 4.0)
    assert state()[1:] == (30, set())
    mem.reserve(hold("c", 10), 5.0)
    assert state() == (2, 40, {"c"})


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
