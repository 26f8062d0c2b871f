"""Calls in flight when the gateway is killed leave a record (issue 11, item 5).

Each admitted call appends an intent to the spend spool; its spend record is its outcome. A gateway started on the
same spool adopts the dead one's files, and every intent without an outcome becomes a record of status
``interrupted``, charged at its reservation. Here: a gateway under concurrent load (streamed and plain calls held
mid-way by a slow upstream) is SIGKILLed, restarted on the same store, and every request sent has exactly one
record, the budget's totals equal the records, and (Redis) the dead gateway's holds are released at once, not when
their lease runs out. Below that, the spool keeps a file while an intent in it has no outcome.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
import sqlalchemy as sa

from switchyard.governance.intents import orphans
from switchyard.records import is_intent
from switchyard.store.spool import Spool
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import MASTER_KEY
from tests.support.governance import Admin
from tests.support.ledger import budget_total, redis_prefix, redis_url, replicas, tenant, wait_for, write_config
from tests.support.pg import pg_database_url

REPLY = " ".join(f"word{i:02d}" for i in range(20))
WORKERS = 8


class Load:
    """``WORKERS`` clients, each sending calls one after another (streamed every other time) with an
    ``x-request-id`` of its own (also in the prompt, so the fake upstream shows which calls reached it), until
    frozen."""

    def __init__(self, url: str, secret: str) -> None:
        self.url, self.secret = url, secret
        self.sent: list[str] = []
        self.finished: list[str] = []
        self.frozen = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(WORKERS)]

    def _run(self, n: int) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as c:
            i = 0
            while not self.frozen.is_set():
                i += 1
                crid, stream = f"load-{n}-{i}-{uuid.uuid4().hex[:8]}", i % 2 == 0
                body = {"model": "metered", "messages": [{"role": "user", "content": f"hi {crid}"}],
                        "max_tokens": 50, "stream": stream}
                with self.lock:
                    self.sent.append(crid)
                headers = {"authorization": f"Bearer {self.secret}", "x-request-id": crid}
                try:
                    with c.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                        data = r.read()
                except httpx.HTTPError:
                    return  # the gateway died under this call
                done = r.status_code == 200 and (data.rstrip().endswith(b"data: [DONE]") if stream
                                                 else data.endswith(b"}"))
                assert done, (r.status_code, data[-300:])
                with self.lock:
                    self.finished.append(crid)


def reached(fake: FakeOpenAI) -> set[str]:
    """The request ids whose call reached the upstream."""
    return {r.json["messages"][-1]["content"].removeprefix("hi ") for r in list(fake.requests)
            if isinstance(r.json, dict) and r.json.get("messages")}


@pytest.mark.parametrize("ledger", ["embedded", "redis"])
def test_sigkill_under_load_leaves_a_record_for_every_request_sent(tmp_path: Path, fake_openai: FakeOpenAI,
                                                                   ledger: str) -> None:
    assert fake_openai.base_url is not None
    fake_openai.set_reply(REPLY)
    fake_openai.hang_next(1.0, times=10_000)  # every call waits a second at the upstream,
    fake_openai.stream_delay(0.1)  # and a stream then sends a chunk every 0.1 s: many calls are mid-way
    with pg_database_url() as url, redis_prefix() as prefix:
        led: dict[str, Any] = {"spool": {"dir": str(tmp_path / "spool"), "flush_interval": 0.2},
                               "reservation_lease": 120}  # longer than the test: no hold is freed by its lease
        if ledger == "redis":
            led.update({"redis": redis_url(), "key_prefix": prefix})
        config = write_config(tmp_path / "gateway.yaml", {
            "master_key": MASTER_KEY, "store": url, "governance": {"poll_interval": 0.2},
            "providers": {"up": {"type": "openai", "base_url": fake_openai.base_url + "/v1", "api_key": "sk-up"}},
            "deployments": [{"name": "metered", "provider": "up", "model": "gpt-4o-mini",
                             "price": {"input": 0.0, "output": 1000.0}}],
            "ledger": led,
        })
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        try:
            with replicas(config, 1) as (victim,):
                admin = Admin(victim.url)
                t = tenant(admin, budget={"max_usd": 1000.0, "period": "daily"})
                admin.close()
                load = Load(victim.url, t["secret"])
                for w in load.threads:
                    w.start()
                wait_for(lambda: len(load.finished) >= 2 * WORKERS, timeout=60, what="load to build up")
                load.frozen.set()  # no new calls: each client's last one is on its way, and is let reach the upstream
                wait_for(lambda: set(load.sent) <= reached(fake_openai) | set(load.finished), timeout=30,
                         what="every call sent to reach the upstream")
                os.killpg(victim.process.proc.pid, signal.SIGKILL)
                victim.process.proc.wait(10)
                for w in load.threads:
                    w.join(30)
            sent, finished = list(load.sent), set(load.finished)
            cut = [c for c in sent if c not in finished]
            assert len(cut) >= WORKERS // 2, (len(sent), len(finished))  # most clients had a call in flight
            with replicas(config, 1) as (restarted,):  # adopts the dead gateway's spool: intents and records
                wait_for(lambda: len(_records(engine, sent)) == len(sent), timeout=30,
                         what="a record for every request sent")
                recs = _records(engine, sent)
                assert sorted(recs) == sorted(sent)  # each request id exactly once
                with engine.connect() as conn:
                    dupes = conn.execute(sa.text("SELECT count(*) - count(DISTINCT request_id) FROM request_log")
                                         ).scalar()
                assert dupes == 0
                assert all(recs[c][0] == "ok" for c in finished)
                interrupted = [c for c in cut if recs[c][0] == "interrupted"]
                assert len(interrupted) >= WORKERS // 2 and all(recs[c][0] in ("ok", "interrupted") for c in cut)
                # charged at the reservation: 50 output tokens at $0.001 (the prompt is free)
                assert {(recs[c][1], recs[c][2], recs[c][3]) for c in interrupted} == {(0, 50, Decimal("0.05"))}
                total = sum((r[3] for r in recs.values()), Decimal(0))
                wait_for(lambda: budget_total(engine, t["budget"]["id"])[0] == total,
                         what="the budget's settled total to equal the records")
                print(f"\nSIGKILL under load: {len(sent)} requests sent, {len(finished)} finished, {len(interrupted)} "
                      f"in flight recorded as interrupted, {len(cut) - len(interrupted)} finished unseen; "
                      f"${total} in records and in the budget")
                if ledger == "redis":  # the holds the dead gateway left are settled now, not at lease expiry
                    wait_for(lambda: _redis_bucket(prefix, t["budget"]["id"]) == (0, int(total * 10**8)),
                             what="Redis: no holds left, and the settled total counted once")
                with engine.connect() as conn:  # each call's audit record rides its spend record: one each
                    audited = conn.execute(sa.text(
                        "SELECT count(*), count(DISTINCT request_id) FROM audit_log WHERE kind = 'call' "
                        "AND request_id IN (SELECT request_id FROM request_log WHERE client_request_id = ANY(:ids))"),
                        {"ids": sent}).one()
                assert tuple(audited) == (len(sent), len(sent))
                admin = Admin(restarted.url)
                assert admin.get("/admin/audit/verify")["ok"] is True
                admin.close()
                # the restarted gateway goes on charging from the right total
                r = httpx.post(restarted.url + "/v1/chat/completions", timeout=30, json={
                    "model": "metered", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50},
                    headers={"authorization": f"Bearer {t['secret']}"})
                assert r.status_code == 200
        finally:
            engine.dispose()


def _records(engine: sa.Engine, ids: list[str]) -> dict[str, tuple[str, int, int, Decimal]]:
    """client request id -> (status, http status, output tokens, cost)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT client_request_id, status, http_status, output_tokens, cost "
                                    "FROM request_log WHERE client_request_id = ANY(:ids)"), {"ids": ids}).all()
    out = {r[0]: (r[1], r[2], r[3], Decimal(r[4])) for r in rows}
    assert len(out) == len(rows), "a request id with two records"
    return out


