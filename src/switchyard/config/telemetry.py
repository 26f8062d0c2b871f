"""The ``metrics:`` section: Prometheus metrics at ``GET /metrics`` (see docs/operations.md)."""

from __future__ import annotations

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
