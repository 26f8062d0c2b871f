"""Scale-out: ONE ``switchyard serve --workers 2`` (SO_REUSEPORT, one port) on a shared PostgreSQL and ``ledger.redis``.

Budgets and rate limits stay exact across the workers of one command, and a revocation reaches every worker:

* 200 concurrent requests on fresh connections (the kernel spreads them over both workers) against a $1.00 budget,
  each costing exactly $0.05: exactly 20 are served, 180 refused as OpenAI ``insufficient_quota`` errors naming the
  budget; the settled spend (store and Redis) equals the sum of the per-request records and is $1.00.
* A limit of 60 requests a minute, hit from both workers at once: exactly 60 pass.
* A key revoked through the admin API on one worker is refused by the other within one second.

Which worker answered a request is known exactly: the request's connection is kept alive and asked ``/health/live``
(the worker's pid) right after (see tests/support/scaleout.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.support.gateway import MASTER_KEY
from tests.support.governance import Admin
from tests.support.ledger import (
    EXACT,
    HI,
    budget_total,
    clean_env,
    redis_prefix,
    redis_url,
    serve_cmd,
    spend_of,
    tenant,
    wait_for,
    write_config,
)
from tests.support.pg import pg_database_url
from tests.support.scaleout import Pinned, Workers, burst, serve_workers, settled
from tests.support.servers import free_port

CHAT = {"model": "exact", "messages": HI, "max_tokens": 50}  # exactly $0.05 (see tests/support/ledger.py)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workers, sa.Engine, str]]:
    tmp = tmp_path_factory.mktemp("scaleout")
    with pg_database_url() as url, redis_prefix() as prefix:
        cfg = write_config(tmp / "gateway.yaml", {
            "master_key": MASTER_KEY,
            "store": url,
            "providers": {"sim": {"type": "simulated", "output_tokens": 50, "ttft_ms": 30}},
            "deployments": [EXACT],
            # governance.poll_interval is left at its default (0.5 s): the revocation bound is the product's
            "governance": {"audit": {"enabled": False}},
            "ledger": {"redis": redis_url(), "key_prefix": prefix, "redis_timeout": 5.0,
                       "spool": {"dir": str(tmp / "spool"), "flush_interval": 0.05}},
        })
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        try:
            with serve_workers(cfg, 2) as workers:
                yield workers, engine, prefix
        finally:
            engine.dispose()


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def pinned_pair(w: Workers, secret: str) -> tuple[Pinned, Pinned]:
    """A kept-alive connection to each worker, each having loaded the key (a call that costs nothing)."""
    a, b = (Pinned(w.url, pid, bearer(secret)) for pid in sorted(w.pids))
    for p in (a, b):
        r = p.request("GET", "/v1/models")
        assert r.status_code == 200, r.text
    return a, b


def served_by(replies: list[tuple[httpx.Response, int]], w: Workers) -> dict[int, Counter[int]]:
    """Per worker pid, how many replies of each status it gave; every reply came from one of the workers, and
    both workers answered some (else the test would prove nothing about scale-out)."""
    per: dict[int, Counter[int]] = {pid: Counter() for pid in w.pids}
    for r, pid in replies:
        assert pid in per, f"answered by {pid}, not one of the workers {w.pids}"
        per[pid][r.status_code] += 1
    assert all(sum(c.values()) > 0 for c in per.values()), per
    return per


def test_200_concurrent_requests_over_two_workers_give_exactly_20(cluster: tuple[Workers, sa.Engine, str]) -> None:
    w, engine, prefix = cluster
    admin = Admin(w.url)
    t = tenant(admin, budget={"max_usd": 1.0, "period": "daily", "name": "one-dollar"})
    budget_id = t["budget"]["id"]
    for p in pinned_pair(w, t["secret"]):
        p.close()
    started = time.monotonic()
    replies = asyncio.run(burst(w.url, 200, "POST", "/v1/chat/completions", json=CHAT, headers=bearer(t["secret"])))
    took = time.monotonic() - started
    codes = Counter(r.status_code for r, _ in replies)
    per = served_by(replies, w)
    print(f"\n--workers 2, 200 concurrent requests at $0.05 against $1.00: {codes[200]} served, {codes[429]} refused "
          f"(per worker: { {pid: dict(c) for pid, c in per.items()} }), in {took:.2f}s")
    assert codes == {200: 20, 429: 180}, codes
    for r, _ in replies:
        if r.status_code == 429:  # every refusal is the budget's, in OpenAI's error format, naming the budget
            err = r.json()["error"]
            assert set(err) == {"message", "type", "param", "code"}, err
            assert err["type"] == "insufficient_quota" and err["code"] == "budget_exceeded", err
            assert f"'one-dollar' ({budget_id};" in err["message"], err["message"]
            assert r.headers["x-switchyard-budget"] == budget_id and r.headers["x-should-retry"] == "false"
        else:
            assert r.json()["usage"]["completion_tokens"] == 50
    # settled spend == the sum of the per-request records == $1.00, in the store and in Redis
    wait_for(lambda: spend_of(engine, t["key"])[0] == 200, timeout=15, what="200 spend records")
    records = spend_of(engine, t["key"])[1]
    wait_for(lambda: budget_total(engine, budget_id)[1] == 20, timeout=15, what="the budget totals")
    wait_for(lambda: int(settled(prefix, budget_id).get("ru", 1)) == 0, timeout=15, what="every hold released")
    redis_usd = Decimal(int(settled(prefix, budget_id)["su"])).scaleb(-8)
    assert records == budget_total(engine, budget_id)[0] == redis_usd == Decimal("1.00")
    with engine.connect() as conn:
        paid, dupes = conn.execute(sa.text("SELECT count(*) FILTER (WHERE cost > 0), count(*) - "
                                           "count(DISTINCT request_id) FROM request_log WHERE key_id = :k"),
                                   {"k": t["key"]}).one()
    assert (paid, dupes) == (20, 0)

    # one budget, seen at once by both: $0.10 serves one request on each worker, then none on either
    t = tenant(admin, budget={"max_usd": 0.10, "period": "daily"})
    a, b = pinned_pair(w, t["secret"])
    try:
        assert [p.request("POST", "/v1/chat/completions", json=CHAT).status_code for p in (a, b, b, a)] == \
            [200, 200, 429, 429]
    finally:
        a.close()
        b.close()
        admin.close()


def test_a_limit_of_60_requests_a_minute_lets_60_through_two_workers(cluster: tuple[Workers, sa.Engine, str]) -> None:
    w, _engine, _prefix = cluster
    admin = Admin(w.url)
    t = tenant(admin, rate_limit={"rpm": 60, "name": "sixty"}, scope="team")
    for p in pinned_pair(w, t["secret"]):
        p.close()
    replies = asyncio.run(burst(w.url, 150, "POST", "/v1/chat/completions", json=CHAT, headers=bearer(t["secret"])))
    codes = Counter(r.status_code for r, _ in replies)
    per = served_by(replies, w)
    print(f"\n--workers 2, rpm 60, 150 concurrent requests: {codes[200]} passed, {codes[429]} refused "
          f"(per worker: { {pid: dict(c) for pid, c in per.items()} })")
    assert codes == {200: 60, 429: 90}, codes
    for r, _ in replies:
        if r.status_code == 429:
            err = r.json()["error"]
            assert err["type"] == "rate_limit_error" and "'sixty'" in err["message"], err
            assert r.headers["x-switchyard-rate-limit"] == t["rate_limit"]["id"]
            assert 1 <= int(r.headers["retry-after"]) <= 60

    # one window, counted by both: 2 a minute is one request on each worker, then none on either
    t = tenant(admin, rate_limit={"rpm": 2})
    a, b = (Pinned(w.url, pid, bearer(t["secret"])) for pid in sorted(w.pids))
    try:
        assert [p.request("POST", "/v1/chat/completions", json=CHAT).status_code for p in (a, b, b, a)] == \
            [200, 200, 429, 429]
    finally:
        a.close()
        b.close()
        admin.close()


def test_a_key_revoked_on_one_worker_is_refused_by_the_other_within_a_second(
        cluster: tuple[Workers, sa.Engine, str]) -> None:
    w, _engine, _prefix = cluster
    admin = Admin(w.url)
    t = tenant(admin)
    a, b = pinned_pair(w, t["secret"])  # both workers have the key cached and valid
    on_a = Pinned(w.url, a.pid, bearer(MASTER_KEY))  # the admin API, on worker a
    try:
        assert b.request("POST", "/v1/chat/completions", json=CHAT).status_code == 200
        started = time.monotonic()
        revoked = on_a.request("POST", f"/admin/keys/{t['key']}/revoke")
        assert revoked.status_code == 200 and revoked.json()["status"] == "revoked", revoked.text
        assert a.request("GET", "/v1/models").status_code == 401  # its own admin API: applied at once
        statuses: list[int] = []
        while True:
            r = b.request("GET", "/v1/models")
            statuses.append(r.status_code)
            took = time.monotonic() - started
            if r.status_code != 200 or took > 5:
                break
            time.sleep(0.01)
        print(f"\nrevoked on worker {a.pid}: refused by worker {b.pid} after {took:.3f}s ({len(statuses)} polls)")
        assert r.status_code == 401, r.text
        err: dict[str, Any] = r.json()["error"]
        assert err["code"] == "revoked_api_key" and err["type"] == "invalid_request_error", err
        # The bound is one second (the other worker polls the store every governance.poll_interval, 0.5 s by
        # default). The 0.25 s on top is a scheduling margin for a loaded CI machine, not part of the bound.
        assert took <= 1.0 + 0.25, f"worker {b.pid} still accepted the revoked key {took:.3f}s after its revocation"
        # and it stays refused, on both workers and on fresh connections
        assert b.request("POST", "/v1/chat/completions", json=CHAT).status_code == 401
        fresh = asyncio.run(burst(w.url, 20, "GET", "/v1/models", headers=bearer(t["secret"])))
        assert {r.status_code for r, _ in fresh} == {401}
    finally:
        for p in (a, b, on_a):
            p.close()
        admin.close()


# --- --workers N without ledger.redis ------------------------------------------------------------------------------

# Each worker would enforce its own copy of every budget and rate limit (with two workers, a $1.00 budget serves
# $2.00): `serve --workers N` must refuse to start whenever virtual keys are on and there is no ledger.redis. Virtual
# keys are on with governance enabled and a key secret from any of its three sources.


@pytest.mark.parametrize(("config", "env"), [
    pytest.param({"master_key": MASTER_KEY}, {}, id="master_key"),
    pytest.param({"governance": {"key_secret": "k" * 24}}, {}, id="governance.key_secret"),
    pytest.param({}, {"SWITCHYARD_KEY_SECRET": "k" * 24}, id="SWITCHYARD_KEY_SECRET"),
])
def test_workers_without_redis_are_refused_whenever_virtual_keys_are_on(
        tmp_path: Path, config: dict[str, Any], env: dict[str, str]) -> None:
    cfg = write_config(tmp_path / "c.yaml", {
        "store": f"sqlite:///{tmp_path}/w.db", "providers": {"sim": {"type": "simulated"}},
        "deployments": [EXACT], **config})
    db = tmp_path / "w.db"
    proc = subprocess.Popen([*serve_cmd(cfg, free_port()), "--workers", "2"], cwd=tmp_path,
                            env={**clean_env(), **env}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:  # the refusal comes before the store is opened: once the store file exists, it went on to serve
        deadline = time.monotonic() + 30
        while proc.poll() is None and not db.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            stderr = proc.communicate(timeout=20)[1].decode(errors="replace")
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stderr = proc.communicate(timeout=10)[1].decode(errors="replace")
    assert not db.exists(), "--workers 2 without ledger.redis opened the store (to serve) with virtual keys on"
    assert proc.returncode == 2 and "--workers 2 needs ledger.redis" in stderr, (proc.returncode, stderr[-2000:])
