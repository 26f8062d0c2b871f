"""The ``governance:`` config section: virtual keys, their cache, the admin API and the audit log.

Secrets are resolved at start-up by :mod:`switchyard.governance.keys` (``key_secret``: this key, else
``$SWITCHYARD_KEY_SECRET``, else derived from ``master_key``; ``audit.hmac_key``: this key, else
``$SWITCHYARD_AUDIT_KEY``, else derived from the key secret). Every key is documented in docs/governance.md.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from .base import Strict as _Strict


def _none_if_empty(v: object) -> object:
    return None if v == "" else v


class AuditSettings(_Strict):
    enabled: bool = True  # False: no audit log at all (admin actions are then not recorded either)
    record_calls: bool = True  # one audit record per data-plane call, besides every admin action
    hmac_key: str | None = Field(None, min_length=16)  # signs checkpoints and the chain head
    checkpoint_interval: float = Field(60.0, gt=0)  # seconds between signed checkpoints (while records arrive)
    checkpoint_every: int = Field(1000, ge=1)  # ... or after this many records, whichever comes first
    flush_interval: float = Field(0.25, gt=0)  # how often queued call records are appended
    max_pending: int = Field(100_000, ge=100)  # call records kept in memory while the store is down

    _empty = field_validator("hmac_key", mode="before")(_none_if_empty)


class AdminSettings(_Strict):
    enabled: bool = True  # serve the admin API under /admin


class AuthFailureSettings(_Strict):
    limit: int = Field(20, ge=0)  # failed authentications per client address per window; 0: no limit
    window: float = Field(10.0, gt=0)  # seconds in which ``limit`` failures refill
    max_clients: int = Field(10_000, ge=100)  # addresses tracked at once; the oldest are forgotten first


class GovernanceConfig(_Strict):
    enabled: bool = True  # virtual keys, admin API and audit log (off: only master_key and static keys)
    key_secret: str | None = Field(None, min_length=16)  # HMAC key for stored key hashes
    poll_interval: float = Field(0.5, gt=0, le=5)  # seconds between change-version polls (revocation latency)
    cache_ttl: float = Field(300.0, gt=0)  # a cached key is re-read after this long, even without a change
    cache_size: int = Field(100_000, ge=10)  # cached valid (and revoked) keys per process
    negative_ttl: float = Field(10.0, ge=0, le=300)  # seconds an unknown key is remembered; 0: not at all
    negative_size: int = Field(10_000, ge=0)  # unknown keys remembered per process (apart from valid ones)
    auth_failures: AuthFailureSettings = Field(default_factory=lambda: AuthFailureSettings())  # even when disabled
    audit: AuditSettings = Field(default_factory=lambda: AuditSettings())
    admin: AdminSettings = Field(default_factory=lambda: AdminSettings())

    _empty = field_validator("key_secret", mode="before")(_none_if_empty)
