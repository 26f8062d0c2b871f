"""The workflow endpoints (OpenAI-style error objects, bearer keys like the data plane):

``POST /v1/workflows/{name}/runs``        start a run: ``{"input": ...}``; ``Idempotency-Key`` makes it safe to retry
``GET  /v1/workflows/runs``               the runs the caller may see: ``?scope=key|team|org`` (default key)
``GET  /v1/workflows/runs/{id}``          status, output, cost, each step's status and timings
``GET  /v1/workflows/runs/{id}/events``   the same, as server-sent events, until the run ends
``POST /v1/workflows/runs/{id}/cancel``   cancel it

A run is visible to the key that started it, to its team's ``team_admin``, to its org's ``org_admin`` and
``auditor``, and to super admins; any other caller gets a 404.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ..errors import InternalError, InvalidRequest, NotFound, PermissionDenied, SwitchyardError
from ..governance.auth import Principal, bearer
from ..protocols.openai_errors import render_error
from ..server.common import JSON_TYPE, new_context, peer
from . import runner
from .registry import Registry

log = logging.getLogger("switchyard.workflows")

Handler = Callable[[Request, Principal, Registry], Awaitable[Response]]


def _error(exc: SwitchyardError) -> Response:
    return Response(render_error(exc), status_code=exc.status, media_type=JSON_TYPE, headers=exc.headers)


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def ep(request: Request) -> Response:
        gw = request.app.state.gateway
        registry: Registry | None = getattr(request.app.state, "workflows", None)
        try:
            if registry is None:
                raise NotFound("Workflows are not configured on this gateway.", code="unknown_url")
            ctx = new_context(request)
            principal = await gw.authenticate(ctx, bearer(request.headers.get("authorization")), peer(request))
            return await handler(request, principal, registry)
        except SwitchyardError as e:
            return _error(e)
        except Exception:
            log.exception("unexpected failure in %s", request.url.path)
            return _error(InternalError("The gateway failed unexpectedly."))

    return ep


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON_TYPE, headers=headers)


def may_see(p: Principal, run: dict[str, Any]) -> bool:
    if p.is_admin or run.get("key") == p.id:
        return True
    org, team = run.get("org"), run.get("team")
    if org is None or p.org_id != org:
        return False
    if "org_admin" in p.roles or "auditor" in p.roles:
        return True
    return "team_admin" in p.roles and team is not None and p.team_id == team


async def _start(request: Request, p: Principal, registry: Registry) -> Response:
    name = request.path_params["name"]
    wf, source = await registry.get(name, p)
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidRequest("The body must be a JSON object: {\"input\": ...}.", code="invalid_json") from None
    if not isinstance(body, dict) or set(body) - {"input"}:
        raise InvalidRequest("The body must be a JSON object with one field, input.", param="input")
    value = body.get("input", {})
    if wf.input_schema is not None:
        import jsonschema

        errors = list(jsonschema.Draft202012Validator(wf.input_schema).iter_errors(value))
        if errors:
            where = "/".join(str(x) for x in errors[0].absolute_path) or "<input>"
            raise InvalidRequest(f"The input does not match the workflow's input_schema at {where}: "
                                 f"{errors[0].message}", param="input", code="invalid_input")
    key = request.headers.get("idempotency-key")
    if key is not None and not (0 < len(key) <= 255):
        raise InvalidRequest("Idempotency-Key must be 1 to 255 characters.", param="Idempotency-Key",
                             code="invalid_header")
    run_id = runner.run_id_for(p, key)
    started = await runner.start_run(wf, source, value, p, run_id, registry.config) is not None
    run = await runner.read_run(run_id)
    assert run is not None
    return _json(run, 202 if started else 200, {"idempotent-replayed": "false" if started else "true"})


async def _visible(run_id: str, p: Principal) -> dict[str, Any]:
    run = await runner.read_run(run_id)
    if run is None or not may_see(p, run):
        raise NotFound(f"No workflow run {run_id!r}.", param="id", code="run_not_found")
    return run


async def _get(request: Request, p: Principal, registry: Registry) -> Response:
    return _json(await _visible(request.path_params["id"], p))


async def _cancel(request: Request, p: Principal, registry: Registry) -> Response:
    run = await _visible(request.path_params["id"], p)
    if run["key"] != p.id and not p.is_admin and "org_admin" not in p.roles and "team_admin" not in p.roles:
        raise PermissionDenied("Only the run's key or an admin may cancel it.", code="forbidden")
    if run["status"] in ("running", "queued"):
        await runner.cancel_run(run["id"])
    return _json(await _visible(run["id"], p))


async def _list(request: Request, p: Principal, registry: Registry) -> Response:
    scope = request.query_params.get("scope", "key")
    try:
        limit = max(1, min(500, int(request.query_params.get("limit", "100"))))
    except ValueError:
        raise InvalidRequest("limit must be an integer.", param="limit") from None
    filters: dict[str, Any] = {}
    if scope == "key":
        filters["key"] = p.id
    elif scope == "team":
        if not p.is_admin and not (p.team_id and ({"team_admin", "org_admin"} & p.roles)):
            raise PermissionDenied("Listing a team's runs needs the team_admin or org_admin role.",
                                   code="forbidden")
        team = request.query_params.get("team") or p.team_id
        if not p.is_admin and team != p.team_id and "org_admin" not in p.roles:
            raise PermissionDenied("You may list only your own team's runs.", code="forbidden")
        filters["team"] = team
        if not p.is_admin:
            filters["org"] = p.org_id
    elif scope == "org":
        if not p.is_admin and not ({"org_admin", "auditor"} & p.roles):
            raise PermissionDenied("Listing an org's runs needs the org_admin or auditor role.", code="forbidden")
        org = request.query_params.get("org") if p.is_admin else p.org_id
        if org:
            filters["org"] = org
    else:
        raise InvalidRequest("scope must be key, team or org.", param="scope")
    wf = request.query_params.get("workflow")
    if wf:
        filters["workflow"] = wf
    runs = await runner.list_runs(filters, limit)
    return _json({"object": "list", "data": [r for r in runs if may_see(p, r)]})


async def _events(request: Request, p: Principal, registry: Registry) -> Response:
    run = await _visible(request.path_params["id"], p)
    poll = registry.config.event_poll_s

    async def stream() -> AsyncIterator[bytes]:
        seen: dict[str, Any] = {}
        current: dict[str, Any] | None = run
        while current is not None:
            for sid, rec in current["steps"].items():
                if seen.get(sid) != rec.get("status"):
                    seen[sid] = rec.get("status")
                    yield _sse("step", {"run_id": current["id"], "step": sid, **rec})
            if current["status"] not in ("running", "queued"):
                yield _sse("run", current)
                return
            await asyncio.sleep(poll)
            current = await runner.read_run(current["id"])

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"cache-control": "no-cache"})


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def _definitions(request: Request, p: Principal, registry: Registry) -> Response:
    return _json({"object": "list", "data": registry.describe(p)})


ROUTES: list[BaseRoute] = [
    Route("/v1/workflows", endpoint(_definitions), methods=["GET"]),
    Route("/v1/workflows/runs", endpoint(_list), methods=["GET"]),
    Route("/v1/workflows/runs/{id}", endpoint(_get), methods=["GET"]),
    Route("/v1/workflows/runs/{id}/events", endpoint(_events), methods=["GET"]),
    Route("/v1/workflows/runs/{id}/cancel", endpoint(_cancel), methods=["POST"]),
    Route("/v1/workflows/{name}/runs", endpoint(_start), methods=["POST"]),
]
