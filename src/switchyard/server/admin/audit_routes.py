"""``/admin/audit`` (reading the log) and ``/admin/audit/verify`` (checking its chain)."""

from __future__ import annotations

import sqlalchemy as sa

from ...errors import PermissionDenied, ServiceUnavailable
from ...governance.audit import list_records
from ...governance.audit_verify import verify
from ...governance.identity import Ops
from ...governance.models import AuditList, AuditQuery, AuditRecord, VerifyReport
from ...governance.rbac import Owner, forbid, sees_audit
from .api import AdminContext, operation


@operation("GET", "/admin/audit", summary="Read the audit log", tag="audit", action="audit.read",
           response=AuditList, query=AuditQuery, errors=(400, 401, 403, 503))
async def read_audit(ctx: AdminContext) -> AuditList:
    """Records in chain order, ``limit`` at a time after ``after_seq``. Org admins and auditors read their org's
    records; the master key reads all. Payloads appear only for keys whose logging mode kept them."""
    a = ctx.actor
    q: AuditQuery = ctx.query
    if not a.super and not sees_audit(a, a.org_id):
        raise forbid("read the audit log")
    if q.org_id is not None and not sees_audit(a, q.org_id):
        raise PermissionDenied("You may not read another organization's audit log.", param="org_id",
                               code="forbidden")
    gov = ctx.gov
    if gov.audit is None:
        raise ServiceUnavailable("The audit log is disabled (governance.audit.enabled).", code="audit_disabled")

    def work(conn: sa.Connection, ops: Ops) -> list[AuditRecord]:
        rows = [AuditRecord.model_validate(r) for r in list_records(conn, q, a.org_id, a.super)]
        ops.record(conn, "audit.read", None, Owner(a.org_id))  # recorded after the read: it is not in this page
        return rows

    data = await gov.transact(ctx.ops(), work)
    return AuditList(data=data, next_after=data[-1].seq if len(data) == q.limit else None)


@operation("GET", "/admin/audit/verify", summary="Verify the audit chain", tag="audit", action="audit.verify",
           response=VerifyReport, errors=(401, 403, 503))
async def verify_audit(ctx: AdminContext) -> VerifyReport:
    """Recomputes every record's hash and link, and checks the signed head and checkpoints. Super admins only
    (the chain spans every org). ``switchyard audit verify`` does the same from the command line."""
    if not ctx.actor.super:
        raise forbid("verify the whole audit chain")
    gov = ctx.gov
    return await gov.db.run(verify, gov.db, gov.signer)
