"""Errors as Anthropic error objects: ``{"type": "error", "error": {"type", "message"}, "request_id"}``.

Shape and error types: https://docs.anthropic.com/en/api/errors (the HTTP error table and the streaming ``error``
event), checked against the ``anthropic`` SDK's ``types/shared/error_response.py`` and ``error_type.py``.

The HTTP status always stays the one the :class:`SwitchyardError` carries (an oversized body is our 400, an
upstream 5xx is our 502); only the ``error.type`` follows Anthropic's vocabulary, so that a client which branches
on it (Claude Code retries ``overloaded_error``, for one) sees the category it knows. Anthropic error objects have
no ``param`` field: our messages name the offending field in their text instead.
"""

from __future__ import annotations

import orjson

from ..errors import SwitchyardError, UpstreamError
from ..sse import encode

_TYPES = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "rate_limit": "rate_limit_error",
    "budget": "billing_error",
    "unavailable": "overloaded_error",
    "timeout": "timeout_error",
    "upstream": "api_error",
    "api_error": "api_error",
}

_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_OVERLOADED_UPSTREAM = frozenset({503, 529})


def error_type(exc: SwitchyardError) -> str:
    """Anthropic's ``error.type`` for one of our errors."""
    if exc.status == 413:
        return "request_too_large"
    if isinstance(exc, UpstreamError) and exc.upstream_status in _OVERLOADED_UPSTREAM:
        return "overloaded_error"  # the provider is overloaded; Anthropic clients back off on this type
    found = _TYPES.get(exc.kind)
    if found is not None:
        return found
    return _BY_STATUS.get(exc.status, "api_error")


def error_object(exc: SwitchyardError, request_id: str | None = None) -> dict[str, object]:
    out: dict[str, object] = {"type": "error", "error": {"type": error_type(exc), "message": exc.message}}
    if request_id:
        out["request_id"] = request_id
    return out


def render_error(exc: SwitchyardError, request_id: str | None = None) -> bytes:
    return orjson.dumps(error_object(exc, request_id))


def render_stream_error(exc: SwitchyardError, request_id: str | None = None) -> bytes:
    """The ``event: error`` frame that ends a stream which failed after its first byte (the SDKs raise it)."""
    return encode(orjson.dumps(error_object(exc, request_id)), "error")
