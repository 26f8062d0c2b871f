"""The audit log's chain on SQLite and PostgreSQL: edits, deletions, reorderings, truncations and forged
checkpoints made with direct SQL are each reported at the exact record, by the verifier and by
``switchyard audit verify``; concurrent appenders keep one chain; checkpoints are signed as configured."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from switchyard.config.governance import AuditSettings
from switchyard.governance.audit import GENESIS, AuditEntry, AuditLog, Signer, record_hash
from switchyard.governance.audit_calls import call_record
from switchyard.governance.audit_verify import verify
from switchyard.governance.auth import Principal
from switchyard.governance.db import Db
from switchyard.governance.models import VerifyReport
from switchyard.messages import Usage
from switchyard.records import CallRecord, stored
from switchyard.store import Store, create_engine_for
from switchyard.store.audit_tables import audit_log
from tests.support.gateway import MASTER_KEY
from tests.support.governance import BACKENDS, store_url

AUDIT_KEY = b"audit-key-for-tests-0123456789"
N = 12


@pytest.fixture(scope="module", params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with store_url(request.param, tmp_path_factory.mktemp("audit")) as u:
        Store.open(u).close()  # schema at head
        yield u


@pytest.fixture
def db(url: str) -> Iterator[Db]:
    """The module's store with an empty audit log."""
    d = Db(create_engine_for(url))
    sql(d, "DELETE FROM audit_log", "DELETE FROM audit_checkpoints",
        f"UPDATE audit_head SET seq = 0, hash = '{GENESIS}', signature = NULL, checkpoint_seq = 0, "
        "checkpoint_at = NULL")
    yield d
    d.engine.dispose()


def entry(i: int) -> AuditEntry:
    return AuditEntry(kind="admin", actor="master", action="key.create", target=f"vk_{i}", org_id="org_1",
                      reason="super admin", status=201, cost=Decimal("0.00012345") * i, details={"i": i, "ü": "✓"})


def build(db: Db, n: int = N, every: int = 5) -> AuditLog:
    """A chain of ``n`` records, appended one transaction at a time; a checkpoint every ``every`` records."""
    log = AuditLog(Signer(AUDIT_KEY), AuditSettings(checkpoint_every=every, checkpoint_interval=3600))
    for i in range(1, n + 1):
        with db.write() as conn:
            log.append(conn, [entry(i)])
    return log


def sql(db: Db, *statements: str) -> None:
    with db.engine.begin() as conn:
        for s in statements:
            conn.execute(sa.text(s))


def problems(report: VerifyReport) -> list[tuple[int | None, str]]:
    return [(p.seq, p.kind) for p in report.problems]


def test_an_intact_chain_verifies(db: Db) -> None:
    build(db)
    report = verify(db, Signer(AUDIT_KEY))
    assert report.ok and report.records == N and report.last_seq == N and report.checkpoints == 3
    with db.read() as conn:
        rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)).mappings().all()
    assert rows[0]["prev_hash"] == GENESIS
    for before, row in itertools.pairwise(rows):
        assert row["prev_hash"] == before["hash"] == record_hash(before["prev_hash"], before)
    assert not verify(db, Signer(b"another-key-entirely-000000")).ok  # signatures are checked


def test_an_edited_record_is_found(db: Db) -> None:
    build(db)
    sql(db, "UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 4")
    assert problems(verify(db, Signer(AUDIT_KEY))) == [(4, "edited")]


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(db: Db) -> None:
    build(db)
    with db.read() as conn:
        row = dict(conn.execute(sa.select(audit_log).where(audit_log.c.seq == 4)).mappings().one())
    row["decision"] = "deny"
    sql(db, f"UPDATE audit_log SET decision = 'deny', hash = '{record_hash(row['prev_hash'], row)}' WHERE seq = 4")
    assert problems(verify(db, Signer(AUDIT_KEY))) == [(5, "broken_link")]


