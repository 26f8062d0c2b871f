"""What each kind of step does, with its retries, timeout and budget. The runner (``runner.py``) runs each call of
:func:`execute` as one DBOS step, so its result is checkpointed once it returns, and never computed again.

A model step goes through the gateway's own pipeline, under the caller's principal: the same stages as a client
call (allow-list, policy, PII, budgets, audit, spend), never around them. A managed ``prompt`` travels as a client
call's ``prompt`` field (the prompt stage renders it, with variables read from earlier steps' outputs), and a
``conversation`` as the call's conversation (the conversation stage prepends its history and stores the turn).
Its output is the reply's text, or, with an ``output_schema``, the parsed JSON; a reply that fails the schema is
sent back to the model with the validation error, ``schema_retries`` times at most.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import SwitchyardError
from ..messages import ChatRequest, Message, ResponseFormat, Role, TextPart
from ..stages import CallContext
from .definition import StepBody
from .expressions import render, search
from .tools import ToolError, call_tool

if TYPE_CHECKING:
    from ..config.workflows import WorkflowsConfig
    from ..governance.auth import Principal
    from ..pipeline import Gateway

_ids = itertools.count()


class StepError(Exception):
    def __init__(self, message: str, code: str = "step_failed", retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


@dataclass
class Spend:
    cost: float = 0.0
    calls: int = 0
    tokens: int = 0
    deployments: list[str] = field(default_factory=list)


@dataclass
class Env:
    """What a step needs of the process: the gateway, the workflows config, the caller and the run."""

    gateway: Gateway
    config: WorkflowsConfig
    principal: Principal
    run_id: str
    deadline: float  # epoch seconds


async def execute(env: Env, step_id: str, body: StepBody, data: dict[str, Any], budget: float | None) -> dict[str, Any]:
    """Run ``body`` with its retries; never raises (a DBOS step's result must be recorded whatever happens):
    ``{"ok", "output", "error", "code", "attempts", "cost", "calls", "started", "ended"}``."""
    started = time.time()
    spend = Spend()
    attempts = 0
    error: StepError | None = None
    output: Any = None
    delay = body.retry.backoff_s
    while attempts < body.retry.attempts:
        attempts += 1
        remaining = env.deadline - time.time()
        if remaining <= 0:
            error = StepError("the workflow's deadline passed", "deadline_exceeded")
            break
        if budget is not None and spend.cost >= budget:
            error = StepError(f"the step's budget (${budget:g}) is spent", "budget_exceeded")
            break
        timeout = min(remaining, body.timeout_s or remaining)
        try:
            output = await asyncio.wait_for(_once(env, step_id, body, data, spend, budget), timeout)
            error = None
            break
        except TimeoutError:
            error = StepError(f"timed out after {timeout:.3g}s", "timeout", retryable=True)
        except StepError as e:
            error = e
        except SwitchyardError as e:
            error = StepError(e.message, e.code or "gateway_error", retryable=e.status >= 500 or e.status == 429)
        except ToolError as e:
            error = StepError(str(e), "tool_failed", retryable=e.retryable)
        except Exception as e:  # a bug in an expression's data, say: named, not retried
            error = StepError(f"{type(e).__name__}: {e}", "step_failed")
        if not error.retryable or attempts >= body.retry.attempts:
            break
        await asyncio.sleep(min(delay * (0.5 + random.random()), body.retry.max_backoff_s,
                                max(0.0, env.deadline - time.time())))
        delay = min(delay * 2, body.retry.max_backoff_s)
    return {"ok": error is None, "output": output if error is None else None,
            "error": str(error) if error else None, "code": error.code if error else None, "attempts": attempts,
            "cost": spend.cost, "calls": spend.calls, "tokens": spend.tokens, "deployments": spend.deployments,
            "started": started, "ended": time.time()}


async def _once(env: Env, step_id: str, body: StepBody, data: dict[str, Any], spend: Spend,
                budget: float | None) -> Any:
    if body.type == "model":
        return await _model(env, step_id, body, data, spend, budget)
    if body.type == "tool":
        assert body.tool is not None
        tool = env.config.tools.get(body.tool)
        if tool is None:
            raise StepError(f"unknown tool {body.tool!r}", "unknown_tool")
        value = {k: search(expr, data) for k, expr in (body.input or {}).items()}
        spend.calls += 1
        return await call_tool(body.tool, tool, value, max(0.001, env.deadline - time.time()))
    if body.type == "transform":
        if body.jmespath is not None:
            return search(body.jmespath, data)
        assert body.template is not None
        return render(body.template, data)
    raise StepError(f"a {body.type} step is not run as a call")


@dataclass
class Ask:
    """One model call of a step: what the gateway's stages get besides the messages."""

    model: str
    prompt: dict[str, Any] | None  # the request's ``prompt`` field, for the prompt stage
    conversation: str | None  # the conversation the call continues, for the conversation stage


def _ask(env: Env, body: StepBody, data: dict[str, Any]) -> Ask:
    """The step's prompt (its variables read from the earlier steps' outputs) and conversation, as a client call
    would name them; refused here when the gateway lacks the stage that would honour them."""
    prompt = None
    model = body.model
    if body.prompt is not None:
        if env.gateway.prompts is None:
            raise StepError("this gateway has no managed prompts (they need governance and prompts.enabled)",
                            "prompts_disabled")
        from ..prompts.assign import PLACEHOLDER

        p = body.prompt
        prompt = {"name": p.name, "variables": {k: search(expr, data) for k, expr in p.variables.items()},
                  **({"label": p.label} if p.label is not None else {}),
                  **({"version": p.version} if p.version is not None else {})}
        model = model or PLACEHOLDER  # the prompt's version chooses the model
    conversation = None
    if body.conversation is not None:
        from ..state import CONVERSATION_ID

        if env.gateway.conversations is None:
            raise StepError("this gateway keeps no conversations (its config has no state: section)",
                            "conversations_disabled")
        conversation = render(body.conversation, data).strip()
        if not CONVERSATION_ID.match(conversation):
            raise StepError(f"conversation: {conversation[:80]!r} is not a conversation id (8 to 64 letters, digits, "
                            "'_' or '-')", "invalid_conversation")
    assert model is not None
    return Ask(model, prompt, conversation)


async def _model(env: Env, step_id: str, body: StepBody, data: dict[str, Any], spend: Spend,
                 budget: float | None) -> Any:
    ask = _ask(env, body, data)
    messages = [Message(Role(m.role), [TextPart(render(m.content, data))]) for m in body.messages or []]
    fmt = None
    if body.output_schema is not None:
        fmt = ResponseFormat("json_schema", name=f"{step_id}_output"[:64], schema=body.output_schema)
    tries = body.schema_retries + 1 if body.output_schema is not None else 1
    last = ""
    for _ in range(tries):
        if budget is not None and spend.cost >= budget:
            raise StepError(f"the step's budget (${budget:g}) is spent", "budget_exceeded")
        text = await _chat(env, step_id, ask, body, messages, fmt, spend)
        if body.output_schema is None:
            return text
        problem, value = _check_json(text, body.output_schema)
        if problem is None:
            return value
        last = problem
        fix = Message(Role.USER, [TextPart(f"Your reply does not match the required JSON schema: {problem}. "
                                           "Reply again with only the corrected JSON.")])
        if ask.conversation is not None:  # the conversation holds the turn (the prompt's, the reply) already
            ask = dataclasses.replace(ask, prompt=None)
            messages = [fix]
        else:
            messages = [*messages, Message(Role.ASSISTANT, [TextPart(text)]), fix]
    raise StepError(f"the reply did not match its output_schema after {tries} tries: {last}", "schema_mismatch")


def _key_problem(db: Any, key_id: str) -> str | None:
    """Why a virtual key may no longer call (revoked, expired, gone), or None. One indexed read."""
    import datetime as dt

    import sqlalchemy as sa

    from ..store.identity_tables import api_keys

    with db.read() as conn:
        row = conn.execute(sa.select(api_keys.c.revoked_at, api_keys.c.expires_at)
                           .where(api_keys.c.id == key_id)).first()
    if row is None:
        return "no longer exists"
    if row.revoked_at is not None:
        return "has been revoked"
    if row.expires_at is not None and row.expires_at <= dt.datetime.now(dt.UTC):
        return "has expired"
    return None


def _check_json(text: str, schema: dict[str, Any]) -> tuple[str | None, Any]:
    import jsonschema

    try:
        value = json.loads(text)
    except ValueError as e:
        return f"not JSON ({e})", None
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "<root>"
        return f"at {where}: {first.message}", None
    return None, value


async def _chat(env: Env, step_id: str, ask: Ask, body: StepBody, messages: list[Message],
                fmt: ResponseFormat | None, spend: Spend) -> str:
    p = env.principal
    if p.expires_at is not None and p.expires_at <= time.time():
        raise StepError("the run's key has expired", "key_expired")
    gov = env.gateway.governance
    if p.key_id is not None and gov is not None:  # a virtual key: revoked (or deleted) since the run started?
        problem = await gov.db.run(_key_problem, gov.db, p.key_id)
        if problem is not None:
            raise StepError(f"the run's key {problem}", "key_revoked")
    ctx = CallContext(request_id=f"{env.run_id}.{step_id}.{next(_ids)}", client_request_id=env.run_id,
                      principal=p, deadline=time.monotonic() + max(0.001, env.deadline - time.time()))
    ctx.data_class = p.data_class
    ctx.conversation = ask.conversation
    req = ChatRequest(model=ask.model, messages=messages, wire="openai.chat", max_tokens=body.max_tokens,
                      temperature=body.temperature, response_format=fmt,
                      extra={"prompt": ask.prompt} if ask.prompt is not None else {})
    try:
        resp = await env.gateway.chat(ctx, req)
    finally:
        spend.calls += 1
        if ctx.record is not None:
            spend.cost += ctx.record.cost
        if ctx.deployment is not None:
            spend.deployments.append(ctx.deployment.name)
    if ctx.record is None and ctx.deployment is not None and resp.usage is not None:
        spend.cost += ctx.deployment.cost(resp.usage)
    if resp.usage is not None:
        spend.tokens += resp.usage.total_tokens
    return resp.choices[0].message.text() if resp.choices else ""
