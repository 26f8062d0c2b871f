"""``GET /v1/me``: the calling key's own view of itself: who it is, what it may use, its limits and what is left.

It answers with the caller's key only (any key: static, virtual, or the master key) and shows nothing of other
keys. Budgets are every budget in the key's scope (key, user, team, org, and its tags'), each with spent, held,
remaining and the reset time (``governance/budget_status.py``); rate limits are their definitions.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..governance import budget_status
from ..pipeline import CallContext, Gateway
from .common import JSON_TYPE
from .openai_routes import openai_endpoint


async def _me(request: Request, gw: Gateway, ctx: CallContext) -> Response:
    p = ctx.principal
    assert p is not None
    tz = gw.config.ledger.budget_timezone
    ledger = gw.ledger
    holds_known = ledger is not None and ledger.memory is not None
    gov = gw.governance

    def budgets() -> list[dict[str, Any]]:
        out = []
        for b in p.budgets:
            live = budget_status.live_bucket(ledger, b, tz)
            if live is not None or gov is None:
                st = budget_status.status(None, b, tz, live=live, holds_known=holds_known)
            else:
                with gov.db.read() as conn:
                    st = budget_status.status(conn, b, tz, holds_known=holds_known)
            out.append(st.model_dump(mode="json"))
        return out

    statuses = await gov.db.run(budgets) if gov is not None and p.budgets else budgets()
    body = {
        "object": "me",
        "id": p.id,
        "name": p.name,
        "key_id": p.key_id,
        "user_id": p.user_id,
        "team_id": p.team_id,
        "org_id": p.org_id,
        "is_admin": p.is_admin,
        "models": sorted(p.models) if p.models is not None else None,
        "tags": sorted(p.tags),
        "expires_at": p.expires_at,
        "budgets": statuses,
        "rate_limits": [{"id": r.id, "name": r.name, "scope": r.scope, "scope_id": r.scope_id, "rpm": r.rpm,
                         "tpm": r.tpm, "max_concurrent": r.max_concurrent} for r in p.rate_limits],
    }
    return Response(orjson.dumps(body), media_type=JSON_TYPE, headers=ctx.response_headers())


me = openai_endpoint(_me)
