"""Assigning a call to an experiment's variant: targeting, sticky hashing, fixed weights or Thompson sampling.

* **Targeting.** An experiment applies to requests that name its prompt, from its org, and (when set) from its
  team or a key carrying its tag; then to ``share`` of that audience (by a hash of the sticky key, so a user is in
  or out for good).
* **Sticky.** The sticky key is the caller's ``x-switchyard-session``, else the request's ``user``, else the key's
  user, else the key. Its hash with the experiment's id is a point in [0, 1): with fixed weights the point picks
  the variant (the same on every replica). With the bandit the first pick is remembered (per replica, the most
  recent 100 000), so a user does not flip when the allocation moves.
* **Bandit.** Thompson sampling on the declared metric: each variant's posterior is a Beta over its mean
  (a boolean metric's successes and failures; a numeric metric scaled to [0, 1] by its declared range), and the
  allocation is each variant's probability of being best (Monte Carlo over the posteriors). Until every variant
  has ``min_samples`` values the fixed weights hold.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

STICKY_MEMORY = 100_000
PLACEHOLDER = "prompt"  # a request's model when its managed prompt's version chooses the model


def point(experiment_id: str, key: str, salt: str = "") -> float:
    """A stable point in [0, 1) for (experiment, sticky key)."""
    h = hashlib.blake2b(f"{experiment_id}\x00{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


def pick(names: Sequence[str], weights: Sequence[float], u: float) -> str:
    total = sum(weights)
    acc = 0.0
    for name, w in zip(names, weights, strict=True):
        acc += w / total
        if u < acc:
            return name
    return names[-1]


def thompson(stats: Mapping[str, tuple[float, float]], names: Sequence[str], draws: int = 4000,
             seed: int = 0) -> dict[str, float]:
    """Each variant's probability of having the best mean, from Beta(1 + successes, 1 + failures) posteriors
    (``stats``: name -> (successes, failures), fractional for a scaled numeric metric)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    samples = np.stack([rng.beta(1 + stats.get(n, (0.0, 0.0))[0], 1 + stats.get(n, (0.0, 0.0))[1], draws)
                        for n in names])
    wins = np.bincount(samples.argmax(axis=0), minlength=len(names))
    return {n: float(wins[i]) / draws for i, n in enumerate(names)}


@dataclass
class Running:
    """A running experiment as the request path sees it (from :func:`switchyard.prompts.experiments.running`)."""

    id: str
    org_id: str | None
    prompt: str | None  # the prompt it splits, or (on a model) whose versions its variants render
    spec: dict[str, Any]
    allocation: dict[str, float] | None = None  # the bandit's, once every variant has its minimum sample
    remembered: OrderedDict[str, str] = field(default_factory=OrderedDict)

    @property
    def variants(self) -> list[dict[str, Any]]:
        return list(self.spec["variants"])

    @property
    def model(self) -> str | None:
        """The model name whose requests it splits (an experiment on a model), else None."""
        m = self.spec.get("model")
        return str(m) if m is not None else None

    @property
    def renders(self) -> bool:
        """Whether some variant serves a prompt version."""
        return any(v.get("version") is not None for v in self.spec["variants"])

    def models(self) -> set[str]:
        """Every model a call in it may be sent to (an experiment on a model: its own and its variants')."""
        return {m for m in (self.model, *(v.get("model") for v in self.spec["variants"])) if m}

    def targets(self, org_id: str | None, team_id: str | None, tags: Any) -> bool:
        if self.org_id is not None and self.org_id != org_id:
            return False
        t = self.spec.get("targeting") or {}
        if t.get("team_id") and t["team_id"] != team_id:
            return False
        return not (t.get("tag") and (not tags or t["tag"] not in tags))

    def assign(self, sticky: str) -> dict[str, Any] | None:
        """The variant for this sticky key, or None when it falls outside the traffic share."""
        share = float((self.spec.get("targeting") or {}).get("share", 1.0))
        if share < 1.0 and point(self.id, sticky, "share") >= share:
            return None
        variants = self.variants
        names = [v["name"] for v in variants]
        bandit = self.spec.get("allocation") == "bandit"
        name = self.remembered.get(sticky) if bandit else None
        if name is None:
            weights = ([self.allocation.get(n, 0.0) + 1e-9 for n in names] if self.allocation is not None
                       else [float(v.get("weight", 1.0)) for v in variants])
            name = pick(names, weights, point(self.id, sticky))
        if bandit:  # the allocation moves: remember the first pick, from the fixed phase on
            self.remembered[sticky] = name
            self.remembered.move_to_end(sticky)
            if len(self.remembered) > STICKY_MEMORY:
                self.remembered.popitem(last=False)
        return next(v for v in variants if v["name"] == name)


def bandit_allocation(spec: Mapping[str, Any], values: Mapping[str, list[float]],
                      metric: Mapping[str, Any] | None) -> dict[str, float] | None:
    """The bandit's allocation from each variant's metric values, or None (fixed weights: not a bandit, or some
    variant has fewer than ``min_samples`` values)."""
    if spec.get("allocation") != "bandit" or metric is None:
        return None
    names = [v["name"] for v in spec["variants"]]
    if any(len(values.get(n, ())) < int(spec.get("min_samples", 20)) for n in names):
        return None
    lo, hi = (0.0, 1.0) if metric.get("type") == "boolean" else (float(metric["min"]), float(metric["max"]))
    stats: dict[str, tuple[float, float]] = {}
    for n in names:
        scaled = [(x - lo) / (hi - lo) for x in values.get(n, ())]
        s = sum(scaled)
        stats[n] = (s, len(scaled) - s)
    return thompson(stats, names)


def sticky_key(session: str | None, user: str | None, principal: Any) -> str:
    if session:
        return "s:" + session
    if user:
        return "u:" + user
    if principal is None:
        return "anon"
    return str(("user:" + principal.user_id) if principal.user_id else ("key:" + (principal.key_id or principal.id)))
