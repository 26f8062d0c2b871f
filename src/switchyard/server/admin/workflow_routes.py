"""``GET/PUT /admin/orgs/{org_id}/workflows[/{name}]``: an organization's workflow definitions, versioned."""

from __future__ import annotations

from ...governance import org_workflows
from ...governance.models import OrgWorkflow, OrgWorkflowList, OrgWorkflowPut, WorkflowVersionQuery
from .api import AdminContext, operation
from .identity_routes import run


@operation("GET", "/admin/orgs/{org_id}/workflows", summary="List an organization's workflows", tag="workflows",
           action="org.workflow.read", response=OrgWorkflowList)
async def list_org_workflows(ctx: AdminContext) -> OrgWorkflowList:
    """The newest version of each workflow the organization has stored. Anyone in the org may read them."""
    org_id = ctx.params["org_id"]
    return await run(ctx, "org.workflow.read", org_workflows.list_workflows, org_id, target=org_id)


@operation("GET", "/admin/orgs/{org_id}/workflows/{name}", summary="Get an organization's workflow",
           tag="workflows", action="org.workflow.read", response=OrgWorkflow, query=WorkflowVersionQuery)
async def get_org_workflow(ctx: AdminContext) -> OrgWorkflow:
    """The newest version, or the one ``?version=N`` names (404 ``workflow_not_found`` if there is none)."""
    org_id = ctx.params["org_id"]
    return await run(ctx, "org.workflow.read", org_workflows.get_workflow, org_id, ctx.params["name"],
                     ctx.query.version, target=org_id)


@operation("PUT", "/admin/orgs/{org_id}/workflows/{name}", summary="Store a new version of an org's workflow",
           tag="workflows", action="org.workflow.update", body=OrgWorkflowPut, response=OrgWorkflow,
           errors=(400, 401, 403, 404, 409, 503))
async def put_org_workflow(ctx: AdminContext, body: OrgWorkflowPut) -> OrgWorkflow:
    """Validate the definition (a 400 ``invalid_workflow`` naming each step and field at fault), then store it as
    the next version; earlier versions stay readable, and each run records the version it ran. The org's
    ``org_admin`` users and super admins may. The audit record keeps the version and the SHA-256, not the text."""
    return await run(ctx, "org.workflow.update", org_workflows.put_workflow, ctx.params["org_id"],
                     ctx.params["name"], body)
