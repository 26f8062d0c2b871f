"""The admin API under ``/admin``: admin rights required.

``GET /admin/routes/health``: every deployment's breaker state, latency EWMAs, error rate over the breaker window
and requests in flight, per endpoint (chat and embeddings are independent), and each route's shape and retry
budget. Super admins only (the master key): it shows every tenant's traffic, so no org's role may read it.
Errors are OpenAI error objects.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..errors import PermissionDenied, SwitchyardError
from ..governance.auth import bearer
from ..pipeline import Gateway
from ..protocols.openai_errors import render_error
from ..routing.explain import health_report
from .common import JSON_TYPE, new_context, peer


def _error(exc: SwitchyardError) -> Response:
    return Response(render_error(exc), status_code=exc.status, media_type=JSON_TYPE, headers=exc.headers)


async def routes_health(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    ctx = new_context(request)
    try:
        principal = await gw.authenticate(ctx, bearer(request.headers.get("authorization")), peer(request))
        if not principal.is_admin:  # the gateway's deployments carry every tenant's traffic: not an org's to see
            raise PermissionDenied("Route health is for super admins (the master key) only: it shows every "
                                   "tenant's traffic.", code="forbidden" if principal.roles else "admin_required")
    except SwitchyardError as e:
        return _error(e)
    return Response(orjson.dumps(health_report(gw.router)), media_type=JSON_TYPE)


ROUTES: list[BaseRoute] = [
    Route("/admin/routes/health", routes_health, methods=["GET"]),
]
