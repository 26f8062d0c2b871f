"""Data-plane calls in the audit log: one record per finished (or refused) call, chained off the hot path.

A call's audit record is built from its spool record (:mod:`.records`) into the prepared form that
:meth:`~switchyard.governance.audit.AuditLog.append_prepared` chains (:func:`call_record`), with the same
normalization :func:`~switchyard.governance.audit.to_row` gives an admin record, so that ``audit verify``
recomputes every hash from the stored row alone. In ``switchyard serve`` the spend writer chains them, in the
transaction that stores each call's ``request_log`` row, from its durable spool (:mod:`.spend`): nothing is held
in memory on the way. :class:`CallAuditor` is the same for a gateway whose recorder is not a spend writer: a
Recorder that queues calls in memory and appends them in batches on a background thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from .. import background
from ..config.governance import AuditSettings
from ..records import E8, CallRecord, Stored, clip, stored
from ..worker import Worker
from .audit import _BATCH, AuditLog, Prepared, canonical_json
from .db import Db, is_store_failure

log = logging.getLogger("switchyard.audit")


def _e8_text(units: int) -> str:
    """Integer 1e-8 USD units as dollars with exactly 8 decimals: the text the chain hashes for the ``cost``
    column (NUMERIC(18, 8)), which :func:`~switchyard.governance.audit._cost_text` gives for the stored value."""
    whole, frac = divmod(abs(units), E8)
    return f"{'-' if units < 0 else ''}{whole}.{frac:08d}"


def call_record(d: Stored) -> Prepared:
    """The audit record of one finished (or refused) call, from its spool record
    (:class:`~switchyard.records.Stored`), ready to chain."""
    http, deployment = d.http_status, d.deployment
    # A refusal before any deployment was tried (401/402/403, a budget or rate-limit 429) is a governance denial.
    denied = http in (401, 402, 403) or (http == 429 and deployment is None)
    details: dict[str, Any] = {
        "endpoint": d.endpoint, "route": d.route, "provider": d.provider, "outcome": d.status,
        "attempts": d.attempts, "latency_ms": d.latency_ms,
        "tokens": {"input": d.input_tokens, "output": d.output_tokens, "cached": d.cached_tokens,
                   "cache_write": d.cache_write_tokens, "reasoning": d.reasoning_tokens},
    }
    if d.client_request_id:
        details["client_request_id"] = d.client_request_id
    if d.tags:
        details["tags"] = d.tags  # sorted in the spool record
    if d.decisions:
        details["decisions"] = d.decisions  # policy and PII: data class, policy ids, PII type counts
    ts = datetime.fromtimestamp(d.ts, UTC)
    cost_text = _e8_text(int(d.cost if d.own_cost is None else d.own_cost))
    actor = clip(d.principal_id or "anonymous", 1000) or ""
    user_id, org_id, team_id = d.user_id, d.org_id, d.team_id
    action = clip(d.endpoint, 64) or ""
    target = clip(d.model)
    decision = "deny" if denied else "allow"  # a policy denial is a 403: a denial too
    reason = clip(d.error if d.status != "ok" else d.reason)
    deployment = clip(deployment)
    request_id = clip(d.request_id, 255)
    details_text = clip(canonical_json(details), 1_000_000)
    payload = clip(canonical_json(d.payload), 10_000_000) if d.payload is not None else None
    hashed = orjson.dumps([ts.isoformat(timespec="microseconds"), cost_text, "call", actor, user_id, org_id, team_id,
                           action, target, decision, reason, http, deployment, request_id, details_text, payload])
    return ((ts, "call", actor, user_id, org_id, team_id, action, target, decision, reason, http, deployment,
             Decimal(cost_text), request_id, details_text, payload), hashed)


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
        # appends every flush_interval; while the store is down, waits up to 64 times longer
        self.worker = Worker("audit-writer", self._tick, interval=settings.flush_interval,
                             backoff_initial=2 * settings.flush_interval, backoff_max=64 * settings.flush_interval,
                             jitter=0.2)
        self._lock = asyncio.Lock()

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
        self.worker.start()

    async def stop(self, drain_timeout: float = 10.0) -> None:
        await self.worker.stop(drain_timeout, self.flush)
        if self._pending:
            log.error("audit: %d call records could not be appended before shutdown", len(self._pending))

    async def _tick(self) -> bool:
        return await self.flush() if self._pending else True

    async def flush(self) -> bool:
        """Append what is queued now; True when nothing is left. Failures are logged, not raised."""
        async with self._lock:
            while self._pending:
                batch = [self._pending[i] for i in range(min(len(self._pending), _BATCH))]
                try:
                    await background.run(self._append, batch,
                                         urgent=len(self._pending) > background.URGENT_BACKLOG)
                except Exception as e:
                    failures = self.worker.failures + 1
                    if failures in (1, 10) or failures % 100 == 0:
                        log.warning("audit: append failed (%s); %d records kept", self.db.describe(e),
                                    len(self._pending))
                    if not is_store_failure(e):
                        log.error("audit: %d call records cannot be appended and are set aside", len(batch))
                        for _ in batch:
                            self._pending.popleft()
                    return False
                for _ in batch:
                    self._pending.popleft()
            if self.worker.failures:
                log.info("audit: appends recovered after %d failures", self.worker.failures)
            return True

    def _append(self, batch: list[CallRecord]) -> None:
        records = [call_record(stored(r)) for r in batch]
        with self.db.write() as conn:
            self.audit.append_prepared(conn, records)


