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
:class:`CallAuditor` and appended in batches off the hot path.

**Signatures.** With an audit key, the head carries HMAC(key, seq ‖ hash) (so that deleting records at the end
is detected), and a checkpoint (seq, hash, ts, HMAC) is written every ``checkpoint_interval`` seconds or
``checkpoint_every`` records, whichever comes first. Someone who can edit the database but lacks the key can
rewrite the chain's hashes, but not the signed checkpoints that pin them. ``switchyard audit verify`` checks it
all: :mod:`switchyard.governance.audit_verify`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from .. import background
from ..config.governance import AuditSettings
from ..store.audit_tables import audit_checkpoints, audit_head, audit_log
from .db import Db, is_store_failure

if TYPE_CHECKING:
    from ..pipeline import CallRecord

log = logging.getLogger("switchyard.audit")

GENESIS = "0" * 64
_MAX_TEXT = 4000
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


def _text(s: str | None, limit: int = _MAX_TEXT) -> str | None:
    # PostgreSQL text cannot hold NUL; the stored value is exactly the hashed value.
    return None if s is None else s[:limit].replace("\x00", "")


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
        "ts": e.ts.astimezone(UTC), "kind": e.kind, "actor": _text(e.actor, 1000) or "", "actor_user_id":
        e.actor_user_id, "org_id": e.org_id, "team_id": e.team_id, "action": _text(e.action, 64) or "",
        "target": _text(e.target), "decision": e.decision, "reason": _text(e.reason), "status": e.status,
        "deployment": _text(e.deployment), "cost": cost, "request_id": _text(e.request_id, 255),
        "details": _text(canonical_json(e.details), 1_000_000) if e.details is not None else None,
        "payload": _text(canonical_json(e.payload), 10_000_000) if e.payload is not None else None,
    }


_HASHED = ("kind", "actor", "actor_user_id", "org_id", "team_id", "action", "target", "decision", "reason",
           "status", "deployment", "request_id", "details", "payload")


def record_hash(prev_hash: str, row: Mapping[Any, Any]) -> str:
    """SHA-256 over the previous hash and the record's fields (everything but seq, prev_hash and hash)."""
    fields = [_ts_text(row["ts"]), _cost_text(row["cost"]), *(row[k] for k in _HASHED)]
    return hashlib.sha256(prev_hash.encode() + b"\n" + orjson.dumps(fields)).hexdigest()


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
        if not entries:
            return 0
        rows = [to_row(e) for e in entries]
        conn.execute(sa.update(audit_head).where(audit_head.c.id == 1).values(seq=audit_head.c.seq))  # lock
        head = conn.execute(sa.select(audit_head).where(audit_head.c.id == 1)).one()
        seq, prev = int(head.seq), str(head.hash)
        for row in rows:
            seq += 1
            row["seq"], row["prev_hash"] = seq, prev
            row["hash"] = prev = record_hash(prev, row)
        for i in range(0, len(rows), _BATCH):
            conn.execute(sa.insert(audit_log), rows[i:i + _BATCH])
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


# --- data-plane calls ----------------------------------------------------------------------------------------


def entry_from_call(rec: CallRecord) -> AuditEntry:
    """The audit record of one finished (or refused) call."""
    p = rec.principal
    u = rec.usage
    # A refusal before any deployment was tried (401/402/403, a budget or rate-limit 429) is a governance denial.
    denied = rec.http_status in (401, 402, 403) or (rec.http_status == 429 and rec.deployment is None)
    details: dict[str, Any] = {
        "endpoint": rec.endpoint, "route": rec.route, "provider": rec.provider, "outcome": rec.status,
        "attempts": rec.attempts, "latency_ms": round(rec.latency_ms, 3),
        "tokens": {"input": u.input_tokens, "output": u.output_tokens, "cached": u.cached_tokens,
                   "cache_write": u.cache_write_tokens, "reasoning": u.reasoning_tokens},
    }
    if rec.client_request_id:
        details["client_request_id"] = rec.client_request_id
    if p is not None and p.tags:
        details["tags"] = sorted(p.tags)
    reason = rec.error if rec.status != "ok" else rec.reason
    cost = Decimal(repr(float(rec.cost))) if math.isfinite(rec.cost) else None
    return AuditEntry(
        kind="call", ts=datetime.fromtimestamp(rec.ts, UTC), actor=rec.principal_id or "anonymous",
        actor_user_id=p.user_id if p else None, org_id=p.org_id if p else None, team_id=p.team_id if p else None,
        action=rec.endpoint, target=rec.model, decision="deny" if denied else "allow", reason=reason,
        status=rec.http_status, deployment=rec.deployment, cost=cost, request_id=rec.request_id, details=details,
        payload=rec.payload,
    )


class CallAuditor:
    """A Recorder: queues call records (no I/O on the hot path) and appends them to the chain in batches.

    While the store is down, records wait in memory (at most ``max_pending``; beyond that the oldest are dropped,
    with an error in the log) and are appended once it is back.
    """

    def __init__(self, db: Db, audit: AuditLog, settings: AuditSettings) -> None:
        self.db = db
        self.audit = audit
        self.settings = settings
        self._pending: deque[CallRecord] = deque()
        self._dropped = 0
        self._failures = 0
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._lock = asyncio.Lock()
        self._stopping = False

    def record(self, rec: CallRecord) -> None:
        if len(self._pending) >= self.settings.max_pending:
            self._pending.popleft()
            self._dropped += 1
            if self._dropped in (1, 100) or self._dropped % 10_000 == 0:
                log.error("audit: %d call records dropped: the store has been unreachable too long", self._dropped)
        self._pending.append(rec)

    def pending(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping = False
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="switchyard-audit-writer")

    async def stop(self, drain_timeout: float = 10.0) -> None:
        self._stopping = True
        if self._task is not None:
            assert self._wake is not None
            self._wake.set()
            await self._task
            self._task = None
        deadline = time.monotonic() + drain_timeout
        while self._pending and time.monotonic() < deadline:
            if await self.flush():
                break
            await asyncio.sleep(0.2)
        if self._pending:
            log.error("audit: %d call records could not be appended before shutdown", len(self._pending))

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            delay = self.settings.flush_interval * (2 ** min(self._failures, 6))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            if self._pending and not self._stopping:
                await self.flush()

    async def flush(self) -> bool:
        """Append what is queued now; True when nothing is left. Failures are logged, not raised."""
        async with self._lock:
            while self._pending:
                batch = [self._pending[i] for i in range(min(len(self._pending), _BATCH))]
                try:
                    await background.run(self._append, batch,
                                         urgent=len(self._pending) > background.URGENT_BACKLOG)
                except Exception as e:
                    self._failures += 1
                    if self._failures in (1, 10) or self._failures % 100 == 0:
                        log.warning("audit: append failed (%s); %d records kept", self.db.describe(e),
                                    len(self._pending))
                    if not is_store_failure(e):
                        log.error("audit: %d call records cannot be appended and are set aside", len(batch))
                        for _ in batch:
                            self._pending.popleft()
                    return False
                for _ in batch:
                    self._pending.popleft()
            if self._failures:
                log.info("audit: appends recovered after %d failures", self._failures)
            self._failures = 0
            return True

    def _append(self, batch: list[CallRecord]) -> None:
        entries = [entry_from_call(r) for r in batch]
        with self.db.write() as conn:
            self.audit.append(conn, entries)


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
