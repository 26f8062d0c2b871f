"""Outbound provider adapters, one module per wire API, and the registry that builds them from the config.

Nothing here imports ``switchyard.protocols``; the two sides meet only in ``switchyard.messages``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Provider, Target

ProviderFactory = Callable[[str, Any], Provider]

_FACTORIES: dict[str, ProviderFactory] = {}


def register(type_name: str, factory: ProviderFactory) -> None:
    """Add a provider type. Built-ins register themselves the same way a plugin would."""
    _FACTORIES[type_name] = factory


def build_provider(name: str, config: Any) -> Provider:
    try:
        factory = _FACTORIES[config.type]
    except KeyError:
        raise ValueError(f"providers.{name}.type: unknown provider type {config.type!r}") from None
    return factory(name, config)


def _openai(name: str, config: Any) -> Provider:
    """An ``openai`` provider speaks Chat Completions, or the Responses API with ``api: responses``."""
    if getattr(config, "api", "chat") == "responses":
        from .openai_responses import OpenAIResponsesProvider

        return OpenAIResponsesProvider(name, config)
    from .openai import OpenAIProvider

    return OpenAIProvider(name, config)


def _builtins() -> None:
    from .anthropic import AnthropicProvider
    from .bedrock import BedrockProvider  # botocore itself is imported only when a bedrock provider is built
    from .simulated import SimulatedProvider

    register("anthropic", AnthropicProvider)
    register("bedrock", BedrockProvider)
    register("openai", _openai)
    register("gemini", __import__("switchyard.providers.gemini", fromlist=["GeminiProvider"]).GeminiProvider)
    register("simulated", SimulatedProvider)
    register("llamacpp", lambda n, c: __import__(f"{__name__}.llamacpp", fromlist=["_"]).LlamaCppProvider(n, c))


_builtins()

__all__ = ["Provider", "ProviderFactory", "Target", "build_provider", "register"]
