"""The ``Policy`` stage: Cedar policies over each candidate deployment of a call (docs/policy.md).

``before`` computes the call's data class (the highest of what earlier stages set, e.g. the PII stage, and the
key's default), evaluates every candidate deployment of the requested model or route, narrows the router to the
allowed ones (the reason names the policies that dropped the others) and refuses with 403 ``policy_denied`` when
none is left. The request's tool definitions are checked with ``Action::"tool_call"``. :class:`PolicyWithTools`
(the stage the factory installs) also checks the tool calls of a model's reply, and ends a stream with the
protocol's error event when a forbidden tool call appears; it decides per call whether the policies of the
caller's org concern ``tool_call`` (org policy sets may add some at any time), and otherwise hands the stream back
untouched, so the chain adds no layer to it.

A ``permit`` with ``@pii("<mode>")`` asks for that PII mode for the requests it allows: the stage sets
``call.pii_mode`` to the strictest over the deployments left, which the PII stage (``PiiApply``, right after this
one) applies.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ..classification import highest
from ..errors import PolicyDenied
from ..messages import ChatRequest, ChatResponse, Chunk, EmbeddingRequest, ToolCallPart, ToolCallStart
from ..stages import CallContext, Stage
from ..tokens import estimate_prompt, estimate_text
from .explain import candidates, worst_costs
from .facts import Resource, Subject, base_context

if TYPE_CHECKING:
    from ..catalog import Deployment
    from ..config import Config
    from ..routing import Router
    from .engine import Decision, PolicyEngine

log = logging.getLogger("switchyard.policy")

Clock = Callable[[], datetime]


def denial_message(decision: Decision, ids: Sequence[str], what: str) -> str:
    """The caller's message: the policy ids and their @reason, never the policy text."""
    parts = []
    for i in ids:
        r = decision.reason_of(i)
        parts.append(f"{i} ({r})" if r else i)
    return f"{what} is forbidden by policy: {'; '.join(parts) or 'no deployment is allowed'}."


