"""``POST /v1/feedback``: a caller rates one of its own requests (see :mod:`switchyard.governance.feedback`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..errors import NotFound, ServiceUnavailable
from ..governance.feedback import MetricBody, find_call, parse_feedback, store_feedback, store_metric
from ..pipeline import CallContext, Gateway
from ..protocols.validate import parse_body
from .asgi import read_body
from .common import JSON_TYPE
from .openai_routes import openai_endpoint

MAX_BODY = 64 * 1024


def _not_found(request_id: str) -> NotFound:
    # the same answer for a request that does not exist and one of another key: nothing is revealed
    return NotFound(f"No request {request_id[:80]!r} of this key was found.", param="request_id",
                    code="request_not_found")


async def _feedback(request: Request, gw: Gateway, ctx: CallContext) -> Response:
    p = ctx.principal
    assert p is not None
    metrics = {k: m.model_dump() for k, m in gw.config.prompts.metrics.items()}
    fb = parse_feedback(parse_body(await read_body(request, MAX_BODY), MAX_BODY), metrics)
    gov = gw.governance
    if gov is None:
        raise ServiceUnavailable("Feedback needs the store (governance is disabled).", code="feedback_unavailable")
    db = gov.db

    def lookup() -> Mapping[str, Any] | None:
        with db.read() as conn:
            return find_call(conn, fb.request_id, p.id)

    call = await db.run(lookup)
    if call is None:
        flush = getattr(gw.recorder, "flush", None)  # the request log is written off the hot path: ship it once
        if flush is not None:
            await flush()
            call = await db.run(lookup)
    if isinstance(fb, MetricBody):
        return await _metric(gw, fb, p.id, p.logging, call)
    if call is None:
        raise _not_found(fb.request_id)
    call_map = dict(call)
    rid = str(call_map["request_id"])
    recent = gw.recent_embeddings
    embedding = recent.get(rid) if recent is not None else None

    def write() -> dict[str, bool]:
        with db.write() as conn:
            return store_feedback(conn, call_map, fb, p.id, p.logging, embedding)

    kept = await db.run(write)
    body = {"object": "feedback", "request_id": rid, "score": fb.score, "label": fb.label, "stored": kept}
    return Response(orjson.dumps(body), media_type=JSON_TYPE)


async def _metric(gw: Gateway, fb: MetricBody, principal_id: str, logging: str,
                  call: Mapping[str, Any] | None) -> Response:
    """A metric's value. A call this replica served with a managed prompt whose record is not stored yet (even
    after shipping the spool once) is accepted as pending, and matched when its record lands."""
    pending = call is None
    if pending:
        recent = getattr(gw.prompts, "recent", None) or {}
        if recent.get(fb.request_id) != principal_id:
            raise _not_found(fb.request_id)
    rid = fb.request_id if call is None else str(call["request_id"])
    assert gw.governance is not None
    db = gw.governance.db

    def write() -> None:
        with db.write() as conn:
            store_metric(conn, rid, fb, principal_id, logging, pending)

    await db.run(write)
    body = {"object": "feedback", "request_id": rid, "metric": fb.metric, "value": fb.value, "pending": pending}
    return Response(orjson.dumps(body), status_code=202 if pending else 200, media_type=JSON_TYPE)


feedback_endpoint = openai_endpoint(_feedback)
