"""The ``ledger:`` config section: where budgets and rate limits are enforced, the spend spool, and webhooks.

Without ``redis`` the ledger is embedded: one gateway process enforces budgets and rate limits in memory (the
store keeps the spend totals for restarts). With ``redis`` every replica reserves atomically in Redis. Every key is
documented in docs/budgets.md.
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator

from .base import Strict as _Strict


def _none_if_empty(v: object) -> object:
    return None if v == "" else v


class SpoolSettings(_Strict):
    dir: str = ".switchyard/spool"  # one file per running gateway; a dead gateway's file is shipped by the next
    fsync: Literal["none", "interval", "always"] = "interval"  # see docs/budgets.md: what survives what
    fsync_interval: float = Field(1.0, gt=0)  # seconds between fsyncs of the spool (fsync: interval)
    flush_interval: float = Field(0.25, gt=0)  # seconds between shipments to the store
    batch_size: int = Field(250, ge=1, le=2000)  # records per store transaction
    rotate_bytes: int = Field(4 * 1024 * 1024, ge=4096)  # start a new spool file past this size (once shipped)
    retry_max: float = Field(30.0, gt=0)  # the longest wait between attempts while the store is down


class WebhookSettings(_Strict):
    url: str | None = None  # for budgets that name no webhook_url of their own; none: only budgets' own URLs
    secret: str | None = Field(None, min_length=16)  # signs each body: x-switchyard-signature: sha256=<hex hmac>
    allow_private: bool = False  # allow loopback/private/link-local targets (tests, in-cluster receivers)
    timeout: float = Field(5.0, gt=0)
    attempts: int = Field(3, ge=1, le=10)
    max_queue: int = Field(10_000, ge=1)  # notices waiting to be sent; beyond it new ones are dropped and logged

    _empty = field_validator("url", "secret", mode="before")(_none_if_empty)

    @field_validator("url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v


class LedgerConfig(_Strict):
    redis: str | None = None  # redis://host:port/db: enforce across replicas; none: embedded, in one process
    key_prefix: str = Field("switchyard:", min_length=1, max_length=64)
    governance_fail_mode: Literal["closed", "open"] = "closed"  # Redis down: 503 (closed) or pass with a warning
    budget_timezone: str = "UTC"  # the zone of daily/weekly/monthly periods, unless a budget names its own
    default_max_tokens: int = Field(4096, ge=1)  # reserved output when neither the request nor the deployment caps it
    reservation_lease: float = Field(60.0, ge=5)  # seconds a hold outlives its replica (renewed while it runs)
    redis_timeout: float = Field(0.5, gt=0)  # seconds, per Redis operation
    redis_max_connections: int = Field(64, ge=2, le=10_000)  # per process; a burst queues for one
    reconcile_interval: float = Field(30.0, ge=1)  # seconds between checks of Redis's totals against the store's
    # a stream whose client hung up is read to its end for its real usage (0: never; charge the estimate at once)
    drain_timeout: float = Field(30.0, ge=0, le=3600)  # seconds, and never past the call's own deadline
    drain_max_chunks: int = Field(100_000, ge=1)  # chunks read after the client left, at most
    spool: SpoolSettings = Field(default_factory=lambda: SpoolSettings())
    webhooks: WebhookSettings = Field(default_factory=lambda: WebhookSettings())

    _empty = field_validator("redis", mode="before")(_none_if_empty)

    @field_validator("redis")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return v

    @field_validator("budget_timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except Exception:
            raise ValueError(f"unknown time zone {v!r}") from None
        return v
