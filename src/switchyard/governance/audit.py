"""The audit log: append-only, hash-chained, with HMAC-signed checkpoints.

Every record holds who (``actor``, and the actor's user, org and team), what (``action``, ``target``), when
(``ts``), the decision (``allow``/``deny``) and why (``reason``), the HTTP ``status``, the ``deployment`` and the
``cost``; ``details`` adds structured facts (tokens, changed fields), and ``payload`` the prompt and completion
only when the key's logging mode asks for it.

**Chain.** Records are numbered ``seq`` = 1, 2, 3 ... and each holds ``prev_hash``, the hash of the record before
(64 zeros for the first), and ``hash`` = SHA-256(prev_hash ‖ canonical JSON of the record's fields). ``seq`` itself
is not hashed: the order lives in the links, so a swap of two records shows as a reordering, not as an edit.

**Appending** happens inside one transaction that first locks the single ``audit_head`` row (an UPDATE: a row lock
on PostgreSQL; with ``BEGIN IMMEDIATE``, the write lock on SQLite), reads the chain's end from it, inserts the new
records and moves the head. Every replica and the CLI append through the head, so there is one chain. An admin
change and its audit record commit in the same transaction. Data-plane call records are queued in memory by
:class:`~switchyard.governance.audit_calls.CallAuditor` and appended in batches off the hot path.

**Signatures.** With an audit key, the head carries HMAC(key, seq ‖ hash) (so that deleting records at the end
is detected), and a checkpoint (seq, hash, ts, HMAC) is written every ``checkpoint_interval`` seconds or
``checkpoint_every`` records, whichever comes first. Someone who can edit the database but lacks the key can
rewrite the chain's hashes, but not the signed checkpoints that pin them. ``switchyard audit verify`` checks it
all: :mod:`switchyard.governance.audit_verify`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa

from ..config.governance import AuditSettings
from ..records import clip
from ..store.audit_tables import audit_checkpoints, audit_head, audit_log
from ..store.bulk import insert_many

log = logging.getLogger("switchyard.audit")

GENESIS = "0" * 64
_COST_QUANTUM = Decimal("1e-8")
_BATCH = 500


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class AuditEntry:
    kind: str  # admin | call | system
    actor: str
    action: str
    decision: str = "allow"
    ts: datetime = field(default_factory=utcnow)
    actor_user_id: str | None = None
    org_id: str | None = None
    team_id: str | None = None
    target: str | None = None
    reason: str | None = None
    status: int | None = None
    deployment: str | None = None
    cost: Decimal | None = None
    request_id: str | None = None
    details: Mapping[str, Any] | None = None
    payload: Mapping[str, Any] | None = None


# --- canonical form and hashes -------------------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()


def _cost_text(cost: Decimal | float | None) -> str | None:
    if cost is None:
        return None
    return format(Decimal(cost).quantize(_COST_QUANTUM), "f")


def _ts_text(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def to_row(e: AuditEntry) -> dict[str, Any]:
    """The column values of an entry, normalized so that what is stored is what is hashed."""
    if e.ts.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    cost_text = _cost_text(e.cost)
    cost = Decimal(cost_text) if cost_text is not None else None
    return {
        "ts": e.ts.astimezone(UTC), "kind": e.kind, "actor": clip(e.actor, 1000) or "", "actor_user_id":
        e.actor_user_id, "org_id": e.org_id, "team_id": e.team_id, "action": clip(e.action, 64) or "",
        "target": clip(e.target), "decision": e.decision, "reason": clip(e.reason), "status": e.status,
        "deployment": clip(e.deployment), "cost": cost, "request_id": clip(e.request_id, 255),
        "details": clip(canonical_json(e.details), 1_000_000) if e.details is not None else None,
        "payload": clip(canonical_json(e.payload), 10_000_000) if e.payload is not None else None,
    }


_HASHED = ("kind", "actor", "actor_user_id", "org_id", "team_id", "action", "target", "decision", "reason",
           "status", "deployment", "request_id", "details", "payload")


def record_hash(prev_hash: str, row: Mapping[Any, Any]) -> str:
    """SHA-256 over the previous hash and the record's fields (everything but seq, prev_hash and hash)."""
    return chain_hash(prev_hash, orjson.dumps([_ts_text(row["ts"]), _cost_text(row["cost"]),
                                               *(row[k] for k in _HASHED)]))


def chain_hash(prev_hash: str, hashed: bytes) -> str:
    """The hash of a record whose hashed fields serialize to ``hashed`` (see :func:`record_hash`)."""
    return hashlib.sha256(prev_hash.encode() + b"\n" + hashed).hexdigest()


# Columns of a record as :meth:`AuditLog.append_prepared` inserts them: seq, then the record, then its links.
COLUMNS = ("seq", "ts", "kind", "actor", "actor_user_id", "org_id", "team_id", "action", "target", "decision",
           "reason", "status", "deployment", "cost", "request_id", "details", "payload", "prev_hash", "hash")
_VALUES = COLUMNS[1:-2]

Prepared = tuple[tuple[Any, ...], bytes]
"""A record ready to chain: its values in ``COLUMNS[1:-2]`` order, and its hashed fields serialized (the JSON
array :func:`record_hash` hashes, without the previous hash)."""


