"""The request pipeline, free of HTTP: authenticate → (prompt/state) → (policy) → (reserve budget) → plan route →
execute → (settle) → record.

The ASGI app in ``server/`` is a thin shell: it reads bytes, hands a parsed neutral request and a ``CallContext``
to a ``Gateway`` method, and writes what comes back. Stages in brackets are seams that later issues fill; each
one is a hook object on the Gateway, so the hot path pays nothing for a stage that is not configured.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .catalog import Catalog, Deployment
from .config import Config
from .errors import SwitchyardError
from .governance.auth import Authenticator, Principal
from .governance.authlimit import failure_limiter
from .governance.payloads import StreamCapture, add_response, embedding_payload, request_payload
from .messages import (
    ChatRequest,
    ChatResponse,
    Chunk,
    EmbeddingRequest,
    EmbeddingResponse,
    Usage,
)
from .records import CallRecord, NullRecorder, Recorder
from .routing import Attempt, Executor, Plan, Router, StreamLease
from .routing.drain import Drains, estimate_usage, tally
from .routing.health import Outcome
from .routing.router import header_safe
from .tokens import estimate_prompt

if TYPE_CHECKING:
    from .governance.ledger import Ledger
    from .governance.runtime import Governance

log = logging.getLogger("switchyard.pipeline")


@dataclass(slots=True)
class CallContext:
    """One inbound call: who makes it, and (filled as it runs) what happened. Free of HTTP."""

    request_id: str  # ours: unique per call, whatever the caller sends
    client_request_id: str | None = None  # the caller's x-request-id, echoed back and kept in the record
    principal: Principal | None = None
    endpoint: str = "chat"
    protocol: str = "openai"  # the inbound API: openai | anthropic (a metrics label)
    deadline: float | None = None  # time.monotonic() by which the call must end
    started: float = field(default_factory=time.monotonic)
    plan: Plan | None = None
    deployment: Deployment | None = None
    attempts: list[Attempt] = field(default_factory=list)
    first_token_at: float | None = None
    payload: dict[str, Any] | None = None  # what the audit keeps of the content, per the key's logging mode
    recorded: bool = False  # the call has its record (and its settlement): every later attempt is a no-op
    draining: bool = False  # its client left mid-stream and a drain reads the rest: the drain records it
    trace: Any = None  # its trace, when tracing is on (switchyard.telemetry.tracing)

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
        h["x-switchyard-route-reason"] = header_safe(self.plan.reason) if self.plan is not None else "not routed"
        return h


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


class Gateway:
    """Everything a call needs, built once from the config."""

    def __init__(self, config: Config, catalog: Catalog, recorder: Recorder | None = None) -> None:
        self.config = config
        self.catalog = catalog
        self.router = Router(catalog, config)
        self.executor = Executor(self.router)
        self.auth = Authenticator(config.master_key, config.keys,
                                  limiter=failure_limiter(config.governance.auth_failures))
        self.recorder: Recorder = recorder or NullRecorder()
        # metrics and the request log (switchyard.telemetry), told of each finished call; None: nothing to do
        self.telemetry: Callable[[CallContext, CallRecord], None] | None = None
        self.tracing: Any = None  # OpenTelemetry spans (switchyard.telemetry.tracing); None: tracing is off
        self.governance: Governance | None = None  # virtual keys and audit: a resolver and a recorder
        if config.governance.enabled:
            from .governance.runtime import Governance  # not at the top: it imports the store, which imports us

            self.governance = Governance(config)
            self.governance.attach(self)
        self.ledger: Ledger | None = None  # budgets and rate limits: reserve before the upstream call, settle after
        if self.governance is not None:
            from .governance.ledger import Ledger

            self.ledger = Ledger(config, self.governance.db)
        # streams whose client hung up are read to their end (bounded) and charged for what the upstream produced
        self.drains = Drains(config.ledger.drain_timeout, config.ledger.drain_max_chunks)
        # a durable recorder (the spend spool) also keeps each admitted call's intent, for calls a crash cuts
        self._intend: Callable[[CallContext, Plan, object], None] | None = None
        append = getattr(self.recorder, "intend", None)
        if append is not None:
            from .governance.intents import Intents

            self._intend = Intents(append, self.ledger, config.ledger.default_max_tokens)
            durable: Any = self.recorder
            if self.ledger is not None and hasattr(durable, "on_interrupted"):
                durable.on_interrupted = self.ledger.settle_interrupted

    @classmethod
    def from_config(cls, config: Config, recorder: Recorder | None = None) -> Gateway:
        return cls(config, Catalog.from_config(config), recorder)

    async def start(self) -> None:
        if self.governance is not None:
            await self.governance.start()
        if self.ledger is not None:
            await self.ledger.start()
        for p in self.catalog.providers.values():
            await p.start()

    async def aclose(self) -> None:
        await self.drains.aclose()  # each records (and settles) with its estimate, before the ledger closes
        for p in self.catalog.providers.values():
            await p.aclose()
        if self.ledger is not None:
            await self.ledger.aclose()
        if self.governance is not None:
            await self.governance.aclose()

    # --- stages -------------------------------------------------------------------------------------------

    async def authenticate(self, ctx: CallContext, key: str | None, client: str | None = None) -> Principal:
        """``client``: the caller's address, for the failed-authentication limit."""
        ctx.principal = await self.auth.authenticate(key, client)
        return ctx.principal

    def _allow_model(self, ctx: CallContext, model: str) -> None:
        """The key's model allow-list; a refusal is recorded (and so audited as a denial) like any other call."""
        assert ctx.principal is not None
        try:
            ctx.principal.require_model(model)
        except SwitchyardError as e:
            self.record_failure(ctx, model, e)
            raise

    def _plan_chat(self, ctx: CallContext, req: ChatRequest) -> Plan:
        assert ctx.principal is not None
        self._allow_model(ctx, req.model)
        if ctx.principal.logging != "none":
            ctx.payload = request_payload(ctx.principal.logging, req)
        plan = self.router.plan(req.model, req.needs(), estimate_prompt(req), req.max_tokens, stream=req.stream)
        ctx.plan = plan
        return plan

    def _reserve(self, ctx: CallContext, plan: Plan, request: object = None) -> Awaitable[None] | None:
        """Hold the worst case against every budget and rate limit in scope (nothing to do for most keys). None
        when that is done (the embedded ledger); else what to await (Redis)."""
        p = ctx.principal
        if self.ledger is not None and p is not None and (p.budgets or p.rate_limits):
            return self.ledger.reserve(ctx.request_id, p, plan, request)
        return None

    def _record(self, ctx: CallContext, model: str, status: str, http_status: int, usage: Usage | None,
                error: str | None = None) -> None:
        """Record the call and settle its reservation: once per call, whatever path ends it."""
        if ctx.recorded:
            return
        ctx.recorded = True
        now = time.monotonic()
        dep = ctx.deployment
        u = usage or Usage()
        rec = CallRecord(
            request_id=ctx.request_id,
            client_request_id=ctx.client_request_id,
            ts=time.time(),
            principal_id=ctx.principal.id if ctx.principal else None,
            endpoint=ctx.endpoint,
            model=model,
            route=ctx.plan.route if ctx.plan else None,
            deployment=dep.name if dep else None,
            provider=dep.provider_name if dep else None,
            status=status,
            http_status=http_status,
            usage=u,
            cost=dep.cost(u) if dep else 0.0,
            latency_ms=(now - ctx.started) * 1000,
            ttft_ms=(ctx.first_token_at - ctx.started) * 1000 if ctx.first_token_at else None,
            attempts=len(ctx.attempts),
            error=error,
            principal=ctx.principal,
            reason=ctx.plan.reason if ctx.plan else None,
            payload=ctx.payload,
            losers=tuple(a for a in ctx.attempts if a.outcome == "lost") if ctx.plan and ctx.plan.spec.hedge else (),
        )
        if self.ledger is not None:
            rec.charges = self.ledger.settle(ctx.request_id, rec)
        self.recorder.record(rec)
        if self.telemetry is not None:
            self.telemetry(ctx, rec)

    def record_failure(self, ctx: CallContext, model: str, exc: SwitchyardError) -> None:
        self._record(ctx, model, "error", exc.status, None, exc.message)

    def _abandon(self, ctx: CallContext, model: str, exc: BaseException | None = None) -> None:
        """Record a call that ended without a SwitchyardError: cancelled (the client left), or a bug. A stream
        dropped unread (its upstream answered) is charged the estimate of its prompt."""
        if ctx.draining:
            return
        usage = estimate_usage(Usage(), 0, ctx.plan.prompt_tokens) if ctx.deployment and ctx.plan else None
        if exc is None or isinstance(exc, asyncio.CancelledError | GeneratorExit):
            self._record(ctx, model, "cancelled", 499, usage, "the call was cancelled before it completed")
        else:
            self._record(ctx, model, "error", 500, usage, f"unexpected {type(exc).__name__}")

    # --- endpoints ----------------------------------------------------------------------------------------

    async def chat(self, ctx: CallContext, req: ChatRequest) -> ChatResponse:
        plan = self._plan_chat(ctx, req)
        try:
            reserving = self._reserve(ctx, plan, req)
            if reserving is not None:
                await reserving
            if self._intend is not None:
                self._intend(ctx, plan, req)
            dep, resp = await self.executor.call(plan, lambda d: d.provider.chat(req, d.target), ctx.attempts,
                                                 ctx.deadline, ctx.started)
        except SwitchyardError as e:
            self.record_failure(ctx, req.model, e)
            raise
        except BaseException as e:
            self._abandon(ctx, req.model, e)
            raise
        ctx.deployment = dep
        ctx.first_token_at = time.monotonic()
        if ctx.payload is not None:
            add_response(ctx.payload, resp)
        self._record(ctx, req.model, "ok", 200, resp.usage)
        return resp

    async def chat_stream(self, ctx: CallContext, req: ChatRequest) -> AsyncIterator[Chunk]:
        """Open the stream (failing over before the first chunk); return an iterator over all its chunks.

        Errors before the first chunk raise here, so the caller can still answer with a plain error status.
        The iterator records the call when it ends, fails, or is closed early (the client went away).
        """
        plan = self._plan_chat(ctx, req)
        try:
            reserving = self._reserve(ctx, plan, req)
            if reserving is not None:
                await reserving
            if self._intend is not None:
                self._intend(ctx, plan, req)
            dep, first, rest, lease = await self.executor.open_stream(
                plan, lambda d: d.provider.stream(req, d.target), ctx.attempts, ctx.deadline, ctx.started)
        except SwitchyardError as e:
            self.record_failure(ctx, req.model, e)
            raise
        except BaseException as e:
            self._abandon(ctx, req.model, e)
            raise
        ctx.deployment = dep
        ctx.first_token_at = time.monotonic()
        relay = self._follow(ctx, req.model, first, rest, lease)
        # A relay that is never iterated never runs its ``finally``: record (and settle) it when it is dropped.
        weakref.finalize(relay, self._abandon, ctx, req.model).atexit = False
        return relay

    async def _follow(self, ctx: CallContext, model: str, first: Chunk, rest: AsyncIterator[Chunk],
                      lease: StreamLease | None = None) -> AsyncIterator[Chunk]:
        """Relay the stream, bounding the gap between chunks (``idle_s``) and the whole call (the deadline).

        A failure here comes after the first byte: it raises (the protocol layer ends the stream with an error
        event), the deployment's breaker hears of it, and the record says after how many chunks it broke. A client
        that leaves between chunks hands the rest of the stream to a drain (:mod:`.routing.drain`), which records
        the call with the usage the upstream reports at its end; a stream cut any other way is charged at least
        the estimate of what it delivered.
        """
        usage = Usage()
        chars = 0  # generated text relayed, in characters: the estimate if the stream is cut
        status, http_status = "cancelled", 499
        error: str | None = "the client went away"
        outcome = Outcome.NEUTRAL
        chunks = 0
        left = False  # the client closed the relay between chunks: the upstream can still be read
        capture = StreamCapture(ctx.payload) if ctx.payload is not None else None
        try:
            chunk: Chunk | None = first
            while chunk is not None:
                chars += tally(chunk.events, usage)
                if capture is not None:
                    capture.feed(chunk)
                chunks += 1
                try:
                    yield chunk
                except GeneratorExit:
                    left = True
                    raise
                try:
                    chunk = await (lease.next(rest) if lease is not None else rest.__anext__())
                except StopAsyncIteration:
                    chunk = None
            status, http_status, error, outcome = "ok", 200, None, Outcome.SUCCESS
        except SwitchyardError as e:
            status, http_status = "error", e.status
            error = f"stream failed after {chunks} chunk{'s' if chunks != 1 else ''}: {e.message}"
            outcome = lease.outcome_of(e) if lease is not None else Outcome.NEUTRAL
            if ctx.plan is not None:
                ctx.plan.notes.append(f"stream broke after {chunks} chunks")
            raise
        finally:
            if capture is not None:
                capture.close()
            if left and self.drains.enabled and self._drains_for(ctx):
                ctx.draining = True
                self.drains.start(rest, lease, usage, chars,
                                  lambda u, n, complete, why: self._drained(ctx, model, u, n, complete, why))
            else:
                aclose = getattr(rest, "aclose", None)
                if aclose is not None:
                    await aclose()
                if lease is not None:
                    lease.finish(outcome, error)
                if status != "ok" and ctx.plan is not None:
                    usage = estimate_usage(usage, chars, ctx.plan.prompt_tokens)
                    if status == "cancelled":
                        error = "the client went away; charged an estimate (the upstream was cut)"
                self._record(ctx, model, status, http_status, usage, error)

    def _drains_for(self, ctx: CallContext) -> bool:
        dep = ctx.deployment
        return dep is not None and dep.provider.drains_cut_streams

    def drain_linger(self, ctx: CallContext) -> float:
        """How long a stream's response waits, once its client left, for the chunk in flight (to hand the rest to
        a drain); 0: cancel the upstream call at once."""
        return self.drains.timeout if self.drains.enabled and self._drains_for(ctx) else 0.0

    def _drained(self, ctx: CallContext, model: str, usage: Usage, chars: int, complete: bool,
                 why: str | None) -> None:
        """A drain ended: record the cancelled call with the upstream's usage, or (cut, or no usage reported)
        with the estimate of what it produced."""
        ctx.draining = False
        error = "the client went away; the rest of the stream was read for its usage"
        if not complete or not usage.output_tokens:
            usage = estimate_usage(usage, chars, ctx.plan.prompt_tokens if ctx.plan is not None else 0)
            error = f"the client went away; charged an estimate ({why or 'the upstream reported no usage'})"
        self._record(ctx, model, "cancelled", 499, usage, error)

    async def embed(self, ctx: CallContext, req: EmbeddingRequest) -> EmbeddingResponse:
        assert ctx.principal is not None
        ctx.endpoint = "embeddings"
        self._allow_model(ctx, req.model)
        if ctx.principal.logging != "none":
            ctx.payload = embedding_payload(ctx.principal.logging, req)
        plan = self.router.plan(req.model, set(), endpoint="embeddings")
        ctx.plan = plan
        try:
            reserving = self._reserve(ctx, plan, req)
            if reserving is not None:
                await reserving
            if self._intend is not None:
                self._intend(ctx, plan, req)
            dep, resp = await self.executor.call(plan, lambda d: d.provider.embed(req, d.target), ctx.attempts,
                                                 ctx.deadline, ctx.started)
        except SwitchyardError as e:
            self.record_failure(ctx, req.model, e)
            raise
        except BaseException as e:
            self._abandon(ctx, req.model, e)
            raise
        ctx.deployment = dep
        self._record(ctx, req.model, "ok", 200, resp.usage)
        return resp

    def models_for(self, principal: Principal) -> list[tuple[str, str]]:
        """(name, owner) pairs for every deployment and route the principal may use."""
        out: list[tuple[str, str]] = []
        for name, d in self.catalog.deployments.items():
            if principal.may_use(name):
                out.append((name, d.provider_name))
        for name in self.catalog.routes:
            if principal.may_use(name):
                out.append((name, "switchyard"))
        return out