def test_a_rewritten_chain_is_caught_by_the_signed_checkpoints_and_head(db: Db) -> None:
    build(db)
    with db.read() as conn:
        rows = [dict(r) for r in conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)).mappings()]
    prev = rows[2]["hash"]
    with db.engine.begin() as conn:  # an attacker without the audit key re-hashes everything from record 4 on
        for row in rows[3:]:
            if row["seq"] == 4:
                row["reason"] = "rewritten"
            row["prev_hash"], row["hash"] = prev, record_hash(prev, row)
            prev = row["hash"]
            conn.execute(sa.update(audit_log).where(audit_log.c.seq == row["seq"])
                         .values(reason=row["reason"], prev_hash=row["prev_hash"], hash=row["hash"]))
        conn.execute(sa.text("UPDATE audit_head SET hash = :h"), {"h": prev})
    assert problems(verify(db, Signer(AUDIT_KEY))) == [(None, "bad_head"), (6, "bad_checkpoint"),
                                                       (11, "bad_checkpoint")]


def test_a_deleted_record_is_found(db: Db) -> None:
    build(db)
    sql(db, "DELETE FROM audit_log WHERE seq = 7")
    assert problems(verify(db, Signer(AUDIT_KEY))) == [(7, "deleted")]


def test_reordered_records_are_found(db: Db) -> None:
    build(db)
    sql(db, "UPDATE audit_log SET seq = -5 WHERE seq = 5", "UPDATE audit_log SET seq = 5 WHERE seq = 6",
        "UPDATE audit_log SET seq = 6 WHERE seq = -5")
    report = verify(db, Signer(AUDIT_KEY))
    assert problems(report)[:2] == [(5, "reordered"), (6, "reordered")]
    assert "appended after record 6" in report.problems[0].message


def test_records_deleted_at_the_end_are_found(db: Db) -> None:
    build(db)
    sql(db, "DELETE FROM audit_log WHERE seq > 9")
    found = problems(verify(db, Signer(AUDIT_KEY)))
    assert (10, "truncated") in found and all(seq == 10 for seq, _ in found)


def test_a_forged_checkpoint_or_head_is_found(db: Db) -> None:
    build(db)
    sql(db, "UPDATE audit_checkpoints SET hash = '" + "f" * 64 + "' WHERE seq = 6")
    assert problems(verify(db, Signer(AUDIT_KEY))) == [(6, "bad_checkpoint")]
    sql(db, "UPDATE audit_checkpoints SET hash = (SELECT hash FROM audit_log WHERE seq = 6) WHERE seq = 6",
        "UPDATE audit_head SET seq = 11")
    assert problems(verify(db, Signer(AUDIT_KEY))) == [(None, "bad_head")]


def call(i: int, cost: float, **kw: object) -> CallRecord:
    p = Principal(id="vk_1", name="k", user_id="usr_1", team_id="team_1", org_id="org_1", key_id="vk_1",
                  tags=frozenset({"b", "a"}))
    fields: dict[str, object] = dict(
        request_id=f"req_{i}", ts=1_764_800_000.123456 + i, principal_id="vk_1", endpoint="chat",
        model="gpt-x", route="r", deployment="d", provider="openai", status="ok", http_status=200,
        usage=Usage(input_tokens=3, output_tokens=5), cost=cost, latency_ms=1.2345, ttft_ms=None, attempts=1,
        principal=p, reason="only deployment")
    fields.update(kw)
    return CallRecord(**fields)  # type: ignore[arg-type]