def prepare(row: Mapping[str, Any]) -> Prepared:
    """A normalized row (:func:`to_row`) ready to chain."""
    hashed = orjson.dumps([_ts_text(row["ts"]), _cost_text(row["cost"]), *(row[k] for k in _HASHED)])
    return tuple(row[c] for c in _VALUES), hashed


class Signer:
    """HMAC-SHA256 signatures for the chain head and checkpoints. Holds the audit key; never shows it."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "Signer(<key>)"

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def head(self, seq: int, h: str) -> str:
        return self._mac(f"switchyard-audit-head|{seq}|{h}")

    def checkpoint(self, seq: int, h: str, ts: datetime) -> str:
        return self._mac(f"switchyard-audit-checkpoint|{seq}|{h}|{_ts_text(ts)}")

    def check_head(self, seq: int, h: str, signature: str | None) -> bool:
        return signature is not None and hmac.compare_digest(self.head(seq, h), signature)

    def check_checkpoint(self, seq: int, h: str, ts: datetime, signature: str) -> bool:
        return hmac.compare_digest(self.checkpoint(seq, h, ts), signature)


# --- appending -----------------------------------------------------------------------------------------------


class AuditLog:
    """Appends to the chain inside a caller's write transaction (see :meth:`Db.write`)."""

    def __init__(self, signer: Signer | None, settings: AuditSettings) -> None:
        self.signer = signer
        self.settings = settings

    def append(self, conn: sa.Connection, entries: Sequence[AuditEntry]) -> int:
        """Chain ``entries`` after the current end; returns the last seq. Locks the head until commit."""
        return self.append_prepared(conn, [prepare(to_row(e)) for e in entries])

    def append_prepared(self, conn: sa.Connection, records: Sequence[Prepared]) -> int:
        """Chain prepared records after the current end; returns the last seq. Locks the head until commit."""
        if not records:
            return 0
        conn.execute(sa.update(audit_head).where(audit_head.c.id == 1).values(seq=audit_head.c.seq))  # lock
        head = conn.execute(sa.select(audit_head).where(audit_head.c.id == 1)).one()
        seq, prev = int(head.seq), str(head.hash)
        rows = []
        for fields, hashed in records:
            seq += 1
            h = chain_hash(prev, hashed)
            rows.append((seq, *fields, prev, h))
            prev = h
        for i in range(0, len(rows), _BATCH):
            insert_many(conn, audit_log, COLUMNS, rows[i:i + _BATCH])
        values: dict[str, Any] = {"seq": seq, "hash": prev}
        if self.signer is not None:
            values["signature"] = self.signer.head(seq, prev)
            now = utcnow()
            last = head.checkpoint_at
            due = (last is None or seq - int(head.checkpoint_seq) >= self.settings.checkpoint_every
                   or now - last >= timedelta(seconds=self.settings.checkpoint_interval))
            if due:
                self._checkpoint(conn, seq, prev, now)
                values.update(checkpoint_seq=seq, checkpoint_at=now)
        conn.execute(sa.update(audit_head).where(audit_head.c.id == 1).values(**values))
        return seq

    def checkpoint_now(self, conn: sa.Connection) -> bool:
        """Sign a checkpoint at the chain's end if records came after the last one (e.g. at shutdown)."""
        if self.signer is None:
            return False
        conn.execute(sa.update(audit_head).where(audit_head.c.id == 1).values(seq=audit_head.c.seq))
        head = conn.execute(sa.select(audit_head).where(audit_head.c.id == 1)).one()
        if int(head.seq) == 0 or int(head.seq) == int(head.checkpoint_seq):
            return False
        now = utcnow()
        self._checkpoint(conn, int(head.seq), str(head.hash), now)
        conn.execute(sa.update(audit_head).where(audit_head.c.id == 1)
                     .values(checkpoint_seq=head.seq, checkpoint_at=now))
        return True

    def _checkpoint(self, conn: sa.Connection, seq: int, h: str, now: datetime) -> None:
        assert self.signer is not None
        conn.execute(sa.insert(audit_checkpoints).values(seq=seq, hash=h, ts=now,
                                                         signature=self.signer.checkpoint(seq, h, now)))


# --- reading -------------------------------------------------------------------------------------------------


def list_records(conn: sa.Connection, q: Any, org_id: str | None, everything: bool) -> list[dict[str, Any]]:
    """Records after ``q.after_seq`` matching ``q``'s filters, as dicts (JSON fields decoded). Only ``org_id``'s
    records unless ``everything`` (a super admin)."""
    query = sa.select(audit_log).where(audit_log.c.seq > q.after_seq).order_by(audit_log.c.seq).limit(q.limit)
    if not everything:
        query = query.where(audit_log.c.org_id == (org_id or ""))
    for col, value in ((audit_log.c.org_id, q.org_id), (audit_log.c.kind, q.kind), (audit_log.c.action, q.action),
                       (audit_log.c.actor, q.actor)):
        if value is not None:
            query = query.where(col == value)
    if q.since is not None:
        query = query.where(audit_log.c.ts >= q.since)
    if q.until is not None:
        query = query.where(audit_log.c.ts < q.until)
    out = []
    for r in conn.execute(query):
        d = dict(r._mapping)
        d["cost"] = float(d["cost"]) if d["cost"] is not None else None
        d["details"] = orjson.loads(d["details"]) if d["details"] is not None else None
        d["payload"] = orjson.loads(d["payload"]) if d["payload"] is not None else None
        out.append(d)
    return out
