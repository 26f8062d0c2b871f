"""Cascades (``strategy: cascade``): the cheap step answers first; a check keeps its answer or escalates to the
next step. The last step's answer is final.

Checks: ``json_schema`` (the answer parses as JSON and validates against the schema: the check's, or the request's
``response_format`` schema), ``verifier`` (a verifier deployment reads the question, the answer and a rubric, and
answers yes or no), ``logprobs`` (the mean token logprob of the answer is at least ``threshold``; the step is asked
for logprobs) and ``router`` (the learned router's score of the prompt is below its threshold: otherwise the step
is skipped without a call).

Every step is a non-streamed call through the executor (with its failover, timeouts and breakers), except the last
one of a streamed request, which streams for real; a kept earlier answer is replayed to a streaming client as a
proper stream, so a client sees exactly one answer. Every step's and every verifier's cost is charged: each
escalated call stays on the call's attempts with its usage and cost (the outcome's ``losers``), and the ledger holds
the sum of all steps' worst cases up front (``governance/worst_case.py``). The path goes to the call record
(``decisions["cascade"]``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Container, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ...config.routing import CheckConfig, RouteConfig
from ...errors import SwitchyardError
from ...messages import (
    ChatRequest,
    ChatResponse,
    Chunk,
    Finish,
    FinishReason,
    Message,
    Role,
    StreamStart,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    UsageUpdate,
)

if TYPE_CHECKING:
    from ...catalog import Deployment
    from ..executor import Attempt, Executor
    from ..router import Plan, Router


class CascadeCall(Protocol):
    """What a cascade reads and writes of the call (:class:`switchyard.stages.CallContext` is one); a protocol, so
    that routing never imports the stages."""

    plan: Plan | None
    decisions: dict[str, Any] | None
    allowed: Container[str] | None
    narrowed_by: list[str] | None
    attempts: list[Attempt]
    deadline: float | None
    started: float

log = logging.getLogger("switchyard.routing")

DEFAULT_LOGPROB = -0.5
VERIFIER_MAX_TOKENS = 8
DEFAULT_RUBRIC = "The answer is correct, complete, and follows the instructions of the question."
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


@dataclass(slots=True)
class Step:
    deployment: str
    check: CheckConfig | None
    validator: Any = None  # a compiled JSON schema validator (json_schema checks with a schema)


@dataclass(slots=True)
class CascadeSpec:
    steps: list[Step]
    verifier_deployments: list[Deployment]  # their worst case is held too
    router_path: str | None = None
    _routers: dict[str, Any] | None = None
    verifier_max_tokens: int = VERIFIER_MAX_TOKENS

    @classmethod
    def build(cls, rc: RouteConfig, deployments: Mapping[str, Deployment], router_path: str | None) -> CascadeSpec:
        steps = []
        for s in rc.cascade_steps():
            if s.deployment not in deployments:
                continue  # disabled
            validator = None
            if s.check is not None and s.check.type == "json_schema" and s.check.json_schema is not None:
                validator = _validator(s.check.json_schema)
            steps.append(Step(s.deployment, s.check, validator))
        verifiers = sorted({s.check.verifier for s in steps if s.check is not None and s.check.verifier})
        return cls(steps, [deployments[v] for v in verifiers if v in deployments], router_path)

    async def run(self, ctx: CascadeCall, router: Router, executor: Executor, req: ChatRequest,
                  send_chat: Callable[[Deployment, ChatRequest], Awaitable[ChatResponse]],
                  send_stream: Callable[[Deployment, ChatRequest], AsyncIterator[Chunk]]) -> Any:
        """Run the steps; return what the executor would: (deployment, reply), or for a stream (deployment, first
        chunk, the rest, lease or None)."""
        plan = ctx.plan
        assert plan is not None
        planned = {e.name for e in plan.entries}
        steps = [s for s in self.steps if s.deployment in planned] or self.steps[-1:]
        path: list[dict[str, Any]] = []
        ctx.decisions = {**(ctx.decisions or {}), "cascade": path}
        for i, step in enumerate(steps):
            last = i == len(steps) - 1
            check = step.check if not last else None
            gate = ""
            if check is not None and check.type == "router":
                keep, gate = self._router_says_weak(check, req)
                why = gate
                if not keep:
                    path.append({"deployment": step.deployment, "kept": False, "check": "router", "why": why,
                                 "cost": 0.0, "called": False})
                    plan.notes.append(f"cascade: {step.deployment} skipped ({why})")
                    continue
            sub = router.plan(step.deployment, plan.needs, plan.prompt_tokens, plan.max_tokens,
                              stream=req.stream and last, allowed=ctx.allowed, narrowed_by=ctx.narrowed_by)
            if last and req.stream:
                dep, first, rest, lease = await executor.open_stream(
                    sub, lambda d: send_stream(d, req), ctx.attempts, ctx.deadline, ctx.started)
                path.append({"deployment": dep.name, "kept": True, "check": None, "cost": None})
                plan.notes.append(f"cascade: {dep.name} answers")
                return dep, first, rest, lease
            step_req = dataclasses.replace(req, stream=False, include_usage=False, raw=None)
            if check is not None and check.type == "logprobs":
                step_req.logprobs = True
            try:
                dep, resp = await executor.call(sub, _bind(send_chat, step_req), ctx.attempts, ctx.deadline,
                                                ctx.started)
            except SwitchyardError as e:
                if last:
                    raise
                path.append({"deployment": step.deployment, "kept": False, "check": "error", "why": e.message[:200],
                             "cost": 0.0})
                plan.notes.append(f"cascade: {step.deployment} failed, escalated")
                continue
            cost = dep.cost(resp.usage) if resp.usage is not None else 0.0
            if check is None or check.type == "router":  # the router decided before the call
                kept, why = True, gate or "final step"
            else:
                kept, why = await self._check(check, step, req, resp, ctx, router, executor, send_chat)
            path.append({"deployment": dep.name, "kept": kept, "check": check.type if check else None, "why": why,
                         "cost": cost})
            if not kept:
                _escalated(ctx.attempts, dep.name, resp, cost)
                plan.notes.append(f"cascade: {dep.name} escalated ({why})")
                continue
            plan.notes.append(f"cascade: {dep.name} kept ({why})")
            if req.stream:
                chunks = response_chunks(resp)
                return dep, chunks[0], _replay(chunks[1:]), None
            return dep, resp
        raise AssertionError("a cascade's last step always answers")  # pragma: no cover

    def _router_says_weak(self, check: CheckConfig, req: ChatRequest) -> tuple[bool, str]:
        from .profile import request_text

        path = check.router or self.router_path
        if path is None:
            return True, "no router"
        routers = self._routers if self._routers is not None else {}
        self._routers = routers
        r = routers.get(path)
        try:
            if r is None:
                from . import learned  # type: ignore[attr-defined,unused-ignore]

                r = routers[path] = learned.LearnedRouter.load(path)
            p = float(r.score([request_text(req)])[0])
        except Exception as e:  # a missing or broken router file: escalate (the strong step answers)
            log.warning("cascade router %s unavailable: %s", path, e)
            return False, "router unavailable"
        threshold = check.threshold if check.threshold is not None else float(r.threshold)
        return p < threshold, f"router score {p:.3f} {'<' if p < threshold else '>='} {threshold:.3f}"

    async def _check(self, check: CheckConfig, step: Step, req: ChatRequest, resp: ChatResponse,
                     ctx: CascadeCall, router: Router, executor: Executor,
                     send_chat: Callable[[Deployment, ChatRequest], Awaitable[ChatResponse]]) -> tuple[bool, str]:
        text = answer_text(resp)
        if check.type == "json_schema":
            validator = step.validator
            if validator is None:
                rf = req.response_format
                schema = rf.schema if rf is not None else None
                if schema is None:
                    return _json_only(text)
                validator = _validator(schema)
            return _validate(validator, text)
        if check.type == "logprobs":
            return _logprobs(resp, check.threshold if check.threshold is not None else DEFAULT_LOGPROB)
        assert check.verifier is not None
        verdict = await self._verify(check, req, text, ctx, router, executor, send_chat)
        return verdict

    async def _verify(self, check: CheckConfig, req: ChatRequest, answer: str, ctx: CascadeCall, router: Router,
                      executor: Executor,
                      send_chat: Callable[[Deployment, ChatRequest], Awaitable[ChatResponse]]) -> tuple[bool, str]:
        assert check.verifier is not None
        question = "\n\n".join(f"{m.role}: {m.text()}" for m in req.messages if m.text())
        rubric = check.rubric or DEFAULT_RUBRIC
        vreq = ChatRequest(model=check.verifier, wire=req.wire, max_tokens=VERIFIER_MAX_TOKENS, temperature=0.0,
                           messages=[
                               Message(Role.SYSTEM, [TextPart(
                                   "You grade answers. Reply with exactly one word: yes if the answer meets the "
                                   f"rubric, no otherwise.\nRubric: {rubric}")]),
                               Message(Role.USER, [TextPart(f"Question:\n{question}\n\nAnswer:\n{answer}\n\n"
                                                         "Does the answer meet the rubric? yes or no")]),
                           ])
        try:  # the verifier reads the request: a stage's narrowing (a policy, say) binds it too
            sub = router.plan(check.verifier, set(), 0, VERIFIER_MAX_TOKENS, allowed=ctx.allowed,
                              narrowed_by=ctx.narrowed_by)
            dep, vresp = await executor.call(sub, lambda d: send_chat(d, vreq), ctx.attempts, ctx.deadline,
                                             ctx.started)
        except SwitchyardError as e:
            return False, f"verifier failed: {e.message[:120]}"
        _escalated(ctx.attempts, dep.name, vresp, dep.cost(vresp.usage) if vresp.usage else 0.0, "verifier")
        said = answer_text(vresp).strip().lower()
        ok = said.startswith("yes")
        return ok, f"verifier {dep.name} said {'yes' if ok else 'no'}"


def _bind(send: Callable[[Deployment, ChatRequest], Awaitable[ChatResponse]],
          req: ChatRequest) -> Callable[[Deployment], Awaitable[ChatResponse]]:
    return lambda d: send(d, req)


def _escalated(attempts: list[Attempt], deployment: str, resp: ChatResponse, cost: float,
               outcome: str = "escalated") -> None:
    """Mark the call's latest successful attempt on ``deployment`` as paid for but not served."""
    for a in reversed(attempts):
        if a.deployment == deployment and a.outcome == "ok":
            a.outcome, a.usage, a.cost = outcome, resp.usage, cost
            return


