"""HTTP glue that every protocol's endpoints share."""

from __future__ import annotations

import math
import time

from starlette.requests import Request

from ..errors import InvalidRequest
from ..pipeline import CallContext

JSON_TYPE = "application/json"


def new_context(request: Request, protocol: str = "openai") -> CallContext:
    """The pipeline's view of one HTTP call: our request id and the caller's, its protocol, nothing of HTTP."""
    state = request.state
    return CallContext(request_id=state.request_id, client_request_id=getattr(state, "client_request_id", None),
                       protocol=protocol)


def peer(request: Request) -> str | None:
    """The caller's address as the TCP peer (the failed-authentication limit counts by it); None if unknown."""
    client = request.scope.get("client")
    return client[0] if client else None


def deadline_for(request: Request, default: float) -> float:
    """The call's deadline: ``server.request_timeout``, or sooner if ``x-switchyard-timeout`` asks.

    The header must be a finite number of seconds above zero (``nan``, ``inf``, ``0``, ``-1`` and ``abc`` are each
    a 400 naming it): a deadline that cannot be scheduled must fail here, as the caller's mistake, and never reach
    an attempt, where it would count against the deployment."""
    value = request.headers.get("x-switchyard-timeout")
    seconds = default
    if value is not None:
        try:
            asked = float(value)
        except ValueError:
            asked = math.nan
        if not (0 < asked < math.inf):
            raise InvalidRequest(f"The header x-switchyard-timeout must be a finite number of seconds above zero, "
                                 f"but it is {value[:40]!r}.", param="x-switchyard-timeout",
                                 code="invalid_header")
        seconds = min(asked, default)
    return time.monotonic() + seconds
