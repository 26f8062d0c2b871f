"""The admin API's machinery: operations declared with pydantic models, one wrapper for auth, parsing, errors and
audit, and the OpenAPI document generated from the same declarations (so it cannot drift from the code).

An operation is declared with :func:`operation`::

    @operation("POST", "/admin/keys", body=KeyCreate, response=KeyCreated, status=201, summary="Create a key")
    async def create_key(ctx: AdminContext, body: KeyCreate) -> KeyCreated: ...

The handler receives an :class:`AdminContext` (the authenticated actor, the governance runtime, the path
parameters, and the parsed ``query`` model) and the parsed body, and returns an instance of the response model
(or None for 204). Every failure is an OpenAI-style error object; a body or query that does not validate is a 400
whose ``param`` names the field (``models[1]``). Refused requests (403, 404) are audited as denials.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import GenerateJsonSchema, models_json_schema
from pydantic_core import core_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...bounds import check_admin_metadata
from ...errors import InternalError, InvalidRequest, NotFound, PermissionDenied, ServiceUnavailable, SwitchyardError
from ...governance.auth import bearer
from ...governance.models import ErrorResponse, NoQuery
from ...governance.rbac import Actor, require_admin
from ...governance.runtime import Governance
from ...pipeline import Gateway
from ...protocols.validate import decode_json
from ..asgi import read_body
from ..common import peer
from ..openai_routes import openai_error_response

log = logging.getLogger("switchyard.admin")

MAX_ADMIN_BODY = 1024 * 1024
JSON_TYPE = "application/json"


@dataclass(slots=True)
class AdminContext:
    actor: Actor
    gov: Governance
    request_id: str
    params: dict[str, str]
    query: Any
    gw: Gateway | None = None  # the gateway (for operations on it, not on the governance store)

    def ops(self) -> Any:
        return self.gov.ops(self.actor, self.request_id)


Handler = Callable[..., Awaitable[Any]]


@dataclass(slots=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    action: str  # the audit action, for denials: "key.create"
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    query: type[BaseModel] = NoQuery
    public: bool = False  # no key needed (the OpenAPI document)
    description: str = ""
    errors: tuple[int, ...] = field(default=(400, 401, 403, 404, 503))
    external: bool = False  # served by its own route (outside this wrapper); only documented here


OPERATIONS: list[Operation] = []


def operation(method: str, path: str, *, summary: str, tag: str, action: str, body: type[BaseModel] | None = None,
              response: type[BaseModel] | None = None, status: int = 200, query: type[BaseModel] = NoQuery,
              public: bool = False, errors: tuple[int, ...] = (400, 401, 403, 404, 503), external: bool = False,
              ) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        OPERATIONS.append(Operation(method, path, fn, summary, tag, action, body, response, status, query, public,
                                    (fn.__doc__ or "").strip(), errors, external))
        return fn

    return register


# --- the request wrapper -------------------------------------------------------------------------------------


def _param(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_error(e: ValidationError, where: str = "") -> InvalidRequest:
    err = e.errors()[0]
    param = _param(tuple(err["loc"])) or where or None
    typ = err["type"]
    code = ("missing_required_parameter" if typ == "missing" else "unknown_parameter" if typ == "extra_forbidden"
            else "invalid_type" if typ.endswith("_type") or typ.endswith("_parsing") else "invalid_value")
    msg = str(err["msg"]).removeprefix("Value error, ")
    if typ == "extra_forbidden":
        msg = "Unknown parameter."
    text = f"Invalid value for '{param}': {msg}" if param else msg
    return InvalidRequest(text, param=param, code=code)


async def _authenticate(request: Request, gw: Gateway) -> Actor:
    principal = await gw.auth.authenticate(bearer(request.headers.get("authorization")), peer(request))
    actor = Actor.of(principal)
    require_admin(actor)
    return actor


def _parse_body(raw: bytes, model: type[BaseModel]) -> BaseModel:
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.", param="body", code="empty_body")
    data = decode_json(raw)  # a 400 for bad JSON or JSON nested deeper than bounds.MAX_JSON_DEPTH
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", param="body", code="invalid_type")
    meta = data.get("metadata")
    if isinstance(meta, dict):  # orgs, teams, users and keys: bounded before it is validated or stored
        check_admin_metadata(meta, len(orjson.dumps(meta)))
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise validation_error(e) from None


def _endpoint(op: Operation) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        gw: Gateway = request.app.state.gateway
        rid: str = request.state.request_id
        actor: Actor | None = None
        try:
            if op.public:
                return await _call_public(op, request)
            gov = gw.governance
            if gov is None or not gov.settings.admin.enabled:
                raise ServiceUnavailable("The admin API is disabled (governance.enabled / governance.admin.enabled).",
                                         code="admin_disabled")
            actor = await _authenticate(request, gw)
            try:
                query = op.query.model_validate(dict(request.query_params))
            except ValidationError as e:
                raise validation_error(e) from None
            ctx = AdminContext(actor=actor, gov=gov, request_id=rid, params=dict(request.path_params), query=query,
                               gw=gw)
            args: list[Any] = [ctx]
            if op.body is not None:
                args.append(_parse_body(await read_body(request, MAX_ADMIN_BODY), op.body))
            result = await op.handler(*args)
            if result is None:
                return Response(status_code=204)
            return Response(orjson.dumps(result.model_dump(mode="json")), status_code=op.status,
                            media_type=JSON_TYPE)
        except SwitchyardError as e:
            if actor is not None and isinstance(e, PermissionDenied | NotFound) and gw.governance is not None:
                target = next(iter(request.path_params.values()), None)
                await gw.governance.record_denial(actor, op.action, target, e.message, e.status, rid)
            return openai_error_response(e)
        except Exception:
            log.exception("admin API failure in %s %s (request %s)", request.method, request.url.path, rid)
            return openai_error_response(InternalError("The admin API failed unexpectedly; the request id says "
                                                       "where to look in the logs."))

    endpoint.__name__ = op.handler.__name__
    return endpoint


async def _call_public(op: Operation, request: Request) -> Response:
    result = await op.handler(request)
    assert isinstance(result, Response)
    return result


def routes() -> list[BaseRoute]:
    out: list[BaseRoute] = []
    for op in OPERATIONS:
        if not op.external:
            out.append(Route(op.path, _endpoint(op), methods=[op.method]))
    return out


# --- OpenAPI -------------------------------------------------------------------------------------------------

_STATUS_TEXT = {200: "OK", 201: "Created", 204: "Deleted", 400: "Invalid request: `param` names the field",
                401: "Missing, wrong, revoked or expired key", 403: "The role may not do this",
                404: "No such object (or not visible to the caller)", 409: "Conflicts with an existing object",
                429: "Too many failed authentications from this address (`too_many_failed_authentications`); "
                     "`Retry-After` says when to try again",
                503: "The governance store is unavailable (`governance_unavailable`)"}


class _Schemas(GenerateJsonSchema):
    """pydantic's schemas, with a decimal given as a string constrained as pydantic constrains it (by default any
    string is documented, and "" or "abc" would be a documented value that the API refuses)."""

    def get_decimal_pattern(self, schema: core_schema.DecimalSchema) -> str | None:
        return self.build_decimal_pattern(schema)


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    out = []
    properties = model.model_json_schema(ref_template="#/components/schemas/{model}",
                                         schema_generator=_Schemas).get("properties", {})
    for name, f in model.model_fields.items():
        schema = dict(properties[name])
        schema.pop("title", None)
        param: dict[str, Any] = {"name": name, "in": "query", "required": f.is_required(), "schema": schema}
        if f.description:
            param["description"] = f.description
        out.append(param)
    return out


def _links(op: Operation) -> dict[str, Any]:
    """OpenAPI links from a create (``POST /admin/keys``) to the operations on what it created
    (``GET /admin/keys/{key_id}``, ``POST /admin/keys/{key_id}/revoke``, ...): clients and stateful fuzzers follow
    them with the new object's ``id``."""
    if op.method != "POST" or op.response is None or "id" not in op.response.model_fields:
        return {}
    out: dict[str, Any] = {}
    for other in OPERATIONS:
        m = re.fullmatch(re.escape(op.path) + r"/\{(\w+)\}(/.*)?", other.path)
        if m is not None:
            out[other.handler.__name__] = {"operationId": other.handler.__name__,
                                           "parameters": {m.group(1): "$response.body#/id"}}
    return out


