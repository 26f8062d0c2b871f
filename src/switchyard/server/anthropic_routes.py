"""The Anthropic-compatible endpoints: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens`` (and the same
without ``/v1``).

Wire format: https://docs.anthropic.com/en/api/messages, https://docs.anthropic.com/en/api/messages-count-tokens
and https://docs.anthropic.com/en/api/errors. Clients authenticate with ``x-api-key`` (what the ``anthropic`` SDK
sends) or ``Authorization: Bearer`` (Claude Code's ``ANTHROPIC_AUTH_TOKEN``). ``anthropic-version`` is optional
and any value is accepted. Every failure is an Anthropic error object; responses carry ``request-id`` (the header
the Anthropic SDKs read) besides the middleware's ``x-request-id``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..errors import AuthenticationFailed, InternalError, ModelNotFound, SwitchyardError
from ..governance.auth import bearer
from ..messages import Chunk
from ..pipeline import CallContext, Gateway
from ..protocols import anthropic_messages
from ..protocols.anthropic_errors import render_error, render_stream_error
from ..protocols.anthropic_stream import StreamRenderer
from ..protocols.validate import parse_body
from ..tokens import estimate_prompt
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


def api_key(request: Request) -> str | None:
    """The caller's key: ``x-api-key`` first, else an ``Authorization: Bearer`` token."""
    key = request.headers.get("x-api-key")
    if key and key.strip():
        return key.strip()
    return bearer(request.headers.get("authorization"))


def anthropic_error_response(exc: SwitchyardError, request_id: str, headers: dict[str, str] | None = None) -> Response:
    return Response(render_error(exc, request_id), status_code=exc.status, media_type=JSON_TYPE,
                    headers={**(headers or {}), "request-id": request_id, **exc.headers})


def anthropic_endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response | StreamResponse]]:
    """Authenticate, build the call context, and render any failure as an Anthropic error object."""

    async def endpoint(request: Request) -> Response | StreamResponse:
        gw: Gateway = request.app.state.gateway
        ctx = new_context(request, "anthropic")
        if gw.tracing is not None:  # switchyard.telemetry.tracing: the caller's traceparent
            gw.tracing.inbound(ctx, request.headers)
        try:
            key = api_key(request)
            if key is None:
                raise AuthenticationFailed("Missing API key. Send it in the 'x-api-key' header (or as "
                                           "'Authorization: Bearer <key>').")
            await gw.authenticate(ctx, key, peer(request))
            apply_data_class(request, ctx)
            apply_cache_directive(request, ctx)
            apply_objective(request, ctx)
            ctx.deadline = deadline_for(request, gw.config.server.request_timeout)
            return await handler(request, gw, ctx)
        except SwitchyardError as e:
            return anthropic_error_response(e, ctx.request_id, ctx.response_headers())
        except Exception:
            log.exception("unexpected failure in %s (request %s)", request.url.path, ctx.request_id)
            err = InternalError("The gateway failed unexpectedly; the request id says where to look in its logs.")
            return anthropic_error_response(err, ctx.request_id, ctx.response_headers())

    return endpoint


async def _render_stream(chunks: AsyncIterator[Chunk], renderer: StreamRenderer,
                         request_id: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            data = renderer.feed(chunk)
            if data:
                yield data
    except SwitchyardError as e:
        yield render_stream_error(e, request_id)
        return
    except Exception:
        log.exception("stream failed (request %s)", request_id)
        yield render_stream_error(InternalError("The gateway failed while streaming."), request_id)
        return
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    yield renderer.end()


async def _messages(request: Request, gw: Gateway, ctx: CallContext) -> Response | StreamResponse:
    limit = gw.config.server.max_body_bytes
    req = anthropic_messages.parse_request(parse_body(await read_body(request, limit), limit))
    beta = request.headers.get("anthropic-beta")
    if beta:  # Claude Code's beta flags reach an Anthropic upstream with the rest of the request
        req.headers["anthropic-beta"] = beta
    if "conversation" in req.extra or CONVERSATION_HEADER in request.headers:
        take_conversation(request, req, ctx, gw.conversations is not None)
    if req.stream:
        chunks = await gw.chat_stream(ctx, req)
        headers = {**ctx.response_headers(), "request-id": ctx.request_id}
        return StreamResponse(_render_stream(chunks, StreamRenderer(req.model), ctx.request_id), headers,
                              linger=gw.drain_linger(ctx))
    resp = await gw.chat(ctx, req)
    return Response(anthropic_messages.render_response(resp, req.model), media_type=JSON_TYPE,
                    headers={**ctx.response_headers(), "request-id": ctx.request_id})


async def _count_tokens(request: Request, gw: Gateway, ctx: CallContext) -> Response:
    """An estimate (``switchyard.tokens``: about four characters a token), not the model's own tokenizer."""
    limit = gw.config.server.max_body_bytes
    req = anthropic_messages.parse_request(parse_body(await read_body(request, limit), limit), count_only=True)
    assert ctx.principal is not None
    ctx.principal.require_model(req.model)
    if req.model not in gw.catalog.deployments and req.model not in gw.catalog.routes:
        raise ModelNotFound(f"The model {req.model!r} does not exist or you do not have access to it.",
                            param="model")
    return Response(anthropic_messages.count_tokens_body(estimate_prompt(req)), media_type=JSON_TYPE,
                    headers={"request-id": ctx.request_id})


messages = anthropic_endpoint(_messages)
count_tokens = anthropic_endpoint(_count_tokens)

# Unprefixed twins too: ``$ANTHROPIC_BASE_URL`` is the bare host for the Anthropic SDKs and Claude Code, which append
# ``/v1/messages``, and the base with ``/v1`` for the Vercel AI SDK, which appends ``/messages``: one value serves all.
ROUTES: list[BaseRoute] = [
    Route("/v1/messages", messages, methods=["POST"]),
    Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
    Route("/messages", messages, methods=["POST"]),
    Route("/messages/count_tokens", count_tokens, methods=["POST"]),
]
