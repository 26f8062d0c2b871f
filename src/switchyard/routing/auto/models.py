"""The model catalog (``data/models.yaml``): context window, output cap, prices, capabilities and a coarse quality
tier per task type of well-known models, each figure with its public source.

A deployment inherits a model's facts with ``catalog: <id>`` (or, in a config that uses the catalog, when its
``model`` is a catalog id or alias); its own fields win. The file is read on first use only, so a configuration
that uses neither the catalog nor ``auto`` never reads it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

TASK_TYPES = ("code", "math", "summarization", "extraction", "translation", "creative", "chat", "tool_use",
              "vision", "long_context")
DEFAULT_TIER = 3  # a deployment the catalog does not know (and whose config sets no quality)


@dataclass(frozen=True, slots=True)
class ModelCard:
    id: str
    vendor: str
    context_window: int | None
    max_output_tokens: int | None
    input_price: float  # USD per million tokens
    output_price: float
    cached_input_price: float | None
    capabilities: frozenset[str]
    quality: dict[str, float]  # every task type
    aliases: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)
    cache_write_price: float | None = None  # a five-minute prompt-cache write (None: the input price)
    cache_write_1h_price: float | None = None  # a one-hour one (None: the five-minute price)

    def tier(self, task: str) -> float:
        return self.quality.get(task, DEFAULT_TIER)


@dataclass(frozen=True, slots=True)
class ModelCatalog:
    as_of: str
    models: dict[str, ModelCard]
    index: dict[str, ModelCard]  # ids and aliases, lower-cased
    quality_basis: tuple[str, ...] = ()

    def get(self, name: str) -> ModelCard | None:
        """The card of a catalog id or alias; a provider prefix (``openai/gpt-4o``) is tolerated."""
        key = name.lower()
        card = self.index.get(key)
        if card is None and "/" in key:
            card = self.index.get(key.rsplit("/", 1)[1])
        return card


def quality_of(raw: Mapping[str, Any] | None, base: Mapping[str, float] | None = None) -> dict[str, float]:
    """Every task type's tier from a ``quality`` mapping (``default`` fills the rest), over ``base``."""
    raw = dict(raw or {})
    default = raw.pop("default", None)
    if default is not None:
        out = dict.fromkeys(TASK_TYPES, float(default))
    else:
        out = dict(base) if base is not None else dict.fromkeys(TASK_TYPES, float(DEFAULT_TIER))
    for k, v in raw.items():
        if k not in TASK_TYPES:
            raise ValueError(f"unknown task type {k!r} in quality; expected one of {', '.join(TASK_TYPES)}")
        out[k] = float(v)
    return out


def _card(mid: str, m: dict[str, Any]) -> ModelCard:
    price = m.get("price") or {}
    return ModelCard(
        id=mid, vendor=str(m.get("vendor", "")), context_window=m.get("context_window"),
        max_output_tokens=m.get("max_output_tokens"), input_price=float(price.get("input", 0.0)),
        output_price=float(price.get("output", 0.0)),
        cached_input_price=float(price["cached_input"]) if price.get("cached_input") is not None else None,
        capabilities=frozenset(m.get("capabilities") or ("chat",)), quality=quality_of(m.get("quality")),
        aliases=tuple(m.get("aliases") or ()), sources=dict(m.get("sources") or {}),
        cache_write_price=_price(price, "cache_write"), cache_write_1h_price=_price(price, "cache_write_1h"))


def _price(price: Mapping[str, Any], key: str) -> float | None:
    return float(price[key]) if price.get(key) is not None else None


@functools.cache
def model_catalog() -> ModelCatalog:
    """The shipped catalog, parsed once per process."""
    import yaml

    text = resources.files("switchyard.routing.auto").joinpath("data", "models.yaml").read_text("utf-8")
    raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    models = {mid: _card(mid, m) for mid, m in raw["models"].items()}
    index: dict[str, ModelCard] = {}
    for card in models.values():
        for name in (card.id, *card.aliases):
            index.setdefault(name.lower(), card)
    return ModelCatalog(str(raw.get("as_of", "")), models, index, tuple(raw.get("quality_basis") or ()))


def lookup(name: str | None) -> ModelCard | None:
    return model_catalog().get(name) if name else None
