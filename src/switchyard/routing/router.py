"""The router: a requested name (a route or a deployment) to a plan, an ordered list of deployments to try.

Everything the router needs is compiled once, at start-up, into :class:`RouteSpec` objects (merged policies,
target entries with their health, strategy instances, retry budgets); a request only reads them. Planning one
request is O(targets): each target of the route is checked for fitness (capabilities, context window) and
availability (breaker, 429 rest), the available ones are ordered by the route's strategy, and deployments whose
breaker may take its half-open probe go first (a failed probe fails over invisibly). Fallback groups are expanded
only if the executor runs out of candidates, so a request that succeeds on its first target pays nothing for them.
"""

from __future__ import annotations

import importlib
import random
import time
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..catalog import Catalog, Deployment
from ..config import Config
from ..config.routing import HedgeConfig, RetryConfig, RoutingConfig, TimeoutConfig, breaker_settings, merged
from ..errors import InvalidRequest, ModelNotFound
from .aliases import Aliases
from .health import Clock, Health, HealthRegistry, RetryBudget
from .strategies import Entry, Priority, Strategy, make_strategy

_CAP_PARAM = {"tools": "tools", "json": "response_format", "vision": "messages", "files": "messages",
              "audio": "messages", "embeddings": "model"}
_MAX_REASON = 1000
AUTO = "auto"  # the model name that asks the auto strategy to choose among every deployment the key may use
NARROWED = "narrowed out"  # the skip reason of a deployment that a stage's narrowing excluded


@dataclass(slots=True, eq=False)
class Group:
    """Targets under one strategy: a route's own, or a fallback's (a route's group, or one deployment)."""

    name: str
    entries: list[Entry]
    strategy: Strategy


@dataclass(slots=True, eq=False)
class RouteSpec:
    """A route (or a deployment called directly), compiled."""

    name: str
    direct: bool
    group: Group
    fallbacks: list[Group]
    context_fallbacks: list[Group]
    policy_fallbacks: list[Group]
    retries: RetryConfig
    timeouts: TimeoutConfig
    hedge: HedgeConfig | None
    budget: RetryBudget
    context_then_fallbacks: list[Group] = field(default_factory=list)
    cascade: Any = None  # a cascade route's steps (routing.auto.cascade.CascadeSpec)


@dataclass(slots=True, eq=False)
class Plan:
    """One request's plan. ``entries`` grows when the executor expands fallbacks; ``notes`` says what happened."""

    requested: str
    spec: RouteSpec
    endpoint: str
    stream: bool
    needs: set[str]
    prompt_tokens: int
    max_tokens: int | None
    entries: list[Entry]
    skipped: list[tuple[str, str]]
    resting: list[Entry]  # fit, but open or throttled when planned
    queue: list[Group]  # fallback groups not yet expanded, from ``qpos``
    qpos: int = 0
    context_routed: bool = False
    notes: list[str] = field(default_factory=list)
    allowed: Container[str] | None = None  # the deployments a stage let the router pick (None: any)
    request: Any = None  # the chat request, for a strategy that reads it (auto)
    objective: str | None = None  # the caller's x-switchyard-objective
    decision: Any = None  # what auto decided (routing.auto.strategy.Decision)
    _reason: tuple[int, int, str] | None = None  # (entries, notes, text): the header is asked for more than once

    @property
    def route(self) -> str | None:
        return None if self.spec.direct else self.spec.name

    @property
    def targets(self) -> list[Deployment]:
        return [e.deployment for e in self.entries]

    @property
    def reason(self) -> str:
        """The ``x-switchyard-route-reason`` header: the plan, what was skipped and why, and what happened."""
        cached = self._reason
        if cached is not None and cached[0] == len(self.entries) and cached[1] == len(self.notes):
            return cached[2]
        spec = self.spec
        if spec.direct:
            head = f"deployment {spec.name}"
        else:
            st = spec.group.strategy
            if self.decision is not None:
                head = f"route {spec.name} (auto): {self.decision.summary()}; order "
            order = ", ".join(
                f"{e.name} [{st.describe(e, self.endpoint, self.stream, self.prompt_tokens, self.max_tokens)}]"
                if e in spec.group.entries else e.name for e in self.entries)
            if self.decision is not None:
                head += ", ".join(e.name for e in self.entries)
            else:
                head = f"route {spec.name} ({st.name}): {order or 'no candidate'}"
        parts = [head]
        if self.context_routed:
            parts.append("prompt too large for the route: context_window_fallbacks")
        if self.skipped:
            parts.append("skipped " + ", ".join(f"{n} ({w})" for n, w in self.skipped))
        parts.extend(self.notes)
        text = "; ".join(parts)
        if len(text) > _MAX_REASON:
            text = text[:_MAX_REASON - 3] + "..."
        self._reason = (len(self.entries), len(self.notes), text)
        return text


