"""HTTP glue that every protocol's endpoints share."""

from __future__ import annotations

import math
import time

from starlette.requests import Request

from ..classification import highest, parse_data_class
from ..config.routing import OBJECTIVES
from ..errors import InvalidRequest
from ..messages import ChatRequest
from ..pipeline import CallContext
from ..state import CONVERSATION_ID

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


CONVERSATION_HEADER = "x-switchyard-conversation"


def take_conversation(request: Request, req: ChatRequest, ctx: CallContext, enabled: bool) -> None:
    """The conversation a chat call names (``x-switchyard-conversation``, else the body's ``conversation``: an id,
    or an object with one), taken out of the request (never sent upstream) and set on ``ctx``. A bad id is a 400
    naming where it came from; naming one on a gateway that keeps none is a 400 too."""
    where = CONVERSATION_HEADER
    value: object = request.headers.get(CONVERSATION_HEADER)
    body = req.extra.pop("conversation", None)
    if value is None and body is not None:
        where = "conversation"
        value = body.get("id") if isinstance(body, dict) else body
    if value is None:
        return
    if not isinstance(value, str) or not CONVERSATION_ID.match(value):
        raise InvalidRequest(f"The {'header ' if where != 'conversation' else ''}{where} must be a conversation id "
                             f"(8 to 64 letters, digits, '_' or '-').", param=where, code="invalid_conversation")
    if not enabled:
        raise InvalidRequest("This gateway keeps no conversations (its config has no state: section); send the "
                             "whole history instead.", param=where, code="conversations_disabled")
    ctx.conversation = value


DATA_CLASS_HEADER = "x-switchyard-data-class"
OBJECTIVE_HEADER = "x-switchyard-objective"
SESSION_HEADER = "x-switchyard-session"


def apply_objective(request: Request, ctx: CallContext) -> None:
    """``x-switchyard-objective``: the auto strategy's objective for this call; a bad value is a 400. And
    ``x-switchyard-session``, which keeps an experiment's assignment sticky (switchyard.prompts.experiments)."""
    session = request.headers.get(SESSION_HEADER)
    if session:
        ctx.session = session[:200]
    value = request.headers.get(OBJECTIVE_HEADER)
    if value is None:
        return
    v = value.strip().lower()
    if v not in OBJECTIVES:
        raise InvalidRequest(f"The header {OBJECTIVE_HEADER} must be one of cheapest, balanced or best, but it is "
                             f"{value[:40]!r}.", param=OBJECTIVE_HEADER, code="invalid_header")
    ctx.objective = v


def apply_data_class(request: Request, ctx: CallContext) -> None:
    """After authentication: the call's data class is the higher of ``x-switchyard-data-class`` and its key's (a
    caller may raise its class, never lower it below its key's or team's). An unknown class is a 400 naming the
    header. Without the header and without a key class, nothing is set."""
    value = request.headers.get(DATA_CLASS_HEADER)
    floor = ctx.principal.data_class if ctx.principal is not None else None
    if value is None:
        if floor is not None:
            ctx.data_class = highest(ctx.data_class, floor)
        return
    try:
        asked = parse_data_class(value)
    except ValueError:
        raise InvalidRequest(f"The header {DATA_CLASS_HEADER} must be one of public, internal, confidential or "
                             f"restricted, but it is {value[:40]!r}.", param=DATA_CLASS_HEADER,
                             code="invalid_data_class") from None
    ctx.data_class = highest(ctx.data_class, asked, floor)


CACHE_HEADER = "x-switchyard-cache"
CACHE_DIRECTIVES = ("bypass", "refresh")


def apply_cache_directive(request: Request, ctx: CallContext) -> None:
    """``x-switchyard-cache: bypass`` (neither read nor write the cache) or ``refresh`` (skip the lookup, store the
    new answer); anything else is a 400 naming the header. Read whether or not a cache is configured."""
    value = request.headers.get(CACHE_HEADER)
    if value is None:
        return
    v = value.strip().lower()
    if v not in CACHE_DIRECTIVES:
        raise InvalidRequest(f"The header {CACHE_HEADER} must be 'bypass' or 'refresh', but it is {value[:40]!r}.",
                             param=CACHE_HEADER, code="invalid_header")
    ctx.cache_directive = v
