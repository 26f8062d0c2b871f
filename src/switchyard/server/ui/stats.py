"""The overview's numbers: rates and latency quantiles, from the gateway's Prometheus metrics and from the request
log.

The metrics (``switchyard_requests``, ``switchyard_request_duration_seconds``) count every tenant's calls since the
process started, so only a super admin sees them. Requests per second and the quantiles are taken between two
samples (the overview refreshes every few seconds and keeps the last one), as Prometheus' ``rate`` and
``histogram_quantile`` would; the quantile is interpolated within its bucket.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # time.monotonic()
    requests: float
    client_errors: float  # 4xx
    server_errors: float  # 5xx
    buckets: tuple[tuple[float, float], ...]  # (upper bound in seconds, cumulative count), +Inf last


def sample(metrics: Any, clock: Any = time.monotonic) -> Sample:
    """This process's counts (in multiprocess mode: every worker's), from ``telemetry.metrics.Metrics``."""
    if metrics.multiproc is None:
        reg = metrics.registry
    else:
        reg = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(reg, path=metrics.multiproc)  # type: ignore[no-untyped-call]
    requests = client = server = 0.0
    buckets: dict[float, float] = {}
    for family in reg.collect():
        if family.name == "switchyard_requests":
            for s in family.samples:
                if s.name.endswith("_total"):
                    requests += s.value
                    status = s.labels.get("status", "")
                    client += s.value if status.startswith("4") else 0.0
                    server += s.value if status.startswith("5") else 0.0
        elif family.name == "switchyard_request_duration_seconds":
            for s in family.samples:
                if s.name.endswith("_bucket"):
                    le = float(s.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + s.value
    return Sample(clock(), requests, client, server, tuple(sorted(buckets.items())))


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q`` quantile (seconds) of cumulative buckets, interpolated linearly in its bucket; None without
    observations. A quantile in the +Inf bucket is the largest finite bound."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def between(prev: Sample | None, cur: Sample) -> dict[str, float | None]:
    """Rates since ``prev`` (None: since the process started, quantiles over everything)."""
    if prev is None or cur.at <= prev.at or cur.requests < prev.requests:
        window = None
        d_req, d_4, d_5, d_buckets = cur.requests, cur.client_errors, cur.server_errors, list(cur.buckets)
    else:
        window = cur.at - prev.at
        before = dict(prev.buckets)
        d_req, d_4 = cur.requests - prev.requests, cur.client_errors - prev.client_errors
        d_5 = cur.server_errors - prev.server_errors
        d_buckets = [(le, c - before.get(le, 0.0)) for le, c in cur.buckets]
        if not d_buckets or d_buckets[-1][1] <= 0:  # nothing new: the quantiles of everything so far
            d_buckets = list(cur.buckets)
    p50, p99 = histogram_quantile(0.5, d_buckets), histogram_quantile(0.99, d_buckets)
    return {"window_s": window, "requests": d_req, "rps": d_req / window if window else None,
            "client_errors": d_4, "server_errors": d_5, "total": cur.requests,
            "p50_ms": p50 * 1000 if p50 is not None else None, "p99_ms": p99 * 1000 if p99 is not None else None}


def quantile(sorted_values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile of sorted values (None when there are none)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]

