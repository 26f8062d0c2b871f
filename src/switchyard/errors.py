"""One error tree for the whole gateway.

Client errors say what the caller did wrong; upstream errors say which provider failed and how. Each inbound
protocol renders them in its own wire format (``protocols.openai_errors``, ``protocols.anthropic_errors``). Nothing
here knows about HTTP frameworks.
"""

from __future__ import annotations


class SwitchyardError(Exception):
    """Base class. ``status`` is the HTTP status; ``kind`` is a protocol-neutral error class."""

    status: int = 500
    kind: str = "api_error"  # invalid_request | authentication | permission | not_found | rate_limit | ...
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers: dict[str, str] = dict(headers or {})


# --- the caller's mistakes (4xx) -----------------------------------------------------------------------------


class InvalidRequest(SwitchyardError):
    status = 400
    kind = "invalid_request"


class UnsupportedParameter(InvalidRequest):
    """A parameter that the chosen provider cannot honour; never dropped silently."""

    code = "unsupported_parameter"


class AuthenticationFailed(SwitchyardError):
    status = 401
    kind = "authentication"
    code = "invalid_api_key"


class PermissionDenied(SwitchyardError):
    status = 403
    kind = "permission"
    code = "permission_denied"


class PolicyDenied(PermissionDenied):
    """A policy forbids the request (or a tool call in its reply). The message names the policy ids and their
    ``@reason``, never the policy text."""

    code = "policy_denied"


class NotFound(SwitchyardError):
    status = 404
    kind = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class PayloadTooLarge(InvalidRequest):
    """An oversized body. The brief asks for 400 naming the body, so that SDKs treat it as a caller error."""

    code = "request_too_large"


class RateLimited(SwitchyardError):
    status = 429
    kind = "rate_limit"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after
        if retry_after is not None:
            self.headers.setdefault("retry-after", str(max(1, int(retry_after + 0.999))))


class BudgetExceeded(RateLimited):
    """A budget in scope cannot cover this request's worst case. A 429 as OpenAI's own ``insufficient_quota`` is,
    with ``x-should-retry: false`` (the SDKs then do not retry) and ``Retry-After`` up to the budget's reset."""

    kind = "budget"
    code = "budget_exceeded"

    def __init__(self, message: str, *, retry_after: float | None = None, budget_id: str | None = None,
                 resets_at: str | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.budget_id = budget_id
        self.resets_at = resets_at
        self.headers["x-should-retry"] = "false"
        if budget_id is not None:
            self.headers["x-switchyard-budget"] = budget_id
        if resets_at is not None:
            self.headers["x-switchyard-budget-reset"] = resets_at


# --- our own infrastructure ----------------------------------------------------------------------------------


class ServiceUnavailable(SwitchyardError):
    status = 503
    kind = "unavailable"
    code = "service_unavailable"


class InternalError(SwitchyardError):
    status = 500
    kind = "api_error"
    code = "internal_error"


# --- upstream failures ---------------------------------------------------------------------------------------


class UpstreamError(SwitchyardError):
    """A provider failed. ``upstream_status`` is what it answered (None for a connection failure).

    A 429 keeps its status and ``Retry-After``; a 5xx or a broken connection becomes 502; a caller error that the
    upstream reports (400, 404, 413, 422) keeps its status so that the caller learns it was their mistake.
    """

    kind = "upstream"
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        deployment: str | None = None,
        upstream_status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        upstream_type: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.provider = provider
        self.deployment = deployment
        self.upstream_status = upstream_status
        self.retryable = retryable
        self.retry_after = retry_after
        self.upstream_type = upstream_type
        if upstream_status == 429:
            self.status = 429
            self.kind = "rate_limit"
            if code is None:
                self.code = "rate_limit_exceeded"  # as docs/api.md promises; the error still names the provider
            if retry_after is not None:
                self.headers["retry-after"] = str(max(1, int(retry_after + 0.999)))
        elif upstream_status is not None and 400 <= upstream_status < 500 and upstream_status not in (401, 403, 408):
            # the upstream blames the request: so do we
            self.status = upstream_status
            self.kind = "invalid_request" if upstream_status != 404 else "not_found"
        else:
            self.status = 502


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"

    def __init__(self, message: str, *, provider: str, deployment: str | None = None) -> None:
        super().__init__(message, provider=provider, deployment=deployment, retryable=True)
        self.status = 504
        self.kind = "timeout"


def is_retryable_status(status: int) -> bool:
    return status == 408 or status == 409 or status == 429 or status >= 500


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` (or ``retry-after-ms``) header value; HTTP dates are not worth honouring."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
