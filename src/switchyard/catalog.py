"""Deployments and routes, resolved once at start-up into plain objects the hot path can read without copying."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .config import Config
from .messages import Usage
from .providers import Provider, Target, build_provider

log = logging.getLogger("switchyard.catalog")


@dataclass(slots=True)
class Deployment:
    name: str
    provider: Provider
    target: Target
    region: str | None
    input_price: float  # USD per token
    output_price: float
    cached_input_price: float
    context_window: int | None
    max_output_tokens: int | None
    capabilities: frozenset[str]
    weight: float
    response_headers: dict[str, str] = field(default_factory=dict)
    zdr: bool = False  # zero data retention upstream (policies: resource.zdr)
    tags: frozenset[str] = frozenset()  # free labels (policies: resource.tags)

    @property
    def provider_name(self) -> str:
        return self.provider.name

    def cost(self, usage: Usage) -> float:
        uncached = max(usage.input_tokens - usage.cached_tokens, 0)
        return (uncached * self.input_price + usage.cached_tokens * self.cached_input_price
                + usage.output_tokens * self.output_price)


@dataclass(slots=True)
class Route:
    name: str
    targets: list[Deployment]
    strategy: str


@dataclass(slots=True)
class Catalog:
    providers: dict[str, Provider]
    deployments: dict[str, Deployment]
    routes: dict[str, Route]

    def names(self) -> list[str]:
        return [*self.deployments, *self.routes]

    @classmethod
    def from_config(cls, config: Config,
                    factory: Callable[[str, Any], Provider] = build_provider) -> Catalog:
        providers = {name: factory(name, pc) for name, pc in config.providers.items() if pc.enabled}
        deployments: dict[str, Deployment] = {}
        for d in config.deployments:
            prov = providers.get(d.provider)
            if prov is None:
                log.debug("deployment %s skipped: provider %s is disabled", d.name, d.provider)
                continue
            cached = d.price.cached_input if d.price.cached_input is not None else d.price.input
            deployments[d.name] = Deployment(
                name=d.name,
                provider=prov,
                target=Target(deployment=d.name, model=d.upstream_model),
                region=d.region,
                input_price=d.price.input / 1e6,
                output_price=d.price.output / 1e6,
                cached_input_price=cached / 1e6,
                context_window=d.context_window,
                max_output_tokens=d.max_output_tokens,
                capabilities=frozenset(d.capabilities),
                weight=d.weight,
                response_headers=dict(prov.response_headers),
                zdr=d.zdr,
                tags=frozenset(d.tags),
            )
        routes: dict[str, Route] = {}
        for name, r in config.routes.items():
            targets = [deployments[t] for t in r.target_names if t in deployments]
            if not targets:
                log.debug("route %s skipped: none of its deployments is enabled", name)
                continue
            routes[name] = Route(name=name, targets=targets, strategy=r.strategy or config.routing.strategy)
        return cls(providers=providers, deployments=deployments, routes=routes)
