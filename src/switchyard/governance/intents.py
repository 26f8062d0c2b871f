"""Intent records: a call admitted and not yet ended leaves a trace that survives the gateway's death.

When a call is admitted (after its reservation), the gateway appends an *intent* line to the spend spool
(:meth:`~switchyard.store.spool.Spool.append_intent`): one ``write``, batched and shipped like every record, no
fsync and no store round trip. The call's spend record is its outcome. A spool file is kept while it holds an
intent without an outcome, so when a gateway is killed (SIGKILL, a crash, the machine) every call it had in flight
has its intent in a file that outlives it.

The process that adopts a dead gateway's files (:meth:`~switchyard.store.spool.Spool.adopt`, at start and every
few seconds) looks at all of them together: every intent with no outcome among them becomes a spend record of
status ``interrupted``, charged at the call's reservation (the worst case it held; a call that held no budget is
charged the worst case worked out the same way), and appended to the adopter's own spool, behind the adopted files.
So any outcome still in those files is shipped first, and the store's unique request ids keep whichever came
first: an outcome that was already shipped (its file deleted) wins too. Each request id gets exactly one record.
Its charges go into ``budget_spend`` like any other record's; with Redis, the ledger also settles the hold the dead
gateway left (:meth:`~switchyard.governance.ledger.Ledger.settle_interrupted`), so that it is counted once there
too and freed before its lease ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from ..messages import ChatRequest, EmbeddingRequest
from .worst_case import embedding_tokens, worst_case

if TYPE_CHECKING:
    from ..routing import Plan
    from .auth import Principal
    from .ledger_model import Hold


class Call(Protocol):  # the pipeline's CallContext, as far as an intent needs it
    @property
    def request_id(self) -> str: ...
    @property
    def client_request_id(self) -> str | None: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def principal(self) -> Principal | None: ...


class Holds(Protocol):  # the ledger, as far as an intent needs it
    @property
    def holds(self) -> dict[str, Hold]: ...

PREFIX = b'{"t":"i",'  # every intent line starts so (the shipper skips them without decoding)
STATUS = "interrupted"
WHY = "the gateway stopped (killed or crashed) before the call ended; charged at its reservation"


class Intents:
    """Writes each admitted call's intent line (the pipeline calls it once per call, after the reservation)."""

    __slots__ = ("_append", "default_max_tokens", "ledger")

    def __init__(self, append: Callable[[bytes, str], None], ledger: Holds | None, default_max_tokens: int) -> None:
        self._append = append
        self.ledger = ledger
        self.default_max_tokens = default_max_tokens

    def __call__(self, ctx: Call, plan: Plan, request: object) -> None:
        self._append(intent_line(ctx, plan, request, self), ctx.request_id)


def intent_line(ctx: Call, plan: Plan, request: object, intents: Intents) -> bytes:
    """The intent of one admitted call: who, what, and what it is charged if it never ends (its reservation)."""
    hold = intents.ledger.holds.get(ctx.request_id) if intents.ledger is not None else None
    if hold is not None and hold.budgets:
        usd, tokens, prompt = hold.usd, hold.tokens, hold.prompt
    elif isinstance(request, EmbeddingRequest):
        prompt = embedding_tokens(request)
        usd, tokens = worst_case(plan, prompt, None, intents.default_max_tokens, 1, False)
    else:
        prompt = plan.prompt_tokens
        choices = (request.n or 1) if isinstance(request, ChatRequest) else 1
        usd, tokens = worst_case(plan, prompt, plan.max_tokens, intents.default_max_tokens, choices)
    d: dict[str, Any] = {"t": "i", "rid": ctx.request_id, "ts": time.time(), "ep": ctx.endpoint,
                         "model": plan.requested, "cost": usd, "in": prompt, "out": max(0, tokens - prompt)}
    if ctx.client_request_id is not None:
        d["crid"] = ctx.client_request_id
    if plan.route is not None:
        d["route"] = plan.route
    p = ctx.principal
    if p is not None:
        d["pid"] = p.id
        for k, v in (("key", p.key_id), ("user", p.user_id), ("team", p.team_id), ("org", p.org_id)):
            if v is not None:
                d[k] = v
        if p.tags:
            d["tags"] = sorted(p.tags)
    if hold is not None:
        if hold.budgets:
            d["ch"] = [(b.budget.id, b.period, usd, tokens) for b in hold.budgets]
        if hold.reserved:
            d["r"] = 1
        if hold.concurrent:
            d["cc"] = [x.id for x in hold.concurrent]
    return orjson.dumps(d) + b"\n"


def orphans(lines: Iterable[bytes]) -> list[dict[str, Any]]:
    """The intents among ``lines`` (a dead gateway's files, all of them) that have no outcome among them."""
    intents: dict[str, dict[str, Any]] = {}
    ended: set[str] = set()
    for line in lines:
        try:
            d = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a torn last line; the shipper sets it aside
        if not isinstance(d, dict) or not isinstance(d.get("rid"), str):
            continue
        if line.startswith(PREFIX):
            intents[d["rid"]] = d
        else:
            ended.add(d["rid"])
    return [d for rid, d in intents.items() if rid not in ended]


def interrupted_record(d: dict[str, Any]) -> bytes:
    """The spend record (a spool line) of a call whose gateway stopped before it ended: charged at its intent's
    reservation. ``http`` 0: no response was completed."""
    rec: dict[str, Any] = {
        "v": 1, "rid": d["rid"], "ts": d["ts"], "ep": d["ep"], "model": d["model"], "st": STATUS, "http": 0,
        "in": int(d.get("in", 0)), "out": int(d.get("out", 0)), "cached": 0, "cw": 0, "rsn": 0,
        "cost": int(d.get("cost", 0)), "lat": 0.0, "att": 0, "err": WHY,
    }
    for k in ("crid", "route", "pid", "key", "user", "team", "org", "tags", "ch"):
        if d.get(k) is not None:
            rec[k] = d[k]
    return orjson.dumps(rec) + b"\n"