def test_call_records_built_for_the_fast_path_verify(db: Db) -> None:
    """Call records go in through the prepared path (built from the spool record, many-row INSERT): the verifier,
    which hashes only what it reads back, agrees with every one of them, on both stores, between admin records."""
    log = AuditLog(Signer(AUDIT_KEY), AuditSettings(checkpoint_every=4, checkpoint_interval=3600))
    calls = [call(1, 0.0), call(2, 1.234567891e-5), call(3, 0.1 + 0.2), call(4, 12345.678901234),
             call(5, 0.25, status="error", http_status=502, error="upstream \x00 failed"),
             call(6, 2.5e-9, model="evil\x00model", payload={"request": {"messages": [{"content": "hé ✓"}]}}),
             call(7, 0.0, http_status=429, deployment=None, status="error", error="budget")]
    with db.write() as conn:
        log.append(conn, [entry(1)])
        log.append_prepared(conn, [call_record(stored(c)) for c in calls[:4]])
    with db.write() as conn:
        log.append(conn, [entry(2)])
        log.append_prepared(conn, [call_record(stored(c)) for c in calls[4:]])
    report = verify(db, Signer(AUDIT_KEY))
    assert report.ok and report.records == 9, report.problems
    with db.read() as conn:
        rows = {r.request_id: r for r in conn.execute(sa.select(audit_log).where(audit_log.c.kind == "call"))}
    assert [rows[f"req_{i}"].cost for i in (1, 2, 3, 4)] == [Decimal("0E-8"), Decimal("0.00001235"),
                                                           Decimal("0.30000000"), Decimal("12345.67890123")]
    assert rows["req_5"].cost == Decimal("0.25") and rows["req_5"].reason == "upstream  failed"
    assert rows["req_5"].decision == "allow" and rows["req_1"].reason == "only deployment"
    assert rows["req_6"].target == "evilmodel" and rows["req_6"].cost == Decimal("0E-8")
    assert rows["req_7"].decision == "deny" and rows["req_1"].decision == "allow"
    assert rows["req_2"].ts.isoformat() == "2025-12-03T22:13:22.123456+00:00"
    # an edit of a call record is found like any other
    sql(db, "UPDATE audit_log SET status = 201 WHERE request_id = 'req_3'")
    assert problems(verify(db, Signer(AUDIT_KEY))) == [(4, "edited")]


def test_concurrent_appenders_keep_one_chain(db: Db, url: str) -> None:
    log = AuditLog(Signer(AUDIT_KEY), AuditSettings(checkpoint_every=10))
    # a second engine on the same store: like a second replica
    other = Db(create_engine_for(url))
    errors: list[BaseException] = []

    def worker(d: Db, n: int) -> None:
        try:
            for i in range(25):
                with d.write() as conn:
                    log.append(conn, [entry(n * 100 + i), entry(n * 100 + 50 + i)])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(d, n)) for n, d in enumerate((db, db, other, other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.engine.dispose()
    assert errors == []
    report = verify(db, Signer(AUDIT_KEY))
    assert report.ok and report.records == 200 and report.checkpoints >= 20


def test_checkpoints_follow_the_interval_and_shutdown(db: Db) -> None:
    log = AuditLog(Signer(AUDIT_KEY), AuditSettings(checkpoint_every=1000, checkpoint_interval=0.2))
    for _ in range(3):
        with db.write() as conn:
            log.append(conn, [entry(1)])
    time.sleep(0.25)
    with db.write() as conn:
        log.append(conn, [entry(2)])  # the interval has passed: this append signs a checkpoint
        log.append(conn, [entry(3)])
    with db.read() as conn:
        assert [r[0] for r in conn.execute(sa.text("SELECT seq FROM audit_checkpoints ORDER BY id"))] == [1, 4]
    with db.write() as conn:
        assert log.checkpoint_now(conn)  # at shutdown: one at the chain's end
        assert not log.checkpoint_now(conn)
    report = verify(db, Signer(AUDIT_KEY))
    assert report.ok and report.checkpoints == 3


def test_switchyard_audit_verify_names_each_tampered_record(db: Db, url: str, tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"master_key": MASTER_KEY, "store": url,
                                      "governance": {"audit": {"hmac_key": AUDIT_KEY.decode()}}}))
    build(db, n=20)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    cmd = [sys.executable, "-m", "switchyard.cli.main", "audit", "verify", "--config", str(config)]
    sql(db, "UPDATE audit_log SET target = 'vk_other' WHERE seq = 3",
        "DELETE FROM audit_log WHERE seq = 8",
        "UPDATE audit_log SET seq = -13 WHERE seq = 13", "UPDATE audit_log SET seq = 13 WHERE seq = 14",
        "UPDATE audit_log SET seq = 14 WHERE seq = -13")
    tampered = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    out = tampered.stdout
    assert "TAMPERED" in out
    assert "record 3: edited" in out
    assert "record 8: deleted" in out
    assert "record 13: reordered" in out and "record 14: reordered" in out
