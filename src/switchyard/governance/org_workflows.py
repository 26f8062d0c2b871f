"""Org workflow definitions: each organization's workflows, versioned, audited and scoped to the org.

``PUT /admin/orgs/{id}/workflows/{name}`` adds the next version once the definition passes the same validation as
``switchyard workflow validate`` (a 400 naming the step and the field otherwise); the audit record keeps the
version and the text's SHA-256, never the text. The gateway reads the newest version when a run starts
(:func:`latest_definition`), and the run records the version it ran.
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa

from ..errors import InvalidRequest, NotFound
from ..store.identity_tables import orgs
from ..store.workflow_tables import workflow_definitions as wd
from .audit import utcnow
from .identity import Ops
from .models import OrgWorkflow, OrgWorkflowList, OrgWorkflowPut
from .rbac import Owner, forbid, manages_org, not_found, sees_org


def _out(r: Any) -> OrgWorkflow:
    return OrgWorkflow(org_id=r.org_id, name=r.name, version=r.version, definition=r.definition, comment=r.comment,
                       sha256=r.sha256, created_at=r.created_at, created_by=r.created_by)


def _org(conn: sa.Connection, ops: Ops, org_id: str, lock: bool = False) -> None:
    q = sa.select(orgs.c.id).where(orgs.c.id == org_id)
    if conn.execute(q.with_for_update() if lock else q).first() is None or not sees_org(ops.actor, org_id):
        raise not_found("org", org_id)


def get_workflow(conn: sa.Connection, ops: Ops, org_id: str, name: str, version: int | None = None) -> OrgWorkflow:
    """The newest version of the org's workflow ``name`` (or version ``version``); anyone in the org may read."""
    _org(conn, ops, org_id)
    q = sa.select(wd).where(wd.c.org_id == org_id, wd.c.name == name)
    q = q.where(wd.c.version == version) if version is not None else q.order_by(wd.c.version.desc()).limit(1)
    r = conn.execute(q).first()
    if r is None:
        raise NotFound(f"The organization has no workflow {name!r}" + (f" version {version}." if version else "."),
                       param="version" if version else "name", code="workflow_not_found")
    return _out(r)


def list_workflows(conn: sa.Connection, ops: Ops, org_id: str) -> OrgWorkflowList:
    _org(conn, ops, org_id)
    newest = (sa.select(wd.c.name, sa.func.max(wd.c.version).label("version")).where(wd.c.org_id == org_id)
              .group_by(wd.c.name).subquery())
    q = (sa.select(wd).join(newest, sa.and_(newest.c.name == wd.c.name, newest.c.version == wd.c.version))
         .where(wd.c.org_id == org_id).order_by(wd.c.name))
    return OrgWorkflowList(data=[_out(r) for r in conn.execute(q)])


def check_definition(name: str, text: str, conn: sa.Connection | None = None, org_id: str | None = None) -> None:
    """Parse and validate; a 400 ``invalid_workflow`` listing every problem (step and field) otherwise. With
    ``conn``, the managed prompts its model steps name are looked up too (the org's, else gateway-wide)."""
    import yaml

    from ..workflows.definition import Known, WorkflowInvalid, parse_workflow

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InvalidRequest(f"The definition is not valid YAML: {e}", param="definition",
                             code="invalid_workflow") from None
    try:
        known = None
        if conn is not None:
            from ..workflows.prompt_lookup import prompt_lookup

            known = Known(prompts=prompt_lookup(conn, org_id))
        wf = parse_workflow(data, name, known)
    except WorkflowInvalid as e:
        raise InvalidRequest("The workflow is not valid: " + "; ".join(e.problems), param="definition",
                             code="invalid_workflow") from None
    if wf.name != name:
        raise InvalidRequest(f"The definition's name is {wf.name!r}, but the path says {name!r}.",
                             param="definition", code="invalid_workflow")


def put_workflow(conn: sa.Connection, ops: Ops, org_id: str, name: str, body: OrgWorkflowPut) -> OrgWorkflow:
    """Add the next version of the org's workflow ``name``. Its org's admins and super admins may."""
    _org(conn, ops, org_id, lock=True)
    if not manages_org(ops.actor, org_id):
        raise forbid("change this organization's workflows")
    check_definition(name, body.definition, conn, org_id)
    last = conn.execute(sa.select(sa.func.max(wd.c.version))
                        .where(wd.c.org_id == org_id, wd.c.name == name)).scalar_one_or_none()
    version = int(last or 0) + 1
    digest = hashlib.sha256(body.definition.encode()).hexdigest()
    conn.execute(sa.insert(wd).values(org_id=org_id, name=name, version=version, definition=body.definition,
                                      comment=body.comment, sha256=digest, created_at=utcnow(),
                                      created_by=ops.actor.id))
    ops.record(conn, "org.workflow.update", f"{org_id}/{name}", Owner(org_id),
               {"name": name, "version": version, "sha256": digest, "chars": len(body.definition)})
    return get_workflow(conn, ops, org_id, name, version)


def latest_definition(conn: sa.Connection, org_id: str, name: str) -> tuple[int, str] | None:
    """For the runtime: the newest (version, text) of the org's workflow, or None."""
    r = conn.execute(sa.select(wd.c.version, wd.c.definition).where(wd.c.org_id == org_id, wd.c.name == name)
                     .order_by(wd.c.version.desc()).limit(1)).first()
    return (int(r.version), r.definition) if r is not None else None
