"""The stage protocol: small hooks around one call, run by :class:`~switchyard.pipeline.Gateway` in the order the
app factory declares (``server/factory.py``, ``STAGES``).

A stage is a :class:`Stage` subclass that overrides only the hooks it needs; a hook it does not override costs
nothing, since a :class:`Chain` keeps, per hook, only the stages that override it::

    admit    before the body is read (authentication); a refusal there is not a call, and has no ``after``
    refused  a caller that an ``admit`` hook refused (a bad or missing key): counted and logged, never recorded
    before   the neutral request is parsed: refuse (raise a SwitchyardError), rewrite (``call.rewrite``), narrow
             the deployments the router may pick (``call.narrow``), or answer it (return an answer: a short circuit)
    routed   the router has planned (``call.plan``), before the first upstream attempt: hold budgets, note intents
    wrap     each stream event, on its way to the client (a stage that needs none is not in the stream's path)
    check    the reply of a chat call that is not a stream, before it is recorded: refuse it (raise; the policy
             stage refuses a forbidden tool call here), and the call is recorded as refused, with its usage
    reply    the reply of a chat call that is not a stream, once it is recorded, on its way to the client (the
             record keeps what the upstream said: the PII stage puts masked values back here)
    after    once per call, on every path (ok, error, refused, cancelled, drained), with its :class:`Outcome`

``before``, ``routed`` and ``admit`` may be plain functions or coroutines: they return None (or an answer) when
done, or an awaitable when they must wait, so a synchronous stage creates no coroutine. ``after`` hooks run in the
reverse of the declared order, as middleware unwinds (settle before record), and for every stage of the chain,
including those after the one that refused: an ``after`` must not assume its ``before`` ran.

This module stays low: it knows the neutral messages and the routing types, never the server or governance.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from .messages import ChatRequest, ChatResponse, Chunk, EmbeddingRequest, EmbeddingResponse, Usage
from .records import CallRecord
from .routing.router import header_safe

if TYPE_CHECKING:
    from .catalog import Deployment
    from .governance.auth import Principal
    from .routing import Attempt, Plan

Request = ChatRequest | EmbeddingRequest
Answer = ChatResponse | EmbeddingResponse | list[Chunk]  # a list of chunks answers a stream request
ANSWERS = (ChatResponse, EmbeddingResponse, list)  # what a before hook may return instead of an awaitable


@dataclass(slots=True)
class CallContext:
    """One inbound call: who makes it, what it asks, and (filled as it runs) what happened. Free of HTTP."""

    request_id: str  # ours: unique per call, whatever the caller sends
    client_request_id: str | None = None  # the caller's x-request-id, echoed back and kept in the record
    principal: Principal | None = None
    endpoint: str = "chat"
    deadline: float | None = None  # time.monotonic() by which the call must end
    started: float = field(default_factory=time.monotonic)
    plan: Plan | None = None
    deployment: Deployment | None = None
    attempts: list[Attempt] = field(default_factory=list)
    first_token_at: float | None = None
    payload: dict[str, Any] | None = None  # what the audit keeps of the content, per the key's logging mode
    recorded: bool = False  # the call has run its after hooks (record, settlement): every later attempt is a no-op
    draining: bool = False  # its client left mid-stream and a drain reads the rest: the drain records it
    protocol: str = "openai"  # the caller's protocol: "openai" | "anthropic" (errors are rendered in it)
    request: Request | None = None  # the neutral request, as the stages so far have left it
    credential: str | None = None  # the key the caller sent, until the admit stage has read (and dropped) it
    peer: str | None = None  # the caller's address (the failed-authentication limit counts by it)
    allowed: Container[str] | None = None  # deployments the router may pick (None: any); see ``narrow``
    narrowed_by: list[str] | None = None  # why ``allowed`` is what it is, for the route reason
    short_circuited: bool = False  # a stage answered: no upstream call was made
    record: CallRecord | None = None  # the call's record, once the recording stage has built it
    trace: Any = None  # its trace, when tracing is on (switchyard.telemetry.tracing)
    generation: Any = None  # the configuration it runs on (switchyard.pipeline.Generation), until it finishes
    data_class: str | None = None  # public | internal | confidential | restricted, once a stage has set it
    pii_types: frozenset[str] | None = None  # the PII types found in the request, once the PII stage has scanned it
    pii_mode: str | None = None  # the PII mode the policies that allowed the call ask for (their strictest @pii)
    pii: Any = None  # the PII stage's scan of this call, until the mode is known (switchyard.pii.stage)
    policy_ids: tuple[str, ...] | None = None  # the policies that applied (``x-switchyard-policy``)
    decisions: dict[str, Any] | None = None  # what the policy and PII stages decided, for the audit record (no values)
    cache_directive: str | None = None  # the caller's x-switchyard-cache: bypass | refresh (None: use the cache)
    cache_status: str | None = None  # the reply's x-switchyard-cache: hit | similar <score> | miss (None: no header)
    cache: Any = None  # the cache stage's state of this call (switchyard.cache.stage)
    embedding: Any = None  # the prompt's embedding, if a stage computed one (auto routing, the semantic cache)
    objective: str | None = None  # the caller's x-switchyard-objective (cheapest | balanced | best), for auto
    conversation: str | None = None  # the conversation the call continues (x-switchyard-conversation), if any
    turn: Any = None  # the conversation stage's pending turn (switchyard.state.stage)
    surcharge: float = 0.0  # USD of work a stage did for the call (a conversation summary), charged with it
    session: str | None = None  # the caller's x-switchyard-session (sticky experiment assignment)
    headers: dict[str, str] | None = None  # response headers a stage adds (x-switchyard-prompt, -variant)

    def rewrite(self, request: Request) -> None:
        """Replace the neutral request. Its ``raw`` is dropped: the provider renders it from the neutral fields."""
        if isinstance(request, ChatRequest):
            request.raw = None
        self.request = request

    def narrow(self, keep: Iterable[str] | Callable[[str], bool], reason: str) -> None:
        """Let the router pick only among these deployment names (or those ``keep(name)`` accepts); ``reason``
        shows in ``x-switchyard-route-reason`` and ``route explain``. Narrowings compose (all must allow)."""
        names: Container[str] = _Where(keep) if callable(keep) else frozenset(keep)
        self.allowed = names if self.allowed is None else _Both(self.allowed, names)
        if self.narrowed_by is None:
            self.narrowed_by = []
        self.narrowed_by.append(reason)

    def response_headers(self) -> dict[str, str]:
        """The routing headers, on every response: the deployment that served (or last failed), the number of
        upstream attempts, and why the router chose as it did."""
        h: dict[str, str] = {}
        if self.deployment is not None:
            h["x-switchyard-deployment"] = self.deployment.name
            h.update(self.deployment.response_headers)
        else:
            h["x-switchyard-deployment"] = self.attempts[-1].deployment if self.attempts else "none"
        h["x-switchyard-attempts"] = str(len(self.attempts))
        if self.plan is not None:
            h["x-switchyard-route-reason"] = header_safe(self.plan.reason)
        elif self.short_circuited:
            h["x-switchyard-route-reason"] = "answered by a stage; not routed"
        else:
            h["x-switchyard-route-reason"] = "not routed"
        if self.policy_ids is not None:
            h["x-switchyard-policy"] = header_safe(",".join(self.policy_ids))
        if self.cache_status is not None:
            h["x-switchyard-cache"] = self.cache_status
        if self.headers is not None:
            h.update(self.headers)
        return h


class _Where:
    """A predicate over deployment names, as a container (what the router asks of ``allowed``)."""

    __slots__ = ("test",)

    def __init__(self, test: Callable[[str], bool]) -> None:
        self.test = test

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.test(name)


class _Both:
    __slots__ = ("a", "b")

    def __init__(self, a: Container[str], b: Container[str]) -> None:
        self.a, self.b = a, b

    def __contains__(self, name: object) -> bool:
        return name in self.a and name in self.b


@dataclass(slots=True)
class Outcome:
    """How a call ended, for the ``after`` hooks. ``charges`` is filled by the settling stage (for the record)."""

    status: str  # ok | error | cancelled
    http_status: int
    usage: Usage
    cost: float  # the serving deployment's cost of ``usage`` (0 without a deployment)
    error: str | None = None
    answer: ChatResponse | EmbeddingResponse | None = None  # the reply of a call that is not a stream
    losers: tuple[Attempt, ...] = ()  # hedged attempts that lost the race
    charges: list[Any] | None = None  # what the ledger settled against each budget period
    code: str | None = None  # the error's code, when a SwitchyardError ended the call (``budget_exceeded``, ...)

    @property
    def total_cost(self) -> float:
        """The serving deployment's cost and every hedge loser's."""
        return self.cost + sum(a.cost for a in self.losers) if self.losers else self.cost


def record_of(call: CallContext, outcome: Outcome) -> CallRecord:
    """The record of a finished call (for spend, audit, metrics and the request log)."""
    dep, plan, req = call.deployment, call.plan, call.request
    return CallRecord(
        request_id=call.request_id,
        client_request_id=call.client_request_id,
        ts=time.time(),
        principal_id=call.principal.id if call.principal else None,
        endpoint=call.endpoint,
        model=req.model if req is not None else "",
        route=plan.route if plan else None,
        deployment=dep.name if dep else None,
        provider=dep.provider_name if dep else None,
        status=outcome.status,
        http_status=outcome.http_status,
        usage=outcome.usage,
        cost=outcome.cost,
        latency_ms=(time.monotonic() - call.started) * 1000,
        ttft_ms=(call.first_token_at - call.started) * 1000 if call.first_token_at else None,
        attempts=len(call.attempts),
        error=outcome.error,
        principal=call.principal,
        reason=plan.reason if plan else ("answered by a stage" if call.short_circuited else None),
        payload=call.payload,
        losers=outcome.losers,
        charges=outcome.charges,
        decisions=call.decisions,
    )


class Stage:
    """A step of the request path. Override only the hooks you need; the others are never called."""

    name: ClassVar[str] = ""  # for errors and ``Chain.describe``; the class name if empty

    def admit(self, call: CallContext) -> Awaitable[None] | None:
        """Before the body is read (``call.request`` is None): authenticate. Raise to refuse."""
        return None

    def refused(self, call: CallContext, status: int, code: str | None) -> None:
        """An ``admit`` hook refused the caller (``status``, the error's ``code``): not a call, so no ``after``;
        for metrics and the request log. Must not block."""
        return None

    def before(self, call: CallContext) -> Answer | Awaitable[Answer | None] | None:
        """Refuse (raise), rewrite (``call.rewrite``), narrow (``call.narrow``), or answer (return it)."""
        return None

    def routed(self, call: CallContext) -> Awaitable[None] | None:
        """``call.plan`` is set; the upstream is not called yet. Raise to refuse."""
        return None

    def check(self, call: CallContext, response: ChatResponse) -> None:
        """A chat reply that is not a stream, before it is recorded: raise a SwitchyardError to refuse it (the
        call is recorded as refused, with the usage the upstream reported). Must not change it."""
        return None

    def wrap(self, call: CallContext, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        """Transform the stream. Must close ``chunks`` when it is closed itself (the chain also closes the relay
        under it)."""
        return chunks

    def after(self, call: CallContext, outcome: Outcome) -> None:
        """Once per call, whatever ended it. Must not block; must not assume ``before`` ran."""
        return None

    def reply(self, call: CallContext, answer: ChatResponse) -> ChatResponse | Awaitable[ChatResponse]:
        """A chat reply that is not a stream, after the ``after`` hooks recorded it: return it (changed or not)
        for the client, or an awaitable of it when it must wait (the conversation stage stores the turn). Runs in
        the declared order; not for errors, streams or embeddings."""
        return answer


_CALL_HOOKS = ("before", "routed", "wrap", "check", "after", "reply")


def _overrides(stage: Stage, hook: str) -> bool:
    return getattr(type(stage), hook) is not getattr(Stage, hook)


class Chain:
    """Stages in their declared order, kept per hook: only the stages that override a hook are in its tuple."""

    def __init__(self, stages: Sequence[Stage] = ()) -> None:
        self.stages = tuple(stages)
        self.admit = tuple(s for s in self.stages if _overrides(s, "admit"))
        self.refused = tuple(s for s in self.stages if _overrides(s, "refused"))
        self.before = tuple(s for s in self.stages if _overrides(s, "before"))
        self.routed = tuple(s for s in self.stages if _overrides(s, "routed"))
        self.wrap = tuple(s for s in self.stages if _overrides(s, "wrap"))
        self.check = tuple(s for s in self.stages if _overrides(s, "check"))
        self.after = tuple(s for s in reversed(self.stages) if _overrides(s, "after"))  # unwinding order
        self.reply = tuple(s for s in self.stages if _overrides(s, "reply"))
        seen_call_hook = False
        for s in self.stages:
            if _overrides(s, "admit") and seen_call_hook:
                raise ValueError(f"stage {describe(s)} admits callers but comes after a stage that sees requests")
            seen_call_hook = seen_call_hook or any(_overrides(s, h) for h in _CALL_HOOKS)

    def wrap_stream(self, call: CallContext, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        """The stream through every wrapping stage, the first declared outermost; ``chunks`` itself if none."""
        if not self.wrap:
            return chunks
        out = chunks
        for s in reversed(self.wrap):
            out = s.wrap(call, out)
        if out is chunks:  # every stage handed the stream back untouched: no layer
            return chunks
        return _closing(out, chunks)

    def describe(self) -> list[str]:
        return [describe(s) for s in self.stages]


def describe(stage: Stage) -> str:
    return stage.name or type(stage).__name__


async def _closing(outer: AsyncIterator[Chunk], inner: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    """Relay the wrapped stream; closing it closes every layer and, last, the relay (which records the call)."""
    try:
        async for chunk in outer:
            yield chunk
    finally:
        for it in (outer, inner):
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()


async def replay(chunks: list[Chunk]) -> AsyncIterator[Chunk]:
    """A short-circuit answer to a stream request, as a stream."""
    for c in chunks:
        yield c