def unfit_reason(d: Deployment, needs: set[str], prompt_tokens: int, max_tokens: int | None) -> str | None:
    missing = needs - d.capabilities
    if missing:
        return f"lacks {','.join(sorted(missing))}"
    if d.context_window is not None and prompt_tokens + (max_tokens or 0) > d.context_window:
        return f"context window {d.context_window} < {prompt_tokens + (max_tokens or 0)} tokens"
    if max_tokens is not None and d.max_output_tokens is not None and max_tokens > d.max_output_tokens:
        return f"output limit {d.max_output_tokens} < max_tokens {max_tokens}"
    return None


def _rest_reason(h: Health, now: float) -> str:
    if now < h.reopen_at:
        return f"circuit open, {h.reopen_at - now:.1f}s left"
    return "half-open probe in flight"


class Router:
    def __init__(self, catalog: Catalog, config: Config | None = None, *, health: HealthRegistry | None = None,
                 rng: random.Random | None = None, clock: Clock = time.monotonic) -> None:
        self.catalog = catalog
        self.clock = clock
        self._rng = rng or random.Random()
        routing = config.routing if config is not None else RoutingConfig()
        routes = config.routes if config is not None else {}
        self.defaults = routing
        self.health = health or HealthRegistry(catalog.deployments, breaker_settings(routes, routing),
                                               routing.breaker, clock)
        self.specs: dict[str, RouteSpec] = {}
        self._auto: RouteSpec | None = None
        self.aliases = Aliases(config.aliases if config is not None else {})
        for name, d in catalog.deployments.items():
            entry = Entry(d, d.weight, 0, self._health_of(name))
            group = Group(name, [entry], Priority([entry], self._rng))
            self.specs[name] = RouteSpec(name, True, group, [], [], [], routing.retries, routing.timeouts, None,
                                         RetryBudget(routing.retries, clock))
        groups: dict[str, Group] = {}
        for rname, route in catalog.routes.items():
            rc = routes.get(rname)
            weights = {t.deployment: t.weight for t in rc.targets} if rc is not None else {}
            entries = [Entry(d, weights.get(d.name) or d.weight, i, self._health_of(d.name))
                       for i, d in enumerate(route.targets)]
            exploration = rc.exploration if rc is not None and rc.exploration is not None else routing.exploration
            strategy: Strategy
            if route.strategy == "auto":  # numpy and the embedder only for configs that use auto
                strategy = _auto_module("strategy").Auto(entries, self._rng, exploration, rc, routing.auto)
            else:
                strategy = make_strategy(route.strategy, entries, self._rng, exploration)
            groups[rname] = Group(rname, entries, strategy)
        for rname, group in groups.items():
            rc = routes.get(rname)
            retries = merged(routing.retries, rc.retries if rc else None)
            hedge = merged(routing.hedge, rc.hedge if rc else None) if routing.hedge is not None else (
                rc.hedge if rc else None)
            if hedge is not None and not hedge.enabled:
                hedge = None

            def resolve(names: list[str]) -> list[Group]:
                out: list[Group] = []
                for n in names:
                    g = groups.get(n)
                    if g is None and n in self.specs and self.specs[n].direct:
                        g = self.specs[n].group
                    if g is not None:
                        out.append(g)  # a fallback whose deployments are all disabled is silently absent
                return out

            cascade = None
            if rc is not None and rc.strategy == "cascade":
                cascade = _auto_module("cascade").CascadeSpec.build(rc, catalog.deployments, rc.router)
            fallbacks = resolve(rc.fallbacks) if rc else []
            context = resolve(rc.context_window_fallbacks) if rc else []
            self.specs[rname] = RouteSpec(
                rname, False, group, fallbacks, context, resolve(rc.content_policy_fallbacks) if rc else [],
                retries, merged(routing.timeouts, rc.timeouts if rc else None), hedge, RetryBudget(retries, clock),
                context + [g for g in fallbacks if g not in context], cascade)

    def resolve(self, model: str) -> str:
        """The deployment or route a model name means: itself, or its alias's target (``routing/aliases.py``)."""
        if not self.aliases or model == AUTO:
            return model
        return self.aliases.resolve(model, self.specs)

    def _health_of(self, deployment: str) -> dict[str, Health]:
        return {ep: self.health.get(deployment, ep) for ep in ("chat", "embeddings")}

    # --- planning ------------------------------------------------------------------------------------------

    def auto_spec(self) -> RouteSpec:
        """``model: "auto"``: every chat deployment under the auto strategy (built on first use)."""
        spec = self._auto
        if spec is None:
            Auto = _auto_module("strategy").Auto

            routing = self.defaults
            entries = [Entry(d, d.weight, i, self._health_of(d.name))
                       for i, d in enumerate(d for d in self.catalog.deployments.values() if "chat" in d.capabilities)]
            group = Group(AUTO, entries, Auto(entries, self._rng, routing.exploration, None, routing.auto))
            spec = self._auto = RouteSpec(AUTO, False, group, [], [], [], routing.retries, routing.timeouts, None,
                                          RetryBudget(routing.retries, self.clock))
        return spec

    def plan(self, model: str, needs: set[str], prompt_tokens: int = 0, max_tokens: int | None = None,
             endpoint: str = "chat", stream: bool = False, allowed: Container[str] | None = None,
             narrowed_by: Sequence[str] | None = None, request: Any = None, objective: str | None = None) -> Plan:
        """``allowed``: only these deployment names may be tried (a stage narrowed the request, for the reasons
        ``narrowed_by``, which the plan's reason shows); the others are skipped as narrowed out. ``request``: the
        chat request, which the auto strategy profiles; ``objective``: the caller's ``x-switchyard-objective``."""
        model = self.resolve(model)
        spec = self.specs.get(model)
        if spec is None and model == AUTO and endpoint == "chat":
            spec = self.auto_spec()
        if spec is None:
            raise ModelNotFound(f"The model {model!r} does not exist or you do not have access to it.",
                                param="model", headers={"x-switchyard-attempts": "0", "x-switchyard-route-reason":
                                                        header_safe(f"no deployment or route named {model!r}")})
        needs = needs | {"embeddings" if endpoint == "embeddings" else "chat"}  # a deployment serves its endpoints
        plan = Plan(model, spec, endpoint, stream, needs, prompt_tokens, max_tokens, [], [], [], spec.fallbacks)
        plan.request, plan.objective = request, objective
        if allowed is not None:
            plan.allowed = allowed
            plan.notes.append("narrowed: " + "; ".join(narrowed_by or ("by a stage",)))
        spec.budget.deposit()
        now = self.clock()
        too_big = self._add_group(plan, spec.group, now)
        if not plan.entries and too_big and spec.context_fallbacks:
            plan.queue = spec.context_then_fallbacks
            plan.context_routed = True
        while not plan.entries and self.expand(plan):
            pass
        if not plan.entries and not plan.resting:
            raise self._unfit_error(plan)
        return plan

    def _add_group(self, plan: Plan, group: Group, now: float) -> bool:
        """Append the fit and available entries of ``group`` in strategy order. True if one was too small."""
        cands: list[Entry] = []
        late: list[Entry] | None = None
        too_big = False
        listed = plan.entries
        allowed = plan.allowed
        for e in group.entries:
            if any(x.deployment is e.deployment for x in listed):
                continue
            if allowed is not None and e.name not in allowed:
                plan.skipped.append((e.name, NARROWED))
                continue
            why = unfit_reason(e.deployment, plan.needs, plan.prompt_tokens, plan.max_tokens)
            if why is not None:
                too_big = too_big or why.startswith("context")
                plan.skipped.append((e.name, why))
                continue
            h = e.health[plan.endpoint]
            if h.available_at(now) > now:
                plan.resting.append(e)
                plan.skipped.append((e.name, _rest_reason(h, now)))
            elif h.is_probe_ready(now):
                listed.append(e)  # the half-open probe goes first: if it fails, the request fails over
            elif h.throttled(now):
                late = late or []
                late.append(e)
                plan.notes.append(f"{e.name} rate limited for {h.throttled_until - now:.1f}s: tried last")
            else:
                cands.append(e)
        if cands:
            st = group.strategy
            if st.needs_request:
                listed.extend(st.rank(plan, cands))  # type: ignore[attr-defined]
            else:
                listed.extend(st.order(cands, plan.endpoint, plan.stream, plan.prompt_tokens, plan.max_tokens))
        if late:
            listed.extend(late)
        return too_big

    def expand(self, plan: Plan) -> bool:
        """Append the next fallback group's candidates. False when no group is left."""
        if plan.qpos >= len(plan.queue):
            return False
        group = plan.queue[plan.qpos]
        plan.qpos += 1
        before = len(plan.entries)
        self._add_group(plan, group, self.clock())
        if len(plan.entries) > before:
            plan.notes.append(f"fallback {group.name}")
        return True

    def switch(self, plan: Plan, kind: str) -> bool:
        """After an upstream's context-window or content-policy error: continue with that kind's fallbacks."""
        groups = plan.spec.context_fallbacks if kind == "context_window" else plan.spec.policy_fallbacks
        if not groups:
            return False
        plan.queue = groups
        plan.qpos = 0
        plan.notes.append(f"{kind}_fallbacks")
        return True

    def _unfit_error(self, plan: Plan) -> InvalidRequest:
        spec = plan.spec
        if plan.allowed is not None and all(w == NARROWED for _, w in plan.skipped):
            return InvalidRequest(f"No deployment of {spec.name!r} is allowed for this request "
                                  f"({'; '.join(plan.notes)}).", param="model", code="no_suitable_deployment",
                                  headers=self._headers(plan))
        if spec.direct:
            d = spec.group.entries[0].deployment
            missing = sorted(plan.needs - d.capabilities)
            if plan.endpoint in missing:  # an embeddings deployment asked to chat, or the other way round
                return InvalidRequest(f"Deployment {d.name!r} does not serve {plan.endpoint}.", param="model",
                                      code="unsupported_model", headers=self._headers(plan))
            why = unfit_reason(d, plan.needs, plan.prompt_tokens, plan.max_tokens) or ""
            param = _CAP_PARAM.get(missing[0], "messages") if missing else "messages"
            code = "context_length_exceeded" if not missing else "unsupported_capability"
            if why.startswith("output"):
                param, code = "max_tokens", "invalid_value"
            return InvalidRequest(f"Deployment {d.name!r} cannot serve this request: it {why}.", param=param,
                                  code=code, headers=self._headers(plan))
        detail = "; ".join(f"{n} {w}" for n, w in plan.skipped)
        only_context = all(w.startswith("context") for _, w in plan.skipped)
        only_output = all(w.startswith("output") for _, w in plan.skipped)
        return InvalidRequest(f"No deployment of route {spec.name!r} can serve this request ({detail}).",
                              param="messages" if only_context else "max_tokens" if only_output else "model",
                              code="context_length_exceeded" if only_context else "no_suitable_deployment",
                              headers=self._headers(plan))

    @staticmethod
    def _headers(plan: Plan) -> dict[str, str]:
        return {"x-switchyard-attempts": "0", "x-switchyard-route-reason": header_safe(plan.reason)}


def _auto_module(name: str) -> Any:
    """``switchyard.routing.auto.<name>``, loaded by name when a route first needs it: the auto strategy and cascades
    sit above the router (they read its plans), and only configurations that use them load them (numpy, the
    embedder)."""
    return importlib.import_module(f"{__package__}.auto.{name}")


def header_safe(text: str) -> str:
    """A header value: latin-1, no line breaks."""
    return text.replace("\r", " ").replace("\n", " ").encode("latin-1", "replace").decode("latin-1")
