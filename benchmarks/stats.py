"""Percentiles and summaries. Values in seconds go in; summaries come out in milliseconds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already-sorted values, interpolated linearly between the closest ranks."""
    if not sorted_values:
        return math.nan
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(slots=True)
class Summary:
    """A latency distribution in milliseconds."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    p999: float
    max: float
    min: float

    def as_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def summarize(seconds: Sequence[float]) -> Summary:
    v = sorted(seconds)
    if not v:
        nan = math.nan
        return Summary(0, nan, nan, nan, nan, nan, nan, nan)
    ms = [x * 1000.0 for x in v]
    return Summary(count=len(ms), mean=sum(ms) / len(ms), p50=percentile(ms, 50), p90=percentile(ms, 90),
                   p99=percentile(ms, 99), p999=percentile(ms, 99.9), max=ms[-1], min=ms[0])


def paired_differences(a: Sequence[float | None], b: Sequence[float | None]) -> list[float]:
    """``b[i] - a[i]`` for every sequence number both runs completed (``None`` marks a failed request)."""
    return [y - x for x, y in zip(a, b, strict=False) if x is not None and y is not None]


def fmt_ms(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"
