"""The ``metrics:`` section (Prometheus metrics at ``GET /metrics``) and the ``tracing:`` section (OpenTelemetry
spans); see docs/operations.md."""

from __future__ import annotations

import importlib.util
from typing import Literal

from pydantic import Field, field_validator

from .base import Strict


class MetricsConfig(Strict):
    # on by default: a handful of counter increments per request (measured in docs/operations.md)
    enabled: bool = True
    # who may read /metrics: loopback (callers on 127.0.0.1 or ::1, no key) | key (a bearer key, from anywhere)
    access: Literal["loopback", "key"] = "loopback"
    # the key that ``access: key`` asks for; when unset, the master key
    key: str | None = Field(None, min_length=16)

    @field_validator("key", mode="before")
    @classmethod
    def _empty_key(cls, v: object) -> object:
        return None if v == "" else v


class TracingConfig(Strict):
    """The ``tracing:`` section: OpenTelemetry spans (switchyard.telemetry.tracing; docs/operations.md, Traces)."""

    # off by default; on, it needs the extra: pip install 'switchyard[otel]'
    enabled: bool = False
    # otlp: OTLP over HTTP/protobuf, batched | none: spans are made but not exported (a test injects its own)
    exporter: Literal["otlp", "none"] = "otlp"
    # the OTLP traces URL (e.g. http://collector:4318/v1/traces); unset: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, then
    # OTEL_EXPORTER_OTLP_ENDPOINT (+ /v1/traces), then http://localhost:4318/v1/traces
    endpoint: str | None = None
    # headers on each export (e.g. a collector's API key); unset: OTEL_EXPORTER_OTLP_HEADERS
    headers: dict[str, str] = Field(default_factory=dict)
    # the share of calls traced, for calls with no sampled parent (a caller's traceparent decides for its own)
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)
    # the resource's service.name; OTEL_SERVICE_NAME wins when set
    service_name: str = Field("switchyard", min_length=1)

    @field_validator("enabled")
    @classmethod
    def _extra_installed(cls, v: bool) -> bool:
        if v and not otel_installed():
            raise ValueError(MISSING_OTEL)
        return v


MISSING_OTEL = "tracing.enabled needs OpenTelemetry, which is not installed: pip install 'switchyard[otel]'"


def otel_installed() -> bool:
    """Whether the ``otel`` extra is installed (looked for, not imported)."""
    try:
        return importlib.util.find_spec("opentelemetry.sdk.trace") is not None
    except ModuleNotFoundError:  # no opentelemetry at all
        return False
