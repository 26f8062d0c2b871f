"""The spool record of a call: one JSON line per finished (or refused) call, written before its response completes.

It is the single source of everything the store keeps about a call: its ``request_log`` row and spend rollups
(:mod:`.spend`) and, when the audit log records calls, its audit record (:mod:`.audit_calls`). So a call's audit
record is as durable as its spend: it waits in the spool through a store outage or a crash, and is chained
exactly once, in the transaction that stores the call's row. It holds a prompt or a completion only in ``pl``,
and only when the key's logging mode asks for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from .ledger_model import usd_e8

if TYPE_CHECKING:
    from ..pipeline import CallRecord

MAX_TEXT = 4000


def clip(s: str | None, limit: int = MAX_TEXT) -> str | None:
    """Text for a store column: at most ``limit`` characters, without NUL (PostgreSQL text cannot hold it; for
    the audit log, the stored value is exactly the hashed value)."""
    return None if s is None else s[:limit].replace("\x00", "")


def spool_fields(rec: CallRecord) -> dict[str, Any]:
    """The record as a dict of short keys (a few hundred bytes as JSON)."""
    p, u = rec.principal, rec.usage
    d: dict[str, Any] = {
        "v": 1, "rid": rec.request_id, "ts": rec.ts, "ep": rec.endpoint, "model": rec.model, "st": rec.status,
        "http": rec.http_status, "in": u.input_tokens, "out": u.output_tokens, "cached": u.cached_tokens,
        "cw": u.cache_write_tokens, "rsn": u.reasoning_tokens, "cost": usd_e8(rec.total_cost),
        "lat": round(rec.latency_ms, 3), "att": rec.attempts,
    }
    for k, v in (("crid", rec.client_request_id), ("pid", rec.principal_id), ("route", rec.route),
                 ("dep", rec.deployment), ("prov", rec.provider),
                 ("ttft", None if rec.ttft_ms is None else round(rec.ttft_ms, 3)),
                 ("err", rec.error[:MAX_TEXT] if rec.error else None), ("why", rec.reason), ("pl", rec.payload)):
        if v is not None:
            d[k] = v
    if rec.losers:  # "cost" counts the hedge losers too; the audit record names the serving deployment's own
        d["dcost"] = usd_e8(rec.cost)
    if p is not None:
        for k, v in (("key", p.key_id), ("user", p.user_id), ("team", p.team_id), ("org", p.org_id)):
            if v is not None:
                d[k] = v
        if p.tags:
            d["tags"] = sorted(p.tags)
    if rec.charges:
        d["ch"] = rec.charges
    return d


def encode(rec: CallRecord) -> bytes:
    """One spool line."""
    return orjson.dumps(spool_fields(rec)) + b"\n"
