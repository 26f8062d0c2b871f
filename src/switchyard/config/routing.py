"""Routing sections of the config: routes (a public name over several deployments) and the top-level ``routing``
defaults that apply to every route and to calls that name a deployment directly.

Every policy section of a route (``retries``, ``timeouts``, ``hedge``, ``breaker``) is merged key by key over the
``routing`` section's: a route that sets ``retries: {max: 3}`` keeps every other retry default. Breakers belong to
deployments, not routes (one deployment has one state however many routes list it), so a route's ``breaker``
section configures the breakers of the deployments it lists, and two routes may not configure one deployment's
breaker differently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal, TypeVar

from pydantic import BaseModel, Field, field_validator, model_validator

from .base import Strict as _Strict
from .cache import CacheRouteConfig

Strategy = Literal["weighted", "priority", "least-busy", "lowest-latency", "lowest-cost", "auto", "cascade"]
STRATEGIES: tuple[str, ...] = ("weighted", "priority", "least-busy", "lowest-latency", "lowest-cost", "auto",
                               "cascade")
Objective = Literal["cheapest", "balanced", "best"]
OBJECTIVES: tuple[str, ...] = ("cheapest", "balanced", "best")


class RetryConfig(_Strict):
    """Retries of deployments already tried in this request. Moving on to an untried one is not a retry."""

    max: int = Field(0, ge=0, le=10, description="retries per request, after every candidate was tried once")
    backoff_base_ms: float = Field(100.0, ge=0, description="first backoff ceiling; doubles per retry")
    backoff_max_ms: float = Field(2000.0, ge=0, description="the largest backoff ceiling")
    retry_after_cap_s: float = Field(10.0, ge=0, description="the longest Retry-After a request waits for")
    budget_ratio: float = Field(0.2, ge=0, le=10, description="retry tokens each request earns")
    budget_min_per_s: float = Field(1.0, ge=0, description="retry tokens earned per second regardless of traffic")
    budget_burst: float = Field(10.0, ge=0, description="the most tokens the budget holds (and starts with)")


class TimeoutConfig(_Strict):
    """Per-attempt and per-request limits. Connecting is bounded by the provider's ``connect_timeout``."""

    ttft_s: float | None = Field(None, gt=0, description="per attempt: first chunk (streams) or whole reply")
    idle_s: float | None = Field(None, gt=0, description="the longest gap between two chunks of a stream")
    total_s: float | None = Field(None, gt=0, description="the whole request, all attempts and the stream included")


class HedgeConfig(_Strict):
    enabled: bool = True  # a route may turn off hedging that the routing section enables
    after_percentile: float = Field(95.0, gt=0, lt=100, description="hedge once this percentile of TTFT passed")
    max_extra: int = Field(1, ge=1, le=3, description="hedged attempts per request")
    min_delay_ms: float = Field(50.0, ge=0, description="never hedge sooner than this")
    min_samples: int = Field(20, ge=1, description="latency samples needed before hedging a deployment")


class BreakerConfig(_Strict):
    enabled: bool = True
    consecutive_failures: int = Field(5, ge=1, description="open after this many failures in a row")
    failure_rate: float = Field(0.5, gt=0, le=1, description="open when failures / outcomes reach this")
    window_s: float = Field(30.0, gt=0, description="the window the failure rate is measured over")
    min_requests: int = Field(10, ge=1, description="outcomes needed in the window before the rate counts")
    cooldown_s: float = Field(15.0, gt=0, description="how long an opened breaker stays open")
    cooldown_max_s: float = Field(120.0, gt=0, description="cooldown doubles after each failed probe, to this")
    throttle_s: float = Field(1.0, ge=0, description="rest after a 429 without Retry-After")
    throttle_max_s: float = Field(60.0, ge=0, description="the longest rest a 429's Retry-After can ask for")


class RouteTarget(_Strict):
    deployment: str = Field(min_length=1)
    weight: float | None = Field(None, gt=0, description="overrides the deployment's weight in this route")


class AutoWeights(_Strict):
    """How much cost and latency weigh against predicted quality (``auto``); unset: the objective's."""

    cost: float | None = Field(None, ge=0, le=100, description="per tenfold of estimated cost")
    latency: float | None = Field(None, ge=0, le=100, description="per doubling of observed latency")


