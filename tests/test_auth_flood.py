"""A flood of random virtual keys, over HTTP: failed authentications are limited per client address (401s, then
429s that name the limit, with Retry-After, in the caller's protocol), the flood costs far fewer store
transactions than keys, and a valid key keeps working from the flooding address and from any other. Unknown keys
are remembered briefly, apart from valid ones and in bounded memory, and forgotten on any identity change."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import sqlalchemy as sa

from switchyard.governance.authlimit import AuthFailureLimiter
from switchyard.governance.cache import KeyDirectory
from tests.support.gateway import MASTER_KEY, USER_KEY, RunningGateway, run_gateway
from tests.support.governance import Admin, gov_config, store_url
from tests.support.ledger import wait_for

HI: Any = [{"role": "user", "content": "hi"}]


def random_key() -> str:
    return "sk-sy-" + secrets.token_urlsafe(32)


@contextlib.contextmanager
def gateway(backend: str, tmp: Path, **governance: Any) -> Iterator[tuple[RunningGateway, Admin]]:
    with store_url(backend, tmp) as url:
        cfg = gov_config(url)
        cfg["governance"].update(governance)
        with run_gateway(cfg) as gw:
            admin = Admin(gw.url)
            try:
                yield gw, admin
            finally:
                admin.close()


def new_key(admin: Admin) -> str:
    org = admin.org()
    user = admin.user(org_id=org["id"])
    return str(admin.new_key(user_id=user["id"])["secret"])


@contextlib.contextmanager
def count_transactions(engine: sa.Engine) -> Iterator[list[int]]:
    n = [0]

    def begin(conn: Any) -> None:
        n[0] += 1

    sa.event.listen(engine, "begin", begin)
    try:
        yield n
    finally:
        sa.event.remove(engine, "begin", begin)


def client_from(address: str, base_url: str) -> httpx.AsyncClient:
    """An HTTP client whose connections come from ``address`` (any 127.x address is loopback on Linux)."""
    return httpx.AsyncClient(base_url=base_url, timeout=30,
                             transport=httpx.AsyncHTTPTransport(local_address=address))


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_a_flood_of_random_keys_gets_429s_costs_few_transactions_and_spares_valid_keys(tmp_path: Path) -> None:
    # no audit log, so that the transactions counted are the key directory's: its reads and its polls
    with gateway("postgresql", tmp_path, audit={"enabled": False}) as (gw, admin):
        valid = new_key(admin)
        gov = gw.gateway.governance
        assert gov is not None and gov.directory is not None
        stats = gov.directory.stats
        wait_for(lambda: stats["polls"] >= 2, what="the key directory to catch up with the changes so far")
        flood: Counter[int] = Counter()
        refusals: list[httpx.Response] = []
        valid_codes: list[int] = []
        async with client_from("127.0.0.1", gw.url) as same, client_from("127.0.0.2", gw.url) as other:
            assert (await same.get("/v1/models", headers=bearer(valid))).status_code == 200  # now known-good
            sem = asyncio.Semaphore(10)

            async def bad(i: int) -> None:
                async with sem:
                    r = await same.get("/v1/models", headers=bearer(random_key()))
                flood[r.status_code] += 1
                if r.status_code == 429 and len(refusals) < 5:
                    refusals.append(r)
                if i % 50 == 0:  # the valid key, from the flooding address and from another one, meanwhile
                    for c in (same, other):
                        v = await c.post("/v1/chat/completions", headers=bearer(valid),
                                         json={"model": "sim-a", "messages": HI})
                        valid_codes.append(v.status_code)

            with count_transactions(gov.db.engine) as transactions:
                # the key directory's polls, and the org policy sets' (the policy stage listens to them)
                started, polls = time.monotonic(), stats["polls"] + gov.org_policies.polls
                await asyncio.gather(*(bad(i) for i in range(2000)))
                elapsed, polls = time.monotonic() - started, stats["polls"] + gov.org_policies.polls - polls
            # a key that failed lately is remembered (until any identity change)
            assert (await other.get("/v1/models", headers=bearer(random_key()))).status_code == 401
            assert gov.directory.snapshot()["unknown"] > 0
        print(f"\n2000 random keys: {dict(flood)}, {transactions[0]} store transactions ({polls} of them polls) in "
              f"{elapsed:.1f} s; key directory: {gov.directory.snapshot()}")
        assert set(flood) == {401, 429} and sum(flood.values()) == 2000
        # 20 at once, then 2 a second (plus the ten in flight when the limit was reached)
        assert 20 <= flood[401] <= 20 + 2 * elapsed + 10 + 5, (flood, elapsed)
        assert transactions[0] <= flood[401] + polls + 1  # at most one read per 401 (fewer: batched), none per 429
        assert transactions[0] < 200  # far fewer than the 2000 keys (the issue measured ~3,300)
        assert valid_codes == [200] * 80  # never slowed by the flood
        r = refusals[0]
        err = r.json()["error"]
        assert err["type"] == "rate_limit_error" and err["code"] == "too_many_failed_authentications"
        assert "Too many failed authentications from this address: limit 20 per 10 s" in err["message"]
        assert 1 <= int(r.headers["retry-after"]) <= 10
        # every identity change forgets the unknown keys (one may have just been created)
        new_key(admin)
        assert gov.directory.snapshot()["unknown"] == 0


async def test_refusals_in_every_protocol_and_which_keys_still_pass(tmp_path: Path) -> None:
    # three failures an hour: the address stays blocked for the whole test, however slow the machine
    with gateway("sqlite", tmp_path, auth_failures={"limit": 3, "window": 3600}) as (gw, admin):
        warm, cold = new_key(admin), new_key(admin)
        oa = openai.OpenAI(base_url=gw.openai_base, api_key=warm, max_retries=0)
        assert oa.models.list().data  # the warm key has been used: it is in the key cache
        async with client_from("127.0.0.1", gw.url) as same, client_from("127.0.0.2", gw.url) as other:
            for _ in range(3):
                assert (await same.get("/v1/models", headers=bearer(random_key()))).status_code == 401
            # OpenAI protocol (the SDK raises RateLimitError)
            with pytest.raises(openai.RateLimitError) as e:
                oa.with_options(api_key=random_key()).models.list()
            assert "limit 3 per 3600 s" in e.value.message
            assert 1 <= int(e.value.response.headers["retry-after"]) <= 1200  # one failure every 1200 s
            # Anthropic protocol
            with anthropic.Anthropic(base_url=gw.url, api_key=random_key(), max_retries=0) as ac, \
                    pytest.raises(anthropic.RateLimitError) as ae:
                ac.messages.create(model="sim-a", max_tokens=8, messages=HI)
            body = ae.value.response.json()
            assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
            assert "limit 3 per 3600 s" in body["error"]["message"] and "retry-after" in ae.value.response.headers
            # the admin API
            r = await same.get("/admin/orgs", headers=bearer(random_key()))
            assert r.status_code == 429 and "limit 3 per 3600 s" in r.json()["error"]["message"]
            # what still passes from the blocked address: known-good keys, and a missing key is a plain 401
            assert (await same.get("/admin/orgs", headers=bearer(MASTER_KEY))).status_code == 200
            assert (await same.get("/v1/models", headers=bearer(USER_KEY))).status_code == 200
            assert (await same.get("/v1/models", headers=bearer(warm))).status_code == 200
            assert (await same.get("/v1/models")).status_code == 401
            # a valid key never used before cannot be told from a guess without a lookup: refused here ...
            assert (await same.get("/v1/models", headers=bearer(cold))).status_code == 429
            # ... but never from another address, and once it has been seen, not from this one either
            assert (await other.get("/v1/models", headers=bearer(cold))).status_code == 200
            assert (await same.get("/v1/models", headers=bearer(cold))).status_code == 200
            # another address has its own count
            assert (await other.get("/v1/models", headers=bearer(random_key()))).status_code == 401


async def test_a_limit_of_zero_turns_the_limiter_off(tmp_path: Path) -> None:
    with gateway("sqlite", tmp_path, auth_failures={"limit": 0}) as (gw, _admin):
        assert gw.gateway.auth.limiter is None
        async with client_from("127.0.0.1", gw.url) as c:
            codes = {(await c.get("/v1/models", headers=bearer(random_key()))).status_code for _ in range(40)}
        assert codes == {401}


def test_the_limiter_is_a_token_bucket_per_address_in_bounded_memory() -> None:
    now = [100.0]
    lim = AuthFailureLimiter(limit=4, window=2.0, max_clients=100, clock=lambda: now[0])
    assert lim.retry_after("10.0.0.1") is None and len(lim) == 0
    for _ in range(4):
        assert lim.retry_after("10.0.0.1") is None
        lim.failed("10.0.0.1")
    assert lim.retry_after("10.0.0.1") == pytest.approx(0.5)  # one token every 2 s / 4
    assert lim.retry_after("10.0.0.2") is None  # another address is not affected
    now[0] += 0.25
    assert lim.retry_after("10.0.0.1") == pytest.approx(0.25)
    now[0] += 0.25
    assert lim.retry_after("10.0.0.1") is None  # one failure allowed again ...
    lim.failed("10.0.0.1")
    assert lim.retry_after("10.0.0.1") == pytest.approx(0.5)  # ... and only one
    # an IPv6 host counts by its /64
    for i in range(4):
        lim.failed(f"2001:db8:1:2::{i + 1}")
    assert lim.retry_after("2001:db8:1:2:ffff::9") is not None and lim.retry_after("2001:db8:1:3::1") is None
    # a flood from many addresses keeps at most max_clients of them
    for i in range(1000):
        lim.failed(f"10.1.{i // 256}.{i % 256}")
    assert len(lim) <= 100
    # a lookup from an address that failed lately holds a token while it runs: concurrent ones cannot overshoot
    other = AuthFailureLimiter(limit=2, window=100.0, clock=lambda: now[0])
    assert not other.tracking("10.9.9.9")
    other.failed("10.9.9.9")
    assert other.tracking("10.9.9.9")
    assert other.take("10.9.9.9") is None  # held: the last token
    assert other.take("10.9.9.9") == pytest.approx(50.0)  # none left: refused, for 50 s
    other.refund("10.9.9.9")  # the first lookup found a valid key
    assert other.take("10.9.9.9") is None
    now[0] += 100
    assert not other.tracking("10.9.9.9") and len(other) == 0  # refilled, and forgotten
    err = lim.refusal(0.2)
    assert err.status == 429 and err.headers["retry-after"] == "1"
    assert err.message == ("Too many failed authentications from this address: limit 4 per 2 s. Retry after 1 s.")


async def test_unknown_keys_are_remembered_briefly_in_bounded_memory_apart_from_valid_keys(tmp_path: Path) -> None:
    with gateway("postgresql", tmp_path) as (gw, admin):
        gov = gw.gateway.governance
        assert gov is not None and gov.hasher is not None
        now = [1000.0]
        d = KeyDirectory(gov.db, gov.hasher, poll_interval=5, negative_ttl=10, negative_size=100,
                         clock=lambda: now[0])
        await d.poll_once()  # learn the identity version
        valid = new_key(admin)
        await d.poll_once()
        assert await d.resolve(valid) is not None and len(d) == 1
        bogus = random_key()
        loads = d.stats["loads"]
        assert await d.resolve(bogus) is None and d.stats["loads"] == loads + 1
        assert await d.resolve(bogus) is None and d.stats["loads"] == loads + 1  # remembered
        now[0] += 9
        assert await d.resolve(bogus) is None and d.stats["loads"] == loads + 1
        now[0] += 2  # past negative_ttl: looked up again
        assert await d.resolve(bogus) is None and d.stats["loads"] == loads + 2
        # concurrent lookups of one unknown key share a read; a burst of distinct ones is read in batches
        assert await asyncio.gather(*(d.resolve(k) for k in [random_key()] * 50)) == [None] * 50
        assert d.stats["loads"] == loads + 3
        assert gov.directory is not None
        reads = d.stats["loads"]
        with count_transactions(gov.db.engine) as transactions:
            # the org policy sets' poller and the gateway's own key directory may read meanwhile (on a slow machine
            # the burst outlasts their poll intervals)
            org_polls, own_polls = gov.org_policies.polls, gov.directory.stats["polls"]
            assert await asyncio.gather(*(d.resolve(random_key()) for _ in range(1000))) == [None] * 1000
            org_polls = gov.org_policies.polls - org_polls
            own_polls = gov.directory.stats["polls"] - own_polls
        assert d.stats["loads"] - reads <= 3  # 500 hashes a read
        assert transactions[0] - org_polls - own_polls <= 3, transactions
        # memory stays bounded, and the valid key was not pushed out: still a hit, without a read
        assert d.snapshot()["unknown"] <= 100 and len(d) == 1
        with count_transactions(gov.db.engine) as transactions:
            org_polls, own_polls = gov.org_policies.polls, gov.directory.stats["polls"]
            assert await d.resolve(valid) is not None
            org_polls = gov.org_policies.polls - org_polls
            own_polls = gov.directory.stats["polls"] - own_polls
        assert transactions[0] - org_polls - own_polls == 0
        # an identity change forgets every unknown key at the next poll
        new_key(admin)
        await d.poll_once()
        assert d.snapshot()["unknown"] == 0
        assert await d.resolve(bogus) is None and d.stats["loads"] > loads + 3
        await d.stop()


async def test_a_negative_ttl_of_zero_remembers_nothing(tmp_path: Path) -> None:
    with gateway("sqlite", tmp_path, negative_ttl=0) as (gw, _admin):
        gov = gw.gateway.governance
        assert gov is not None and gov.directory is not None
        bogus = random_key()
        loads = gov.directory.stats["loads"]
        async with client_from("127.0.0.1", gw.url) as c:
            for _ in range(3):
                assert (await c.get("/v1/models", headers=bearer(bogus))).status_code == 401
        assert gov.directory.stats["loads"] == loads + 3 and gov.directory.snapshot()["unknown"] == 0
