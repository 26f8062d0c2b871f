"""``GET /metrics``: the Prometheus exposition, for loopback callers (``metrics.access: loopback``, the default) or
for whoever holds the metrics key (``access: key``; ``metrics.key``, else the master key)."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress

from starlette.requests import Request
from starlette.responses import Response

from ..config.telemetry import MetricsConfig
from ..errors import AuthenticationFailed, NotFound, PermissionDenied, SwitchyardError
from ..governance.auth import bearer
from ..protocols.openai_errors import render_error
from .metrics import CONTENT_TYPE, Metrics


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return bool((mapped or addr).is_loopback)


def check_access(request: Request, cfg: MetricsConfig, master_key: str | None) -> None:
    """Raise unless this caller may read the metrics."""
    if cfg.access == "loopback":
        client = request.scope.get("client")
        if not is_loopback(client[0] if client else None):
            raise PermissionDenied("GET /metrics is served to loopback callers only (metrics.access: loopback).")
        return
    expected = cfg.key or master_key or ""
    given = bearer(request.headers.get("authorization"))
    if given is None:
        raise AuthenticationFailed("GET /metrics needs the metrics key, as 'Authorization: Bearer <key>'.")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise PermissionDenied("This key may not read the metrics.", code="permission_denied")


async def metrics_endpoint(request: Request) -> Response:
    state = request.app.state
    metrics: Metrics | None = getattr(state, "metrics", None)
    try:
        if metrics is None:
            raise NotFound("Metrics are off (metrics.enabled: false).", code="unknown_url")
        check_access(request, state.gateway.config.metrics, state.gateway.config.master_key)
    except SwitchyardError as e:
        return Response(render_error(e), status_code=e.status, media_type="application/json", headers=e.headers)
    if metrics.multiproc is None:
        body = metrics.render()
    else:  # reads every worker's files: off the loop
        metrics.refresh()
        body = await asyncio.to_thread(metrics.render)
    return Response(body, media_type=CONTENT_TYPE)