class AutoConfig(_Strict):
    """The ``auto`` strategy's objective: for ``model: "auto"`` (``routing.auto``) and routes with
    ``strategy: auto`` (their own keys win)."""

    objective: Objective = "balanced"
    quality_floor: float | None = Field(None, ge=1, le=5, description="the lowest catalog tier for the task type")
    weights: AutoWeights | None = None


class CheckConfig(_Strict):
    """A cascade step's check: keep its answer, or escalate to the next step."""

    type: Literal["json_schema", "verifier", "logprobs", "router"]
    json_schema: dict[str, object] | None = Field(None, alias="schema", description="json_schema: the schema "
                                                 "(default: the request's response_format schema)")
    verifier: str | None = Field(None, description="verifier: the deployment that judges the answer")
    rubric: str | None = Field(None, description="verifier: what a good answer does")
    threshold: float | None = Field(None, description="logprobs: the lowest mean token logprob (default -0.5); "
                                                      "router: the highest score to keep (default the router's)")
    router: str | None = Field(None, description="router: a trained router file (default the route's)")

    @model_validator(mode="after")
    def _complete(self) -> CheckConfig:
        if self.type == "verifier" and not self.verifier:
            raise ValueError("a verifier check needs `verifier` (a deployment)")
        return self


class CascadeStep(_Strict):
    deployment: str = Field(min_length=1)
    check: CheckConfig | None = None  # the route's ``check`` when unset; the last step is never checked


class RoutingConfig(_Strict):
    """The top-level ``routing`` section: defaults for every route and for direct deployment calls."""

    strategy: Strategy = "weighted"
    exploration: float = Field(0.05, ge=0, le=1, description="lowest-latency: share of requests sent elsewhere")
    retries: RetryConfig = Field(default_factory=lambda: RetryConfig())
    timeouts: TimeoutConfig = Field(default_factory=lambda: TimeoutConfig())
    hedge: HedgeConfig | None = None
    breaker: BreakerConfig = Field(default_factory=lambda: BreakerConfig())
    auto: AutoConfig | None = None  # ``model: "auto"``: its objective (balanced when unset)

    @field_validator("strategy")
    @classmethod
    def _not_cascade(cls, v: str) -> str:
        if v == "cascade":
            raise ValueError("cascade is a route's strategy (with its steps and check), not a default")
        return v


class RouteConfig(_Strict):
    targets: list[RouteTarget] = Field(min_length=1)
    strategy: Strategy | None = None  # the routing section's (weighted) when unset
    exploration: float | None = Field(None, ge=0, le=1)
    fallbacks: list[str] = Field(default_factory=list, description="routes or deployments tried after any failure")
    context_window_fallbacks: list[str] = Field(default_factory=list)
    content_policy_fallbacks: list[str] = Field(default_factory=list)
    retries: RetryConfig | None = None
    timeouts: TimeoutConfig | None = None
    hedge: HedgeConfig | None = None
    breaker: BreakerConfig | None = None
    cache: CacheRouteConfig | None = None  # overrides of the cache section for this route (docs/cache.md)
    # strategy auto
    objective: Objective | None = None
    quality_floor: float | None = Field(None, ge=1, le=5)
    weights: AutoWeights | None = None
    router: str | None = Field(None, description="a trained router file (switchyard router train)")
    strong: str | None = Field(None, description="router: the deployment for prompts that need the strong model")
    weak: str | None = Field(None, description="router: the deployment for the others")
    strong_share: float | None = Field(None, gt=0, lt=1, description="router: the target share of strong calls")
    cost_target: float | None = Field(None, gt=0, description="router: the target mean estimated USD per call")
    # strategy cascade
    steps: list[CascadeStep] | None = None
    check: CheckConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _steps_are_targets(cls, v: object) -> object:
        if isinstance(v, dict) and v.get("steps") and "targets" not in v:
            v = {**v, "targets": [s["deployment"] if isinstance(s, dict) else s for s in v["steps"]]}
            v["steps"] = [{"deployment": s} if isinstance(s, str) else s for s in v["steps"]]
        return v

    @field_validator("targets", mode="before")
    @classmethod
    def _names_are_targets(cls, v: object) -> object:
        if isinstance(v, list):
            return [{"deployment": t} if isinstance(t, str) else t for t in v]
        return v

    @model_validator(mode="after")
    def _strategy_keys(self) -> RouteConfig:
        if self.steps is not None and self.strategy != "cascade":
            raise ValueError("steps: only a route with strategy: cascade has steps")
        if self.strategy == "cascade":
            if len(self.targets) < 2:
                raise ValueError("a cascade needs at least two steps (targets), cheap first")
            if self.steps is not None and [s.deployment for s in self.steps] != self.target_names:
                raise ValueError("steps and targets must name the same deployments in the same order")
            checked = [s.check for s in self.steps or []]
            if self.check is None and not any(checked):
                raise ValueError("a cascade needs a check (route `check`, or a step's)")
        learned = (self.router, self.strong, self.weak)
        if any(x is not None for x in learned) and not all(x is not None for x in learned):
            raise ValueError("router, strong and weak go together")
        if self.strong_share is not None and self.cost_target is not None:
            raise ValueError("strong_share and cost_target: set one (a cost target sets the share from the prices)")
        for key in ("strong_share", "cost_target"):
            if getattr(self, key) is not None and self.router is None:
                raise ValueError(f"{key}: only a route with a learned router (router, strong, weak) has one")
            if getattr(self, key) is not None and self.strategy == "cascade":
                raise ValueError(f"{key}: a cascade's router check uses its own threshold; {key} is for auto")
        for key in ("strong", "weak"):
            name = getattr(self, key)
            if name is not None and name not in self.target_names:
                raise ValueError(f"{key}: {name!r} is not one of the route's targets")
        return self

    def cascade_steps(self) -> list[CascadeStep]:
        """Each step with its effective check (the last step has none)."""
        steps = self.steps or [CascadeStep(deployment=n) for n in self.target_names]
        out = [s if s.check is not None else CascadeStep(deployment=s.deployment, check=self.check) for s in steps]
        out[-1] = CascadeStep(deployment=out[-1].deployment)
        return out

    @model_validator(mode="after")
    def _unique_targets(self) -> RouteConfig:
        names = [t.deployment for t in self.targets]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise ValueError(f"targets[{i}]: {n!r} is listed twice")
        return self

    @property
    def target_names(self) -> list[str]:
        return [t.deployment for t in self.targets]


