"""The call record: one finished (or refused) call, and its spool line, encoded and decoded side by side.

A low module, beside :mod:`.messages`: it imports nothing else of the package, so the pipeline, governance and the
store can all use it without an import circle.

* :class:`CallRecord` is what the pipeline hands a :class:`Recorder` (spend, audit, metrics), once per call.
* :class:`Stored` is the same call as the spool keeps it, and as every reader of the spool sees it (the
  ``request_log`` row and spend rollups, the audit record): flat, plain values, money in integer 1e-8 USD.
  :func:`stored` makes one from a record; :func:`dump` writes it as one line (a JSON array, in field order,
  headed by the format version); :func:`read_line` reads it back. Adding a field is one edit of :class:`Stored`
  (at its end, with a default, so that older lines still read) and the line in :func:`stored` that fills it.
* :class:`Intent` is an admitted call's intent line (see :mod:`switchyard.governance.intents`), encoded the same way.

Lines written by earlier versions (format 1: a JSON object of short keys, ``{"v": 1, "rid": ...}``, and intents
``{"t": "i", ...}``) are still read: a spool left on disk by an older gateway ships after an upgrade.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import orjson

from .messages import Usage

E8 = 100_000_000  # money in the spool and the ledger: integer units of 1e-8 USD (request_log.cost is NUMERIC(18, 8))
MAX_TEXT = 4000
VERSION = 2  # the first item of a record line
INTENT = "i"  # the first item of an intent line
INTENT_PREFIX = b'["i",'  # every intent line starts so (the shipper skips them without decoding)
_V1_INTENT_PREFIX = b'{"t":"i",'

Charge = tuple[str, str, int, int]  # (budget id, period, usd E8, tokens) settled against one budget period


def usd_e8(usd: float) -> int:
    """Dollars as integer units of 1e-8 USD (rounded half to even, once)."""
    return round(usd * E8)


def clip(s: str | None, limit: int = MAX_TEXT) -> str | None:
    """Text for a store column: at most ``limit`` characters, without NUL (PostgreSQL text cannot hold it; for
    the audit log, the stored value is exactly the hashed value)."""
    return None if s is None else s[:limit].replace("\x00", "")


class Caller(Protocol):
    """Who made a call, as far as its record keeps it (:class:`switchyard.governance.auth.Principal` is one)."""

    @property
    def id(self) -> str: ...
    @property
    def key_id(self) -> str | None: ...
    @property
    def user_id(self) -> str | None: ...
    @property
    def team_id(self) -> str | None: ...
    @property
    def org_id(self) -> str | None: ...
    @property
    def tags(self) -> frozenset[str]: ...


class Loser(Protocol):
    """A hedged attempt that lost the race (:class:`switchyard.routing.Attempt`): its estimated cost and usage."""

    @property
    def cost(self) -> float: ...
    @property
    def usage(self) -> Usage | None: ...


@dataclass(slots=True)
class CallRecord:
    """One finished call, for spend, audit and metrics. Holds a prompt or a completion only in ``payload``, and only
    when the key's logging mode asks for it."""

    request_id: str
    ts: float
    principal_id: str | None
    endpoint: str
    model: str
    route: str | None
    deployment: str | None
    provider: str | None
    status: str  # ok | error | cancelled | interrupted (see governance/intents.py)
    http_status: int
    usage: Usage
    cost: float
    latency_ms: float
    ttft_ms: float | None
    attempts: int
    error: str | None = None
    client_request_id: str | None = None
    principal: Caller | None = None  # who called: key, user, team, org, tags (for spend and audit)
    reason: str | None = None  # why this deployment (the plan's reason)
    payload: dict[str, Any] | None = None  # what the audit keeps of the content, per the key's logging mode
    losers: tuple[Loser, ...] = ()  # hedged attempts that lost the race: their estimated cost is not in ``cost``
    charges: list[Charge] | None = None  # what the ledger settled against each budget period (for spend records)
    decisions: dict[str, Any] | None = None  # policy and PII decisions (data class, policy ids, PII type counts)

    @property
    def total_cost(self) -> float:
        """What the request cost in all: the serving deployment's cost and every hedge loser's."""
        return self.cost + sum(a.cost for a in self.losers) if self.losers else self.cost


class Recorder(Protocol):
    def record(self, rec: CallRecord) -> None:
        """Accept a record without blocking; it is written off the hot path."""


class NullRecorder:
    def record(self, rec: CallRecord) -> None:
        return None


# --- the spool line of a call ------------------------------------------------------------------------------------


class Stored(NamedTuple):
    """A call as the spool keeps it. The line is this tuple as a JSON array, in this order."""

    v: int  # the line format (VERSION)
    request_id: str
    ts: float  # epoch seconds
    endpoint: str
    model: str
    status: str
    http_status: int  # 0: no response was completed (an interrupted call)
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost: int  # USD E8, the hedge losers' included
    latency_ms: float
    attempts: int
    client_request_id: str | None = None
    principal_id: str | None = None
    route: str | None = None
    deployment: str | None = None
    provider: str | None = None
    ttft_ms: float | None = None
    error: str | None = None  # at most MAX_TEXT characters
    reason: str | None = None
    key_id: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    org_id: str | None = None
    tags: list[str] | None = None  # sorted
    charges: list[Charge] | None = None
    own_cost: int | None = None  # the serving deployment's own cost (USD E8), when hedge losers add to ``cost``
    payload: dict[str, Any] | None = None
    decisions: dict[str, Any] | None = None  # policy and PII decisions: never a value, only types, ids and counts


