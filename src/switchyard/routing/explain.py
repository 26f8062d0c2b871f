"""Routing made visible: the health report (``GET /admin/routes/health``) and a plan explained for people
(``switchyard route explain``). Neither is on the request path."""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import SwitchyardError
from .router import AUTO, Group, Plan, Router


def health_report(router: Router) -> dict[str, object]:
    """Each deployment's breaker, latency, error rate and requests in flight, per endpoint; each route's shape."""
    now = router.clock()
    routes: list[dict[str, object]] = []
    for name, spec in router.specs.items():
        if spec.direct:
            continue
        routes.append({
            "route": name,
            "strategy": spec.group.strategy.name,
            "targets": [{"deployment": e.name, "weight": e.weight} for e in spec.group.entries],
            "fallbacks": [g.name for g in spec.fallbacks],
            "context_window_fallbacks": [g.name for g in spec.context_fallbacks],
            "content_policy_fallbacks": [g.name for g in spec.policy_fallbacks],
            "retry_budget_tokens": round(spec.budget.level(), 2),
            "hedge": spec.hedge is not None,
        })
    deployments = router.health.snapshot()
    for d in deployments:
        dep = router.catalog.deployments[str(d["deployment"])]
        d["provider"] = dep.provider_name
        d["zdr"] = dep.zdr
        d["tags"] = sorted(dep.tags)
    return {"now": now, "deployments": deployments, "routes": routes}


@dataclass(slots=True)
class Candidate:
    deployment: str
    provider: str
    group: str  # the route or fallback it comes from
    why: str  # the strategy's view: weight, latency, cost, in flight
    probe: bool = False
    zdr: bool = False  # the deployment's config labels, as policies see them
    tags: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Explanation:
    requested: str
    route: str | None
    strategy: str
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    context_routed: bool = False
    context_window_fallbacks: list[str] = field(default_factory=list)
    content_policy_fallbacks: list[str] = field(default_factory=list)
    settings: dict[str, object] = field(default_factory=dict)
    error: str | None = None
    reason: str = ""
    narrowed_by: list[str] = field(default_factory=list)  # why a stage narrowed the candidates, if one did
    profile: dict[str, object] | None = None  # auto: the request's task profile
    decision: dict[str, object] | None = None  # auto: the objective, each candidate's scores, why the winner won
    cascade: list[str] = field(default_factory=list)  # cascade: each step and its check
    alias: str | None = None  # the alias (name or pattern) that mapped the requested name, if one did


def explain(router: Router, model: str, needs: set[str], prompt_tokens: int = 0, max_tokens: int | None = None,
            endpoint: str = "chat", stream: bool = False, allowed: Container[str] | None = None,
            narrowed_by: Sequence[str] | None = None, request: Any = None, objective: str | None = None
            ) -> Explanation:
    """What the router would do with such a request now: every candidate in order (fallbacks expanded), and why.
    ``allowed`` and ``narrowed_by``: as a stage narrowed the request (see ``CallContext.narrow``)."""
    requested = model
    model = router.resolve(model)
    alias = None
    if model != requested:
        hit = router.aliases.match(requested)
        alias = f"{hit[0]} -> {hit[1]}" if hit is not None else None
    spec = router.specs.get(model)
    if spec is None and model == AUTO and endpoint == "chat":
        spec = router.auto_spec()
    if spec is None:
        return Explanation(requested, None, "", error=f"no deployment or route is named {model!r}", alias=alias)
    out = Explanation(requested, None if spec.direct else spec.name, spec.group.strategy.name, alias=alias)
    if allowed is not None:
        out.narrowed_by = list(narrowed_by or ("by a stage",))
    if spec.cascade is not None:
        out.cascade = [f"{st.deployment}: " + (f"check {st.check.type}" + (
            f" by {st.check.verifier}" if st.check.verifier else "") if st.check is not None else "final")
            for st in spec.cascade.steps]
    out.context_window_fallbacks = [g.name for g in spec.context_fallbacks]
    out.content_policy_fallbacks = [g.name for g in spec.policy_fallbacks]
    out.settings = {
        "retries": spec.retries.model_dump(),
        "timeouts": spec.timeouts.model_dump(),
        "hedge": spec.hedge.model_dump() if spec.hedge is not None else None,
        "breakers": {e.name: e.health[endpoint].cfg.model_dump() for e in spec.group.entries},
    }
    try:
        plan = router.plan(model, needs, prompt_tokens, max_tokens, endpoint=endpoint, stream=stream,
                           allowed=allowed, narrowed_by=narrowed_by, request=request, objective=objective)
    except SwitchyardError as err:
        out.error = err.message
        out.skipped = [(n, w) for n, w in _skips(router, model, needs, prompt_tokens, max_tokens, endpoint, allowed)]
        return out
    while router.expand(plan):
        pass
    owner = _owners(plan)
    now = router.clock()
    scored: dict[str, Any] = {}
    if plan.decision is not None:
        d = plan.decision
        out.profile = d.profile.as_dict()
        scored = {x.name: x for x in d.scored}
        out.decision = {"objective": d.objective, "weights": {"cost": d.weights[0], "latency": d.weights[1]},
                        "chosen": d.chosen, "why": d.why, "router_score": d.router_score,
                        "router_threshold": d.router_threshold, "strong_share": d.strong_share,
                        "candidates": [x.as_dict() for x in d.scored]}
    for e in plan.entries:
        g = owner.get(e.deployment.name)
        st = g.strategy if g is not None else spec.group.strategy
        single = g is not None and len(g.entries) == 1
        why = "a fallback deployment" if single and not spec.direct else (
            "the deployment itself" if spec.direct else st.describe(e, endpoint, stream, prompt_tokens, max_tokens))
        sc = scored.get(e.name)
        if sc is not None:
            why = (f"score {sc.score:.3f}: quality {sc.quality:g} (success {sc.success:.2f}), est. ${sc.cost:.6f}, "
                   f"latency {'unmeasured' if sc.latency is None else f'{sc.latency * 1000:.0f}ms'}"
                   + (", below the quality floor" if sc.below_floor else ""))
        out.candidates.append(Candidate(e.name, e.deployment.provider_name, g.name if g is not None else spec.name,
                                        why, e.health[endpoint].is_probe_ready(now), e.deployment.zdr,
                                        sorted(e.deployment.tags)))
    out.skipped = list(plan.skipped)
    out.context_routed = plan.context_routed
    out.reason = plan.reason
    return out


def _owners(plan: Plan) -> dict[str, Group]:
    owner: dict[str, Group] = {}
    for g in [plan.spec.group, *plan.queue]:
        for e in g.entries:
            owner.setdefault(e.name, g)
    return owner


def _skips(router: Router, model: str, needs: set[str], prompt_tokens: int, max_tokens: int | None,
           endpoint: str, allowed: Container[str] | None = None) -> list[tuple[str, str]]:
    from .router import NARROWED, unfit_reason

    spec = router.specs[model] if model in router.specs else router.auto_spec()
    needs = needs | {"embeddings" if endpoint == "embeddings" else "chat"}
    out = []
    for g in [spec.group, *spec.fallbacks]:
        for e in g.entries:
            why = NARROWED if allowed is not None and e.name not in allowed else unfit_reason(
                e.deployment, needs, prompt_tokens, max_tokens)
            if why is not None:
                out.append((e.name, why))
    return out
