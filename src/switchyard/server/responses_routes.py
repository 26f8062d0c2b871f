"""The Responses API: ``POST /v1/responses`` (whole or streamed), ``GET`` and ``DELETE /v1/responses/{id}``, and
``GET /v1/responses/{id}/input_items``. Authenticated and rendered like the other OpenAI endpoints
(:func:`.openai_routes.openai_endpoint`).

A request is parsed into the neutral model (:mod:`switchyard.protocols.openai_responses`), so any provider serves
it. With ``previous_response_id`` the stored chain is prepended; with ``store`` (the default) and a key whose logging
mode keeps content, the finished response is kept (:mod:`switchyard.state.responses`, write-behind). A request that
names a ``conversation`` asks the conversation hook (``app.state.conversations``, a
:class:`~switchyard.state.responses.HistoryHook`), or is refused while none is installed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import InternalError, InvalidRequest, NotFound, SwitchyardError
from ..governance.auth import Principal
from ..messages import WIRE_OPENAI_RESPONSES, ChatRequest, Chunk, Role
from ..pipeline import CallContext, Gateway
from ..protocols import openai_responses as proto
from ..protocols import openai_responses_render as render
from ..protocols.validate import parse_body
from ..state.responses import HistoryHook, LazyResponseStore, Stored, may_store, not_found, zero_retention
from ..tokens import estimate_prompt
from .asgi import StreamResponse, read_body
from .common import JSON_TYPE
from .openai_routes import openai_endpoint

log = logging.getLogger("switchyard.server")


def _store(request: Request) -> LazyResponseStore:
    store: LazyResponseStore = request.app.state.responses
    return store


def _hook(request: Request) -> HistoryHook | None:
    return getattr(request.app.state, "conversations", None)


async def _prepare(request: Request, gw: Gateway, ctx: CallContext) -> tuple[ChatRequest, proto.ResponsesCall]:
    body = await read_body(request, gw.config.server.max_body_bytes)
    req, call = proto.parse_request(parse_body(body, gw.config.server.max_body_bytes))
    principal = ctx.principal
    assert principal is not None
    keep = may_store(principal)
    call.store = call.store and keep
    if call.previous_response_id is not None and call.body.get("conversation") is not None:
        raise InvalidRequest("Send either previous_response_id or conversation, not both.", param="conversation")
    if call.previous_response_id is not None:
        if not keep:
            raise zero_retention("previous_response_id")
        store = await _store(request).get()
        try:
            chain = await store.chain(call.previous_response_id, principal.id)
        except NotFound:  # OpenAI's answer: a 400 naming the parameter (another key's response does not exist)
            raise InvalidRequest(f"Previous response with id {call.previous_response_id[:80]!r} not found.",
                                 param="previous_response_id", code="previous_response_not_found") from None
        proto.prepend(req, call, chain)
    elif call.body.get("conversation") is not None:
        hook = _hook(request)
        if hook is None:
            raise InvalidRequest("conversation is not supported by this gateway yet; use previous_response_id.",
                                 param="conversation", code="unsupported_parameter")
        proto.prepend(req, call, await hook.load(principal, call.body["conversation"]))
        from ..state.responses_hook import conversation_id

        call.conversation = {"id": conversation_id(call.body["conversation"])}  # echoed in the response
        if req.raw is not None:  # a same-wire upstream gets the history in its input, not the gateway's id
            req.raw = {k: v for k, v in req.raw.items() if k != "conversation"}
    if call.body.get("truncation") == "auto":
        _truncate(gw, req)
    return req, call


def _truncate(gw: Gateway, req: ChatRequest) -> None:
    """``truncation: auto``: when the input is longer than the largest context window the model name reaches, drop
    the oldest turns (a system message and the newest turn stay; a tool call goes with its results) until it fits.
    A Responses upstream gets the body as sent (``raw``) and truncates by itself."""
    cat = gw.catalog
    route = cat.routes.get(req.model)
    targets = route.targets if route is not None else [d for d in (cat.deployments.get(req.model),) if d]
    windows = [d.context_window for d in targets]
    if not windows or None in windows:
        return
    limit = max(w for w in windows if w is not None) - (req.max_tokens or 0)
    msgs = req.messages
    lead = 1 if msgs and msgs[0].role is Role.SYSTEM else 0
    while estimate_prompt(req) > limit and len(msgs) - lead > 1:
        del msgs[lead]
        while len(msgs) - lead > 1 and msgs[lead].role is Role.TOOL:  # results of a dropped call
            del msgs[lead]


async def _keep(request: Request, principal: Principal, call: proto.ResponsesCall, obj: dict[str, Any]) -> None:
    """After the reply: store it (when asked and allowed)."""
    if call.store:
        store = await _store(request).get()
        store.put(Stored(str(obj["id"]), principal.id, principal.org_id, float(obj.get("created_at") or time.time()),
                         call.previous_response_id, call.items, obj))


async def _converse(request: Request, ctx: CallContext, call: proto.ResponsesCall, obj: dict[str, Any]) -> None:
    """After the reply: append the turn (this call's input items, the response's output items) to the conversation
    it names, in one transaction."""
    conversation = call.body.get("conversation")
    hook = _hook(request)
    if conversation is None or hook is None or ctx.principal is None:
        return
    dep = ctx.deployment
    await hook.append(ctx.principal, conversation, call.items, list(obj.get("output") or []),
                      dep.provider.type if dep is not None else None)


async def _create(request: Request, gw: Gateway, ctx: CallContext) -> Response | StreamResponse:
    req, call = await _prepare(request, gw, ctx)
    principal = ctx.principal
    assert principal is not None
    if req.stream:
        chunks = await gw.chat_stream(ctx, req)
        return StreamResponse(_stream(request, ctx, chunks, call), ctx.response_headers(),
                              linger=gw.drain_linger(ctx))
    resp = await gw.chat(ctx, req)
    obj = render.response_object(resp, call)
    obj["store"] = call.store
    if call.store:
        try:
            await _keep(request, principal, call, obj)
        except Exception:  # the caller has its answer; a later GET or previous_response_id will say what is missing
            log.exception("keeping a response failed (request %s)", ctx.request_id)
    await _converse(request, ctx, call, obj)  # a turn the conversation could not keep is an error, not forgotten
    return Response(render.render_response(obj), media_type=JSON_TYPE, headers=ctx.response_headers())


async def _stream(request: Request, ctx: CallContext, chunks: AsyncIterator[Chunk],
                  call: proto.ResponsesCall) -> AsyncIterator[bytes]:
    principal = ctx.principal
    assert principal is not None
    renderer = render.StreamRenderer(call, render.new_id("resp"))
    passthrough: render.PassthroughStream | None = None
    feed = renderer.feed
    try:
        async for chunk in chunks:
            if chunk.wire == WIRE_OPENAI_RESPONSES and isinstance(chunk.raw, dict):
                passthrough = passthrough or render.PassthroughStream(call)
                yield passthrough.feed(chunk.raw)
                continue
            data = feed(chunk)
            if data:
                yield data
    except SwitchyardError as e:
        yield renderer.fail(e)
        return
    except Exception:
        log.exception("responses stream failed")
        yield renderer.fail(InternalError("The gateway failed while streaming."))
        return
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    if passthrough is None:
        yield renderer.end()
    final = passthrough.final if passthrough is not None else renderer.final
    if final is not None and call.store:
        try:
            await _keep(request, principal, call, final)
        except Exception:
            log.exception("keeping a streamed response failed")
    if final is not None:
        try:
            await _converse(request, ctx, call, final)
        except Exception:  # response.completed is sent: the stream has nowhere to say it
            log.exception("appending a streamed response to its conversation failed (request %s)", ctx.request_id)


async def _owned(request: Request, ctx: CallContext) -> Stored:
    assert ctx.principal is not None
    rid = request.path_params["response_id"]
    if not may_store(ctx.principal):
        raise not_found(rid)
    store = await _store(request).get()
    rec = await store.get(rid, ctx.principal.id)
    if rec is None:
        raise not_found(rid)
    return rec


async def _retrieve(request: Request, gw: Gateway, ctx: CallContext) -> Response:
    rec = await _owned(request, ctx)
    return Response(orjson.dumps(rec.response), media_type=JSON_TYPE)


async def _delete(request: Request, gw: Gateway, ctx: CallContext) -> Response:
    rec = await _owned(request, ctx)
    store = await _store(request).get()
    assert ctx.principal is not None
    await store.delete(rec.id, ctx.principal.id)
    return Response(orjson.dumps({"id": rec.id, "object": "response", "deleted": True}), media_type=JSON_TYPE)


def _with_ids(items: list[Any], rid: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        it = dict(item)
        it.setdefault("type", "message")
        it.setdefault("id", f"msg_{rid.removeprefix('resp_')[:40]}_{i}")
        if it["type"] == "message":
            if isinstance(it.get("content"), str):
                kind = "output_text" if it.get("role") == "assistant" else "input_text"
                it["content"] = [{"type": kind, "text": it["content"]}]
            it.setdefault("status", "completed")
        out.append(it)
    return out


async def _input_items(request: Request, gw: Gateway, ctx: CallContext) -> Response:
    rec = await _owned(request, ctx)
    q = request.query_params
    try:
        limit = int(q.get("limit", "20"))
    except ValueError:
        limit = -1
    if not 1 <= limit <= 100:
        raise InvalidRequest("limit must be an integer from 1 to 100.", param="limit")
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("order must be 'asc' or 'desc'.", param="order")
    items = _with_ids(rec.input, rec.id)
    if order == "desc":
        items.reverse()
    after = q.get("after")
    if after:
        ids = [i["id"] for i in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    page = items[:limit]
    body = {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit}
    return Response(orjson.dumps(body), media_type=JSON_TYPE)


create = openai_endpoint(_create)
retrieve = openai_endpoint(_retrieve)
delete = openai_endpoint(_delete)
input_items = openai_endpoint(_input_items)

ROUTES = [
    Route("/v1/responses", create, methods=["POST"]),
    Route("/responses", create, methods=["POST"]),
    Route("/v1/responses/{response_id}", retrieve, methods=["GET"]),
    Route("/v1/responses/{response_id}", delete, methods=["DELETE"]),
    Route("/v1/responses/{response_id}/input_items", input_items, methods=["GET"]),
]
