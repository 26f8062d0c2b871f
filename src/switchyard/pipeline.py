"""The request pipeline, free of HTTP: the stages the app factory declares (``server/factory.py``) around the
router and the executor::

    admit ─► before ─► router.plan ─► routed ─► executor ─► provider
                │ (an answer: short circuit)                  │
    reply ◄── wrap (streams) ◄── after (reverse order) ◄── check ◄──┘

The ASGI app in ``server/`` is a thin shell: it reads bytes, hands a parsed neutral request and a ``CallContext``
to a ``Gateway`` method, and writes what comes back. The stage protocol is in :mod:`switchyard.stages`; a stage
that a configuration does not use is not in the chain, and costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .catalog import Catalog, Deployment
from .config import Config
from .errors import SwitchyardError
from .governance.auth import Authenticator, Principal
from .governance.payloads import StreamCapture
from .messages import (
    ChatRequest,
    ChatResponse,
    Chunk,
    EmbeddingRequest,
    EmbeddingResponse,
    Usage,
)
from .records import CallRecord, NullRecorder, Recorder
from .routing import Executor, Plan, Router, StreamLease
from .routing.aliases import is_pattern
from .routing.drain import Drains, estimate_usage, tally
from .routing.health import Outcome as Health
from .stages import ANSWERS, CallContext, Chain, Outcome, Request, replay
from .tokens import estimate_prompt

if TYPE_CHECKING:
    from .governance.ledger import Ledger
    from .governance.runtime import Governance

log = logging.getLogger("switchyard.pipeline")

_PAID = ("lost", "escalated", "verifier")  # attempts charged besides the serving one: hedge losers, cascade steps

__all__ = ["CallContext", "CallRecord", "Gateway", "Generation", "NullRecorder", "Recorder"]

class Generation:
    """One loaded configuration's catalog, router and executor. A call takes the gateway's current generation once,
    at its start, and keeps it to its end, so a reload (:mod:`switchyard.reload`) never changes a call in flight;
    ``inflight`` counts those calls, so that a retired generation's providers close only once they are done."""

    __slots__ = ("catalog", "config", "executor", "inflight", "number", "on_drained", "retired", "router")

    def __init__(self, number: int, config: Config, catalog: Catalog, router: Router, executor: Executor) -> None:
        self.number = number
        self.config = config
        self.catalog = catalog
        self.router = router
        self.executor = executor
        self.inflight = 0
        self.retired = False
        self.on_drained: Callable[[Generation], None] | None = None  # told once retired and its last call ended

    def release(self) -> None:
        self.inflight -= 1
        if self.inflight == 0 and self.retired and self.on_drained is not None:
            self.on_drained(self)

    def retire(self) -> None:
        self.retired = True
        if self.inflight == 0 and self.on_drained is not None:
            self.on_drained(self)

    def plan_chat(self, ctx: CallContext, req: ChatRequest) -> Plan:
        return self.router.plan(req.model, req.needs(), estimate_prompt(req), req.max_tokens, stream=req.stream,
                                allowed=ctx.allowed, narrowed_by=ctx.narrowed_by, request=req,
                                objective=ctx.objective)

    def plan_embed(self, ctx: CallContext, req: EmbeddingRequest) -> Plan:
        return self.router.plan(req.model, set(), endpoint="embeddings", allowed=ctx.allowed,
                                narrowed_by=ctx.narrowed_by)


