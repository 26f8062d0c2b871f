"""Kill a gateway mid-load (SIGKILL: no shutdown, no flush) and restart it: every request that finished has
exactly one spend record and exactly one audit record (the chain still verifies), and the dead gateway's holds are
released when their lease runs out."""

from __future__ import annotations

import os
import signal
import threading
import time
from decimal import Decimal
from pathlib import Path

import httpx
import redis
import sqlalchemy as sa

from tests.support.gateway import MASTER_KEY
from tests.support.governance import Admin
from tests.support.ledger import (
    EXACT,
    HI,
    budget_total,
    redis_prefix,
    redis_url,
    replicas,
    tenant,
    wait_for,
    write_config,
)
from tests.support.pg import pg_database_url


def load(url: str, secret: str, stop: threading.Event, finished: list[str], lock: threading.Lock) -> None:
    """Calls one after another (streamed every other time) until told to stop; collects the request ids of those
    that finished: a whole JSON body, or a stream through its ``[DONE]``."""
    headers = {"authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=url, timeout=5) as c:
        n = 0
        while not stop.is_set():
            n += 1
            body = {"model": "exact", "messages": HI, "max_tokens": 50, "stream": n % 2 == 0}
            try:
                with c.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                    data = r.read()
                    done = r.status_code == 200 and (data.rstrip().endswith(b"data: [DONE]") if body["stream"]
                                                     else data.endswith(b"}"))
                    rid = r.headers.get("x-request-id")
            except httpx.HTTPError:
                continue  # the gateway died under this call: it did not finish
            if done and rid:
                with lock:
                    finished.append(rid)


def test_sigkill_mid_load_loses_no_finished_request(tmp_path: Path) -> None:
    with pg_database_url() as url, redis_prefix() as prefix:
        config = write_config(tmp_path / "gateway.yaml", {
            "master_key": MASTER_KEY,
            "store": url,
            "providers": {"sim": {"type": "simulated", "output_tokens": 50, "ttft_ms": 5}},
            "deployments": [EXACT],
            "governance": {"poll_interval": 0.2},
            "ledger": {"redis": redis_url(), "key_prefix": prefix, "reservation_lease": 5,
                       "spool": {"dir": str(tmp_path / "spool"), "flush_interval": 2.0}},
        })
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        stop = threading.Event()
        try:
            with replicas(config, 2) as (victim, survivor):
                admin = Admin(survivor.url)
                t = tenant(admin, budget={"max_usd": 1000.0, "period": "daily"})
                finished: list[str] = []
                lock = threading.Lock()
                workers = [threading.Thread(target=load, args=(g.url, t["secret"], stop, finished, lock),
                                            daemon=True) for g in (victim, victim, survivor)]
                for w in workers:
                    w.start()
                wait_for(lambda: len(finished) >= 150, what="load to build up")
                os.killpg(victim.process.proc.pid, signal.SIGKILL)  # mid-load: records unshipped, calls in flight
                killed = time.monotonic()
                victim.process.proc.wait(10)
                time.sleep(0.3)
                stop.set()
                for w in workers:
                    w.join(10)
                missing = len(finished) - _count(engine, finished)  # the victim's, still in its spool file
                assert missing > 0
                with replicas(config, 1) as (restarted,):  # it adopts the dead gateway's spool and ships it
                    wait_for(lambda: _count(engine, finished) == len(finished), timeout=20,
                             what="a record for every finished request")
                    with engine.connect() as conn:
                        dupes = conn.execute(sa.text("SELECT count(*) - count(DISTINCT request_id) "
                                                     "FROM request_log")).scalar()
                        total = conn.execute(sa.text("SELECT coalesce(sum(cost), 0), count(*) FROM request_log "
                                                     "WHERE key_id = :k"), {"k": t["key"]}).one()
                    print(f"\nSIGKILL mid-load: {len(finished)} finished requests ({missing} only in the dead "
                          f"gateway's spool at the kill), all with exactly one record; {int(total[1])} records in all")
                    assert dupes == 0
                    with engine.connect() as conn:  # the audit record rides the spool: one per call, none lost
                        audited = conn.execute(sa.text(
                            "SELECT count(*), count(DISTINCT request_id) FROM audit_log WHERE kind = 'call' "
                            "AND request_id = ANY(:ids)"), {"ids": finished}).one()
                    assert tuple(audited) == (len(finished), len(finished))
                    assert admin.get("/admin/audit/verify")["ok"] is True
                    # settled spend (store totals) equals the records; the dead one's holds expire (lease 5 s)
                    wait_for(lambda: budget_total(engine, t["budget"]["id"])[0] == Decimal(total[0]),
                             what="budget totals to match the records")
                    time.sleep(max(0.0, killed + 5.2 - time.monotonic()))  # its holds' lease has run out:
                    r = httpx.post(restarted.url + "/v1/chat/completions", timeout=10, json={  # the next look frees
                        "model": "exact", "messages": HI, "max_tokens": 50},
                        headers={"authorization": f"Bearer {t['secret']}"})
                    assert r.status_code == 200
                    wait_for(lambda: _held(prefix, t["budget"]["id"]) == 0, what="no holds left in Redis")
                admin.close()
        finally:
            stop.set()
            engine.dispose()


def _count(engine: sa.Engine, ids: list[str]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM request_log WHERE request_id = ANY(:ids)"),
                                {"ids": ids}).scalar() or 0)


def _held(prefix: str, budget_id: str) -> int:
    r = redis.Redis.from_url(redis_url(), decode_responses=True)
    try:
        keys = [k for k in r.scan_iter(match=f"{prefix}b:{budget_id}:*") if not k.endswith((":h", ":x"))]
        return int(r.hget(keys[0], "ru") or 0) if keys else 0
    finally:
        r.close()
