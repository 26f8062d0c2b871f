"""Spend records: the durable spool (append, rotate, adopt a dead process's file, a torn last line), idempotent
shipping with rollups counted once, ``GET /admin/spend`` within each role's view, and ``switchyard spend report``."""

from __future__ import annotations

import asyncio
import csv
import fcntl
import io
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from switchyard.cli.main import main as cli
from switchyard.config.ledger import SpoolSettings
from switchyard.governance.auth import Principal
from switchyard.governance.db import Db
from switchyard.governance.ledger_model import Charge
from switchyard.governance.spend import SpendWriter, ship
from switchyard.messages import Usage
from switchyard.records import CallRecord, encode, read_line, stored
from switchyard.store import Store
from switchyard.store.spend_tables import DIM
from switchyard.store.spool import Spool
from tests.support.gateway import run_gateway
from tests.support.governance import BACKENDS, Admin, store_url
from tests.support.ledger import ledger_config, spend_of, tenant, wait_for, write_config
from tests.test_budgets import fire


def record(rid: str, cost: float = 0.05, *, key: str = "vk_1", team: str | None = "team_1", ts: float | None = None,
           tags: frozenset[str] = frozenset(), charges: list[Charge] | None = None) -> CallRecord:
    p = Principal(id=key, name=None, key_id=key, user_id="user_1", team_id=team, org_id="org_1", tags=tags)
    return CallRecord(request_id=rid, ts=ts or time.time(), principal_id=key, endpoint="chat", model="exact",
                      route=None, deployment="exact", provider="sim", status="ok", http_status=200,
                      usage=Usage(input_tokens=5, output_tokens=50), cost=cost, latency_ms=12.5, ttft_ms=3.0,
                      attempts=1, principal=p, charges=charges)


# --- the spool -----------------------------------------------------------------------------------------------


def test_spool_lines_are_read_whole_committed_and_rotated(tmp_path: Path) -> None:
    s = Spool(tmp_path, rotate_bytes=4096)
    s.open()
    for i in range(100):
        s.append(b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * 60))
    seen = []
    while (batch := s.read(max_lines=30)) is not None:
        seen += batch.lines
        s.commit(batch)
    assert len(seen) == 100 and seen[0].startswith(b'{"n": 0,')
    assert s.pending() == 0
    files = sorted(tmp_path.glob("spend-*.jsonl"))
    assert len(files) == 1 and files[0] == s.active.path  # type: ignore[union-attr]  # sealed files are gone
    s.close()
    assert not list(tmp_path.glob("spend-*.jsonl"))  # fully shipped: nothing left behind


def test_a_line_longer_than_a_read_is_read_whole(tmp_path: Path) -> None:
    """A call logged in full (its prompt in the spool record) can be longer than one read: it comes out whole."""
    s = Spool(tmp_path)
    s.open()
    big = b'{"rid": "big", "pl": "%s"}' % (b"x" * 1_500_000)
    for line in (b'{"rid": "a"}', big, b'{"rid": "b"}'):
        s.append(line + b"\n")
    seen = []
    while (batch := s.read(max_bytes=1 << 20)) is not None:
        seen += batch.lines
        s.commit(batch)
    assert seen == [b'{"rid": "a"}', big, b'{"rid": "b"}']
    s.close()


def test_a_dead_process_file_is_adopted_and_a_torn_line_dropped(tmp_path: Path) -> None:
    code = ("import os, signal, sys\n"
            "from switchyard.store.spool import Spool\n"
            "s = Spool(sys.argv[1]); s.open()\n"
            "for i in range(5): s.append(b'{\"rid\": \"r%d\"}\\n' % i)\n"
            "os.write(s.active.fd, b'{\"rid\": \"torn')\n"  # a record cut short (as by a power cut)
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], timeout=30)
    assert done.returncode == -9
    live = Spool(tmp_path)
    live.open()
    assert live.adopt() == 1
    lines = []
    while (batch := live.read()) is not None:
        lines += batch.lines
        live.commit(batch)
    assert lines == [b'{"rid": "r%d"}' % i for i in range(5)]
    assert len(list(tmp_path.glob("spend-*.jsonl"))) == 1  # only the live one's own file is left
    live.close()