def _redis_bucket(prefix: str, budget_id: str) -> tuple[int, int]:
    """(USD held, USD settled) in E8 units."""
    r = redis.Redis.from_url(redis_url(), decode_responses=True)
    try:
        keys = [k for k in r.scan_iter(match=f"{prefix}b:{budget_id}:*") if not k.endswith((":h", ":x"))]
        h = r.hgetall(keys[0]) if keys else {}
        return int(h.get("ru", 0)), int(h.get("su", 0))
    finally:
        r.close()


# --- the spool -----------------------------------------------------------------------------------------------------


def _intent(rid: str) -> bytes:
    return orjson.dumps({"t": "i", "rid": rid, "ts": 1.0, "ep": "chat", "model": "m", "cost": 7, "in": 1,
                         "out": 2}) + b"\n"


def _record(rid: str) -> bytes:
    return orjson.dumps({"v": 1, "rid": rid, "pad": "x" * 200}) + b"\n"


def _ship_all(s: Spool) -> list[bytes]:
    lines = []
    while (batch := s.read()) is not None:
        lines += batch.lines
        s.commit(batch)
    return lines


def test_a_file_is_kept_while_an_intent_in_it_has_no_outcome(tmp_path: Path) -> None:
    assert is_intent(_intent("x"))  # written by the previous version (format 1): still read
    dead = Spool(tmp_path, rotate_bytes=4096)
    dead.open()
    dead.append_intent(_intent("long"), "long")  # a call that outlives several files
    dead.append_intent(_intent("short"), "short")
    dead.append(_record("short"), done="short")
    for i in range(60):  # past rotate_bytes: the first file is sealed, and shipped
        dead.append(_record(f"r{i}"))
        _ship_all(dead)
    first = dead.segments[0]
    assert first.sealed and first.shipped == first.size and first.path.exists()  # kept: "long" is open
    dead.append_intent(_intent("cut"), "cut")  # in a later file, never ended
    dead.append(_record("long"), done="long")
    _ship_all(dead)
    assert not first.path.exists()  # its last open intent ended: deleted once shipped
    for seg in [*dead.segments, *([dead.active] if dead.active else [])]:  # the process dies: locks go
        os.close(seg.fd)

    live = Spool(tmp_path)
    live.open()
    assert live.adopt(scan=True) >= 1
    (group,) = live.unscanned
    lines = [x for seg in group for x in live.read_all(seg)]
    assert [d.request_id for d in orphans(lines)] == ["cut"]  # "long" ended in a later file than its intent
    _ship_all(live)
    assert all(seg.path.exists() for seg in group)  # not deleted before the intents were looked at
    live.release(group)
    assert not any(seg.path.exists() for seg in group)
