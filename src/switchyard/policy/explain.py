"""A described request and its decision: what ``switchyard policy test`` runs and ``POST /admin/policy/explain``
answers (docs/policy.md).

A described request is a principal (the key's facts) and a request summary (the action, the route, the context's
values, a time); :func:`explain` resolves the route to its candidate deployments and gives each one's decision,
the determining policy ids and their ``@reason``. This module does not import Cedar: the admin API declares its
body with these models at start-up, and loads the engine only when policies are configured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from ..classification import highest, parse_data_class
from .facts import Resource, Subject, base_context, metadata_tags, usd

if TYPE_CHECKING:
    from ..catalog import Deployment
    from ..routing import Router
    from .engine import PolicyEngine

Action = Literal["chat", "embed", "tool_call"]


def _data_class(v: str | None) -> str | None:
    return None if v is None else parse_data_class(v)


class DescribedPrincipal(BaseModel):
    """The principal: ``Switchyard::Key::"<key>"`` with its attributes (as the gateway builds them from a key)."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, description="the key id (a virtual key's vk_..., key:<name>, or master)")
    org: str = Field("", description="the org id (empty: a static key)")
    team: str = Field("", description="the team id")
    user: str = Field("", description="the user id")
    roles: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict, description="read by policies as the key's Cedar tags")
    data_class: str | None = Field(None, description="the key's default data class (the lowest of its requests)")

    _dc = field_validator("data_class")(_data_class)

    def subject(self) -> Subject:
        return Subject(key=self.key, org=self.org, team=self.team, user=self.user, roles=frozenset(self.roles),
                       tags=frozenset(self.tags), metadata=metadata_tags(self.metadata))


