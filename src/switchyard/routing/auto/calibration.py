"""Keeping a learned router's share of strong calls at a route's target on live traffic.

A route with a learned router (``router``, ``strong``, ``weak``) sends a prompt to the strong deployment when its
score is at least a threshold. The router file's own ``threshold`` was set on the training prompts; the scores of
a route's real traffic are distributed differently, so a fixed threshold drifts away from the share the operator
asked for. A :class:`Calibrator` (one per route) sets the threshold to the ``1 - share`` quantile of the scores it
has seen:

* **cold start**: before ``min_samples`` decisions, the ``1 - share`` quantile of the training scores (the router
  file's ``meta["score_quantiles"]``: 101 quantiles, 0 % to 100 %), else the router file's ``threshold``;
* **then**: the scores of the last ``window`` decisions (a ring buffer); the quantile is estimated again at
  ``min_samples`` decisions and every ``every`` decisions after (``np.partition`` over the window: about 4 µs
  each time). Between two estimates a decision is two stores into the buffers and one comparison (about
  0.3 µs per decision in all, against about 0.2 ms for the router's score of a short prompt);
* **correction**: the estimate aims at ``share + correction * (share - the window's realised share)``, so that
  the decisions taken with the cold threshold, or before a shift in the traffic, are made up for within the
  window (with the default ``correction`` of 1, the share over the first few hundred calls lands near the
  target, not only the share after them).

The target is either a share (``strong_share``) or a cost (``cost_target``: the mean estimated USD per call). A
cost is turned into a share through the two deployments' prices, on the window's requests::

    share = (cost_target - mean weak cost) / (mean strong cost - mean weak cost), clipped to [0, 1]

where a request's cost on a deployment is the strategy's estimate (its prompt tokens at the input price, and
``max_tokens``, or 256 output tokens when unset, at the output price). Before the first estimate, the first
request's own costs stand in for the means. When the strong deployment is not dearer than the weak one the cost
cannot be converted, and the router file's threshold stands (``usable`` is False).

Ties at the threshold all go to the strong deployment, so a router whose scores take few distinct values cannot
always hit the share exactly. The state is per process and restarts with a config reload. The gateway runs the
strategy on its event loop (one thread), so there is no lock.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

WINDOW = 2000  # the decisions the traffic quantile is taken over
EVERY = 50  # decisions between two estimates
MIN_SAMPLES = 50  # decisions before the traffic's quantile replaces the training one
CORRECTION = 1.0  # how much of the window's miss (target - realised share) the next threshold makes up


def quantile_threshold(quantiles: Sequence[float], share: float) -> float:
    """The ``1 - share`` quantile from evenly spaced quantiles (``quantiles[i]`` at ``i / (len - 1)``)."""
    q = np.asarray(quantiles, dtype=np.float64)
    return float(np.interp(1.0 - share, np.linspace(0.0, 1.0, len(q)), q))


def file_quantiles(meta: Any) -> list[float] | None:
    """A router file's ``score_quantiles``, if it has a usable list (at least two finite, non-decreasing
    numbers); else None."""
    q = meta.get("score_quantiles") if isinstance(meta, dict) else None
    if not isinstance(q, list) or len(q) < 2:
        return None
    try:
        vals = [float(x) for x in q]
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(x) for x in vals) or any(b < a for a, b in itertools.pairwise(vals)):
        return None
    return vals


def top_share_threshold(scores: npt.NDArray[np.float64], share: float) -> float:
    """The threshold that sends ``round(share * n)`` of ``scores`` (the highest) to the strong model: the k-th
    highest score (above the highest when k is 0). ``LearnedRouter.calibrate`` uses it too."""
    n = len(scores)
    k = round(share * n)
    if k <= 0:
        return float(np.nextafter(scores.max(), np.inf))
    if k >= n:
        return float(scores.min())
    return float(np.partition(scores, n - k)[n - k])


def cost_share(cost_target: float, weak_cost: float, strong_cost: float) -> float | None:
    """The strong share whose mean cost per call is ``cost_target``; None when the strong call is not dearer."""
    if not strong_cost > weak_cost:
        return None
    return min(max((cost_target - weak_cost) / (strong_cost - weak_cost), 0.0), 1.0)


class Calibrator:
    """One route's threshold, following its traffic toward a strong share or a cost per call."""

    __slots__ = ("_n", "_next", "_picks", "_scores", "_strong", "_strong_calls", "_weak", "correction", "cost_target",
                 "estimates", "every", "fallback", "min_samples", "quantiles", "share", "strong_share", "threshold",
                 "usable", "window")

    def __init__(self, *, fallback: float, strong_share: float | None = None, cost_target: float | None = None,
                 quantiles: Sequence[float] | None = None, window: int = WINDOW, every: int = EVERY,
                 min_samples: int = MIN_SAMPLES, correction: float = CORRECTION) -> None:
        if (strong_share is None) == (cost_target is None):
            raise ValueError("give exactly one of strong_share and cost_target")
        if window < 1 or every < 1 or not 1 <= min_samples <= window:
            raise ValueError("window and every must be positive, and min_samples within the window")
        self.strong_share = strong_share
        self.cost_target = cost_target
        self.fallback = float(fallback)  # the router file's threshold
        self.window, self.every, self.min_samples = window, every, min_samples
        self.quantiles = list(quantiles) if quantiles is not None else None
        self.share: float | None = strong_share  # the target share now (a cost target's moves with the traffic)
        self.usable = True  # False: a cost target that the prices cannot turn into a share
        self.threshold = self.fallback
        self.estimates = 0  # thresholds taken from the traffic so far
        self.correction = correction
        self._scores = np.zeros(window)
        self._picks = np.zeros(window, dtype=np.bool_)  # the window's decisions (True: strong)
        self._strong_calls = 0  # how many of them went to the strong deployment
        self._weak = np.zeros(window) if cost_target is not None else None
        self._strong = np.zeros(window) if cost_target is not None else None
        self._n = 0
        self._next = min_samples
        if strong_share is not None:
            self.threshold = self._cold()

    @classmethod
    def for_router(cls, router: Any, *, strong_share: float | None = None, cost_target: float | None = None,
                   **kw: Any) -> Calibrator:
        """From a loaded router: its file's quantiles and threshold."""
        return cls(fallback=float(router.threshold), strong_share=strong_share, cost_target=cost_target,
                   quantiles=file_quantiles(getattr(router, "meta", None)), **kw)

    @property
    def decisions(self) -> int:
        return self._n

    @property
    def source(self) -> str:
        """Where the threshold comes from now: ``traffic``, ``training`` (the file's quantiles) or ``file``."""
        if not self.usable:
            return "file"
        if self.estimates:
            return "traffic"
        return "training" if self.quantiles is not None else "file"

    def _cold(self) -> float:
        if self.share is None or self.quantiles is None:
            return self.fallback
        return quantile_threshold(self.quantiles, self.share)

    def decide(self, score: float, weak_cost: float = 0.0, strong_cost: float = 0.0) -> bool:
        """Record one decision's score (and, for a cost target, its estimated cost on each deployment) and say
        whether it goes to the strong deployment."""
        i = self._n % self.window
        if self._n >= self.window and self._picks[i]:
            self._strong_calls -= 1
        self._scores[i] = score
        if self._weak is not None and self._strong is not None:
            self._weak[i] = weak_cost
            self._strong[i] = strong_cost
            if self._n == 0 and self.cost_target is not None:  # the first request's costs stand in for the means
                self.share = cost_share(self.cost_target, weak_cost, strong_cost)
                self.usable = self.share is not None
                self.threshold = self._cold()
        strong = score >= self.threshold
        self._picks[i] = strong
        self._strong_calls += strong
        self._n += 1
        if self._n >= self._next:  # for the decisions after this one
            self._next = self._n + self.every
            self.refit()
        return strong

    def refit(self) -> float:
        """Estimate the threshold again from the window (called every ``every`` decisions)."""
        n = min(self._n, self.window)
        if n == 0:
            return self.threshold
        if self.cost_target is not None and self._weak is not None and self._strong is not None:
            self.share = cost_share(self.cost_target, float(self._weak[:n].mean()), float(self._strong[:n].mean()))
            self.usable = self.share is not None
        if self.share is None:
            self.threshold = self.fallback
            return self.threshold
        share = self.share
        if self.correction:
            # the window's decisions missed the target by its realised share's difference from it (a cold start,
            # a shift): aim that much the other way until the window is back on target
            share = min(max(share + self.correction * (share - self._strong_calls / n), 0.0), 1.0)
        self.threshold = top_share_threshold(self._scores[:n], share)
        self.estimates += 1
        return self.threshold

    def realised_share(self) -> float | None:
        """The share of the window's decisions that went to the strong deployment (None before any)."""
        n = min(self._n, self.window)
        return self._strong_calls / n if n else None

    def describe(self) -> str:
        """For the route reason: the target and where the threshold comes from."""
        if not self.usable:
            return f"cost target ${self.cost_target:g}/call: no price gap between strong and weak, file threshold"
        assert self.share is not None
        head = f"target share {self.share:.2f}"
        if self.cost_target is not None:
            head += f" (cost target ${self.cost_target:g}/call)"
        return f"{head}, threshold from {self.source}"
