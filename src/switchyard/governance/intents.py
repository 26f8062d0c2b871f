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
from typing import TYPE_CHECKING, Protocol

from ..messages import ChatRequest, EmbeddingRequest
from ..records import INTENT, INTENT_PREFIX, VERSION, Intent, Stored, dump, peek, read_line
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

PREFIX = INTENT_PREFIX  # every intent line starts so (the shipper skips them without decoding)
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
    p = ctx.principal
    held = hold is not None and hold.budgets
    it = Intent(INTENT, ctx.request_id, time.time(), ctx.endpoint, plan.requested, usd, prompt,
                max(0, tokens - prompt), ctx.client_request_id, plan.route,
                p.id if p else None, p.key_id if p else None, p.user_id if p else None, p.team_id if p else None,
                p.org_id if p else None, sorted(p.tags) if p and p.tags else None,
                [(b.budget.id, b.period, usd, tokens) for b in hold.budgets] if hold is not None and held else None,
                hold is not None and hold.reserved,
                [x.id for x in hold.concurrent] if hold is not None and hold.concurrent else None)
    return dump(it)


def orphans(lines: Iterable[bytes]) -> list[Intent]:
    """The intents among ``lines`` (a dead gateway's files, all of them) that have no outcome among them."""
    started: dict[str, bytes] = {}
    ended: set[str] = set()
    for line in lines:
        seen = peek(line)
        if seen is None:
            continue  # a torn last line (the shipper sets it aside), or not ours
        rid, intent = seen
        if intent:
            started[rid] = line
        else:
            ended.add(rid)
    out: list[Intent] = []
    for rid, line in started.items():
        if rid not in ended:
            try:
                it = read_line(line)
            except ValueError:
                continue
            if isinstance(it, Intent):
                out.append(it)
    return out


def interrupted_record(it: Intent) -> bytes:
    """The spend record (a spool line) of a call whose gateway stopped before it ended: charged at its intent's
    reservation. ``http_status`` 0: no response was completed."""
    return dump(Stored(
        VERSION, it.request_id, it.ts, it.endpoint, it.model, STATUS, 0, int(it.input_tokens or 0),
        int(it.output_tokens or 0), 0, 0, 0, int(it.cost or 0), 0.0, 0, client_request_id=it.client_request_id,
        principal_id=it.principal_id, route=it.route, error=WHY, key_id=it.key_id, user_id=it.user_id,
        team_id=it.team_id, org_id=it.org_id, tags=it.tags, charges=it.charges))
