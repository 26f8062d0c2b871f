"""The ``Policy`` stage: Cedar policies over each candidate deployment of a call (docs/policy.md).

``before`` computes the call's data class (the highest of what earlier stages set, e.g. the PII stage, and the
key's default), evaluates every candidate deployment of the requested model or route, narrows the router to the
allowed ones (the reason names the policies that dropped the others) and refuses with 403 ``policy_denied`` when
none is left. The request's tool definitions are checked with ``Action::"tool_call"``. :class:`PolicyWithTools`
(used only when some policy concerns ``tool_call``) also checks the tool calls of a model's reply, and ends a
stream with the protocol's error event when a forbidden tool call appears.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ..classification import highest
from ..errors import PolicyDenied
from ..messages import ChatRequest, ChatResponse, Chunk, EmbeddingRequest, ToolCallPart, ToolCallStart
from ..stages import CallContext, Stage
from ..tokens import estimate_prompt, estimate_text
from .engine import Decision, PolicyEngine
from .facts import Resource, Subject, base_context, usd

if TYPE_CHECKING:
    from ..catalog import Deployment
    from ..config import Config
    from ..routing import Router

Clock = Callable[[], datetime]


def candidates(router: Router, model: str) -> list[Deployment]:
    """Every deployment a call to ``model`` may reach: the route's targets and all its fallback groups."""
    spec = router.specs.get(model)
    if spec is None:
        return []
    out: dict[str, Deployment] = {}
    for g in (spec.group, *spec.fallbacks, *spec.context_fallbacks, *spec.policy_fallbacks):
        for e in g.entries:
            out.setdefault(e.deployment.name, e.deployment)
    return list(out.values())


def denial_message(decision: Decision, ids: Sequence[str], what: str) -> str:
    """The caller's message: the policy ids and their @reason, never the policy text."""
    parts = []
    for i in ids:
        r = decision.reason_of(i)
        parts.append(f"{i} ({r})" if r else i)
    return f"{what} is forbidden by policy: {'; '.join(parts) or 'no deployment is allowed'}."


class Policy(Stage):
    name = "Policy"

    def __init__(self, engine: PolicyEngine, config: Config, clock: Clock | None = None) -> None:
        self.engine = engine  # swap it whole (``engine.with_org_sets(...)``) to change the org policy sets
        self.zone = ZoneInfo(config.policies.timezone)
        self.clock: Clock = clock or (lambda: datetime.now(self.zone))
        self.default_max_tokens = config.ledger.default_max_tokens
        self._cands: dict[int, tuple[Router, dict[str, list[tuple[Deployment, Resource]]]]] = {}

    def _candidates(self, router: Router, model: str) -> list[tuple[Deployment, Resource]]:
        got = self._cands.get(id(router))
        if got is None or got[0] is not router:
            if len(self._cands) > 4:
                self._cands.clear()
            got = self._cands[id(router)] = (router, {})
        per = got[1]
        c = per.get(model)
        if c is None:
            c = per[model] = [(d, Resource.of(d)) for d in candidates(router, model)]
        return c

    def _now(self) -> tuple[int, int]:
        t = self.clock().astimezone(self.zone)
        return t.hour, t.isoweekday()

    def context_of(self, call: CallContext, data_class: str) -> tuple[dict[str, Any], int, int | None]:
        req = call.request
        hour, weekday = self._now()
        if isinstance(req, ChatRequest):
            prompt, max_tokens = estimate_prompt(req), req.max_tokens
            tools = frozenset(t.name for t in req.tools or ())
            stream = bool(req.stream)
        else:
            assert isinstance(req, EmbeddingRequest)
            prompt = sum(estimate_text(x) if isinstance(x, str) else len(x) for x in req.input)
            max_tokens, tools, stream = 0, frozenset(), False
        ctx = base_context(data_class=data_class, pii=call.pii_types or frozenset(), prompt_tokens=prompt,
                           max_tokens=max_tokens or 0, route=req.model if req is not None else "", stream=stream,
                           tools=tools, hour=hour, weekday=weekday)
        return ctx, prompt, max_tokens

    def _costs(self, router: Router, model: str, cands: Sequence[tuple[Deployment, Resource]], prompt: int,
               max_tokens: int | None, embed: bool) -> dict[str, Decimal] | None:
        """Each deployment's worst case, as the ledger reserves it: the prompt at the input price plus the output
        cap at the output price, once more for each possible hedge."""
        if not self.engine.reads_cost:
            return None
        spec = router.specs.get(model)
        calls = 1 + (spec.hedge.max_extra if spec is not None and spec.hedge is not None else 0)
        out: dict[str, Decimal] = {}
        for d, _ in cands:
            n_out = 0 if embed else (max_tokens or d.max_output_tokens or self.default_max_tokens)
            out[d.name] = usd((prompt * d.input_price + n_out * d.output_price) * calls)
        return out

    def before(self, call: CallContext) -> None:
        p, req, gen = call.principal, call.request, call.generation
        if p is None or req is None or gen is None:
            return None
        cands = self._candidates(gen.router, req.model)
        if not cands:
            return None  # an unknown model: the router answers 404
        data_class = highest(call.data_class, p.data_class) or "public"
        call.data_class = data_class
        subject = Subject.of(p)
        ctx, prompt, max_tokens = self.context_of(call, data_class)
        embed = isinstance(req, EmbeddingRequest)
        costs = self._costs(gen.router, req.model, cands, prompt, max_tokens, embed)
        resources = [r for _, r in cands]
        decision = self.engine.decide(subject, "embed" if embed else "chat", resources, ctx, costs)
        denied: dict[str, tuple[str, ...]] = dict(decision.denied)
        ids = list(decision.ids)
        tools = ctx["tools"]
        if tools and self.engine.concerns("tool_call"):
            for name in sorted(tools):
                td = self.engine.decide(subject, "tool_call", resources, {**ctx, "tool": name}, costs)
                for dep, by in td.denied.items():
                    denied[dep] = (*denied.get(dep, ()), *by)
                ids.extend(i for i in td.ids if i not in ids)
        allowed = [r.name for r in resources if r.name not in denied]
        call.policy_ids = tuple(ids)
        record: dict[str, Any] = {"decision": "allow" if allowed else "deny", "ids": list(ids),
                                  "data_class": data_class}
        if denied:
            record["denied"] = {k: list(v) for k, v in denied.items()}
        if call.decisions is None:
            call.decisions = {}
        call.decisions["policy"] = record
        if not allowed:
            names = sorted({i for v in denied.values() for i in v})
            raise PolicyDenied(denial_message(decision, names, "This request"), param="model",
                               headers={"x-switchyard-policy": ",".join(ids)})
        if denied:
            call.narrow(allowed, "policy: " + ", ".join(f"{k} ({', '.join(v)})" for k, v in denied.items()))
        return None


