"""The ``cache:`` section (the semantic cache, :mod:`switchyard.cache`) and a route's ``cache:`` overrides; see
docs/cache.md.

Without a ``cache:`` section there is no cache: its stage is not in the chain and costs nothing. With one, every
route and every deployment called by name is cached with the section's settings, and a route may override any of
them (``routes.NAME.cache``), turn the cache off for itself (``enabled: false``), or opt in to caching answers
sampled at a temperature above zero (``temperature_any: true``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import Strict

Scope = Literal["org", "key"]


class CacheRouteConfig(Strict):
    """A route's overrides of the ``cache:`` section: unset keys keep the section's value."""

    enabled: bool | None = None  # false: this route is never cached
    similarity: bool | None = None  # false: exact matches only
    threshold: float | None = Field(None, gt=0, le=1, description="the least cosine similarity of a similar hit")
    ttl_s: float | None = Field(None, gt=0, description="how long an entry is served after it was stored")
    temperature_any: bool | None = None  # true: also cache requests sampled at a temperature above zero
    charge: float | None = Field(None, ge=0, le=1, description="the share of the original cost a hit is charged")
    scope: Scope | None = None  # org (default) | key


class CacheSettings(Strict):
    """The settings that apply to one call (the section's, with its route's overrides)."""

    enabled: bool = True
    similarity: bool = True
    threshold: float = 0.9
    ttl_s: float = 3600.0
    temperature_any: bool = False
    charge: float = 0.0
    scope: Scope = "org"


class CacheConfig(Strict):
    """The ``cache:`` section."""

    enabled: bool = True  # false: as if the section were absent (no stage in the chain)
    # where entries live: embedded (the config's ``store``, SQLite or PostgreSQL, served from memory) | redis
    # (shared by every replica: ``redis`` names the server) | memory (this process only, lost at exit)
    store: Literal["embedded", "redis", "memory"] = "embedded"
    redis: str | None = None  # redis://host:port/db, for store: redis
    redis_prefix: str = Field("switchyard:cache:", min_length=1, max_length=64)
    redis_timeout: float = Field(0.25, gt=0, description="seconds per Redis lookup; a slow lookup is a miss")
    max_entries: int = Field(10_000, ge=1, le=10_000_000, description="entries kept; the oldest go first")
    max_per_shape: int = Field(256, ge=1, le=100_000, description="similarity candidates per request shape")
    max_entry_bytes: int = Field(256 * 1024, ge=1024, description="a larger answer is not cached")
    # the least logging mode of a key whose calls are cached: a cache keeps answers, so a zero-retention key
    # (logging: none) is never cached; ``full`` caches only keys whose prompts and completions the audit keeps too
    min_logging: Literal["metadata", "full"] = "metadata"
    sync_interval: float = Field(1.0, gt=0, description="embedded: seconds between store writes and reads")
    # the defaults of every route (and of a deployment called by name); a route's ``cache:`` overrides them
    similarity: bool = True
    threshold: float = Field(0.9, gt=0, le=1)  # see docs/cache.md for the replay behind it
    ttl_s: float = Field(3600.0, gt=0)
    temperature_any: bool = False
    charge: float = Field(0.0, ge=0, le=1)
    scope: Scope = "org"

    @field_validator("redis", mode="before")
    @classmethod
    def _empty(cls, v: object) -> object:
        return None if v == "" else v

    @field_validator("redis")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return v

    @model_validator(mode="after")
    def _store_needs(self) -> CacheConfig:
        if self.store == "redis" and self.redis is None:
            raise ValueError("store: redis needs cache.redis (a redis:// URL)")
        return self

    def settings(self, route: CacheRouteConfig | None = None) -> CacheSettings:
        """The settings of a call on a route with these overrides (None: the section's own)."""
        base = {k: getattr(self, k) for k in CacheSettings.model_fields}
        if route is not None:
            base.update({k: getattr(route, k) for k in route.model_fields_set if getattr(route, k) is not None})
        return CacheSettings(**base)