def openapi_document(title: str = "Switchyard admin API", version: str = "1") -> dict[str, Any]:
    """The OpenAPI 3.1 document of every declared operation, with schemas generated from the pydantic models."""
    models: set[type[BaseModel]] = {ErrorResponse}
    for op in OPERATIONS:
        models.update(m for m in (op.body, op.response) if m is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    _, defs = models_json_schema([(m, "validation" if any(m is op.body for op in OPERATIONS) else "serialization")
                                  for m in ordered], ref_template="#/components/schemas/{model}",
                                 schema_generator=_Schemas)
    schemas: dict[str, Any] = defs.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        entry: dict[str, Any] = {"summary": op.summary, "operationId": op.handler.__name__, "tags": [op.tag]}
        if op.description:
            entry["description"] = op.description
        params: list[dict[str, Any]] = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                                        for n in re.findall(r"\{(\w+)\}", op.path)]
        params += _query_parameters(op.query)
        if params:
            entry["parameters"] = params
        if op.body is not None:
            entry["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}}}
        responses: dict[str, Any] = {}
        if op.response is not None:
            responses[str(op.status)] = {"description": _STATUS_TEXT.get(op.status, "OK"), "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{op.response.__name__}"}}}}
            links = _links(op)
            if links:
                responses[str(op.status)]["links"] = links
        else:
            responses[str(op.status)] = {"description": _STATUS_TEXT.get(op.status, "OK")}
        # any call with a key may meet the limit on failed authentications from its address
        for status in op.errors if op.public else sorted({*op.errors, 429}):
            responses[str(status)] = {"description": _STATUS_TEXT[status], "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
        entry["responses"] = responses
        if op.public:
            entry["security"] = []
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "Organizations, teams, users, virtual keys, budget and rate-limit definitions, and "
                                "the audit log. Authenticate with `Authorization: Bearer <key>`: the master key "
                                "(super admin) or a virtual key whose user has a role."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def model_by_name(name: str) -> type[BaseModel] | None:
    """The pydantic model behind a component schema name (for tests that check replies against the schema)."""
    for op in OPERATIONS:
        for m in (op.body, op.response):
            if m is not None and m.__name__ == name:
                return m
    return ErrorResponse if name == "ErrorResponse" else None


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON_TYPE)
