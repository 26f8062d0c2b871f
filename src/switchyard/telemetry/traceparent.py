"""The trace headers the next upstream request carries, apart from :mod:`.tracing` so that the providers can read
them without importing it (or OpenTelemetry): the executor sets them around each traced attempt, the HTTP provider
base adds them to the request it sends."""

from __future__ import annotations

from contextvars import ContextVar

# ``traceparent`` (and ``tracestate``) of the attempt in progress in this task; None: the call is not traced
UPSTREAM: ContextVar[dict[str, str] | None] = ContextVar("switchyard_upstream_trace", default=None)
