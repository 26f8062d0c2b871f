"""``/admin/prompts`` and ``/admin/experiments``: managed prompts, their versions and labels, experiments and their
reports (see docs/prompts.md). Every change is audited in its own transaction (:mod:`switchyard.prompts`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from ...governance.identity import Ops
from ...prompts import experiments, registry
from ...prompts.models import (
    DiffOut,
    DiffQuery,
    ExperimentCreate,
    ExperimentList,
    ExperimentOut,
    LabelMove,
    LabelOut,
    Promote,
    PromoteOut,
    PromptCreate,
    PromptList,
    PromptOut,
    Report,
    VersionList,
    VersionOut,
    VersionPublish,
)
from .api import AdminContext, operation

T = TypeVar("T")
TAG = "prompts"


async def _read(ctx: AdminContext, fn: Callable[..., T], *args: Any) -> T:
    def work(conn: sa.Connection, ops: Ops) -> T:
        return fn(conn, ops, *args)

    return await ctx.gov.transact(ctx.ops(), work)


async def _change(ctx: AdminContext, fn: Callable[..., T], *args: Any) -> T:
    """A change (it audits itself), then this replica's prompt stage reads labels and experiments again."""
    out = await _read(ctx, fn, *args)
    stage = getattr(ctx.gw, "prompts", None)
    if stage is not None:
        stage.invalidate()
    return out


def _metrics(ctx: AdminContext) -> dict[str, Any]:
    cfg = ctx.gw.config.prompts if ctx.gw is not None else None
    return {k: m.model_dump() for k, m in cfg.metrics.items()} if cfg is not None else {}


@operation("POST", "/admin/prompts", summary="Create a prompt", tag=TAG, action="prompt.create", body=PromptCreate,
           response=PromptOut, status=201, errors=(400, 401, 403, 404, 409, 503))
async def create_prompt(ctx: AdminContext, body: PromptCreate) -> PromptOut:
    """A prompt in an org (default: the caller's), optionally owned by a team. Org admins, the team's admins and
    super admins may."""
    return await _change(ctx, registry.create_prompt, body)


@operation("GET", "/admin/prompts", summary="List prompts", tag=TAG, action="prompt.list", response=PromptList)
async def list_prompts(ctx: AdminContext) -> PromptList:
    """The prompts the caller may read (its org's; a team's only for that team), with their labels."""
    return PromptList(data=await _read(ctx, registry.list_prompts))


@operation("GET", "/admin/prompts/{prompt}", summary="Get a prompt", tag=TAG, action="prompt.read",
           response=PromptOut)
async def get_prompt(ctx: AdminContext) -> PromptOut:
    """By id, or by name in the caller's org."""
    return await _read(ctx, registry.get_prompt, ctx.params["prompt"])


@operation("POST", "/admin/prompts/{prompt}/versions", summary="Publish a version", tag=TAG,
           action="prompt.version.create", body=VersionPublish, response=VersionOut, status=201,
           errors=(400, 401, 403, 404, 409, 503))
async def publish(ctx: AdminContext, body: VersionPublish) -> VersionOut:
    """The next immutable version (a 400 ``template_syntax_error`` names the message and line of a syntax error;
    ``undeclared_variable`` a variable the schema does not declare). A spec equal to the latest version's
    publishes nothing (``unchanged``). ``labels`` move to the version. Audited."""
    return await _change(ctx, registry.publish, ctx.params["prompt"], body)


@operation("GET", "/admin/prompts/{prompt}/versions", summary="List a prompt's versions", tag=TAG,
           action="prompt.version.list", response=VersionList)
async def list_versions(ctx: AdminContext) -> VersionList:
    return VersionList(data=await _read(ctx, registry.versions, ctx.params["prompt"]))


@operation("GET", "/admin/prompts/{prompt}/versions/{version}", summary="Get a version", tag=TAG,
           action="prompt.version.read", response=VersionOut)
