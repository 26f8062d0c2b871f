"""The ``auto`` strategy: order a request's candidates by predicted quality for its task against cost and latency.

For each fit candidate (the router has already dropped those that lack a capability or a large enough context
window): the predicted quality is the deployment's tier for the task type (its config ``quality``, else its
catalog card's, else 3), turned into the chance that it is good enough for a task of this difficulty
(``success = 1 / (1 + exp(-2 (tier - need)))``, ``need = 1.5 + 3.5 difficulty``). Then::

    score = success - cost_weight * log10(cost / cheapest cost) - latency_weight * log2(latency / fastest)

so a tenfold price costs ``cost_weight`` of success and a doubled latency ``latency_weight``. The objectives are
weight presets (``OBJECTIVES``); ``weights`` in the config override them, and ``quality_floor`` puts candidates
whose tier for the task is below it after the others. With a learned router (``router``, ``strong``, ``weak``),
its score picks between the strong and the weak deployment, which then goes first; ``strong_share`` or
``cost_target`` set its threshold from the route's traffic (:mod:`.calibration`), else the router file's stands.
The rest of the order is the failover order, as with every strategy.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...config.routing import AutoConfig, RouteConfig
from ..strategies import Entry, Strategy, estimated_cost
from .calibration import Calibrator
from .embedder import default_embedder
from .models import DEFAULT_TIER
from .profile import Profiler, TaskProfile, default_profiler, request_text

if TYPE_CHECKING:
    from ..router import Plan

log = logging.getLogger("switchyard.routing")

# objective: (cost weight, latency weight)
OBJECTIVES: dict[str, tuple[float, float]] = {"cheapest": (1.0, 0.05), "balanced": (0.25, 0.05),
                                              "best": (0.02, 0.01)}
def tier_of(e: Entry, task: str) -> float:
    d = e.deployment
    if d.quality is not None:
        return float(d.quality.get(task, DEFAULT_TIER))
    card = d.card
    return float(card.tier(task)) if card is not None else float(DEFAULT_TIER)


@dataclass(slots=True)
class Scored:
    name: str
    quality: float  # the tier for the task
    success: float  # predicted chance that it is good enough
    cost: float  # estimated USD
    latency: float | None  # observed EWMA seconds (None: unmeasured)
    score: float
    below_floor: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"deployment": self.name, "quality": self.quality, "success": round(self.success, 3),
                "cost": self.cost, "latency_ms": None if self.latency is None else round(self.latency * 1000, 1),
                "score": round(self.score, 4), "below_floor": self.below_floor}


@dataclass(slots=True)
class Decision:
    """What ``auto`` decided for one request: the profile, the objective, each candidate's scores, the winner."""

    profile: TaskProfile
    objective: str
    weights: tuple[float, float]
    scored: list[Scored] = field(default_factory=list)
    chosen: str | None = None
    why: str = ""
    router_score: float | None = None
    router_threshold: float | None = None
    strong_share: float | None = None  # the target share the threshold follows (strong_share or cost_target)

    def summary(self) -> str:
        p = self.profile
        return (f"task {p.task} (difficulty {p.difficulty:.2f}), objective {self.objective}; "
                f"chose {self.chosen} ({self.why})")

    def record(self) -> dict[str, Any]:
        """For the call record (``decisions["route"]``): no prompt text."""
        p = self.profile
        out: dict[str, Any] = {"strategy": "auto", "task": p.task, "difficulty": round(p.difficulty, 3),
                               "objective": self.objective, "chosen": self.chosen,
                               "scores": {s.name: round(s.score, 4) for s in self.scored}}
        if self.router_score is not None:
            out["router_score"] = round(self.router_score, 4)
        if self.router_threshold is not None:
            out["router_threshold"] = round(self.router_threshold, 4)
        if self.strong_share is not None:
            out["strong_share"] = round(self.strong_share, 4)
        return out


