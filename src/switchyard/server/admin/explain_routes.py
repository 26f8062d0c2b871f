"""``POST /admin/policy/explain``: the policy decision for a described request, per candidate deployment
(docs/policy.md). Cedar is loaded only when the gateway has policies (the Policy stage holds the engine)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from ...errors import InvalidRequest
from ...governance.rbac import ORG_ADMIN, forbid
from ...policy.explain import Described, DescribeError, explain
from .api import AdminContext, operation


class PolicyRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    reason: str | None  # its @reason annotation


class DeploymentVerdict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deployment: str
    decision: Literal["allow", "deny"]
    policies: list[PolicyRef]  # the policies that determined it: the forbids (or errors) that denied it, or permits
    error: bool  # some policy failed to evaluate on it (fails closed)
    estimated_cost_usd: str = Field(description="the worst-case cost the policies saw, four decimals")
    pii_mode: str | None = Field(None, description="the PII mode the permits that allowed it ask for (@pii)")


class PolicyExplanation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["allow", "deny"]  # allow: some deployment is left
    action: str
    route: str
    data_class: str  # the effective class: the highest of the request's and the key's default
    candidates: list[str]  # the route's candidate deployments (targets and fallbacks)
    policies_configured: bool  # False: the gateway has no policies, so every deployment is allowed
    pii_mode: str | None = Field(None, description="the PII mode the policies ask for: the strictest @pii of the "
                                                   "permits that allowed the deployments left (null: none)")
    deployments: list[DeploymentVerdict]


@operation("POST", "/admin/policy/explain", summary="Explain a policy decision", tag="policy",
           action="policy.explain", body=Described, response=PolicyExplanation, errors=(400, 401, 403, 503))
async def explain_policy(ctx: AdminContext, body: Described) -> PolicyExplanation:
    """The decision the policies make for a described request (a principal and a request summary, the shape of a
    `switchyard policy test` case without `expect`), per candidate deployment of its route: allowed or denied, the
    determining policy ids with their `@reason`, the effective data class. Nothing is called upstream. Super
    admins may explain any principal; org admins only principals of their own org (`principal.org`); other roles
    get 403. An unknown route or deployment, data class, or a malformed field is a 400 naming it."""
    a = ctx.actor
    if not a.super:
        if a.role != ORG_ADMIN:
            raise forbid("explain policy decisions")
        if not a.in_org(body.principal.org or None):
            raise forbid("explain policy decisions for principals outside its org", param="principal.org")
    gw = ctx.gw
    assert gw is not None
    stage = next((s for s in gw.chain.stages if s.name == "Policy" and hasattr(s, "engine")), None)
    config = gw.config
    zone = ZoneInfo(config.policies.timezone)
    clock = getattr(stage, "clock", None) or (lambda: datetime.now(zone))
    try:
        ex = explain(getattr(stage, "engine", None), body, gw.router, zone=zone,
                     default_max_tokens=config.ledger.default_max_tokens, now=clock)
    except DescribeError as e:
        raise InvalidRequest(f"Invalid value for '{e.field}': {e.message}.", param=e.field,
                             code="invalid_value") from None
    return PolicyExplanation.model_validate(ex.as_dict())
