"""The most a request may cost: what the ledger reserves for it, and what it is charged if its gateway dies before
it ends (:mod:`.intents`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..messages import EmbeddingRequest
from ..tokens import estimate_text
from .ledger_model import usd_e8

if TYPE_CHECKING:
    from ..catalog import Deployment
    from ..routing import Plan


def plan_deployments(plan: Plan) -> list[Deployment]:
    """Every deployment the plan may call: its entries, resting ones, and every fallback group not yet expanded."""
    if not plan.resting and plan.qpos >= len(plan.queue) and not plan.spec.policy_fallbacks:
        return [e.deployment for e in plan.entries]  # the common case: nothing but the planned entries
    out: dict[int, Deployment] = {}
    for e in (*plan.entries, *plan.resting):
        out[id(e.deployment)] = e.deployment
    for g in (*plan.queue[plan.qpos:], *plan.spec.policy_fallbacks):
        for e in g.entries:
            out[id(e.deployment)] = e.deployment
    return list(out.values())


def worst_case(plan: Plan, prompt_tokens: int, max_tokens: int | None, default_max_tokens: int, choices: int = 1,
               output: bool = True) -> tuple[int, int]:
    """(E8 units, tokens) that a request may cost at most: the prompt at its dearest price (a plain input token or
    a cache write) plus the output cap at the output price, on the most expensive deployment the plan may use, once
    more for each possible hedge."""
    best, best_out = 0.0, 0
    cascade = plan.spec.cascade
    total, total_tokens = 0.0, 0
    for d in plan_deployments(plan):
        out = (max_tokens or d.max_output_tokens or default_max_tokens) * choices if output else 0
        cost = prompt_tokens * d.prompt_price + out * d.output_price
        total += cost
        total_tokens += prompt_tokens + out
        if cost > best:
            best = cost
        if out > best_out:
            best_out = out
    if cascade is not None:  # every step may be called, and a verifier reads the prompt and an answer per step
        checks = max(len(cascade.steps) - 1, 0)
        for v in cascade.verifier_deployments:
            read = prompt_tokens + best_out
            total += checks * (read * v.prompt_price + cascade.verifier_max_tokens * v.output_price)
            total_tokens += checks * (read + cascade.verifier_max_tokens)
        return usd_e8(total), total_tokens
    hedge = plan.spec.hedge
    calls = 1 + (hedge.max_extra if hedge is not None else 0)  # a hedge loser may have answered in full
    return usd_e8(best * calls), (prompt_tokens + best_out) * calls


def embedding_tokens(req: EmbeddingRequest) -> int:
    return sum(estimate_text(x) if isinstance(x, str) else len(x) for x in req.input)
