"""``/v1/conversations``: OpenAI's Conversations API (create, retrieve, update, delete; items: create, list,
retrieve, delete) over the gateway's conversation store, and the scratchpad at ``/v1/conversations/{id}/state``.

Errors are OpenAI error objects. Every call is scoped to the caller's tenant (its organization, or its key): an id
of another tenant is a 404, exactly like an unknown one. Reading or writing a conversation needs a key whose (or
whose team's) ``retention`` allows conversations (403 otherwise); deleting one needs only that it is the tenant's.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..errors import InvalidRequest, NotFound
from ..pipeline import CallContext, Gateway
from ..protocols.openai_conversations import parse_items, render_items, stored_id
from ..protocols.validate import parse_body
from ..state.conversations import Conversation, ConversationStore, State, StoredMessage, scope_of
from ..state.stage import retention_ttl
from .asgi import read_body
from .common import JSON_TYPE
from .openai_routes import openai_endpoint

MAX_TOOL_OUTPUT_BYTES = 64 * 1024


def _store(gw: Gateway) -> ConversationStore:
    store: ConversationStore | None = gw.conversations
    if store is None:
        raise NotFound("Conversations are not enabled on this gateway (its config has no state: section).",
                       code="conversations_disabled")
    return store


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON_TYPE)


def _conv(c: Conversation) -> dict[str, Any]:
    return {"id": c.id, "object": "conversation", "created_at": int(c.created_at), "metadata": c.metadata}


async def _body(request: Request, gw: Gateway) -> dict[str, Any]:
    raw = await read_body(request, gw.config.server.max_body_bytes)
    if not raw.strip():
        return {}
    body = parse_body(raw, gw.config.server.max_body_bytes)
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.")
    return body


def _scope(ctx: CallContext, *, retain: bool = True) -> tuple[str, float]:
    ttl = retention_ttl(ctx.principal) if retain else 0.0
    return scope_of(ctx.principal), ttl


async def _create(request: Request, gw: Gateway, ctx: CallContext) -> Response:
    store = _store(gw)
    scope, ttl = _scope(ctx)
    body = await _body(request, gw)
    messages = parse_items(body["items"]) if body.get("items") is not None else []
    conv = await store.create(scope, ttl=ttl, metadata=body.get("metadata"), messages=messages)
    return _json(_conv(conv))


async def _retrieve(request: Request, gw: Gateway, ctx: CallContext) -> Response:
    scope, _ = _scope(ctx)
    return _json(_conv(await _store(gw).get(scope, request.path_params["conversation_id"])))


async def _update(request: Request, gw: Gateway, ctx: CallContext) -> Response:
    store = _store(gw)
    scope, _ = _scope(ctx)
    body = await _body(request, gw)
    if "metadata" not in body:
        raise InvalidRequest("metadata is required.", param="metadata", code="missing_required_parameter")
    return _json(_conv(await store.update(scope, request.path_params["conversation_id"], body["metadata"])))


async def _delete(request: Request, gw: Gateway, ctx: CallContext) -> Response:
    scope, _ = _scope(ctx, retain=False)
    conv_id = request.path_params["conversation_id"]
    await _store(gw).delete(scope, conv_id)
    return _json({"id": conv_id, "object": "conversation.deleted", "deleted": True})


def _page(stored: list[StoredMessage], has_more: bool, desc: bool) -> dict[str, Any]:
    data: list[dict[str, Any]] = []
    for s in stored:
        items = render_items(s.id, s.message)
        data.extend(reversed(items) if desc else items)
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else "",
            "last_id": data[-1]["id"] if data else "", "has_more": has_more}


async def _items_create(request: Request, gw: Gateway, ctx: CallContext) -> Response:
    store = _store(gw)
    scope, ttl = _scope(ctx)
    body = await _body(request, gw)
    messages = parse_items(body.get("items"))
    conv_id = request.path_params["conversation_id"]
    ids = await store.append(scope, conv_id, messages, ttl=ttl)
    stored = [StoredMessage(i, 0, m, None, 0.0) for i, m in zip(ids, messages, strict=True)]
    return _json(_page(stored, False, False))


async def _items_list(request: Request, gw: Gateway, ctx: CallContext) -> Response:
    store = _store(gw)
    scope, _ = _scope(ctx)
    q = request.query_params
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("order must be asc or desc.", param="order", code="invalid_value")
    try:
        limit = int(q.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise InvalidRequest("limit must be an integer from 1 to 100.", param="limit", code="invalid_value")
    after = q.get("after")
    stored, more = await store.items(scope, request.path_params["conversation_id"],
                                     after=stored_id(after) if after else None, limit=limit, order=order)
    return _json(_page(stored, more, order == "desc"))


async def _item(request: Request, gw: Gateway, ctx: CallContext) -> Response:
    scope, _ = _scope(ctx)
    item_id = request.path_params["item_id"]
    s = await _store(gw).item(scope, request.path_params["conversation_id"], stored_id(item_id))
    for rendered in render_items(s.id, s.message):
        if rendered["id"] == item_id:
            return _json(rendered)
    raise NotFound(f"No item found with id {item_id[:80]!r}.", param="item_id", code="item_not_found")


async def _item_delete(request: Request, gw: Gateway, ctx: CallContext) -> Response:
    scope, _ = _scope(ctx, retain=False)
    conv = await _store(gw).delete_item(scope, request.path_params["conversation_id"],
                                        stored_id(request.path_params["item_id"]))
    return _json(_conv(conv))


# --- the scratchpad and stored tool outputs ---------------------------------------------------------------------


def _state_body(conv_id: str, s: State) -> dict[str, Any]:
    return {"object": "conversation.state", "conversation_id": conv_id, "scratchpad": s.scratchpad,
            "tool_outputs": s.tool_outputs}


def _checked(gw: Gateway, s: State) -> State:
    cfg = gw.config.state
    assert cfg is not None
    if len(orjson.dumps(s.scratchpad)) > cfg.scratchpad_max_bytes:
        raise InvalidRequest(f"The scratchpad may hold at most {cfg.scratchpad_max_bytes} bytes of JSON.",
                             param="scratchpad", code="scratchpad_too_large")
    s.tool_outputs = s.tool_outputs[-cfg.tool_outputs_max:] if cfg.tool_outputs_max else []
    return s


def _tool_outputs(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(o, dict) for o in value):
        raise InvalidRequest("tool_outputs must be an array of objects.", param="tool_outputs",
                             code="invalid_value")
    for i, o in enumerate(value):
        if len(orjson.dumps(o)) > MAX_TOOL_OUTPUT_BYTES:
            raise InvalidRequest(f"A stored tool output may hold at most {MAX_TOOL_OUTPUT_BYTES} bytes of JSON.",
                                 param=f"tool_outputs[{i}]", code="tool_output_too_large")
    return list(value)


def _scratchpad(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest("scratchpad must be a JSON object.", param="scratchpad", code="invalid_value")
    return value


def _merge(into: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396 JSON merge patch: null removes a key, an object merges, anything else replaces."""
    out = dict(into)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


