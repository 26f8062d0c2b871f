"""How well a router splits calls between a weak and a strong model: RouteLLM's metrics, computed exactly.

A router gives each prompt a score (higher: the strong model is more needed). At a **strong-call share** ``c`` in
[0, 1], the ``c·n`` prompts with the highest scores go to the strong model and the rest to the weak one; prompts
with equal scores are split at random, so a tie contributes its group's mean (an exact expectation, not a draw).

* **quality(c)**: the mean outcome of the model each prompt was sent to.
* **PGR(c)** (performance gap recovered) = (quality(c) - quality of the weak model alone) / (quality of the strong
  model alone - quality of the weak model alone): 0 with every call on the weak model, 1 with every call on the
  strong one (a good router passes 1 before ``c`` = 1: it keeps the prompts the weak model gets right).
* **APGR**: the area under PGR(c) for ``c`` from 0 to 1 (the curve is piecewise linear between ``c = k/n``, and its
  trapezoid is exact). A random router scores 0.5.
* **CPT(x%)** (call-performance threshold): the smallest strong-call share at which PGR reaches ``x``%
  (interpolated between ``k/n`` points): the cost of getting ``x``% of the gap.

The cost-quality curve is quality(c) against c: calls to the strong model are the cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Curve:
    share: Floats  # strong-call share, 0, 1/n, ..., 1
    quality: Floats  # mean outcome at each share
    pgr: Floats  # performance gap recovered at each share


def curve(scores: npt.ArrayLike, weak: Floats, strong: Floats) -> Curve:
    """Quality and PGR at every strong-call share ``k/n`` (ties in ``scores`` count at their mean)."""
    sc = np.asarray(scores, dtype=np.float64)
    n = len(sc)
    if n == 0 or len(weak) != n or len(strong) != n:
        raise ValueError("scores, weak and strong outcomes must be non-empty and of the same length")
    order = np.argsort(-sc, kind="stable")
    ranked = sc[order]
    gain = (strong - weak)[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    counts = np.diff(np.r_[starts, n])
    spread = np.repeat(np.add.reduceat(gain, starts) / counts, counts)
    quality = (float(weak.sum()) + np.r_[0.0, np.cumsum(spread)]) / n
    qw, qs = float(weak.mean()), float(strong.mean())
    gap = qs - qw
    pgr = (quality - qw) / gap if gap != 0 else np.full(n + 1, np.nan)
    return Curve(np.linspace(0.0, 1.0, n + 1), quality, pgr)


def apgr(c: Curve) -> float:
    """The area under PGR against the strong-call share."""
    return float(np.trapezoid(c.pgr, c.share))


def cpt(c: Curve, target: float) -> float:
    """The smallest strong-call share at which PGR reaches ``target`` (a fraction: 0.5 for CPT(50%))."""
    above = np.flatnonzero(c.pgr >= target)
    if len(above) == 0:
        return float("nan")
    i = int(above[0])
    if i == 0:
        return 0.0
    p0, p1 = c.pgr[i - 1], c.pgr[i]
    x0, x1 = c.share[i - 1], c.share[i]
    return float(x0 + (target - p0) / (p1 - p0) * (x1 - x0)) if p1 != p0 else float(x1)


def summary(scores: npt.ArrayLike, weak: Floats, strong: Floats) -> dict[str, float]:
    c = curve(scores, weak, strong)
    return {"apgr": apgr(c), "cpt50": cpt(c, 0.5), "cpt80": cpt(c, 0.8)}


Metric = Callable[[Floats, Floats, Floats], dict[str, float]]


def bootstrap(scores: Floats, weak: Floats, strong: Floats, *, rounds: int = 200, seed: int = 0,
              level: float = 0.95) -> dict[str, tuple[float, float, float]]:
    """Each metric of :func:`summary` with a percentile bootstrap interval over prompts: (value, low, high). The
    scores are held fixed (the router is not retrained per round)."""
    point = summary(scores, weak, strong)
    rng = np.random.default_rng(seed)
    n = len(scores)
    draws: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(rounds):
        idx = rng.integers(0, n, n)
        w, s = weak[idx], strong[idx]
        if s.mean() == w.mean():
            continue
        for k, v in summary(scores[idx], w, s).items():
            draws[k].append(v)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out: dict[str, tuple[float, float, float]] = {}
    for k, v in point.items():
        d = np.asarray([x for x in draws[k] if not np.isnan(x)])
        out[k] = (v, float(np.percentile(d, lo)), float(np.percentile(d, hi))) if len(d) else (v, v, v)
    return out
