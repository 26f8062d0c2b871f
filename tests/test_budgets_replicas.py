"""The proof across replicas: three ``switchyard serve`` processes share one PostgreSQL and one Redis.

* 200 concurrent requests against a $1.00 budget, each costing exactly $0.05, spread over the three: exactly 20
  are served.
* A limit of 60 requests a minute, hit from the three at once: exactly 60 pass, not 180.
* The settled spend (Redis, and the store's budget totals) equals the sum of the per-request records, to the cent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa

from tests.support.gateway import MASTER_KEY
from tests.support.governance import Admin
from tests.support.ledger import (
    EXACT,
    HI,
    Replica,
    budget_total,
    redis_prefix,
    redis_url,
    replicas,
    spend_of,
    tenant,
    wait_for,
    write_config,
)
from tests.support.pg import pg_database_url


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Replica], sa.Engine, str]]:
    tmp = tmp_path_factory.mktemp("replicas")
    with pg_database_url() as url, redis_prefix() as prefix:
        cfg = write_config(tmp / "gateway.yaml", {
            "master_key": MASTER_KEY,
            "store": url,
            "providers": {"sim": {"type": "simulated", "output_tokens": 50, "ttft_ms": 30}},
            "deployments": [EXACT],
            "governance": {"poll_interval": 0.2, "audit": {"enabled": False}},
            "ledger": {"redis": redis_url(), "key_prefix": prefix,
                       "spool": {"dir": str(tmp / "spool"), "flush_interval": 0.05}},
        })
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        try:
            with replicas(cfg, 3) as gateways:
                yield gateways, engine, prefix
        finally:
            engine.dispose()


async def spread(urls: list[str], secret: str, n: int) -> list[httpx.Response]:
    """``n`` concurrent requests, round-robin over the replicas, each on its own connection."""
    body = {"model": "exact", "messages": HI, "max_tokens": 50}
    headers = {"authorization": f"Bearer {secret}"}
    clients = [httpx.AsyncClient(base_url=u, timeout=30, limits=httpx.Limits(max_connections=n,
                                                                            max_keepalive_connections=0))
               for u in urls]
    try:
        return list(await asyncio.gather(*(clients[i % len(urls)].post("/v1/chat/completions", json=body,
                                                                        headers=headers) for i in range(n))))
    finally:
        for c in clients:
            await c.aclose()


def warm(urls: list[str], secret: str) -> None:
    """Let every replica load the key (and its budgets) into its cache, with a call that costs nothing."""
    for u in urls:
        r = httpx.get(u + "/v1/models", headers={"authorization": f"Bearer {secret}"}, timeout=10)
        assert r.status_code == 200, r.text


def settled(prefix: str, budget_id: str) -> dict[str, Any]:
    r = redis.Redis.from_url(redis_url(), decode_responses=True)
    try:
        keys = [k for k in r.scan_iter(match=f"{prefix}b:{budget_id}:*") if not k.endswith((":h", ":x"))]
        return {str(k): str(v) for k, v in r.hgetall(keys[0]).items()}
    finally:
        r.close()


def test_200_concurrent_requests_across_three_replicas_give_exactly_20(
        cluster: tuple[list[Replica], sa.Engine, str]) -> None:
    gateways, engine, prefix = cluster
    urls = [g.url for g in gateways]
    admin = Admin(urls[0])
    t = tenant(admin, budget={"max_usd": 1.0, "period": "daily", "name": "one-dollar"})
    warm(urls, t["secret"])
    started = time.monotonic()
    replies = asyncio.run(spread(urls, t["secret"], 200))
    took = time.monotonic() - started
    codes = [r.status_code for r in replies]
    per = [(sum(1 for r in replies[n::3] if r.status_code == 200), sum(1 for r in replies[n::3]
                                                                      if r.status_code == 429)) for n in range(3)]
    print(f"\n3 replicas, 200 concurrent requests at $0.05 against $1.00: {codes.count(200)} served, "
          f"{codes.count(429)} refused (served/refused per replica: {per}), in {took:.2f}s")
    assert codes.count(200) == 20 and codes.count(429) == 180, sorted(set(codes))
    refusal = next(r for r in replies if r.status_code == 429).json()["error"]
    assert refusal["code"] == "budget_exceeded" and t["budget"]["id"] in refusal["message"]
    # settled spend == the sum of the per-request records, to the cent, in Redis and in the store
    wait_for(lambda: spend_of(engine, t["key"])[0] == 200, timeout=15, what="200 spend records")
    records = spend_of(engine, t["key"])[1]
    wait_for(lambda: budget_total(engine, t["budget"]["id"])[1] == 20, what="the budget totals")
    wait_for(lambda: int(settled(prefix, t["budget"]["id"]).get("ru", 1)) == 0, what="every hold released")
    redis_usd = Decimal(int(settled(prefix, t["budget"]["id"])["su"])).scaleb(-8)
    assert records == budget_total(engine, t["budget"]["id"])[0] == redis_usd == Decimal("1.00")
    with engine.connect() as conn:
        dupes = conn.execute(sa.text("SELECT count(*) - count(DISTINCT request_id) FROM request_log")).scalar()
    assert dupes == 0
    # one shared budget: $0.15 serves one request on each replica, then none anywhere
    t = tenant(admin, budget={"max_usd": 0.15, "period": "daily"})
    one_by_one = [asyncio.run(spread([u], t["secret"], 1))[0].status_code for u in urls * 2]
    assert one_by_one == [200, 200, 200, 429, 429, 429]
    admin.close()


def test_a_global_limit_of_60_requests_a_minute_lets_60_through_not_180(
        cluster: tuple[list[Replica], sa.Engine, str]) -> None:
    gateways, _engine, _prefix = cluster
    urls = [g.url for g in gateways]
    admin = Admin(urls[0])
    t = tenant(admin, rate_limit={"rpm": 60, "name": "sixty"}, scope="team")
    warm(urls, t["secret"])
    replies = asyncio.run(spread(urls, t["secret"], 150))
    codes = [r.status_code for r in replies]
    print(f"\n3 replicas, rpm 60, 150 concurrent requests: {codes.count(200)} passed, {codes.count(429)} refused")
    assert codes.count(200) == 60 and codes.count(429) == 90, sorted(set(codes))
    refused = next(r for r in replies if r.status_code == 429)
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "'sixty'" in refused.json()["error"]["message"]
    admin.close()