async def _state_get(request: Request, gw: Gateway, ctx: CallContext) -> Response:
    scope, _ = _scope(ctx)
    conv_id = request.path_params["conversation_id"]
    return _json(_state_body(conv_id, await _store(gw).get_state(scope, conv_id)))


async def _state_put(request: Request, gw: Gateway, ctx: CallContext) -> Response:
    """PUT replaces the fields it sends; PATCH merges ``scratchpad`` (RFC 7396) and appends ``tool_outputs``."""
    store = _store(gw)
    scope, _ = _scope(ctx)
    conv_id = request.path_params["conversation_id"]
    body = await _body(request, gw)
    unknown = set(body) - {"scratchpad", "tool_outputs"}
    if unknown:
        raise InvalidRequest(f"Unknown field {sorted(unknown)[0]!r}: send scratchpad and/or tool_outputs.",
                             param=sorted(unknown)[0], code="unknown_parameter")
    pad = _scratchpad(body["scratchpad"]) if "scratchpad" in body else None
    outputs = _tool_outputs(body["tool_outputs"]) if "tool_outputs" in body else None
    patch = request.method == "PATCH"

    def change(s: State) -> State:
        if pad is not None:
            s.scratchpad = _merge(s.scratchpad, pad) if patch else pad
        if outputs is not None:
            s.tool_outputs = [*s.tool_outputs, *outputs] if patch else outputs
        return _checked(gw, s)

    return _json(_state_body(conv_id, await store.put_state(scope, conv_id, change)))


_P = "/v1/conversations"
ROUTES: list[BaseRoute] = [
    Route(_P, openai_endpoint(_create), methods=["POST"]),
    Route(_P + "/{conversation_id}", openai_endpoint(_retrieve), methods=["GET"]),
    Route(_P + "/{conversation_id}", openai_endpoint(_update), methods=["POST"]),
    Route(_P + "/{conversation_id}", openai_endpoint(_delete), methods=["DELETE"]),
    Route(_P + "/{conversation_id}/items", openai_endpoint(_items_create), methods=["POST"]),
    Route(_P + "/{conversation_id}/items", openai_endpoint(_items_list), methods=["GET"]),
    Route(_P + "/{conversation_id}/items/{item_id}", openai_endpoint(_item), methods=["GET"]),
    Route(_P + "/{conversation_id}/items/{item_id}", openai_endpoint(_item_delete), methods=["DELETE"]),
    Route(_P + "/{conversation_id}/state", openai_endpoint(_state_get), methods=["GET"]),
    Route(_P + "/{conversation_id}/state", openai_endpoint(_state_put), methods=["PUT", "PATCH"]),
]
