"""``GET /admin/routes/health`` in the OpenAPI document.

The endpoint itself is served by :mod:`switchyard.server.admin_routes` (it is for super admins only: it needs only
the master key, not the governance runtime), so it is declared here as an *external* operation: documented, not
wrapped. The models below describe what :func:`switchyard.routing.explain.health_report` returns; a test validates
a live response against them, so the document cannot drift from the code.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from .api import operation


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BreakerWindow(_Doc):
    seconds: float
    successes: int
    failures: int


class HealthSamples(_Doc):
    ttft: int
    latency: int


class DeploymentHealth(_Doc):
    deployment: str
    provider: str
    zdr: bool  # zero data retention (config ``zdr``)
    tags: list[str]  # config ``tags``, sorted
    endpoint: Literal["chat", "embeddings"]
    breaker: Literal["closed", "open", "half_open", "disabled"]
    reopens_in_s: float | None  # while open: seconds until a probe is let through
    consecutive_failures: int
    window: BreakerWindow
    error_rate: float | None  # over the window; null without calls
    in_flight: int
    throttled_for_s: float | None  # after a 429 with Retry-After
    ttft_ewma_ms: float | None
    latency_ewma_ms: float | None
    samples: HealthSamples


class RouteTarget(_Doc):
    deployment: str
    weight: float


class RouteShape(_Doc):
    route: str
    strategy: str
    targets: list[RouteTarget]
    fallbacks: list[str]
    context_window_fallbacks: list[str]
    content_policy_fallbacks: list[str]
    retry_budget_tokens: float
    hedge: bool


class RoutesHealth(_Doc):
    now: float  # the router's monotonic clock, seconds
    deployments: list[DeploymentHealth]
    routes: list[RouteShape]


@operation("GET", "/admin/routes/health", summary="Deployment health and route shapes", tag="routing",
           action="routes.health", response=RoutesHealth, errors=(401, 403), external=True)
async def routes_health() -> RoutesHealth:  # pragma: no cover - documented only; served by admin_routes
    """Every deployment's circuit-breaker state, latency EWMAs, error rate over the breaker window and requests in
    flight, per endpoint (chat and embeddings break independently), and each route's strategy, targets, fallbacks
    and retry budget. Super admins only (the master key): it covers every tenant's traffic, so a role's key (even
    an ``org_admin``'s) gets 403 ``forbidden``."""
    raise NotImplementedError
