"""The ASGI app: routes, the lifespan that opens and closes pools, and error shaping for everything else."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import time
from collections.abc import AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..errors import InternalError, InvalidRequest, NotFound, SwitchyardError
from ..pipeline import Gateway
from ..records import Recorder
from ..state.responses import LazyResponseStore, ResponseStore
from ..telemetry.http import metrics_endpoint
from ..telemetry.stage import Telemetry
from . import (
    admin,
    admin_routes,
    anthropic_routes,
    conversation_routes,
    docs_routes,
    feedback_routes,
    me_routes,
    openai_routes,
    openapi_v1,
    responses_routes,
)
from .asgi import Shell
from .common import JSON_TYPE
from .openai_routes import openai_error_response
from .ui import routes as console_routes

log = logging.getLogger("switchyard.server")


async def live(request: Request) -> Response:
    """The process is up; ``pid`` tells which worker answered."""
    return Response(orjson.dumps({"status": "ok", "pid": os.getpid()}), media_type=JSON_TYPE)


async def ready(request: Request) -> Response:
    state = request.app.state
    checks = {"gateway": state.ready, "store": await asyncio.to_thread(state.store_ok)}
    ok = all(checks.values())
    body = {"status": "ready" if ok else "not_ready", "checks": checks,
            "deployments": len(state.gateway.catalog.deployments), "routes": len(state.gateway.catalog.routes)}
    return Response(orjson.dumps(body), status_code=200 if ok else 503, media_type=JSON_TYPE)


@functools.cache
def _openapi_body() -> bytes:
    return orjson.dumps(openapi_v1.openapi_document())


async def openapi(request: Request) -> Response:
    """The data plane's OpenAPI document (``openapi_v1``); no key needed, as for the admin API's."""
    return Response(_openapi_body(), media_type=JSON_TYPE)


def _error_response(request: Request, err: SwitchyardError) -> Response:
    """An error in the protocol of the path it answers: Anthropic's shape under /v1/messages, OpenAI's elsewhere."""
    if request.url.path.startswith(("/v1/messages", "/messages")):
        return anthropic_routes.anthropic_error_response(err, request.state.request_id)
    return openai_error_response(err)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    err: SwitchyardError
    if exc.status_code == 404:
        err = NotFound(f"Unknown path {request.url.path}.", code="unknown_url")
    elif exc.status_code == 405:
        err = InvalidRequest(f"Method {request.method} is not allowed on {request.url.path}.",
                             code="method_not_allowed")
        err.status = 405
        err.headers["allow"] = allowed_methods(request.app.routes, request.url.path)
    else:
        err = InvalidRequest(str(exc.detail))
        err.status = exc.status_code
    return _error_response(request, err)


def allowed_methods(routes: list[BaseRoute], path: str) -> str:
    """The ``Allow`` header of a 405 (RFC 9110 §15.5.6): every method that some route serves on ``path``.
    Starlette's own lists only the first route whose path matches, and a path may be served by several."""
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(path):
            methods.update(route.methods)
    return ", ".join(sorted(methods))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected failure in %s", request.url.path)
    return _error_response(request, InternalError("The gateway failed unexpectedly."))


def create_app(gateway: Gateway, *, store: object | None = None, recorder: Recorder | None = None,
               freeze_gc: bool = False) -> Shell:
    """Build the app around a gateway. ``store`` and ``recorder`` (the request log's writer) are opened and closed
    with it. ``freeze_gc``: once started, move everything allocated so far out of the collector's reach
    (``gc.freeze``), so that full collections under load scan only what requests allocate (a server process)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        start = getattr(recorder, "start", None)
        if start is not None:
            await start()
        await gateway.start()
        if freeze_gc:
            gc.collect()
            gc.freeze()
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            await gateway.aclose()
            await asyncio.to_thread(app.state.responses.close)  # writes the stored responses still queued
            stop = getattr(recorder, "stop", None)
            if stop is not None:
                await stop()

    routes = [
        Route("/v1/chat/completions", openai_routes.chat_completions, methods=["POST"]),
        Route("/chat/completions", openai_routes.chat_completions, methods=["POST"]),
        Route("/v1/embeddings", openai_routes.embeddings, methods=["POST"]),
        Route("/embeddings", openai_routes.embeddings, methods=["POST"]),
        Route("/v1/models", openai_routes.list_models, methods=["GET"]),
        Route("/v1/feedback", feedback_routes.feedback_endpoint, methods=["POST"]),
        Route("/v1/me", me_routes.me, methods=["GET"]),
        Route("/v1/models/{model:path}", openai_routes.get_model, methods=["GET"]),
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/v1/openapi.json", openapi, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *anthropic_routes.ROUTES,
        *conversation_routes.ROUTES,
        *responses_routes.ROUTES,
        *admin_routes.ROUTES,
        *admin.ROUTES,
        *docs_routes.ROUTES,
        *console_routes(gateway.config),  # the web console at /ui (none when console.enabled is false)
    ]
    if gateway.workflows is not None:
        from ..workflows.api import ROUTES as WORKFLOW_ROUTES

        routes.extend(WORKFLOW_ROUTES)
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.state.workflows = gateway.workflows
    app.state.metrics = next((s.metrics for s in gateway.chain.stages if isinstance(s, Telemetry)), None)
    app.state.ready = False
    store_url = gateway.config.store
    app.state.responses = LazyResponseStore(lambda: ResponseStore.open(store_url))  # opened on first use
    app.state.conversations = None  # a state.responses.HistoryHook: the conversation parameter of responses
    if gateway.conversations is not None:  # a state: section
        from ..state.responses_hook import ConversationHistory

        app.state.conversations = ConversationHistory(gateway.conversations)
    app.state.started_at = int(time.time())
    ping = getattr(store, "ping", None)
    app.state.store_ok = (lambda: bool(ping())) if ping is not None else (lambda: True)
    fast = {("POST", p): openai_routes.chat_completions for p in ("/v1/chat/completions", "/chat/completions")}
    fast.update({("POST", p): openai_routes.embeddings for p in ("/v1/embeddings", "/embeddings")})
    fast.update({("POST", p): anthropic_routes.messages for p in ("/v1/messages", "/messages")})
    fast.update({("POST", p): responses_routes.create for p in ("/v1/responses", "/responses")})
    return Shell(app, fast, _unexpected)