async def get_version(ctx: AdminContext) -> VersionOut:
    return await _read(ctx, registry.get_version, ctx.params["prompt"], _int(ctx.params["version"]))


@operation("PUT", "/admin/prompts/{prompt}/labels/{label}", summary="Move a label", tag=TAG,
           action="prompt.label.update", body=LabelMove, response=LabelOut)
async def move_label(ctx: AdminContext, body: LabelMove) -> LabelOut:
    """Point the label at a version (creating it). Audited with the version it pointed at before."""
    return await _change(ctx, registry.move_label, ctx.params["prompt"], ctx.params["label"], body.version)


@operation("GET", "/admin/prompts/{prompt}/diff", summary="Diff two versions", tag=TAG, action="prompt.diff",
           response=DiffOut, query=DiffQuery)
async def diff(ctx: AdminContext) -> DiffOut:
    """A unified diff of two versions (``?v1=1&v2=2``), as YAML."""
    return await _read(ctx, registry.diff, ctx.params["prompt"], ctx.query.v1, ctx.query.v2)


@operation("POST", "/admin/experiments", summary="Start an experiment", tag=TAG, action="experiment.create",
           body=ExperimentCreate, response=ExperimentOut, status=201, errors=(400, 401, 403, 404, 409, 503))
async def create_experiment(ctx: AdminContext, body: ExperimentCreate) -> ExperimentOut:
    """Split a prompt's requests between variants. A 400 for weights that do not sum to a positive number or an
    undeclared metric; a 409 ``experiment_overlap`` when a running experiment covers the same prompt and
    audience. Audited."""
    return await _change(ctx, experiments.create, body, _metrics(ctx))


@operation("GET", "/admin/experiments", summary="List experiments", tag=TAG, action="experiment.list",
           response=ExperimentList)
async def list_experiments(ctx: AdminContext) -> ExperimentList:
    return ExperimentList(data=await _read(ctx, experiments.list_experiments))


@operation("GET", "/admin/experiments/{experiment}", summary="Get an experiment", tag=TAG,
           action="experiment.read", response=ExperimentOut)
async def get_experiment(ctx: AdminContext) -> ExperimentOut:
    return await _read(ctx, experiments.get, ctx.params["experiment"])


@operation("POST", "/admin/experiments/{experiment}/stop", summary="Stop an experiment", tag=TAG,
           action="experiment.stop", response=ExperimentOut, errors=(401, 403, 404, 409, 503))
async def stop_experiment(ctx: AdminContext) -> ExperimentOut:
    """Stop it by hand (a 409 ``experiment_stopped`` if it is stopped already). Audited."""
    return await _change(ctx, experiments.stop, ctx.params["experiment"])


@operation("POST", "/admin/experiments/{experiment}/promote", summary="Promote a variant", tag=TAG,
           action="experiment.promote", body=Promote, response=PromoteOut, errors=(400, 401, 403, 404, 409, 503))
async def promote(ctx: AdminContext, body: Promote) -> PromoteOut:
    """Move the experiment's label to the variant's version and stop the experiment, in one audited transaction;
    a 409 ``experiment_stopped`` for a stopped experiment."""
    return await _change(ctx, experiments.promote, ctx.params["experiment"], body)


@operation("GET", "/admin/experiments/{experiment}/report", summary="An experiment's report", tag=TAG,
           action="experiment.report", response=Report)
async def report(ctx: AdminContext) -> Report:
    """Per variant: requests, errors, latency p50/p95, cost, each metric's mean with its 95% CI; the first two
    variants compared on the experiment's metric (difference, CI, p-value); the bandit's allocation."""
    from ...prompts.report import report as build

    return await _read(ctx, build, ctx.params["experiment"], _metrics(ctx))


def _int(v: str) -> int:
    from ...errors import InvalidRequest

    try:
        return int(v)
    except ValueError:
        raise InvalidRequest("The version must be an integer.", param="version") from None