def answer_text(resp: ChatResponse) -> str:
    return resp.choices[0].message.text() if resp.choices else ""


def _validator(schema: Mapping[str, Any]) -> Any:
    import jsonschema  # only for cascades with a schema check

    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _parse(text: str) -> Any:
    t = text.strip()
    m = _FENCE.match(t)
    return json.loads(m.group(1) if m else t)


def _json_only(text: str) -> tuple[bool, str]:
    try:
        _parse(text)
    except ValueError:
        return False, "not JSON"
    return True, "valid JSON"


def _validate(validator: Any, text: str) -> tuple[bool, str]:
    try:
        value = _parse(text)
    except ValueError:
        return False, "not JSON"
    err = next(iter(validator.iter_errors(value)), None)
    if err is not None:
        where = "/".join(str(p) for p in err.absolute_path) or "the answer"
        # the keyword and the schema's value, never the answer's (it may hold personal data: the reason is logged)
        return False, f"schema: {where} fails {err.validator} {err.validator_value!r}"[:160]
    return True, "matches the schema"


def _logprobs(resp: ChatResponse, threshold: float) -> tuple[bool, str]:
    lp = resp.choices[0].logprobs if resp.choices else None
    content = lp.get("content") if isinstance(lp, dict) else None
    values = [float(t["logprob"]) for t in content or [] if isinstance(t, dict) and
              isinstance(t.get("logprob"), int | float)]
    if not values:
        return False, "no logprobs"
    mean = sum(values) / len(values)
    return mean >= threshold, f"mean logprob {mean:.3f} {'>=' if mean >= threshold else '<'} {threshold:g}"


def response_chunks(resp: ChatResponse) -> list[Chunk]:
    """A whole reply as a stream's chunks (neutral events): start, text, tool calls, finish, usage."""
    out = [Chunk([StreamStart(resp.id, resp.model, resp.created)])]
    for c in resp.choices:
        text = c.message.text()
        if text:
            out.append(Chunk([TextDelta(text, c.index)]))
        calls = [p for p in c.message.parts if isinstance(p, ToolCallPart)]
        for j, tc in enumerate(calls):
            out.append(Chunk([ToolCallStart(j, tc.id, tc.name, c.index), ToolCallDelta(j, tc.arguments, c.index)]))
        out.append(Chunk([Finish(c.finish_reason or FinishReason.STOP, c.index, c.stop_sequence)]))
    if resp.usage is not None:
        out.append(Chunk([UsageUpdate(resp.usage)]))
    return out


async def _replay(chunks: list[Chunk]) -> AsyncIterator[Chunk]:
    for c in chunks:
        yield c
