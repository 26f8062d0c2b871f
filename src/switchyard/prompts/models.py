"""The admin API's bodies and replies for prompts and experiments (pydantic; also the OpenAPI schemas)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
LABEL = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoQuery(_In):
    pass


class PromptCreate(_In):
    name: str = Field(pattern=NAME, description="unique in its org")
    org_id: str | None = Field(None, description="its org (default: the caller's; none: gateway-wide, super admins)")
    team_id: str | None = Field(None, description="the team that owns it (its team admins publish)")
    description: str | None = Field(None, max_length=2000)


class PromptOut(_Out):
    object: Literal["prompt"] = "prompt"
    id: str
    name: str
    org_id: str | None
    team_id: str | None
    description: str | None
    labels: dict[str, int] = Field(description="label -> version")
    latest_version: int = Field(description="0: no version yet")
    created_at: datetime
    created_by: str


class PromptList(_Out):
    object: Literal["list"] = "list"
    data: list[PromptOut]


class VersionPublish(_In):
    spec: dict[str, Any] = Field(description="messages, model, parameters, tools, response_format, variables")
    comment: str | None = Field(None, max_length=1000)
    labels: list[str] = Field(default_factory=list, description="labels to move to this version")


class VersionOut(_Out):
    object: Literal["prompt_version"] = "prompt_version"
    prompt_id: str
    name: str
    version: int
    spec: dict[str, Any]
    sha256: str
    comment: str | None
    created_at: datetime
    created_by: str
    unchanged: bool = Field(False, description="the spec equals the latest version's: nothing was published")


class VersionList(_Out):
    object: Literal["list"] = "list"
    data: list[VersionOut]


class LabelMove(_In):
    version: int = Field(ge=1)


class LabelOut(_Out):
    object: Literal["prompt_label"] = "prompt_label"
    prompt_id: str
    label: str
    version: int
    previous: int | None


class DiffQuery(_In):
    v1: int = Field(ge=1)
    v2: int = Field(ge=1)


class DiffOut(_Out):
    object: Literal["prompt_diff"] = "prompt_diff"
    prompt_id: str
    v1: int
    v2: int
    diff: str = Field(description="a unified diff of the two versions' YAML")


# --- experiments ---


class Variant(_In):
    name: str = Field(pattern=LABEL)
    version: int | None = Field(None, ge=1, description="the prompt version it serves")
    model: str | None = Field(None, description="the deployment, route or auto it calls")
    weight: float = Field(1.0, ge=0)


class Targeting(_In):
    team_id: str | None = None
    tag: str | None = None
    share: float = Field(1.0, gt=0, le=1, description="the share of the audience's traffic in the experiment")


class StopRule(_In):
    p_value: float | None = Field(None, gt=0, lt=1, description="stop when the two-variant p-value is below it")
    max_requests: int | None = Field(None, ge=1, description="stop after this many requests in all (horizon)")


class ExperimentCreate(_In):
    name: str = Field(pattern=NAME)
    org_id: str | None = None
    team_id: str | None = None
    prompt: str | None = Field(None, description="the prompt name it splits (its requests name this prompt); with "
                               "'model', the prompt whose versions its variants render")
    model: str | None = Field(None, min_length=1, max_length=255,
                              description="instead of a prompt: the model, route or auto name whose requests it "
                                          "splits, with or without a managed prompt")
    label: str = Field("production", pattern=LABEL, description="the label that promotion moves")
    variants: list[Variant] = Field(min_length=2, max_length=16)
    allocation: Literal["fixed", "bandit"] = "fixed"
    metric: str | None = Field(None, description="the declared feedback metric it measures (the bandit's)")
    min_samples: int = Field(20, ge=1, description="per variant, before the bandit departs from the weights")
    targeting: Targeting = Field(default_factory=Targeting)
    stop: StopRule = Field(default_factory=StopRule)


class ExperimentOut(_Out):
    object: Literal["experiment"] = "experiment"
    id: str
    name: str
    org_id: str | None
    team_id: str | None
    prompt: str | None
    model: str | None = Field(None, description="the model name whose requests it splits (an experiment on a model)")
    spec: dict[str, Any]
    status: str
    started_at: datetime
    stopped_at: datetime | None
    stop_reason: str | None


class ExperimentList(_Out):
    object: Literal["list"] = "list"
    data: list[ExperimentOut]


class Promote(_In):
    variant: str


class PromoteOut(_Out):
    object: Literal["promotion"] = "promotion"
    experiment_id: str
    variant: str
    prompt: str | None
    label: str
    version: int | None
    previous: int | None


class Report(_Out):
    object: Literal["experiment_report"] = "experiment_report"
    experiment_id: str
    status: str
    variants: list[dict[str, Any]]
    comparison: dict[str, Any] | None
    allocation: dict[str, float]