def test_a_live_process_file_is_not_adopted(tmp_path: Path) -> None:
    a, b = Spool(tmp_path), Spool(tmp_path)
    a.open()
    a.append(b"{}\n")
    b.open()
    assert b.adopt() == 0  # a's lock is held
    fd = os.open(a.active.path, os.O_RDONLY)  # type: ignore[union-attr]
    with pytest.raises(BlockingIOError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)
    a.close()
    b.close()


# --- shipping --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_shipping_twice_stores_and_rolls_up_once(backend: str, tmp_path: Path) -> None:
    import orjson

    with store_url(backend, tmp_path) as url:
        store = Store.open(url)
        try:
            db = Db(store.engine)
            recs = [read_line(encode(record(f"req_{i}", tags=frozenset({"a", "b"}),
                                            charges=[("bud_1", "total", 5_000_000, 55)])))
                    for i in range(10)]
            assert ship(db, recs[:6]) == 6
            assert ship(db, recs) == 4  # the first six were already there
            with store.engine.connect() as conn:
                assert conn.execute(sa.text("SELECT count(*) FROM request_log")).scalar() == 10
                hourly = conn.execute(sa.text("SELECT sum(requests), sum(cost_e8), sum(output_tokens) "
                                              "FROM spend_hourly")).one()
                assert tuple(int(x) for x in hourly) == (10, 50_000_000, 500)
                tags = conn.execute(sa.text("SELECT tag, requests FROM spend_hourly_tags ORDER BY tag")).all()
                assert [(t, int(n)) for t, n in tags] == [("a", 10), ("b", 10)]
                b = conn.execute(sa.text("SELECT usd_e8, tokens, requests FROM budget_spend")).one()
                assert tuple(int(x) for x in b) == (50_000_000, 550, 10)
                row = conn.execute(sa.text("SELECT key_id, team_id, org_id, user_id, tags, cost FROM request_log "
                                           "WHERE request_id = 'req_0'")).one()
            assert row[:4] == ("vk_1", "team_1", "org_1", "user_1")
            assert sorted(row[4] if isinstance(row[4], list) else orjson.loads(row[4])) == ["a", "b"]
        finally:
            store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_rollup_dimensions_are_cut_to_size_and_what_they_share_is_summed(backend: str, tmp_path: Path) -> None:
    """Model names that differ only past the rollups' 255 characters, and a tag that long, roll up into one row
    each (the request log keeps every record whole)."""
    with store_url(backend, tmp_path) as url:
        store = Store.open(url)
        try:
            recs = [stored(record(f"req_{i}", tags=frozenset({"t" * 300})))._replace(model="m" * DIM + str(i))
                    for i in range(3)]
            assert ship(Db(store.engine), recs) == 3
            with store.engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT model, requests FROM spend_hourly")).all()
                tags = conn.execute(sa.text("SELECT tag, model, requests FROM spend_hourly_tags")).all()
                models = conn.execute(sa.text("SELECT model FROM request_log ORDER BY request_id")).scalars().all()
            assert [(m, int(n)) for m, n in rows] == [("m" * DIM, 3)]
            assert [(t, m, int(n)) for t, m, n in tags] == [("t" * DIM, "m" * DIM, 3)]
            assert models == ["m" * DIM + str(i) for i in range(3)]
        finally:
            store.close()


async def test_the_writer_ships_in_the_background_and_sets_aside_what_the_store_refuses(tmp_path: Path) -> None:
    with store_url("sqlite", tmp_path) as url:
        store = Store.open(url)
        w = SpendWriter(store.engine, SpoolSettings(dir=str(tmp_path / "spool"), flush_interval=0.02))
        await w.start()
        try:
            for i in range(50):
                w.record(record(f"req_{i}"))
            w.spool.append(b'{"rid": "req_bad", "not": "a record"}\n')
            w.spool.append(b"not json at all\n")
            for i in range(50, 60):
                w.record(record(f"req_{i}"))
            for _ in range(200):
                if w.spool.pending() == 0:
                    break
                await asyncio.sleep(0.02)
            assert spend_of(store.engine, "vk_1")[0] == 60
            assert w.rejected == 2
            assert len((tmp_path / "spool" / "rejected.jsonl").read_bytes().splitlines()) == 2
        finally:
            await w.stop()
            store.close()


# --- reports ---------------------------------------------------------------------------------------------------