class PolicyWithTools(Policy):
    """The policy stage when some policy concerns ``tool_call``: the tool calls of a reply are checked too."""

    name = "Policy"

    def check_tool(self, call: CallContext, tool: str) -> None:
        """Refuse a tool call the policies forbid on the serving deployment (audited in the call's decisions)."""
        p, dep, req = call.principal, call.deployment, call.request
        if p is None or dep is None or req is None:
            return
        data_class = call.data_class or highest(p.data_class) or "public"
        ctx, prompt, max_tokens = self.context_of(call, data_class)
        res = Resource.of(dep)
        gen = call.generation
        costs = None
        if gen is not None:
            costs = self._costs(gen.router, req.model, [(dep, res)], prompt, max_tokens, False)
        d = self.engine.decide(Subject.of(p), "tool_call", [res], {**ctx, "tool": tool}, costs)
        v = d.verdicts[res.name]
        rec = _policy_record(call)
        rec.setdefault("tool_calls", []).append({"tool": tool, "decision": "allow" if v.allowed else "deny",
                                                  "ids": list(v.ids)})
        if not v.allowed:
            rec["decision"] = "deny"
            call.policy_ids = tuple(dict.fromkeys((*(call.policy_ids or ()), *v.ids)))
            raise PolicyDenied(denial_message(d, v.ids, f"The tool call {tool!r}"), param="tools")

    def reply(self, call: CallContext, response: ChatResponse) -> None:
        for ch in response.choices:
            for part in ch.message.parts:
                if isinstance(part, ToolCallPart):
                    self.check_tool(call, part.name)

    async def wrap(self, call: CallContext, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        async for chunk in chunks:
            for ev in chunk.events:
                if isinstance(ev, ToolCallStart):
                    self.check_tool(call, ev.name)
            yield chunk


def _policy_record(call: CallContext) -> dict[str, Any]:
    if call.decisions is None:
        call.decisions = {}
    rec = call.decisions.get("policy")
    if not isinstance(rec, dict):
        rec = call.decisions["policy"] = {"decision": "allow", "ids": [], "data_class": call.data_class}
    return rec


def policy_stage(engine: PolicyEngine, config: Config, clock: Clock | None = None) -> Policy:
    """The stage for ``engine``: with the reply checks only when some policy concerns ``tool_call``."""
    cls = PolicyWithTools if engine.concerns("tool_call") else Policy
    return cls(engine, config, clock)


def load_engine(config: Config, config_path: str | None = None) -> PolicyEngine:
    """The engine of ``config.policies`` (files relative to the config file's directory). Raises PolicyError."""
    from pathlib import Path

    pc = config.policies
    base = Path(config_path).resolve().parent if config_path else None
    return PolicyEngine.from_files(pc.files, pc.default, pc.schema_file, base)


__all__ = ["Policy", "PolicyWithTools", "candidates", "load_engine", "policy_stage"]
