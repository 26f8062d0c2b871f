"""The OpenAI-compatible endpoints: chat completions, embeddings, models."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..errors import InternalError, ModelNotFound, SwitchyardError
from ..governance.auth import bearer
from ..messages import Chunk
from ..pipeline import CallContext, Gateway
from ..protocols import openai_chat, openai_embeddings
from ..protocols.openai_errors import render_error, render_stream_error
from ..protocols.validate import parse_body
from .asgi import StreamResponse, read_body
from .common import (
    CONVERSATION_HEADER,
    JSON_TYPE,
    apply_cache_directive,
    apply_data_class,
    apply_objective,
    deadline_for,
    new_context,
    peer,
    take_conversation,
)

log = logging.getLogger("switchyard.server")

Handler = Callable[[Request, Gateway, CallContext], Awaitable[Response | StreamResponse]]


def openai_error_response(exc: SwitchyardError, headers: dict[str, str] | None = None) -> Response:
    return Response(render_error(exc), status_code=exc.status, media_type=JSON_TYPE,
                    headers={**(headers or {}), **exc.headers})


def openai_endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response | StreamResponse]]:
    """Authenticate, build the call context, and render any failure as an OpenAI error object."""

    async def endpoint(request: Request) -> Response | StreamResponse:
        gw: Gateway = request.app.state.gateway
        ctx = new_context(request)
        if gw.tracing is not None:  # switchyard.telemetry.tracing: the caller's traceparent
            gw.tracing.inbound(ctx, request.headers)
        try:
            await gw.authenticate(ctx, bearer(request.headers.get("authorization")), peer(request))
            apply_data_class(request, ctx)
            apply_cache_directive(request, ctx)
            apply_objective(request, ctx)
            ctx.deadline = deadline_for(request, gw.config.server.request_timeout)
            return await handler(request, gw, ctx)
        except SwitchyardError as e:
            return openai_error_response(e, ctx.response_headers())
        except Exception:
            log.exception("unexpected failure in %s (request %s)", request.url.path, ctx.request_id)
            return openai_error_response(InternalError("The gateway failed unexpectedly; the request id says "
                                                       "where to look in its logs."), ctx.response_headers())

    return endpoint


async def _render_stream(chunks: AsyncIterator[Chunk], renderer: openai_chat.StreamRenderer) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            data = renderer.feed(chunk)
            if data:
                yield data
    except SwitchyardError as e:
        yield render_stream_error(e)
        return
    except Exception:
        log.exception("stream failed")
        yield render_stream_error(InternalError("The gateway failed while streaming."))
        return
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    yield renderer.end()


async def _chat(request: Request, gw: Gateway, ctx: CallContext) -> Response | StreamResponse:
    body = await read_body(request, gw.config.server.max_body_bytes)
    req = openai_chat.parse_request(parse_body(body, gw.config.server.max_body_bytes))
    if "conversation" in req.extra or CONVERSATION_HEADER in request.headers:
        take_conversation(request, req, ctx, gw.conversations is not None)
    if req.stream:
        chunks = await gw.chat_stream(ctx, req)
        return StreamResponse(_render_stream(chunks, openai_chat.StreamRenderer(req.include_usage)),
                              ctx.response_headers(), linger=gw.drain_linger(ctx))
    resp = await gw.chat(ctx, req)
    return Response(openai_chat.render_response(resp), media_type=JSON_TYPE, headers=ctx.response_headers())


async def _embeddings(request: Request, gw: Gateway, ctx: CallContext) -> Response:
    body = await read_body(request, gw.config.server.max_body_bytes)
    req = openai_embeddings.parse_request(parse_body(body, gw.config.server.max_body_bytes))
    resp = await gw.embed(ctx, req)
    return Response(openai_embeddings.render_response(resp), media_type=JSON_TYPE, headers=ctx.response_headers())


def _model_obj(name: str, owner: str, created: int) -> dict[str, object]:
    return {"id": name, "object": "model", "created": created, "owned_by": owner}


async def _models(request: Request, gw: Gateway, ctx: CallContext) -> Response:
    assert ctx.principal is not None
    created = request.app.state.started_at
    data = [_model_obj(n, o, created) for n, o in gw.models_for(ctx.principal)]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type=JSON_TYPE)


async def _model(request: Request, gw: Gateway, ctx: CallContext) -> Response:
    assert ctx.principal is not None
    name = request.path_params["model"]
    found = gw.model_for(ctx.principal, name)
    if found is not None:
        return Response(orjson.dumps(_model_obj(*found, request.app.state.started_at)), media_type=JSON_TYPE)
    raise ModelNotFound(f"The model {name!r} does not exist or you do not have access to it.", param="model")


chat_completions = openai_endpoint(_chat)
embeddings = openai_endpoint(_embeddings)
list_models = openai_endpoint(_models)
get_model = openai_endpoint(_model)