class Gateway:
    """Everything a call needs: the router, the executor and the stage chain. Built by the app factory
    (``switchyard.server.factory``), which also hands it the services it starts and stops with the app."""

    def __init__(self, config: Config, catalog: Catalog, chain: Chain | None = None, *,
                 auth: Authenticator | None = None, recorder: Recorder | None = None,
                 governance: Governance | None = None, ledger: Ledger | None = None,
                 router: Router | None = None, tracing: Any = None) -> None:
        self.config = config
        router = router or Router(catalog, config)
        executor = Executor(router)
        self.tracing = tracing  # OpenTelemetry spans (switchyard.telemetry.tracing); None: tracing is off
        executor.tracer = tracing  # spans for attempts, and the traceparent sent upstream
        self.gen = Generation(0, config, catalog, router, executor)  # swapped whole by a reload
        self.reloader: Any = None  # switchyard.reload.Reloader, set by the app factory
        self.chain = chain or Chain()
        self.auth = auth or Authenticator(config.master_key, config.keys)  # also the admin API's
        self.recorder: Recorder = recorder or NullRecorder()
        self.governance = governance  # virtual keys and audit, for the admin API
        self.ledger = ledger  # budgets and rate limits (its stage holds and settles)
        self.workflows: Any = None  # switchyard.workflows.registry.Registry, with a workflows: section
        self.services: list[Any] = []  # started after the ledger, closed before it (start() and aclose())
        self.recent_embeddings: Any = None  # governance.feedback.RecentEmbeddings, when calls are recorded
        self.state: Any = None  # switchyard.state.service.StateService, with a state: section (set by the factory)
        self.conversations: Any = None  # its ConversationStore (the conversation stage and /v1/conversations)
        self.prompts: Any = None  # switchyard.prompts.stage.PromptStage, under governance (managed prompts)
        # streams whose client hung up are read to their end (bounded) and charged for what the upstream produced
        self.drains = Drains(config.ledger.drain_timeout, config.ledger.drain_max_chunks)
        self._admit = self.chain.admit
        self._before = self.chain.before
        self._routed = self.chain.routed
        self._after = self.chain.after
        self._check = self.chain.check
        self._reply = self.chain.reply

    @property
    def catalog(self) -> Catalog:
        return self.gen.catalog

    @property
    def router(self) -> Router:
        return self.gen.router

    @property
    def executor(self) -> Executor:
        return self.gen.executor

    async def start(self) -> None:
        if self.governance is not None:
            await self.governance.start()
        if self.ledger is not None:
            await self.ledger.start()
        for s in self.services:
            await s.start()
        if self.state is not None:
            await self.state.start()
        for p in self.catalog.providers.values():
            await p.start()
        if self.reloader is not None:
            self.reloader.started()

    async def aclose(self) -> None:
        await self.drains.aclose()  # each records (and settles) with its estimate, before the ledger closes
        if self.reloader is not None:
            await self.reloader.aclose()  # providers of retired generations not yet closed
        for p in self.catalog.providers.values():
            await p.aclose()
        for s in reversed(self.services):
            await s.aclose()
        if self.ledger is not None:
            await self.ledger.aclose()
        if self.state is not None:
            await self.state.aclose()
        if self.governance is not None:
            await self.governance.aclose()

    # --- the chain ----------------------------------------------------------------------------------------

    async def admit(self, ctx: CallContext) -> None:
        """The admission stages (authentication), before the body is read. A refusal is not a call: no record; the
        ``refused`` hooks count and log it."""
        try:
            for s in self._admit:
                waiting = s.admit(ctx)
                if waiting is not None:
                    await waiting
        except SwitchyardError as e:
            for r in self.chain.refused:
                try:
                    r.refused(ctx, e.status, e.code)
                except Exception:
                    log.exception("stage %s failed on a refused caller", type(r).__name__)
            raise

    async def authenticate(self, ctx: CallContext, key: str | None, client: str | None = None) -> Principal:
        """Admit a caller by its key; ``client``: its address, for the failed-authentication limit."""
        ctx.credential, ctx.peer = key, client
        await self.admit(ctx)
        ctx.credential = None
        if ctx.principal is None:  # a chain without an authenticating stage
            ctx.principal = await self.auth.authenticate(key, client)
        return ctx.principal

    async def _run(self, ctx: CallContext, req: Request, plan: Callable[[CallContext, Any], Plan],
                   execute: Callable[..., Awaitable[Any]], send: Callable[[Deployment, Any], Any]) -> Any:
        """One call through the chain: the before stages, the plan, the routed stages, then ``execute`` (the
        executor's ``call`` or ``open_stream``) with ``send(deployment, request)``. Returns what ``execute``
        returns, or a stage's answer (``ctx.short_circuited``). Any failure finishes the call (its after hooks
        run) and raises."""
        g = ctx.generation
        if g is not None and g.router.aliases:
            req.model = g.router.resolve(req.model)  # an alias: every stage sees its target
        ctx.request = req
        try:
            for s in self._before:
                answer = s.before(ctx)
                if answer is not None:
                    if not isinstance(answer, ANSWERS):
                        answer = await answer
                    if answer is not None:
                        ctx.short_circuited = True
                        return answer
            p = ctx.plan = plan(ctx, ctx.request)
            if p.decision is not None:  # what auto decided (task type, scores), for the record
                ctx.decisions = {**(ctx.decisions or {}), "route": p.decision.record()}
            for s in self._routed:
                waiting = s.routed(ctx)
                if waiting is not None:
                    await waiting
            req = ctx.request
            if p.spec.cascade is not None and isinstance(req, ChatRequest):
                g = ctx.generation
                return await p.spec.cascade.run(ctx, g.router, g.executor, req, _send_chat, _send_stream)
            return await execute(p, lambda d: send(d, req), ctx.attempts, ctx.deadline, ctx.started)
        except SwitchyardError as e:
            self.record_failure(ctx, e)
            raise
        except BaseException as e:
            self._abandon(ctx, e)
            raise

    def _enter(self, ctx: CallContext) -> Generation:
        """The generation the call runs on, to its end (released by ``_finish``)."""
        g = ctx.generation = self.gen
        g.inflight += 1
        return g

    def _finish(self, ctx: CallContext, status: str, http_status: int, usage: Usage | None,
                error: str | None = None, answer: ChatResponse | EmbeddingResponse | None = None,
                code: str | None = None) -> None:
        """Run the after hooks (settle, record, ...): once per call, whatever path ends it."""
        if ctx.recorded:
            return
        ctx.recorded = True
        g = ctx.generation
        if g is not None:
            ctx.generation = None
            g.release()
        if not self._after:
            return
        dep = ctx.deployment
        u = usage or Usage()
        plan = ctx.plan
        out = Outcome(status, http_status, u, (dep.cost(u) if dep else 0.0) + ctx.surcharge, error, answer,
                      tuple(a for a in ctx.attempts if a.outcome in _PAID) if plan and (
                          plan.spec.hedge or plan.spec.cascade) else (),
                      code=code)
        for s in self._after:
            try:
                s.after(ctx, out)
            except Exception:
                log.exception("stage %s failed after request %s", type(s).__name__, ctx.request_id)

    def record_failure(self, ctx: CallContext, exc: SwitchyardError) -> None:
        self._finish(ctx, "error", exc.status, None, exc.message, code=exc.code)

    def _abandon(self, ctx: CallContext, exc: BaseException | None = None) -> None:
        """Finish a call that ended without a SwitchyardError: cancelled (the client left), or a bug. A stream
        dropped unread (its upstream answered) is charged the estimate of its prompt."""
        if ctx.draining:
            return
        usage = estimate_usage(Usage(), 0, ctx.plan.prompt_tokens) if ctx.deployment and ctx.plan else None
        if exc is None or isinstance(exc, asyncio.CancelledError | GeneratorExit):
            self._finish(ctx, "cancelled", 499, usage, "the call was cancelled before it completed")
        else:
            self._finish(ctx, "error", 500, usage, f"unexpected {type(exc).__name__}")

    @staticmethod
    def _served(ctx: CallContext, got: Any) -> Any:
        """The reply of a call that is not a stream: a stage's answer, or the serving deployment's."""
        if ctx.short_circuited:
            return got
        ctx.deployment, resp = got
        return resp

    # --- endpoints ----------------------------------------------------------------------------------------

    async def chat(self, ctx: CallContext, req: ChatRequest) -> ChatResponse:
        g = self._enter(ctx)
        resp: ChatResponse = self._served(ctx, await self._run(ctx, req, g.plan_chat, g.executor.call, _send_chat))
        ctx.first_token_at = time.monotonic()
        if self._check:
            try:
                for s in self._check:
                    s.check(ctx, resp)
            except SwitchyardError as e:
                self._finish(ctx, "error", e.status, resp.usage, e.message, code=e.code)
                raise
        self._finish(ctx, "ok", 200, resp.usage, None, resp)
        for s in self._reply:
            got = s.reply(ctx, resp)
            resp = got if isinstance(got, ChatResponse) else await got
        return resp

    async def chat_stream(self, ctx: CallContext, req: ChatRequest) -> AsyncIterator[Chunk]:
        """Open the stream (failing over before the first chunk); return an iterator over all its chunks.

        Errors before the first chunk raise here, so the caller can still answer with a plain error status.
        The iterator records the call when it ends, fails, or is closed early (the client went away).
        """
        g = self._enter(ctx)
        got = await self._run(ctx, req, g.plan_chat, g.executor.open_stream, _send_stream)
        if ctx.short_circuited:
            relay = self._follow(ctx, got[0], replay(got[1:])) if got else self._follow(ctx, None, replay([]))
        else:
            dep, first, rest, lease = got
            ctx.deployment = dep
            relay = self._follow(ctx, first, rest, lease)
        ctx.first_token_at = time.monotonic()
        # A relay that is never iterated never runs its ``finally``: record (and settle) it when it is dropped.
        weakref.finalize(relay, self._abandon, ctx).atexit = False
        return self.chain.wrap_stream(ctx, relay)

    async def _follow(self, ctx: CallContext, first: Chunk | None, rest: AsyncIterator[Chunk],
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
        outcome = Health.NEUTRAL
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
            status, http_status, error, outcome = "ok", 200, None, Health.SUCCESS
        except SwitchyardError as e:
            status, http_status = "error", e.status
            error = f"stream failed after {chunks} chunk{'s' if chunks != 1 else ''}: {e.message}"
            outcome = lease.outcome_of(e) if lease is not None else Health.NEUTRAL
            if ctx.plan is not None:
                ctx.plan.notes.append(f"stream broke after {chunks} chunks")
            raise
        finally:
            if capture is not None:
                capture.close()
            if left and self.drains.enabled and self._drains_for(ctx):
                ctx.draining = True
                self.drains.start(rest, lease, usage, chars,
                                  lambda u, n, complete, why: self._drained(ctx, u, n, complete, why))
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
                self._finish(ctx, status, http_status, usage, error)

    def _drains_for(self, ctx: CallContext) -> bool:
        dep = ctx.deployment
        return dep is not None and dep.provider.drains_cut_streams

    def drain_linger(self, ctx: CallContext) -> float:
        """How long a stream's response waits, once its client left, for the chunk in flight (to hand the rest to
        a drain); 0: cancel the upstream call at once."""
        return self.drains.timeout if self.drains.enabled and self._drains_for(ctx) else 0.0

    def _drained(self, ctx: CallContext, usage: Usage, chars: int, complete: bool, why: str | None) -> None:
        """A drain ended: record the cancelled call with the upstream's usage, or (cut, or no usage reported)
        with the estimate of what it produced."""
        ctx.draining = False
        error = "the client went away; the rest of the stream was read for its usage"
        if not complete or not usage.output_tokens:
            usage = estimate_usage(usage, chars, ctx.plan.prompt_tokens if ctx.plan is not None else 0)
            error = f"the client went away; charged an estimate ({why or 'the upstream reported no usage'})"
        self._finish(ctx, "cancelled", 499, usage, error)

    async def embed(self, ctx: CallContext, req: EmbeddingRequest) -> EmbeddingResponse:
        ctx.endpoint = "embeddings"
        g = self._enter(ctx)
        resp: EmbeddingResponse = self._served(ctx, await self._run(ctx, req, g.plan_embed, g.executor.call,
                                                                    _send_embed))
        self._finish(ctx, "ok", 200, resp.usage, None, resp)
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
        usable = {n for n, _ in out}
        for name, target in self.config.aliases.items():  # exact aliases; a pattern names no one model
            if not is_pattern(name) and target in usable:
                out.append((name, "switchyard"))
        return out

    def model_for(self, principal: Principal, name: str) -> tuple[str, str] | None:
        """(name, owner) of one model the principal may use: a deployment, route, or a name an alias maps."""
        models = dict(self.models_for(principal))
        if name in models:
            return name, models[name]
        target = self.router.resolve(name)
        return (name, "switchyard") if target != name and target in models else None


def _send_chat(d: Deployment, req: ChatRequest) -> Awaitable[ChatResponse]:
    return d.provider.chat(req, d.target)


def _send_stream(d: Deployment, req: ChatRequest) -> Any:
    return d.provider.stream(req, d.target)


def _send_embed(d: Deployment, req: EmbeddingRequest) -> Awaitable[EmbeddingResponse]:
    return d.provider.embed(req, d.target)
