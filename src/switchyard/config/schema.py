"""The config file's schema. Every key is documented in docs/configuration.md; keep the two in step."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from ..classification import parse_data_class
from .base import Strict as _Strict
from .cache import CacheConfig
from .console import ConsoleConfig
from .governance import GovernanceConfig
from .ledger import LedgerConfig
from .pii import PiiConfig
from .policy import PolicyConfig
from .prompts import PromptsConfig
from .providers import ProviderConfig
from .routing import RouteConfig, RoutingConfig, route_problems
from .state import StateConfig, parse_retention
from .telemetry import MetricsConfig, TracingConfig
from .workflows import WorkflowsConfig

# --- deployments ---

CAPABILITIES = ("chat", "embeddings", "tools", "vision", "json", "files", "audio", "reasoning")


class Price(_Strict):
    input: float = Field(0.0, ge=0, description="USD per million input tokens")
    output: float = Field(0.0, ge=0, description="USD per million output tokens")
    cached_input: float | None = Field(None, ge=0, description="USD per million cached input tokens")
    cache_write: float | None = Field(
        None, ge=0, description="USD per million input tokens written to a prompt cache (Anthropic and Bedrock bill "
        "a five-minute write at 1.25x the input price); default: the input price")
    cache_write_1h: float | None = Field(
        None, ge=0, description="USD per million input tokens written to a one-hour prompt cache (Anthropic: 2x the "
        "input price); default: cache_write")


class DeploymentConfig(_Strict):
    name: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    model: str | None = None
    region: str | None = None
    price: Price = Field(default_factory=lambda: Price())
    context_window: int | None = Field(None, ge=1)
    max_output_tokens: int | None = Field(None, ge=1)
    capabilities: list[str] = Field(default_factory=lambda: ["chat", "tools", "json"])
    weight: float = Field(1.0, gt=0)
    zdr: bool = False  # the provider keeps nothing of a request (zero data retention): policies may require it
    tags: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(default_factory=list)
    catalog: str | None = None  # a model catalog id (``switchyard models``): inherit its facts; own fields win
    quality: dict[str, float] | None = None  # the auto strategy's tier per task type (over the catalog's)

    @field_validator("catalog")
    @classmethod
    def _known_model(cls, v: str | None) -> str | None:
        if v is not None:
            from ..routing.auto.models import lookup  # the catalog file is read only when a deployment names it

            card = lookup(v)
            if card is None:
                raise ValueError(f"unknown catalog model {v!r} (see `switchyard models`)")
            return card.id
        return v

    @field_validator("quality")
    @classmethod
    def _known_tasks(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is not None:
            from ..routing.auto.models import TASK_TYPES

            for k, tier in v.items():
                if k != "default" and k not in TASK_TYPES:
                    raise ValueError(f"unknown task type {k!r}; expected default or one of {', '.join(TASK_TYPES)}")
                if not 1 <= tier <= 5:
                    raise ValueError(f"quality.{k}: a tier is between 1 and 5")
        return v

    @field_validator("capabilities")
    @classmethod
    def _known_caps(cls, v: list[str]) -> list[str]:
        for c in v:
            if c not in CAPABILITIES:
                raise ValueError(f"unknown capability {c!r}; expected one of {', '.join(CAPABILITIES)}")
        return v

    @property
    def upstream_model(self) -> str:
        return self.model or self.name


class KeyConfig(_Strict):
    """A static API key from the config file (virtual keys live in the store)."""

    key: str = Field(min_length=8)
    name: str | None = None
    models: list[str] | None = None  # deployments and routes this key may use; all when unset
    data_class: str | None = None  # the lowest data class of its requests (public | internal | confidential | ...)
    pii_mode: Literal["off", "detect", "redact", "mask", "block"] | None = None  # None: the config's
    # payload logging and retention: none (zero retention: no prompt in the audit, no stored responses) | metadata |
    # full, as for virtual keys
    logging: Literal["none", "metadata", "full"] = "none"  # payload logging, as a virtual key's (none: zero retention)
    retention: dict[str, str] | None = None  # payload retention, e.g. {conversations: "30d"}; None: none

    @field_validator("retention", mode="before")
    @classmethod
    def _retention(cls, v: object) -> object:
        return parse_retention(v)

    @field_validator("data_class")
    @classmethod
    def _data_class(cls, v: str | None) -> str | None:
        return parse_data_class(v) if v is not None else None


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(4000, ge=0, le=65535)
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    request_timeout: float = Field(600.0, gt=0)
    # CPU priority of the threads that write batches to the store (switchyard.background): idle | low | normal
    background_priority: Literal["idle", "low", "normal"] = "idle"
    # the format of every log line, the per-request line included: text | json (one JSON object a line)
    log_format: Literal["text", "json"] = "text"


class Config(_Strict):
    master_key: str | None = None
    store: str = "sqlite:///.switchyard/switchyard.db"
    server: ServerConfig = Field(default_factory=lambda: ServerConfig())
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    deployments: list[DeploymentConfig] = Field(default_factory=list)
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    # model names and wildcard patterns clients send → a deployment or route (routing/aliases.py, docs/routing.md)
    aliases: dict[str, str] = Field(default_factory=dict)
    routing: RoutingConfig = Field(default_factory=lambda: RoutingConfig())
    keys: list[KeyConfig] = Field(default_factory=list)
    governance: GovernanceConfig = Field(default_factory=lambda: GovernanceConfig())
    ledger: LedgerConfig = Field(default_factory=lambda: LedgerConfig())  # budgets, rate limits, spend
    metrics: MetricsConfig = Field(default_factory=lambda: MetricsConfig())  # Prometheus, at GET /metrics
    tracing: TracingConfig = Field(default_factory=lambda: TracingConfig())  # OpenTelemetry spans, OTLP
    pii: PiiConfig | None = None  # personal data: detect, redact, mask or block (docs/pii.md); none: not scanned
    policies: PolicyConfig = Field(default_factory=lambda: PolicyConfig())  # Cedar policies (docs/policy.md)
    cache: CacheConfig | None = None  # the semantic cache (docs/cache.md); none: no cache stage
    state: StateConfig | None = None  # conversations kept by the gateway (docs/state.md); none: not kept
    workflows: WorkflowsConfig | None = None  # durable workflows (docs/workflows.md); none: not started
    prompts: PromptsConfig = Field(default_factory=lambda: PromptsConfig())  # managed prompts (docs/prompts.md)
    console: ConsoleConfig = Field(default_factory=lambda: ConsoleConfig())  # the web console at /ui (docs/console.md)

    @field_validator("master_key", mode="before")
    @classmethod
    def _empty_master(cls, v: object) -> object:
        return None if v == "" else v

    @field_validator("store")
    @classmethod
    def _store_url(cls, v: str) -> str:
        if not v.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return v

    @model_validator(mode="after")
    def _references(self) -> Config:
        errors: list[str] = []
        seen: dict[str, int] = {}
        for i, d in enumerate(self.deployments):
            if d.provider not in self.providers:
                errors.append(f"deployments[{i}].provider: unknown provider {d.provider!r}")
            if d.name in seen:
                errors.append(f"deployments[{i}].name: {d.name!r} is already used by deployments[{seen[d.name]}]")
            seen.setdefault(d.name, i)
        errors.extend(route_problems(self.routes, seen, self.routing))
        for name, target in self.aliases.items():
            if not name:
                errors.append("aliases: an alias name must not be empty")
            elif name in seen or name in self.routes:
                errors.append(f"aliases.{name}: a deployment or route has this name; an alias cannot shadow it")
            if target not in seen and target not in self.routes and target != "auto":
                errors.append(f"aliases.{name}: unknown deployment or route {target!r}")
        for i, k in enumerate(self.keys):
            for j, m in enumerate(k.models or []):
                if m not in seen and m not in self.routes:
                    errors.append(f"keys[{i}].models[{j}]: unknown deployment or route {m!r}")
        if self.state is not None and self.state.summarize_deployment is not None and (
                self.state.summarize_deployment not in seen):
            errors.append(f"state.summarize_deployment: unknown deployment {self.state.summarize_deployment!r}")
        if self.metrics.enabled and self.metrics.access == "key" and not (self.metrics.key or self.master_key):
            errors.append("metrics.access: 'key' needs metrics.key (or a master_key)")
        if self.console.enabled and not (self.governance.enabled and self.governance.admin.enabled):
            errors.append("console.enabled: the console needs governance.enabled and governance.admin.enabled")
        if errors:
            raise ValueError("\n".join(errors))
        return self