async def test_admin_spend_report_groups_within_each_roles_view(tmp_path: Path) -> None:
    with store_url("sqlite", tmp_path) as url:
        store = Store.open(url)
        spool = tmp_path / "spool"
        cfg = ledger_config(url, spool)
        try:
            with run_gateway(cfg, recorder=SpendWriter(store.engine, SpoolSettings(dir=str(spool),
                                                                                   flush_interval=0.05))) as gw:
                admin = Admin(gw.url)
                a = tenant(admin, tags=["research"])
                b = tenant(admin)
                _, org_admin_key = admin.user_with_key("org_admin", org_id=a["org"])
                member_key = admin.new_key(user_id=a["user"])["secret"]
                _, auditor_key = admin.user_with_key("auditor", org_id=a["org"])
                await fire(gw.url, a["secret"], 3)
                await fire(gw.url, b["secret"], 2)
                await fire(gw.url, a["secret"], 1, model="cheap")
                wait_for(lambda: spend_of(store.engine, a["key"])[0] == 4 and spend_of(store.engine, b["key"])[0] == 2)
                since: dict[str, Any] = {"from": "2020-01-01"}  # "from" is a keyword: pass it by mapping
                r = admin.get("/admin/spend", group_by="team,deployment", **since)
                assert r["object"] == "spend_report" and r["group_by"] == ["team", "deployment"]
                rows = {(x["team"], x["deployment"]): x for x in r["data"]}
                assert rows[(a["team"], "exact")]["requests"] == 3 and rows[(a["team"], "exact")]["cost_usd"] == 0.15
                assert rows[(b["team"], "exact")]["cost_usd"] == 0.1
                assert rows[(a["team"], "cheap")]["requests"] == 1
                assert rows[(a["team"], "exact")]["org"] is None  # not grouped by: null
                total = admin.get("/admin/spend", group_by="")["data"]
                assert len(total) == 1 and total[0]["requests"] == 6
                # an org admin sees its org only; a filter for another org shows nothing
                mine = admin.as_key(org_admin_key).get("/admin/spend", group_by="org")["data"]
                assert [x["org"] for x in mine] == [a["org"]]
                assert admin.as_key(org_admin_key).get("/admin/spend", group_by="org", org_id=b["org"])["data"] == []
                assert admin.as_key(auditor_key).get("/admin/spend", group_by="key")["data"][0]["key"] == a["key"]
                assert admin.as_key(org_admin_key).get("/admin/spend", group_by="tag")["data"][0]["tag"] == "research"
                # a member sees its own keys' spend, and not by tag
                own = admin.as_key(member_key).get("/admin/spend", group_by="user")["data"]
                assert [x["user"] for x in own] == [a["user"]]
                admin.as_key(member_key).get("/admin/spend", group_by="tag", expect=403)
                admin.get("/admin/spend", group_by="colour", expect=400)
                admin.get("/admin/spend", group_by="tag,team", expect=400)
                by_team = {x["team"]: x["cost_usd"] for x in admin.get("/admin/spend", group_by="team")["data"]}
                by_day = admin.get("/admin/spend", group_by="day")["data"]
                assert by_day[0]["day"] == time.strftime("%Y-%m-%d", time.gmtime())
                doc = admin.get("/admin/openapi.json")
                params = [p["name"] for p in doc["paths"]["/admin/spend"]["get"]["parameters"]]
                assert {"group_by", "from", "to"} <= set(params)
                admin.close()
            # the CLI answers from the same rollups
            config = write_config(tmp_path / "gateway.yaml", cfg)
            res = CliRunner().invoke(cli, ["spend", "report", "--config", str(config), "--group-by", "team",
                                           "--from", "2020-01-01", "--csv"])
            assert res.exit_code == 0, res.output
            got = {x["team"]: x for x in csv.DictReader(io.StringIO(res.output))}
            assert got[b["team"]]["cost_usd"] == "0.10" and got[b["team"]]["requests"] == "2"
            assert Decimal(got[a["team"]]["cost_usd"]) == Decimal(str(by_team[a["team"]]))
            table = CliRunner().invoke(cli, ["spend", "report", "--config", str(config), "--group-by",
                                             "deployment", "--from", "2020-01-01"])
            assert table.exit_code == 0 and "exact" in table.output and "requests" in table.output
        finally:
            store.close()