class Policy(Stage):
    name = "Policy"

    def __init__(self, engine: PolicyEngine | None, config: Config, clock: Clock | None = None) -> None:
        # swap it whole (``engine.with_org_sets(...)``) to change the org policy sets; None: no policies yet (a
        # governed gateway without policy files, until an org stores a policy set): the stage passes every call
        self.engine = engine
        self.zone = ZoneInfo(config.policies.timezone)
        self.clock: Clock = clock or (lambda: datetime.now(self.zone))
        self.default_max_tokens = config.ledger.default_max_tokens
        self._cands: dict[int, tuple[Router, dict[tuple[str, bool], list[tuple[Deployment, Resource]]]]] = {}

    def _candidates(self, router: Router, model: str, chat: bool) -> list[tuple[Deployment, Resource]]:
        got = self._cands.get(id(router))
        if got is None or got[0] is not router:
            if len(self._cands) > 4:
                self._cands.clear()
            got = self._cands[id(router)] = (router, {})
        per = got[1]
        c = per.get((model, chat))
        if c is None:
            c = per[(model, chat)] = [(d, Resource.of(d)) for d in candidates(router, model, chat)]
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
        if self.engine is None or not self.engine.reads_cost:
            return None
        return worst_costs(router, model, [d for d, _ in cands], prompt, max_tokens, embed, self.default_max_tokens)

    def before(self, call: CallContext) -> None:
        p, req, gen, engine = call.principal, call.request, call.generation, self.engine
        if p is None or req is None or gen is None or engine is None or not engine.applies(p.org_id or ""):
            return None
        embed = isinstance(req, EmbeddingRequest)
        cands = self._candidates(gen.router, req.model, not embed)
        if not cands:
            return None  # an unknown model: the router answers 404
        data_class = highest(call.data_class, p.data_class) or "public"
        call.data_class = data_class
        subject = Subject.of(p)
        ctx, prompt, max_tokens = self.context_of(call, data_class)
        costs = self._costs(gen.router, req.model, cands, prompt, max_tokens, embed)
        resources = [r for _, r in cands]
        j = engine.judge(subject, "embed" if embed else "chat", resources, ctx, costs, ctx["tools"])
        decision, denied, ids = j.decision, j.denied, j.ids
        allowed = [r.name for r in resources if r.name not in denied]
        call.policy_ids = tuple(ids)
        record: dict[str, Any] = {"decision": "allow" if allowed else "deny", "ids": list(ids),
                                  "data_class": data_class}
        if denied:
            record["denied"] = {k: list(v) for k, v in denied.items()}
        if decision.modes and allowed:
            mode, by = decision.pii_mode(allowed)
            if mode is not None:
                call.pii_mode = mode
                record["pii_mode"] = {"mode": mode, "ids": list(by)}
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
    """The policy stage with the reply checks: the tool calls of a reply are checked too, when the policies of the
    caller's org concern ``tool_call`` (decided per call: the engine, with its org sets, may be swapped)."""

    name = "Policy"

    def check_tool(self, call: CallContext, tool: str) -> None:
        """Refuse a tool call the policies forbid on the serving deployment (audited in the call's decisions)."""
        p, dep, req, engine = call.principal, call.deployment, call.request, self.engine
        if p is None or dep is None or req is None or engine is None:
            return
        data_class = call.data_class or highest(p.data_class) or "public"
        ctx, prompt, max_tokens = self.context_of(call, data_class)
        res = Resource.of(dep)
        gen = call.generation
        costs = None
        if gen is not None:
            costs = self._costs(gen.router, req.model, [(dep, res)], prompt, max_tokens, False)
        d = engine.decide(Subject.of(p), "tool_call", [res], {**ctx, "tool": tool}, costs)
        v = d.verdicts[res.name]
        rec = _policy_record(call)
        rec.setdefault("tool_calls", []).append({"tool": tool, "decision": "allow" if v.allowed else "deny",
                                                  "ids": list(v.ids)})
        if not v.allowed:
            rec["decision"] = "deny"
            call.policy_ids = tuple(dict.fromkeys((*(call.policy_ids or ()), *v.ids)))
            raise PolicyDenied(denial_message(d, v.ids, f"The tool call {tool!r}"), param="tools",
                               headers={"x-switchyard-policy": ",".join(call.policy_ids)})

    def _checks_tools(self, call: CallContext) -> bool:
        p, engine = call.principal, self.engine
        return p is not None and engine is not None and engine.concerns("tool_call", p.org_id or "")

    def check(self, call: CallContext, response: ChatResponse) -> None:
        if not self._checks_tools(call):
            return
        for ch in response.choices:
            for part in ch.message.parts:
                if isinstance(part, ToolCallPart):
                    self.check_tool(call, part.name)

    def wrap(self, call: CallContext, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        """The stream itself (no layer) unless the caller's policies concern ``tool_call``."""
        return self._checked(call, chunks) if self._checks_tools(call) else chunks

    async def _checked(self, call: CallContext, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
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


def policy_stage(engine: PolicyEngine | None, config: Config, clock: Clock | None = None) -> Policy:
    """The stage for ``engine``: always the one with the reply checks, which it skips per call when the caller's
    policies do not concern ``tool_call`` (an org's policy set may add such policies after start-up)."""
    return PolicyWithTools(engine, config, clock)


def load_engine(config: Config, config_path: str | None = None) -> PolicyEngine:
    """The engine of ``config.policies`` (files relative to the config file's directory). Raises PolicyError."""
    from pathlib import Path

    from .engine import PolicyEngine

    pc = config.policies
    base = Path(config_path).resolve().parent if config_path else None
    return PolicyEngine.from_files(pc.files, pc.default, pc.schema_file, base, allow_pii=config.pii is not None)


def follow_org_sets(stage: Policy, base: PolicyEngine | None,
                    config: Config) -> Callable[[Mapping[str, tuple[int, str]]], None]:
    """A listener for the org policy sets (``Governance.org_policies``): each change swaps the stage's engine for
    ``base`` (the config's policies; none: an empty set) plus every org's newest set. Cedar loads at the first set.
    A set that no longer validates (stored by another version, say) is logged and the previous engine kept."""

    def apply(sets: Mapping[str, tuple[int, str]]) -> None:
        texts = {org: text for org, (_, text) in sets.items() if text.strip()}
        if not texts and base is None:
            stage.engine = None
            return
        from .engine import PolicyEngine
        from .source import PolicyError

        try:
            root = base if base is not None else PolicyEngine((), config.policies.default)
            stage.engine = root.with_org_sets(texts)
        except PolicyError as e:
            log.error("the org policy sets were not applied (the previous ones stay): %s", e)
            return
        if stage.engine.modes and config.pii is None:
            log.warning("some org policies ask for a PII mode (@pii), but the config has no pii: section: "
                        "nothing is scanned")

    return apply


__all__ = ["Policy", "PolicyWithTools", "candidates", "follow_org_sets", "load_engine", "policy_stage"]
