"""Load-balancing strategies: each orders a request's candidate deployments, best first.

A strategy instance belongs to one route and may keep state across requests (the weighted strategy's current
weights, a rotation counter). ``order`` works in place on the candidate list the router built for this request, in
O(n log n) of a handful of targets, and returns it; ``describe`` says in a few words why a candidate ranks where it
does (for ``x-switchyard-route-reason`` and ``switchyard route explain``).

* ``weighted``: smooth weighted round robin (the nginx algorithm): over any window each deployment serves its
  share of requests exactly, interleaved, with no randomness. The others follow in the order they would be picked
  next, so failovers spread by weight too.
* ``priority``: the configured order.
* ``least-busy``: fewest requests in flight at this gateway; ties rotate.
* ``lowest-latency``: lowest EWMA of the time to first token (streams) or of the whole reply (non-streamed calls).
  A deployment with no samples yet (new, or just recovered: its stats are reset when its breaker closes) goes
  first, and a share ``exploration`` of requests puts a random candidate first, so none goes unmeasured for long.
* ``lowest-cost``: the estimated price of this request: prompt tokens * input price + expected output tokens *
  output price, the expected output being ``max_tokens`` or, when unset, 256 tokens.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..catalog import Deployment
from .health import Health

EXPECTED_OUTPUT_TOKENS = 256


@dataclass(slots=True, eq=False)
class Entry:
    """One deployment as a target of one route, with its weight there and its health per endpoint."""

    deployment: Deployment
    weight: float
    index: int  # position in the route's targets
    health: dict[str, Health] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.deployment.name


def estimated_cost(d: Deployment, prompt_tokens: int, max_tokens: int | None) -> float:
    out = max_tokens if max_tokens is not None else EXPECTED_OUTPUT_TOKENS
    return prompt_tokens * d.input_price + out * d.output_price


class Strategy:
    name = "priority"
    needs_request = False  # True: the router calls ``rank(plan, cands)`` (it reads the request) instead of ``order``

    def __init__(self, entries: list[Entry], rng: random.Random, exploration: float = 0.0) -> None:
        self.entries = entries
        self.rng = rng
        self.exploration = exploration

    def order(self, cands: list[Entry], endpoint: str, stream: bool, prompt_tokens: int,
              max_tokens: int | None) -> list[Entry]:
        return cands

    def describe(self, e: Entry, endpoint: str, stream: bool, prompt_tokens: int, max_tokens: int | None) -> str:
        return f"position {e.index + 1}"


class Priority(Strategy):
    name = "priority"


class Cascade(Strategy):
    """The steps in their configured order, cheap first (the pipeline runs them: ``routing/auto/cascade.py``)."""

    name = "cascade"

    def describe(self, e: Entry, endpoint: str, stream: bool, prompt_tokens: int, max_tokens: int | None) -> str:
        return f"step {e.index + 1}"


class Weighted(Strategy):
    name = "weighted"

    def __init__(self, entries: list[Entry], rng: random.Random, exploration: float = 0.0) -> None:
        super().__init__(entries, rng, exploration)
        self._current = [0.0] * len(entries)

    def order(self, cands: list[Entry], endpoint: str, stream: bool, prompt_tokens: int,
              max_tokens: int | None) -> list[Entry]:
        if len(cands) < 2:
            return cands
        cur = self._current
        total = 0.0
        best = cands[0]
        for e in cands:
            cur[e.index] += e.weight
            total += e.weight
            if cur[e.index] > cur[best.index]:
                best = e
        cur[best.index] -= total
        cands.sort(key=lambda e: -cur[e.index])  # the rest in the order they would be picked next
        if cands[0] is not best:
            cands.remove(best)
            cands.insert(0, best)
        return cands

    def describe(self, e: Entry, endpoint: str, stream: bool, prompt_tokens: int, max_tokens: int | None) -> str:
        total = sum(x.weight for x in self.entries)
        return f"weight {e.weight:g} ({e.weight / total:.0%})"


class LeastBusy(Strategy):
    name = "least-busy"

    def __init__(self, entries: list[Entry], rng: random.Random, exploration: float = 0.0) -> None:
        super().__init__(entries, rng, exploration)
        self._turn = 0

    def order(self, cands: list[Entry], endpoint: str, stream: bool, prompt_tokens: int,
              max_tokens: int | None) -> list[Entry]:
        n = len(cands)
        if n < 2:
            return cands
        self._turn += 1
        k = self._turn % n
        if k:
            cands[:] = cands[k:] + cands[:k]  # ties rotate
        cands.sort(key=lambda e: e.health[endpoint].in_flight)
        return cands

    def describe(self, e: Entry, endpoint: str, stream: bool, prompt_tokens: int, max_tokens: int | None) -> str:
        return f"{e.health[endpoint].in_flight} in flight"


class LowestLatency(Strategy):
    name = "lowest-latency"

    def order(self, cands: list[Entry], endpoint: str, stream: bool, prompt_tokens: int,
              max_tokens: int | None) -> list[Entry]:
        if len(cands) < 2:
            return cands
        rng = self.rng

        def key(e: Entry) -> float:
            h = e.health[endpoint]
            v = (h.ttft if stream else h.latency).ewma
            return -rng.random() if v is None else v  # unmeasured first, in random order

        cands.sort(key=key)
        if self.exploration and rng.random() < self.exploration:
            i = rng.randrange(1, len(cands))
            cands.insert(0, cands.pop(i))
        return cands

    def describe(self, e: Entry, endpoint: str, stream: bool, prompt_tokens: int, max_tokens: int | None) -> str:
        h = e.health[endpoint]
        stat = h.ttft if stream else h.latency
        what = "ttft" if stream else "latency"
        return f"{what} unmeasured" if stat.ewma is None else f"{what} ewma {stat.ewma * 1000:.0f}ms"


class LowestCost(Strategy):
    name = "lowest-cost"

    def order(self, cands: list[Entry], endpoint: str, stream: bool, prompt_tokens: int,
              max_tokens: int | None) -> list[Entry]:
        if len(cands) > 1:
            cands.sort(key=lambda e: estimated_cost(e.deployment, prompt_tokens, max_tokens))
        return cands

    def describe(self, e: Entry, endpoint: str, stream: bool, prompt_tokens: int, max_tokens: int | None) -> str:
        return f"est. ${estimated_cost(e.deployment, prompt_tokens, max_tokens):.6f}"


STRATEGIES: dict[str, type[Strategy]] = {
    "weighted": Weighted,
    "priority": Priority,
    "least-busy": LeastBusy,
    "lowest-latency": LowestLatency,
    "lowest-cost": LowestCost,
    "cascade": Cascade,
}


def make_strategy(name: str, entries: list[Entry], rng: random.Random, exploration: float) -> Strategy:
    return STRATEGIES[name](entries, rng, exploration)
