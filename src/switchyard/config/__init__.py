from .loader import ConfigError, default_config_path, interpolate, load_config, parse_config
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
    "default_config_path",
    "interpolate",
    "load_config",
    "parse_config",
]
