"""The ``prompts:`` section: managed prompts and experiments (:mod:`switchyard.prompts`), and the feedback metrics
that ``POST /v1/feedback`` accepts. See docs/prompts.md."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import Strict


class MetricConfig(Strict):
    """A feedback metric: ``boolean`` (true/false) or ``numeric`` within ``[min, max]``."""

    type: Literal["boolean", "numeric"]
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _range(self) -> MetricConfig:
        if self.type == "numeric" and (self.min is None or self.max is None or self.min >= self.max):
            raise ValueError("a numeric metric needs min < max")
        if self.type == "boolean" and (self.min is not None or self.max is not None):
            raise ValueError("a boolean metric has no range")
        return self


class PromptsConfig(Strict):
    enabled: bool = True  # under governance: the Prompt stage (requests naming "prompt") and experiments
    refresh_s: float = Field(5.0, gt=0, description="how long labels and experiments are cached per replica")
    metrics: dict[str, MetricConfig] = Field(default_factory=dict)  # feedback metrics, by name