class DescribedRequest(BaseModel):
    """A request summary: the action, the route and the values of the policy context."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    action: Action = "chat"
    route: str = Field(min_length=1, validation_alias=AliasChoices("route", "model"),
                       description="the route or deployment asked for (also accepted as `model`)")
    deployments: list[str] | None = Field(None, description="the candidate deployments (default: the route's)")
    tool: str | None = Field(None, description="the tool's name (context.tool): required for tool_call")
    data_class: str | None = Field(None, description="the class the caller asks for (x-switchyard-data-class)")
    pii: list[str] = Field(default_factory=list, description="the PII types found")
    estimated_cost_usd: Decimal | dict[str, Decimal] | None = Field(
        None, description="the worst-case cost: one for every deployment, or per deployment name; default: from "
                          "the deployments' prices, as the gateway estimates it")
    prompt_tokens: int = Field(0, ge=0)
    max_tokens: int | None = Field(None, ge=0)
    stream: bool = False
    tools: list[str] = Field(default_factory=list, description="the tool names the request defines")
    hour: int | None = Field(None, ge=0, le=23, description="0-23 (default: now, in policies.timezone)")
    weekday: int | None = Field(None, ge=1, le=7, description="ISO: 1 = Monday ... 7 = Sunday (default: now)")
    time: datetime | None = Field(None, description="a fixed time instead of hour/weekday (ISO 8601; without an "
                                                    "offset: in policies.timezone)")

    _dc = field_validator("data_class")(_data_class)

    @field_validator("pii")
    @classmethod
    def _pii(cls, v: list[str]) -> list[str]:
        from ..pii.types import check_types

        return check_types(v)  # upper-cased; an unknown type names the valid ones

    @field_validator("estimated_cost_usd")
    @classmethod
    def _cost(cls, v: Decimal | dict[str, Decimal] | None) -> Decimal | dict[str, Decimal] | None:
        for c in (v.values() if isinstance(v, dict) else () if v is None else (v,)):
            if not c.is_finite() or c < 0:
                raise ValueError("a cost is a number of USD, zero or more")
        return v

    @model_validator(mode="after")
    def _shape(self) -> DescribedRequest:
        if self.action == "tool_call" and not self.tool:
            raise ValueError("`tool` is required when action is tool_call")
        if self.action != "tool_call" and self.tool is not None:
            raise ValueError("`tool` applies only to action tool_call (use `tools` for a request's definitions)")
        if self.time is not None and (self.hour is not None or self.weekday is not None):
            raise ValueError("give either `time` or `hour`/`weekday`, not both")
        return self


class Described(BaseModel):
    """A described request: who asks, and what."""

    model_config = ConfigDict(extra="forbid")

    principal: DescribedPrincipal
    request: DescribedRequest


class DescribeError(ValueError):
    """A described request that cannot be evaluated: ``field`` names the part (``request.route``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# --- the candidates and their costs (shared with the Policy stage) ------------------------------------------


def candidates(router: Router, model: str, chat: bool = True) -> list[Deployment]:
    """Every deployment a call to ``model`` may reach: the route's targets and all its fallback groups, and a
    cascade's verifiers (they read the request); for a chat call to ``auto`` (no route of that name), every chat
    deployment, as the router plans it."""
    from ..routing.router import AUTO

    spec = router.specs.get(model)
    if spec is None and model == AUTO and chat:
        spec = router.auto_spec()
    if spec is None:
        return []
    out: dict[str, Deployment] = {}
    for g in (spec.group, *spec.fallbacks, *spec.context_fallbacks, *spec.policy_fallbacks):
        for e in g.entries:
            out.setdefault(e.deployment.name, e.deployment)
    if spec.cascade is not None:
        for d in spec.cascade.verifier_deployments:
            out.setdefault(d.name, d)
    return list(out.values())


def worst_costs(router: Router | None, model: str, deployments: Sequence[Deployment], prompt: int,
                max_tokens: int | None, embed: bool, default_max_tokens: int) -> dict[str, Decimal]:
    """Each deployment's worst case, as the ledger reserves it: the prompt at the input price plus the output cap
    (``max_tokens``, else the deployment's max output, else ``default_max_tokens``) at the output price, once more
    for each possible hedge of the route."""
    spec = router.specs.get(model) if router is not None else None
    calls = 1 + (spec.hedge.max_extra if spec is not None and spec.hedge is not None else 0)
    out: dict[str, Decimal] = {}
    for d in deployments:
        n_out = 0 if embed else (max_tokens or d.max_output_tokens or default_max_tokens)
        out[d.name] = usd((prompt * d.input_price + n_out * d.output_price) * calls)
    return out


# --- explaining ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeploymentDecision:
    deployment: str
    allowed: bool
    ids: tuple[str, ...]  # the policies that determined it (for the action, and for a denying tool)
    error: bool
    cost: Decimal
    pii_mode: str | None = None  # the strictest @pii of the permits that allowed it


@dataclass(slots=True)
class Explanation:
    action: str
    route: str
    data_class: str
    candidates: list[str]
    decisions: list[DeploymentDecision]
    reasons: dict[str, str | None] = field(default_factory=dict)  # every named id's @reason
    configured: bool = True  # some policies are loaded
    pii_mode: str | None = None  # the PII mode the policies ask for (the strictest over the deployments left)

    @property
    def allowed(self) -> bool:
        return any(d.allowed for d in self.decisions)

    def of(self, name: str) -> DeploymentDecision | None:
        return next((d for d in self.decisions if d.deployment == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {"decision": "allow" if self.allowed else "deny", "action": self.action, "route": self.route,
                "data_class": self.data_class, "candidates": list(self.candidates),
                "policies_configured": self.configured, "pii_mode": self.pii_mode,
                "deployments": [{"deployment": d.deployment, "decision": "allow" if d.allowed else "deny",
                                 "policies": [{"id": i, "reason": self.reasons.get(i)} for i in d.ids],
                                 "error": d.error, "estimated_cost_usd": f"{d.cost:.4f}", "pii_mode": d.pii_mode}
                                for d in self.decisions]}


def resolve(req: DescribedRequest, router: Router | None, extra: Mapping[str, Resource] | None = None,
            ) -> list[tuple[Deployment | None, Resource]]:
    """The candidates of ``req``: its ``deployments`` (names of the catalog or of ``extra``), else the route's
    candidates, else the deployment of ``extra`` the route names, else (no router) every one of ``extra``."""
    extra = extra or {}
    known: Mapping[str, Deployment] = router.catalog.deployments if router is not None else {}

    def one(name: str, where: str) -> tuple[Deployment | None, Resource]:
        if name in known:
            return known[name], Resource.of(known[name])
        if name in extra:
            return None, extra[name]
        raise DescribeError(where, f"unknown deployment {name!r}")

    if req.deployments is not None:
        return [one(n, f"request.deployments[{i}]") for i, n in enumerate(req.deployments)]
    if router is not None:
        found = candidates(router, req.route, req.action != "embed")
        if found:
            return [(d, Resource.of(d)) for d in found]
    if req.route in extra:
        return [(None, extra[req.route])]
    if router is None and extra:
        return [(None, r) for r in extra.values()]
    hint = "" if router is not None or extra else " (no config and no deployments are given)"
    raise DescribeError("request.route", f"unknown route or deployment {req.route!r}{hint}")


def clock_of(req: DescribedRequest, zone: ZoneInfo, now: Callable[[], datetime]) -> tuple[int, int]:
    """The request's hour and ISO weekday in ``zone``: its ``time``, else its ``hour``/``weekday``, else now."""
    if req.time is not None:
        t = req.time if req.time.tzinfo is not None else req.time.replace(tzinfo=zone)
        t = t.astimezone(zone)
        return t.hour, t.isoweekday()
    if req.hour is not None and req.weekday is not None:
        return req.hour, req.weekday
    t = now().astimezone(zone)
    return (req.hour if req.hour is not None else t.hour), (req.weekday if req.weekday is not None
                                                             else t.isoweekday())


def explain(engine: PolicyEngine | None, d: Described, router: Router | None, *, zone: ZoneInfo,
            default_max_tokens: int, extra: Mapping[str, Resource] | None = None,
            now: Callable[[], datetime] | None = None) -> Explanation:
    """Each candidate deployment's decision for ``d``, as the Policy stage would make it (``engine`` None: no
    policies, so every deployment is allowed). Raises :class:`DescribeError`."""
    req = d.request
    cands = resolve(req, router, extra)
    data_class = highest(req.data_class, d.principal.data_class) or "public"
    hour, weekday = clock_of(req, zone, now or (lambda: datetime.now(zone)))
    ctx = base_context(data_class=data_class, pii=frozenset(req.pii), prompt_tokens=req.prompt_tokens,
                       max_tokens=req.max_tokens or 0, route=req.route, stream=req.stream,
                       tools=frozenset(req.tools), hour=hour, weekday=weekday)
    costs = _costs(req, cands, router, default_max_tokens)
    resources = [r for _, r in cands]
    names = [r.name for r in resources]
    if engine is None:
        return Explanation(req.action, req.route, data_class, names,
                           [DeploymentDecision(n, True, (), False, costs[n]) for n in names], {}, False)
    subject = d.principal.subject()
    if req.action == "tool_call":
        j = engine.judge(subject, "tool_call", resources, {**ctx, "tool": req.tool or ""}, costs)
    else:
        j = engine.judge(subject, req.action, resources, ctx, costs, ctx["tools"])
    out: list[DeploymentDecision] = []
    reasons: dict[str, str | None] = {}
    for n in names:
        v = j.decision.verdicts[n]
        ids = j.denied.get(n, ()) if n in j.denied else v.ids
        errored = v.error or any(t.verdicts[n].error for t in j.tools.values())
        allowed = n not in j.denied
        out.append(DeploymentDecision(n, allowed, tuple(dict.fromkeys(ids)), errored, costs[n],
                                      j.decision.pii_mode_of(n) if allowed else None))
        reasons.update((i, j.decision.reason_of(i)) for i in ids)
    mode = j.decision.pii_mode([d.deployment for d in out if d.allowed])[0] if req.action != "tool_call" else None
    return Explanation(req.action, req.route, data_class, names, out, reasons, True, mode)


def _costs(req: DescribedRequest, cands: Sequence[tuple[Deployment | None, Resource]], router: Router | None,
           default_max_tokens: int) -> dict[str, Decimal]:
    given = req.estimated_cost_usd
    zero = Decimal(0)
    if isinstance(given, Decimal):
        return {r.name: usd(given) for _, r in cands}
    priced = [dep for dep, _ in cands if dep is not None]
    est = worst_costs(router, req.route, priced, req.prompt_tokens, req.max_tokens, req.action == "embed",
                      default_max_tokens)
    out: dict[str, Decimal] = {}
    for _, r in cands:
        if isinstance(given, dict) and r.name in given:
            out[r.name] = usd(given[r.name])
        else:
            out[r.name] = est.get(r.name, zero)
    return out


__all__ = ["DeploymentDecision", "DescribeError", "Described", "DescribedPrincipal", "DescribedRequest",
           "Explanation", "candidates", "clock_of", "explain", "resolve", "worst_costs"]
