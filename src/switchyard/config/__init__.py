from .loader import ConfigError, interpolate, load_config, parse_config
from .providers import (
    AnthropicProviderConfig,
    BedrockProviderConfig,
    GeminiProviderConfig,
    LlamaCppProviderConfig,
    OpenAIProviderConfig,
    ProviderConfig,
    SimulatedProviderConfig,
)
from .routing import RouteConfig
from .schema import Config, DeploymentConfig, KeyConfig, Price, ServerConfig

__all__ = [
    "AnthropicProviderConfig",
    "BedrockProviderConfig",
    "Config",
    "ConfigError",
    "DeploymentConfig",
    "GeminiProviderConfig",
    "KeyConfig",
    "LlamaCppProviderConfig",
    "OpenAIProviderConfig",
    "Price",
    "ProviderConfig",
    "RouteConfig",
    "ServerConfig",
    "SimulatedProviderConfig",
    "interpolate",
    "load_config",
    "parse_config",
]
