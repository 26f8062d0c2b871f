"""The cache's Prometheus metrics, registered on the gateway's registry only when a cache is configured (and
metrics are on). Labels come from the configuration: the route or deployment name (empty for a name the catalog
does not know), never from a request's text."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class CacheMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lookups = Counter("switchyard_cache_lookups", "Cache lookups by result: hit (exact), similar, miss, "
                               "error (the store did not answer in time: served as a miss)", ["route", "result"],
                               registry=registry)
        self.stores = Counter("switchyard_cache_stores", "Answers stored in the cache", ["route"], registry=registry)
        self.saved_usd = Counter("switchyard_cache_saved_usd", "What cache hits saved: the original answers' cost "
                                 "less what the hits were charged (USD)", ["route"], registry=registry)
        self.saved_seconds = Counter("switchyard_cache_saved_seconds", "The original answers' latency that cache "
                                     "hits did not wait for (seconds)", ["route"], registry=registry)

    def lookup(self, route: str, result: str) -> None:
        self.lookups.labels(route, result).inc()

    def hit(self, route: str, saved_usd: float, saved_s: float) -> None:
        if saved_usd > 0:
            self.saved_usd.labels(route).inc(saved_usd)
        if saved_s > 0:
            self.saved_seconds.labels(route).inc(saved_s)

    def stored(self, route: str) -> None:
        self.stores.labels(route).inc()
