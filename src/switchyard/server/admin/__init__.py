"""The admin API under ``/admin``: orgs, teams, users, keys, budget and rate-limit definitions, and the audit log.

``ROUTES`` goes into the app's route list. ``GET /admin/openapi.json`` serves the OpenAPI document, generated
from the same declarations as the routes (see :mod:`.api`). Concepts and examples: docs/governance.md.

Other admin endpoints (the ledger's ``/admin/spend``) declare themselves with :func:`.api.operation` in a module
of this package and import it below; they then appear in ``ROUTES`` and in the OpenAPI document.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

# each of these declares its operations
from . import (  # noqa: F401
    audit_routes,
    config_routes,
    explain_routes,
    identity_routes,
    limits_routes,
    policy_routes,
    prompt_routes,
    routes_health,
    spend,
    workflow_routes,
)
from .api import OPERATIONS, json_response, openapi_document, operation, routes


@operation("GET", "/admin/openapi.json", summary="This API's OpenAPI document", tag="meta", action="openapi",
           public=True, errors=())
async def openapi(request: Request) -> Response:
    """The OpenAPI 3.1 description of every admin endpoint; no key needed."""
    return json_response(openapi_document())


ROUTES: list[BaseRoute] = routes()

__all__ = ["OPERATIONS", "ROUTES", "openapi_document"]
