"""Errors as OpenAI error objects: ``{"error": {"message", "type", "param", "code"}}``.

Shape: https://platform.openai.com/docs/guides/error-codes and the ``ErrorResponse`` schema of the OpenAPI spec.
"""

from __future__ import annotations

import orjson

from ..errors import SwitchyardError, UpstreamError

_TYPES = {
    "invalid_request": "invalid_request_error",
    "authentication": "invalid_request_error",
    "permission": "permission_error",
    "not_found": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "budget": "insufficient_quota",
    "unavailable": "service_unavailable",
    "upstream": "upstream_error",
    "timeout": "timeout_error",
    "api_error": "server_error",
}


def error_object(exc: SwitchyardError) -> dict[str, object]:
    err: dict[str, object] = {"message": exc.message, "type": _TYPES.get(exc.kind, "server_error"),
                              "param": exc.param, "code": exc.code}
    if isinstance(exc, UpstreamError):
        err["provider"] = exc.provider
        if exc.deployment:
            err["deployment"] = exc.deployment
        if exc.upstream_status is not None:
            err["upstream_status"] = exc.upstream_status
    return {"error": err}


def render_error(exc: SwitchyardError) -> bytes:
    return orjson.dumps(error_object(exc))


def render_stream_error(exc: SwitchyardError) -> bytes:
    """The frame that ends a stream which failed after its first byte; the SDKs raise it as an APIError."""
    return b"data: " + orjson.dumps(error_object(exc)) + b"\n\n"
