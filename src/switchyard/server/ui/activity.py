"""The console's activity pages: recent requests (with a call's payload where its key's logging mode kept one)
and the audit log with its "verify chain" button.

Reading the audit log, a call's payload, or verifying the chain is recorded in the audit log itself (``audit.read``,
``audit.verify``), as the admin API records them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from starlette.responses import Response

from ...errors import RateLimited
from ...governance.audit_verify import verify
from ...governance.identity import Ops
from ...governance.models import VerifyReport
from ...governance.rbac import AUDITOR, ORG_ADMIN, Owner, forbid, sees_audit
from . import data
from .pages import bound_of
from .web import View

KINDS = ("admin", "call", "system")


def may_read_audit(v: View) -> bool:
    return v.actor.super or (v.actor.role in (ORG_ADMIN, AUDITOR) and sees_audit(v.actor, v.actor.org_id))


# --- recent requests ---------------------------------------------------------------------------------------------


async def requests(v: View) -> Response:
    team = v.arg("team")
    errors_only = v.arg("errors") == "1"

    def work() -> dict[str, Any]:
        with v.gov.db.read() as conn:
            bound = data.with_team(conn, v.actor, bound_of(v.actor), team)
            rows = data.recent_requests(conn, bound, errors_only=errors_only)
            found = data.names(conn, team=[r["team_id"] for r in rows] + [team],
                               user=[r["user_id"] for r in rows], key=[r["key_id"] for r in rows])
            return {"rows": rows, "names": found}

    got = await v.gov.db.run(work)
    return v.page("requests.html", rows=got["rows"], names=got["names"], team=team, errors_only=errors_only,
                  team_name=got["names"]["team"].get(team or ""), payloads=may_read_audit(v))


async def request_detail(v: View) -> Response:
    rid = v.request.path_params["request_id"]
    gov = v.gov

    def work(conn: sa.Connection, ops: Ops) -> dict[str, Any]:
        row, audit, hidden = data.request_detail(conn, v.actor, bound_of(v.actor), rid)
        if audit is not None and "payload" in audit:  # reading a payload is reading the audit log
            ops.record(conn, "audit.read", rid, Owner(row["org_id"], row["team_id"]))
        found = data.names(conn, team=[row["team_id"]], user=[row["user_id"]], key=[row["key_id"]],
                           org=[row["org_id"]])
        return {"row": row, "audit": audit, "hidden": hidden, "names": found}

    got = await gov.transact(gov.ops(v.actor, v.request_id), work)
    template = "_request_detail.html" if v.htmx else "request.html"
    return v.page(template, **got)


# --- the audit log -----------------------------------------------------------------------------------------------


async def audit(v: View) -> Response:
    if not may_read_audit(v):
        raise forbid("read the audit log (org admins, auditors and super admins may)")
    kind = v.arg("kind")
    kind = kind if kind in KINDS else None
    action = v.arg("action")
    before_text = v.arg("before")
    before = int(before_text) if before_text is not None and before_text.isdigit() else None
    gov = v.gov
    if gov.audit is None:
        return v.page("audit.html", records=[], disabled=True, kind=kind, kinds=KINDS, action=action, more=None,
                      names={})

    def work(conn: sa.Connection, ops: Ops) -> dict[str, Any]:
        records = data.audit_newest(conn, v.actor, kind=kind, action=action, before=before)
        ops.record(conn, "audit.read", None, Owner(v.actor.org_id))  # after the read: it is not on this page
        found = data.names(conn, org=[r["org_id"] for r in records], team=[r["team_id"] for r in records])
        return {"records": records, "names": found}

    got = await gov.transact(gov.ops(v.actor, v.request_id), work)
    records = got["records"]
    more = records[-1]["seq"] if len(records) == 100 else None
    return v.page("audit.html", records=records, disabled=False, kind=kind, kinds=KINDS, action=action, more=more,
                  names=got["names"])


async def verify_chain(v: View) -> Response:
    """Verify the whole chain (hashes, links, signed head and checkpoints). A super admin sees the full report;
    an org admin or auditor the verdict and the problems on its org's records (the chain spans every org, so the
    others are only counted)."""
    if not may_read_audit(v):
        raise forbid("verify the audit chain")
    gov = v.gov
    c = v.console
    if gov.audit is None:
        return v.page("_verify.html", report=None, problems=[], elsewhere=0)
    if c.verifying:
        raise RateLimited("A verification of the audit chain is running; try again when it ends.",
                          code="verification_running")
    c.verifying = True
    try:
        report: VerifyReport = await gov.db.run(verify, gov.db, gov.signer)
    finally:
        c.verifying = False
    problems = list(report.problems)
    elsewhere = 0
    if not v.actor.super:
        seqs = [p.seq for p in problems if p.seq is not None]
        ours = await gov.db.run(_org_seqs, v, seqs)
        mine = [p for p in problems if p.seq is not None and p.seq in ours]
        elsewhere = len(problems) - len(mine)
        problems = mine

    def record(conn: sa.Connection, ops: Ops) -> None:
        ops.record(conn, "audit.verify", None, Owner(v.actor.org_id), {"ok": report.ok})

    await gov.transact(gov.ops(v.actor, v.request_id), record)
    return v.page("_verify.html", report=report, problems=problems, elsewhere=elsewhere)


def _org_seqs(v: View, seqs: list[int]) -> set[int]:
    with v.gov.db.read() as conn:
        return data.org_seqs(conn, v.actor.org_id, seqs)