M = TypeVar("M", bound=BaseModel)


def merged(base: M, override: M | None) -> M:
    """``base`` with the keys that ``override`` set explicitly."""
    if override is None:
        return base
    return base.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})


def route_problems(routes: Mapping[str, RouteConfig], deployments: Iterable[str], defaults: RoutingConfig) -> list[str]:
    """Cross-references of the routes section, one ``key.path: what is wrong`` line each."""
    known = set(deployments)
    errors: list[str] = []
    breaker_owner: dict[str, tuple[str, BreakerConfig]] = {}
    for rname, r in routes.items():
        if rname in known:
            errors.append(f"routes.{rname}: the name is already a deployment's")
        for j, t in enumerate(r.targets):
            if t.deployment not in known:
                errors.append(f"routes.{rname}.targets[{j}]: unknown deployment {t.deployment!r}")
        for c in [r.check, *(s.check for s in r.steps or [])]:
            if c is not None and c.verifier is not None and c.verifier not in known:
                errors.append(f"routes.{rname}.check.verifier: unknown deployment {c.verifier!r}")
        for key in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
            for j, f in enumerate(getattr(r, key)):
                if f == rname:
                    errors.append(f"routes.{rname}.{key}[{j}]: a route cannot fall back to itself")
                elif f not in known and f not in routes:
                    errors.append(f"routes.{rname}.{key}[{j}]: unknown route or deployment {f!r}")
        if r.breaker is not None:
            eff = merged(defaults.breaker, r.breaker)
            for t in r.targets:
                prev = breaker_owner.get(t.deployment)
                if prev is not None and prev[1] != eff:
                    errors.append(f"routes.{rname}.breaker: deployment {t.deployment!r} already has different "
                                  f"breaker settings from routes.{prev[0]}.breaker")
                breaker_owner.setdefault(t.deployment, (rname, eff))
    return errors


def breaker_settings(routes: Mapping[str, RouteConfig], defaults: RoutingConfig) -> dict[str, BreakerConfig]:
    """Each deployment's breaker settings where a route sets them (the rest use ``routing.breaker``)."""
    out: dict[str, BreakerConfig] = {}
    for r in routes.values():
        if r.breaker is not None:
            eff = merged(defaults.breaker, r.breaker)
            for t in r.targets:
                out.setdefault(t.deployment, eff)
    return out
