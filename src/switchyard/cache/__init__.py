"""The semantic cache (docs/cache.md): exact and similar answers per org (or per key), from memory, SQLite or
PostgreSQL (``embedded``), or Redis.

* :mod:`.keys`: what makes two requests the same (the shape, the question, the scope)
* :mod:`.codec`: an answer's stored bytes, its replay as a stream, a stream's assembly
* :mod:`.index`: the entries in memory, with a vector index per scope and shape
* :mod:`.memory`, :mod:`.embedded`, :mod:`.redis_store`: the stores
* :mod:`.stage`: the ``Cache`` stage; :mod:`.metrics`: its Prometheus counters
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .stage import Cache

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..config import Config
    from .memory import CacheStore

__all__ = ["Cache", "build_cache"]


def build_cache(config: Config, registry: CollectorRegistry | None = None) -> Cache:
    """The cache stage of ``config`` (which has a ``cache:`` section) and its store; ``registry``: the gateway's
    metrics registry (None: metrics are off)."""
    from ..routing.auto.embedder import default_embedder
    from .metrics import CacheMetrics

    section = config.cache
    assert section is not None
    metrics = CacheMetrics(registry) if registry is not None else None
    store: CacheStore
    if section.store == "redis":
        from .redis_store import RedisStore

        assert section.redis is not None
        on_error: Any = (lambda: metrics.lookup("", "error")) if metrics is not None else None
        store = RedisStore(section.redis, section.redis_prefix, section.max_entries, section.max_per_shape,
                           section.redis_timeout, on_error=on_error)
    elif section.store == "embedded":
        from .embedded import EmbeddedStore

        store = EmbeddedStore(config.store, section.max_entries, section.max_per_shape, section.sync_interval)
    else:
        from .memory import MemoryStore

        store = MemoryStore(section.max_entries, section.max_per_shape)
    embedder = default_embedder()  # loaded now (about 0.2 s), not by the first call that needs it
    return Cache(config, store, lambda: embedder, metrics)
