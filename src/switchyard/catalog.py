"""Deployments and routes, resolved once at start-up into plain objects the hot path can read without copying."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .config import Config
from .config.schema import DeploymentConfig
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
    zdr: bool = False  # zero data retention at the provider (config ``zdr``)
    tags: frozenset[str] = frozenset()  # free labels from the config, for policies (``resource.tags``)
    card: Any = None  # its model catalog card (routing.auto.models.ModelCard), when it has one
    quality: dict[str, float] | None = None  # the auto strategy's tier per task type (config over catalog)
    cache_write_price: float = 0.0  # USD per token written to a prompt cache (five-minute; default: the input price)
    cache_write_1h_price: float = 0.0  # ... to a one-hour cache (default: the five-minute price)

    @property
    def prompt_price(self) -> float:
        """The most a prompt token may cost (a cache write may cost more than a plain input token): what a budget
        reserves per prompt token."""
        return max(self.input_price, self.cache_write_price, self.cache_write_1h_price)

    @property
    def provider_name(self) -> str:
        return self.provider.name

    def cost(self, usage: Usage) -> float:
        plain = max(usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens, 0)
        hour = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
        return (plain * self.input_price + usage.cached_tokens * self.cached_input_price
                + (usage.cache_write_tokens - hour) * self.cache_write_price + hour * self.cache_write_1h_price
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
        matching = uses_model_catalog(config)
        for d in config.deployments:
            prov = providers.get(d.provider)
            if prov is None:
                log.debug("deployment %s skipped: provider %s is disabled", d.name, d.provider)
                continue
            deployments[d.name] = _deployment(d, prov, matching)
        routes: dict[str, Route] = {}
        for name, r in config.routes.items():
            targets = [deployments[t] for t in r.target_names if t in deployments]
            live = [t for t in targets if not config.providers[t.provider_name].standby]
            targets = live or targets  # standby deployments serve a route only when nothing else can
            if not targets:
                log.debug("route %s skipped: none of its deployments is enabled", name)
                continue
            routes[name] = Route(name=name, targets=targets, strategy=r.strategy or config.routing.strategy)
        return cls(providers=providers, deployments=deployments, routes=routes)


def uses_model_catalog(config: Config) -> bool:
    """Whether the config uses the model catalog: a deployment names a catalog model, or a route is ``auto`` or a
    cascade, or ``routing.auto`` is set. Then every deployment is also matched by its ``model``; otherwise the
    catalog file is never read."""
    return (config.routing.auto is not None or config.routing.strategy == "auto"
            or any(d.catalog for d in config.deployments)
            or any(r.strategy in ("auto", "cascade") for r in config.routes.values()))


def _deployment(d: DeploymentConfig, prov: Provider, matching: bool) -> Deployment:
    """A deployment from its config, over its catalog card's facts (its own fields win)."""
    card: Any = None
    if d.catalog or matching:
        from .routing.auto.models import lookup

        card = lookup(d.catalog or d.upstream_model)
    own = d.model_fields_set
    price_set = d.price.model_fields_set
    inp, out, cached = d.price.input, d.price.output, d.price.cached_input
    write, write_1h = d.price.cache_write, d.price.cache_write_1h
    window, max_out, caps = d.context_window, d.max_output_tokens, frozenset(d.capabilities)
    quality = None
    if card is not None:
        if "price" not in own or "input" not in price_set:
            inp = card.input_price
        if "price" not in own or "output" not in price_set:
            out = card.output_price
        if cached is None and "input" not in price_set:
            cached = card.cached_input_price
        if write is None and "input" not in price_set:
            write = card.cache_write_price
        if write_1h is None and "input" not in price_set:
            write_1h = card.cache_write_1h_price
        window = window if "context_window" in own else card.context_window
        max_out = max_out if "max_output_tokens" in own else card.max_output_tokens
        caps = caps if "capabilities" in own else card.capabilities
        quality = card.quality
    if d.quality is not None:
        from .routing.auto.models import quality_of

        quality = quality_of(d.quality, quality)
    return Deployment(
        name=d.name,
        provider=prov,
        target=Target(deployment=d.name, model=d.upstream_model),
        region=d.region,
        input_price=inp / 1e6,
        output_price=out / 1e6,
        cached_input_price=(cached if cached is not None else inp) / 1e6,
        context_window=window,
        max_output_tokens=max_out,
        capabilities=caps,
        weight=d.weight,
        response_headers=dict(prov.response_headers),
        zdr=d.zdr,
        tags=frozenset(d.tags),
        card=card,
        quality=quality,
        cache_write_price=(write if write is not None else inp) / 1e6,
        cache_write_1h_price=(write_1h if write_1h is not None else write if write is not None else inp) / 1e6,
    )
