"""Telemetry: Prometheus metrics (:mod:`.metrics`, served by :mod:`.http`), structured request logs (:mod:`.logs`)
and OpenTelemetry traces (:mod:`.tracing`, when configured). :func:`attach` plugs them into a gateway: the pipeline
hands each finished call to one function, and the breakers report their changes of state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import logs
from .metrics import Metrics, backlog_of

if TYPE_CHECKING:
    from ..pipeline import CallContext, Gateway
    from ..records import CallRecord
    from ..routing.health import Health

__all__ = ["Metrics", "attach"]


def attach(gateway: Gateway, recorder: Any = None) -> Metrics | None:
    """Give ``gateway`` its metrics (when ``metrics.enabled``), its request log and its traces (when
    ``tracing.enabled``); the metrics, if any."""
    metrics = _attach(gateway, recorder)
    if gateway.config.tracing.enabled:
        from .tracing import install  # OpenTelemetry is imported only here

        install(gateway)
    return metrics


def _attach(gateway: Gateway, recorder: Any) -> Metrics | None:
    health = gateway.router.health
    metrics = Metrics(health, backlog_of(recorder)) if gateway.config.metrics.enabled else None
    request_log = logs.RequestLog().observe
    if metrics is None:
        gateway.telemetry = request_log
        health.watch(logs.breaker_changed)
        return None
    count = metrics.observe

    def observe(ctx: CallContext, rec: CallRecord) -> None:
        count(ctx, rec)
        request_log(ctx, rec)

    def breaker_changed(h: Health, state: str) -> None:
        metrics.breaker_changed(h, state)
        logs.breaker_changed(h, state)

    gateway.telemetry = observe
    health.watch(breaker_changed)
    return metrics
