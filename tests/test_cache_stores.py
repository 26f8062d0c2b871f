"""The cache's stores and bounds: TTL on an injected clock, the size bounds, the embedded store on SQLite and
PostgreSQL (written behind, warmed at start, shared between gateways on one store), Redis (own key prefix), and
no hit across tenants (two orgs' virtual keys with identical prompts)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from switchyard.cache.embedded import EmbeddedStore
from switchyard.cache.index import Entry, MemoryIndex
from switchyard.cache.redis_store import RedisStore
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import USER_KEY, RunningGateway, run_gateway
from tests.support.governance import Admin, gov_config, store_url
from tests.support.ledger import redis_prefix, redis_url
from tests.test_cache import ask, config, settle, upstream_calls


def vec(seed: int) -> Any:
    v = np.random.default_rng(seed).standard_normal(256).astype(np.float32)
    return v / np.linalg.norm(v)


def entry(key: str, bucket: str = "b", seed: int = 0, created: float = 1000.0, ttl: float = 60.0) -> Entry:
    return Entry(key, bucket, vec(seed), b'{"m":"x","c":[],"u":null,"f":null}', 0.5, 120.0, created,
                 created + ttl, "chat")


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def cache_stage(g: RunningGateway) -> Any:
    return next(s for s in g.gateway.chain.stages if getattr(s, "name", "") == "cache")


def test_ttl_expiry_on_an_injected_clock(fake_openai: FakeOpenAI) -> None:
    assert fake_openai.base_url is not None
    with run_gateway(config(fake_openai.base_url, ttl_s=30)) as g:
        clock = Clock()
        cache_stage(g).clock = clock
        ask(g, "How tall is Everest?")
        settle(g)
        clock.now += 29
        assert ask(g, "How tall is Everest?").headers["x-switchyard-cache"] == "hit"
        assert ask(g, "How tall is Mount Everest?").headers["x-switchyard-cache"].startswith("similar")
        clock.now += 2
        assert ask(g, "How tall is Everest?").headers["x-switchyard-cache"] == "miss"
        assert upstream_calls(fake_openai) == 2


def test_the_size_bound_evicts_the_least_recently_used(fake_openai: FakeOpenAI) -> None:
    assert fake_openai.base_url is not None
    with run_gateway(config(fake_openai.base_url, max_entries=2, similarity=False)) as g:
        for q in ("one?", "two?"):
            ask(g, q)
            settle(g)
        assert ask(g, "one?").headers["x-switchyard-cache"] == "hit"  # one is now the most recently used
        ask(g, "three?")
        settle(g)
        assert ask(g, "one?").headers["x-switchyard-cache"] == "hit"
        assert ask(g, "three?").headers["x-switchyard-cache"] == "hit"
        assert ask(g, "two?").headers["x-switchyard-cache"] == "miss"  # evicted
        assert len(next(s for s in g.gateway.services if hasattr(s, "index")).index) == 2  # the cache store


def test_index_bounds_per_shape_and_expiry() -> None:
    idx = MemoryIndex(max_entries=100, max_per_shape=3)
    for i in range(5):
        idx.put(entry(f"k{i}", seed=i, created=1000.0 + i))
    assert len(idx.buckets["b"].entries) == 3 and set(idx.entries) == {"k2", "k3", "k4"}
    found = idx.similar("b", vec(3), 0.99, 1001.0)
    assert found is not None and found.entry.key == "k3" and found.score == pytest.approx(1.0, abs=1e-5)
    assert idx.similar("b", vec(3), 0.99, 1063.5) is None  # k3 expired at 1063
    assert "k3" not in idx.entries
    assert idx.expire(2000.0) == 2 and len(idx) == 0 and not idx.buckets


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_embedded_store_writes_behind_and_warms(backend: str, tmp_path: Path) -> None:
    async def run(url: str) -> None:
        a = EmbeddedStore(url, max_entries=3, max_per_shape=10, interval=60)
        b = EmbeddedStore(url, max_entries=3, max_per_shape=10, interval=60)
        await a.start()
        await b.start()
        now = time.time()
        a.put(entry("k1", seed=1, created=now))
        a.put(entry("k0", seed=0, created=now - 100, ttl=10))  # already expired: dropped from the table
        assert a.lookup("k1", "b", None, 0.9, now) is not None  # served from memory before any write
        assert b.lookup("k1", "b", None, 0.9, now) is None
        await a.flush()
        await b.flush()  # b reads what a wrote
        got = b.lookup("zz", "b", lambda: vec(1), 0.99, now)
        assert got is not None and got.entry.key == "k1" and got.kind == "similar"
        for i in range(2, 6):
            a.put(entry(f"k{i}", seed=i, created=now + i))
        await a.flush()
        await a.aclose()
        await b.aclose()
        c = EmbeddedStore(url, max_entries=3, max_per_shape=10, interval=60)  # a restart: warmed from the table
        await c.start()
        assert sorted(c.index.entries) == ["k3", "k4", "k5"]  # the table kept the newest 3
        found = c.lookup("k4", "b", None, 0.9, now)
        assert found is not None and found.entry.payload == entry("k4").payload and found.entry.cost == 0.5
        await c.aclose()

    with store_url(backend, tmp_path) as url:
        asyncio.run(run(url))


def test_redis_store_on_the_real_redis() -> None:
    async def run(prefix: str) -> None:
        clock = Clock()
        s = RedisStore(redis_url(), prefix, max_entries=3, max_per_shape=2, timeout=1.0, clock=clock)
        now = clock.now
        s.put(entry("k1", seed=1, created=now, ttl=30))
        await s.drain()
        got = await s.lookup("k1", "b", None, 0.9, now)
        assert got is not None and got.kind == "exact" and got.entry.cost == 0.5
        got = await s.lookup("other", "b", lambda: vec(1), 0.99, now)
        assert got is not None and got.kind == "similar" and got.entry.key == "k1"
        assert await s.lookup("other", "b2", lambda: vec(1), 0.99, now) is None  # another scope or shape
        assert await s.lookup("k1", "b", None, 0.9, now + 31) is None  # expired
        assert 0 < await s.redis.pttl(prefix + "e:k1") <= 30_000
        for i in range(2, 6):
            s.put(entry(f"k{i}", bucket=f"b{i}", seed=i, created=now + i, ttl=30))
            await s.drain()
        assert await s.redis.zcard(prefix + "all") == 3  # the size bound
        assert await s.lookup("k2", "b2", None, 0.9, now) is None  # evicted (oldest)
        assert await s.lookup("k5", "b5", None, 0.9, now) is not None
        for i in range(6, 9):
            s.put(entry(f"k{i}", bucket="s", seed=i, created=now + i, ttl=30 + i))
            await s.drain()
        assert await s.redis.hlen(prefix + "v:s") == 2  # the per-shape bound: the first to expire went
        assert await s.lookup("k6", "s", None, 0.9, now) is None
        await s.aclose()

    with redis_prefix() as prefix:
        asyncio.run(run(prefix))


def test_redis_store_through_the_gateway(fake_openai: FakeOpenAI) -> None:
    assert fake_openai.base_url is not None
    with redis_prefix() as prefix:
        cfg = config(fake_openai.base_url, store="redis", redis=redis_url(), redis_prefix=prefix)
        with run_gateway(cfg) as g1, run_gateway(cfg) as g2:  # two replicas on one Redis
            ask(g1, "Who wrote Hamlet?")
            time.sleep(0.2)
            assert ask(g2, "Who wrote Hamlet?").headers["x-switchyard-cache"] == "hit"
            assert ask(g2, "Who was the author of Hamlet?").headers["x-switchyard-cache"].startswith("similar")
            assert upstream_calls(fake_openai) == 1


@pytest.fixture
def tenants(tmp_path: Path, fake_openai: FakeOpenAI) -> Iterator[tuple[RunningGateway, Admin]]:
    assert fake_openai.base_url is not None
    with store_url("sqlite", tmp_path) as url:
        base = config(fake_openai.base_url, store="embedded")
        cfg = gov_config(url, providers=base["providers"], deployments=base["deployments"], routes=base["routes"],
                         cache=base["cache"], keys=[{"key": USER_KEY, "name": "user", "logging": "full"}])
        with run_gateway(cfg) as g:
            admin = Admin(g.url)
            try:
                yield g, admin
            finally:
                admin.close()


def test_two_orgs_never_share_an_entry(tenants: tuple[RunningGateway, Admin], fake_openai: FakeOpenAI) -> None:
    g, admin = tenants
    keys = []
    for _ in range(2):
        org = admin.org()
        user = admin.user("member", org_id=org["id"])
        keys.append(admin.new_key(user_id=user["id"], logging="full")["secret"])
    third_org_key = admin.new_key(user_id=admin.user("member", org_id=admin.org()["id"])["id"], logging="full")
    a, b = keys
    fake_openai.set_reply("org A's figures")
    ask(g, "What is our Q3 revenue?", key=a)
    settle(g)
    assert ask(g, "What is our Q3 revenue?", key=a).headers["x-switchyard-cache"] == "hit"
    fake_openai.set_reply("org B's figures")
    assert ask(g, "What was our Q3 revenue?", key=b).headers["x-switchyard-cache"] == "miss"  # a paraphrase
    r = ask(g, "What is our Q3 revenue?", key=b)  # identical prompt, another org: B's own (similar) entry at most
    assert r.headers["x-switchyard-cache"] != "hit" and r.parse().choices[0].message.content == "org B's figures"
    assert ask(g, "What is our Q3 revenue?", key=USER_KEY).headers["x-switchyard-cache"] == "miss"  # a static key
    assert ask(g, "What is our Q3 revenue?", key=third_org_key["secret"]).headers["x-switchyard-cache"] == "miss"
    assert upstream_calls(fake_openai) == 4
    # a zero-retention virtual key (the default logging mode) is never cached
    org = admin.org()
    zero = admin.new_key(user_id=admin.user("member", org_id=org["id"])["id"])["secret"]
    for _ in range(2):
        assert "x-switchyard-cache" not in ask(g, "Anything", key=zero).headers
        settle(g)
    assert upstream_calls(fake_openai) == 6


def test_keys_of_one_org_share_its_entries(tenants: tuple[RunningGateway, Admin]) -> None:
    g, admin = tenants
    org = admin.org()
    k1 = admin.new_key(user_id=admin.user("member", org_id=org["id"])["id"], logging="metadata")["secret"]
    k2 = admin.new_key(user_id=admin.user("member", org_id=org["id"])["id"], logging="metadata")["secret"]
    ask(g, "Shared question", key=k1)
    settle(g)
    assert ask(g, "Shared question", key=k2).headers["x-switchyard-cache"] == "hit"