def stored(rec: CallRecord) -> Stored:
    """The spool's view of a record."""
    p, u = rec.principal, rec.usage
    return Stored(
        VERSION, rec.request_id, rec.ts, rec.endpoint, rec.model, rec.status, rec.http_status, u.input_tokens,
        u.output_tokens, u.cached_tokens, u.cache_write_tokens, u.reasoning_tokens, usd_e8(rec.total_cost),
        round(rec.latency_ms, 3), rec.attempts, rec.client_request_id, rec.principal_id, rec.route, rec.deployment,
        rec.provider, None if rec.ttft_ms is None else round(rec.ttft_ms, 3),
        rec.error[:MAX_TEXT] if rec.error else None, rec.reason, p.key_id if p else None, p.user_id if p else None,
        p.team_id if p else None, p.org_id if p else None, sorted(p.tags) if p and p.tags else None,
        rec.charges or None, usd_e8(rec.cost) if rec.losers else None, rec.payload,
        rec.decisions)


def dump(rec: Stored | Intent) -> bytes:
    """One spool line."""
    return orjson.dumps(rec, default=tuple) + b"\n"


def encode(rec: CallRecord) -> bytes:
    """A record's spool line (on the hot path: a few microseconds)."""
    return orjson.dumps(stored(rec), default=tuple) + b"\n"


# --- the intent line of an admitted call ---------------------------------------------------------------------------


class Intent(NamedTuple):
    """An admitted call that has not ended yet: who, what, and what it is charged if it never ends."""

    t: str  # INTENT
    request_id: str
    ts: float
    endpoint: str
    model: str
    cost: int  # its reservation, USD E8
    input_tokens: int
    output_tokens: int
    client_request_id: str | None = None
    route: str | None = None
    principal_id: str | None = None
    key_id: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    org_id: str | None = None
    tags: list[str] | None = None
    charges: list[Charge] | None = None  # what it held against each budget period
    reserved: bool = False  # it holds a reservation in the ledger (Redis settles it if the gateway died)
    concurrent: list[str] | None = None  # the concurrency limits it holds a slot of


# --- reading lines -------------------------------------------------------------------------------------------------

# format 1: a JSON object of short keys, for each field of Stored and Intent
_V1 = {"rid": "request_id", "ts": "ts", "ep": "endpoint", "model": "model", "st": "status", "http": "http_status",
       "in": "input_tokens", "out": "output_tokens", "cached": "cached_tokens", "cw": "cache_write_tokens",
       "rsn": "reasoning_tokens", "cost": "cost", "lat": "latency_ms", "att": "attempts",
       "crid": "client_request_id", "pid": "principal_id", "route": "route", "dep": "deployment",
       "prov": "provider", "ttft": "ttft_ms", "err": "error", "why": "reason", "key": "key_id", "user": "user_id",
       "team": "team_id", "org": "org_id", "tags": "tags", "ch": "charges", "dcost": "own_cost", "pl": "payload",
       "r": "reserved", "cc": "concurrent"}
_STORED, _INTENT = frozenset(Stored._fields), frozenset(Intent._fields)


def is_intent(line: bytes) -> bool:
    return line.startswith((INTENT_PREFIX, _V1_INTENT_PREFIX))


def read_line(line: bytes) -> Stored | Intent:
    """A spool line, of this format or format 1. Raises ValueError for anything else."""
    try:
        x = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e}") from None
    try:
        if isinstance(x, list) and x:
            if x[0] == VERSION:  # a later version's extra fields (appended) are not read
                return Stored(*x[:len(Stored._fields)])
            if x[0] == INTENT:
                return Intent(*x[:len(Intent._fields)])
        elif isinstance(x, dict):
            if x.get("t") == INTENT:
                return Intent(INTENT, **{_V1[k]: v for k, v in x.items() if _V1.get(k) in _INTENT})
            if "rid" in x:
                return Stored(1, **{_V1[k]: v for k, v in x.items() if _V1.get(k) in _STORED})
    except TypeError as e:  # fields missing
        raise ValueError(f"an incomplete spool record ({e})") from None
    raise ValueError("not a spool record")


def peek(line: bytes) -> tuple[str, bool] | None:
    """A line's request id, and whether it is an intent (None: not a line of ours), without building it."""
    try:
        x = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if isinstance(x, list) and len(x) > 1 and isinstance(x[1], str) and x[0] in (VERSION, INTENT):
        return x[1], x[0] == INTENT
    if isinstance(x, dict) and isinstance(x.get("rid"), str):
        return x["rid"], x.get("t") == INTENT
    return None
