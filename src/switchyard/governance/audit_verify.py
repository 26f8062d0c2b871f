"""Verifying the audit chain: ``switchyard audit verify`` and ``GET /admin/audit/verify``.

Walks the records in ``seq`` order and reports, each at the record where it shows:

* ``edited``: a record's fields no longer hash to its stored hash;
* ``deleted``: ``seq`` numbers are missing (a gap, missing first records, or records missing at the end that the
  signed head or a checkpoint still counts: ``truncated``);
* ``reordered``: a record links to a record that is not the one before it but sits elsewhere in the log;
* ``broken_link``: a record links to a hash that no record has (the record before it was altered and re-hashed);
* ``bad_checkpoint`` / ``bad_head``: a signature that does not verify (forged or edited), or a signed hash that
  the chain no longer reaches (records before it were rewritten).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from ..store.audit_tables import audit_checkpoints, audit_head, audit_log
from .audit import GENESIS, Signer, record_hash
from .db import Db
from .models import AuditProblem, VerifyReport

_CHUNK = 2000


def _rows(conn: sa.Connection, columns: list[Any]) -> Iterator[sa.Row[Any]]:
    after = None
    while True:
        q = sa.select(*columns).order_by(audit_log.c.seq).limit(_CHUNK)
        if after is not None:
            q = q.where(audit_log.c.seq > after)
        batch = conn.execute(q).all()
        yield from batch
        if len(batch) < _CHUNK:
            return
        after = batch[-1].seq


def verify(db: Db, signer: Signer | None) -> VerifyReport:
    """Check the whole chain, its head and its checkpoints. Reads in chunks; holds one hash per record."""
    problems: list[AuditProblem] = []

    def problem(seq: int | None, kind: str, message: str) -> None:
        problems.append(AuditProblem(seq=seq, kind=kind, message=message))

    with db.read() as conn:
        # Pass 1: where each stored hash sits, to tell a reordering from a deletion.
        seq_of: dict[str, int] = {}
        for r in _rows(conn, [audit_log.c.seq, audit_log.c.hash]):
            seq_of[r.hash] = r.seq
        hash_at: dict[int, str] = {}
        moved: set[int] = set()
        count, expected_seq, prev_hash = 0, 1, GENESIS
        for r in _rows(conn, list(audit_log.c)):
            count += 1
            row = r._mapping
            seq = int(r.seq)
            if seq != expected_seq:
                missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}..{seq - 1}"
                problem(expected_seq, "deleted", f"record(s) {missing} missing: deleted from the log")
            if record_hash(r.prev_hash, row) != r.hash:
                problem(seq, "edited", f"record {seq} was edited: its fields do not match its hash")
            if r.prev_hash != prev_hash and seq == expected_seq:
                at = seq_of.get(r.prev_hash)
                if at is not None and at in moved:
                    pass  # follows a record already reported as moved: a consequence, not a new problem
                elif at is not None and at != seq - 1:
                    moved.add(seq)
                    problem(seq, "reordered", f"record {seq} is out of order: it was appended after record {at}, "
                                              f"not after record {seq - 1}")
                elif r.prev_hash == GENESIS:
                    problem(seq, "reordered", f"record {seq} is out of order: it was the first record")
                else:
                    problem(seq, "broken_link", f"record {seq} does not follow record {seq - 1}: the record before "
                                                f"it was altered or replaced")
            hash_at[seq] = r.hash
            prev_hash = r.hash
            expected_seq = seq + 1
        last_seq = expected_seq - 1

        head = conn.execute(sa.select(audit_head).where(audit_head.c.id == 1)).one_or_none()
        checkpoints = conn.execute(sa.select(audit_checkpoints).order_by(audit_checkpoints.c.id)).all()

    if head is not None:
        _check_head(head, last_seq, hash_at, signer, problem)
    for cp in checkpoints:
        if signer is not None and not signer.check_checkpoint(int(cp.seq), cp.hash, cp.ts, cp.signature):
            problem(int(cp.seq), "bad_checkpoint", f"checkpoint #{cp.id} (record {cp.seq}) has an invalid "
                                                   f"signature: forged or edited")
        elif cp.seq > last_seq:
            problem(last_seq + 1, "truncated", f"checkpoint #{cp.id} counts records up to {cp.seq}, but the log "
                                               f"ends at {last_seq}: records deleted at the end")
        elif hash_at.get(int(cp.seq)) != cp.hash:
            problem(int(cp.seq), "bad_checkpoint", f"checkpoint #{cp.id} does not match record {cp.seq}: records "
                                                   f"up to {cp.seq} were rewritten or removed")
    problems.sort(key=lambda p: (p.seq if p.seq is not None else -1))
    return VerifyReport(ok=not problems, records=count, checkpoints=len(checkpoints), last_seq=last_seq,
                        problems=problems)


def _check_head(head: sa.Row[Any], last_seq: int, hash_at: dict[int, str], signer: Signer | None,
                problem: Any) -> None:
    seq, h = int(head.seq), str(head.hash)
    if signer is not None and seq > 0 and not signer.check_head(seq, h, head.signature):
        problem(None, "bad_head", "the chain head's signature is invalid: the head was edited")
    elif seq > last_seq:
        problem(last_seq + 1, "truncated", f"the signed head counts {seq} records but the log ends at {last_seq}: "
                                           f"records deleted at the end")
    elif seq < last_seq:
        problem(seq + 1, "bad_head", f"records after {seq} are not covered by the chain head: appended outside "
                                     f"the log")
    elif seq > 0 and hash_at.get(seq) != h:
        problem(seq, "bad_head", f"the chain head does not match record {seq}: the chain was rewritten")
