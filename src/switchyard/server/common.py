"""HTTP glue that every protocol's endpoints share."""

from __future__ import annotations

import time

from starlette.requests import Request

from ..errors import InvalidRequest
from ..pipeline import CallContext

JSON_TYPE = "application/json"


def new_context(request: Request) -> CallContext:
    """The pipeline's view of one HTTP call: our request id and the caller's, nothing of HTTP."""
    state = request.state
    return CallContext(request_id=state.request_id, client_request_id=getattr(state, "client_request_id", None))


def peer(request: Request) -> str | None:
    """The caller's address as the TCP peer (the failed-authentication limit counts by it); None if unknown."""
    client = request.scope.get("client")
    return client[0] if client else None


def deadline_for(request: Request, default: float) -> float:
    """The call's deadline: ``server.request_timeout``, or sooner if ``x-switchyard-timeout`` asks."""
    value = request.headers.get("x-switchyard-timeout")
    seconds = default
    if value is not None:
        try:
            asked = float(value)
        except ValueError:
            raise InvalidRequest("The header x-switchyard-timeout must be a number of seconds.",
                                 param="x-switchyard-timeout") from None
        if asked <= 0:
            raise InvalidRequest("The header x-switchyard-timeout must be positive.", param="x-switchyard-timeout")
        seconds = min(asked, default)
    return time.monotonic() + seconds
