"""``GET/PUT /admin/orgs/{org_id}/policies``: an organization's Cedar policy set, versioned and audited."""

from __future__ import annotations

from ...governance import org_policies
from ...governance.models import OrgPoliciesPut, OrgPolicySet, PolicyVersionQuery
from .api import AdminContext, operation
from .identity_routes import run


@operation("GET", "/admin/orgs/{org_id}/policies", summary="Get an organization's policy set", tag="policies",
           action="org.policies.read", response=OrgPolicySet, query=PolicyVersionQuery)
async def get_org_policies(ctx: AdminContext) -> OrgPolicySet:
    """The newest version (``version`` 0 and empty ``policies`` if the organization never had one), or the one
    ``?version=N`` names (404 ``policy_version_not_found`` if there is none). The org's ``org_admin`` and
    ``auditor`` users, and super admins, may read it; another org's is a 404."""
    org_id = ctx.params["org_id"]
    return await run(ctx, "org.policies.read", org_policies.get_policies, org_id, ctx.query.version, target=org_id)


@operation("PUT", "/admin/orgs/{org_id}/policies", summary="Replace an organization's policy set", tag="policies",
           action="org.policies.update", body=OrgPoliciesPut, response=OrgPolicySet,
           errors=(400, 401, 403, 404, 409, 503))
async def put_org_policies(ctx: AdminContext, body: OrgPoliciesPut) -> OrgPolicySet:
    """Store the text as the next version (earlier versions stay readable). The text is checked first: an invalid
    set is a 400 ``invalid_policy`` whose message gives the line, the column and the engine's complaint. The audit
    record keeps the version and the text's SHA-256, never the text. The org's ``org_admin`` users and super admins
    may; gateways apply it within a poll (``governance.poll_interval``)."""
    org_id = ctx.params["org_id"]
    out = await run(ctx, "org.policies.update", org_policies.put_policies, org_id, body, ctx.gov.policy_validator)
    ctx.gov.org_policies.wake()
    return out