class Auto(Strategy):
    name = "auto"
    needs_request = True

    def __init__(self, entries: list[Entry], rng: random.Random, exploration: float = 0.0,
                 route: RouteConfig | None = None, defaults: AutoConfig | None = None,
                 profiler: Profiler | None = None) -> None:
        super().__init__(entries, rng, exploration)
        base = defaults or AutoConfig()
        self.objective = (route.objective if route is not None and route.objective else base.objective)
        self.floor = route.quality_floor if route is not None and route.quality_floor is not None else (
            base.quality_floor)
        w = route.weights if route is not None and route.weights is not None else base.weights
        self.cost_weight = w.cost if w is not None else None
        self.latency_weight = w.latency if w is not None else None
        self.profiler = profiler or default_profiler()
        self.router_path = route.router if route is not None else None
        self.strong = route.strong if route is not None else None
        self.weak = route.weak if route is not None else None
        self.strong_share = route.strong_share if route is not None else None
        self.cost_target = route.cost_target if route is not None else None
        self.calibrator: Calibrator | None = None  # built with the router, when a target is set
        deps = {e.name: e.deployment for e in entries}
        self._strong_dep = deps.get(self.strong) if self.strong is not None else None
        self._weak_dep = deps.get(self.weak) if self.weak is not None else None
        sd, wd = self._strong_dep, self._weak_dep
        if self.cost_target is not None and sd is not None and wd is not None and (
                sd.input_price <= wd.input_price and sd.output_price <= wd.output_price):
            log.warning("cost_target of a route: %s is not dearer than %s; the router file's threshold stands",
                        sd.name, wd.name)
        self._learned: Any = None
        self._warned = False

    def learned(self) -> Any:
        """The learned router (``routing.auto.learned``), loaded on first use."""
        if self._learned is None and self.router_path is not None:
            from . import learned  # type: ignore[attr-defined,unused-ignore]

            r = learned.LearnedRouter.load(self.router_path)
            if self.strong_share is not None or self.cost_target is not None:
                self.calibrator = Calibrator.for_router(r, strong_share=self.strong_share,
                                                        cost_target=self.cost_target)
            self._learned = r
        return self._learned

    def weights(self, objective: str, caller: bool) -> tuple[float, float]:
        wc, wl = OBJECTIVES[objective]
        if not caller:  # the config's weights apply unless the caller picked an objective
            wc = self.cost_weight if self.cost_weight is not None else wc
            wl = self.latency_weight if self.latency_weight is not None else wl
        return wc, wl

    def rank(self, plan: Plan, cands: list[Entry]) -> list[Entry]:
        req = plan.request
        if req is None:  # nothing to profile (route explain without a prompt): cheapest first
            cands.sort(key=lambda e: estimated_cost(e.deployment, plan.prompt_tokens, plan.max_tokens))
            return cands
        prof = self.profiler.profile(req, plan.prompt_tokens)
        objective = plan.objective or self.objective
        wc, wl = self.weights(objective, plan.objective is not None)
        dec = Decision(prof, objective, (wc, wl))
        need = 1.5 + 3.5 * prof.difficulty
        costs = [estimated_cost(e.deployment, plan.prompt_tokens, plan.max_tokens) for e in cands]
        positive = [c for c in costs if c > 0]
        cmin = min(positive) if positive else 0.0
        lats: list[float | None] = []
        for e in cands:
            h = e.health[plan.endpoint]
            lats.append((h.ttft if plan.stream else h.latency).ewma)
        measured = [x for x in lats if x]
        lmin = min(measured) if measured else 0.0
        by_entry: dict[int, Scored] = {}
        for e, c, lat in zip(cands, costs, lats, strict=True):
            q = tier_of(e, prof.task)
            success = 1.0 / (1.0 + math.exp(-2.0 * (q - need)))
            score = success
            if cmin > 0 and c > 0:
                score -= wc * math.log10(c / cmin)
            if lat and lmin > 0:
                score -= wl * math.log2(lat / lmin)
            s = Scored(e.name, q, success, c, lat, score, self.floor is not None and q < self.floor)
            dec.scored.append(s)
            by_entry[id(e)] = s
        cands.sort(key=lambda e: (by_entry[id(e)].below_floor, -by_entry[id(e)].score))
        top = by_entry[id(cands[0])]
        dec.why = f"score {top.score:.3f}: quality {top.quality:g} for {prof.task}, est. ${top.cost:.6f}"
        if len(cands) > 1:
            nxt = by_entry[id(cands[1])]
            dec.why += f"; next {nxt.name} {nxt.score:.3f}"
        if self.router_path is not None:
            self._route_learned(dec, req, cands, plan)
        dec.chosen = cands[0].name
        plan.decision = dec
        return cands

    def _route_learned(self, dec: Decision, req: Any, cands: list[Entry], plan: Plan) -> None:
        try:
            r = self.learned()
            # what the profile embedded: its vector is reused when the embedder is the same
            text = dec.profile.text if dec.profile.text is not None else request_text(req)
            vec = dec.profile.vector
            if vec is not None and (r.embedder or default_embedder()) is self.profiler.embedder:
                p = float(r.score_vectors(vec, [text])[0])
            else:
                p = float(r.score([text])[0])
        except Exception as e:  # a missing or broken router file: the catalog's order stands
            if not self._warned:
                self._warned = True
                log.warning("learned router %s unavailable: %s", self.router_path, e)
            dec.why += "; learned router unavailable"
            return
        cal = self.calibrator
        if cal is not None:
            wc = sc = 0.0
            if cal.cost_target is not None and self._weak_dep is not None and self._strong_dep is not None:
                wc = estimated_cost(self._weak_dep, plan.prompt_tokens, plan.max_tokens)
                sc = estimated_cost(self._strong_dep, plan.prompt_tokens, plan.max_tokens)
            strong = cal.decide(p, wc, sc)
            threshold = cal.threshold
            dec.strong_share = cal.share
        else:
            threshold = float(r.threshold)
            strong = p >= threshold
        dec.router_score = p
        dec.router_threshold = threshold
        pick = self.strong if strong else self.weak
        for i, entry in enumerate(cands):
            if entry.name == pick:
                cands.insert(0, cands.pop(i))
                dec.why = (f"learned router score {p:.3f} {'>=' if strong else '<'} threshold "
                           f"{threshold:.3f}: {'strong' if strong else 'weak'}")
                if cal is not None:
                    dec.why += f" ({cal.describe()})"
                break

    def describe(self, e: Entry, endpoint: str, stream: bool, prompt_tokens: int, max_tokens: int | None) -> str:
        return f"est. ${estimated_cost(e.deployment, prompt_tokens, max_tokens):.6f}"
