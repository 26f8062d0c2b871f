"""Telemetry: Prometheus metrics (:mod:`.metrics`, served by :mod:`.http`), structured request logs (:mod:`.logs`)
and OpenTelemetry traces (:mod:`.tracing`, imported only when ``tracing.enabled``). The app factory puts one
:class:`Telemetry` stage in the chain: its ``after`` hook sees each finished call's record (settled, as the recorder
got it) and ends its trace; the breakers report their changes of state to it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..stages import CallContext, Outcome, Stage, record_of
from . import logs
from .metrics import Metrics, backlog_of

if TYPE_CHECKING:
    from ..config import Config
    from ..records import CallRecord
    from ..routing.health import Health, HealthRegistry

__all__ = ["Telemetry"]


class Telemetry(Stage):
    """Metrics (when ``metrics.enabled``) and the request log, told of every call once it is recorded. Declared
    before the recording stage, so that its ``after`` (which unwinds in reverse) sees the record that stage built."""

    name = "telemetry"

    def __init__(self, config: Config, health: HealthRegistry, recorder: Any = None, tracing: Any = None) -> None:
        self.tracing = tracing  # switchyard.telemetry.tracing.Tracing, or None
        self.metrics = Metrics(health, backlog_of(recorder)) if config.metrics.enabled else None
        self._log = logs.RequestLog().observe
        self._count = self.metrics.observe if self.metrics is not None else None
        health.watch(self._breaker_changed)

    def after(self, call: CallContext, outcome: Outcome) -> None:
        rec: CallRecord = call.record if call.record is not None else record_of(call, outcome)
        if self._count is not None:
            self._count(call, rec, outcome.code)
        self._log(call, rec)
        if self.tracing is not None:
            self.tracing.finish(call, rec)

    def refused(self, call: CallContext, status: int, code: str | None) -> None:
        if self.metrics is not None:
            self.metrics.refused_at_admission(call.protocol, status)
        logs.refused(call, status, code)

    def _breaker_changed(self, h: Health, state: str) -> None:
        if self.metrics is not None:
            self.metrics.breaker_changed(h, state)
        logs.breaker_changed(h, state)
