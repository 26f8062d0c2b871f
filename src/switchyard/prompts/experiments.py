"""Experiments in the store: create, list, stop, promote; and the snapshot the request path reads.

An experiment splits requests between variants (a prompt version, a model or route, or both), by fixed weights or
a Thompson-sampling bandit on a declared feedback metric (:mod:`.assign`). What it splits is either

* the requests that name its ``prompt`` (a managed prompt), or
* the requests for its ``model`` (a deployment, route or ``auto`` name), managed prompt or not. Its variants then
  name models; a variant may also serve a version of the experiment's ``prompt`` (which must render without
  variables), and such an experiment takes only the requests that name no managed prompt of their own. There is no
  label to promote: the winner goes into the route's config.

It runs from
its creation until it is stopped: by hand, by promotion, or by its rule (``stop.max_requests``: a fixed horizon;
``stop.p_value``: the two-variant comparison on its metric is significant), which the gateway checks when it
refreshes its snapshot.

Every change is one transaction, audited (``experiment.create``, ``experiment.stop``, ``experiment.promote``);
a refused change (weights that sum to zero, an experiment overlapping a running one on the same prompt and
audience, promoting a stopped experiment) writes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from ..errors import InvalidRequest
from ..governance.audit import utcnow
from ..governance.errors import Conflict
from ..governance.identity import Ops
from ..governance.rbac import TEAM_ADMIN, Owner, forbid, not_found
from ..store.prompt_tables import experiments, feedback_metrics, request_log
from . import registry
from .assign import PLACEHOLDER, Running, bandit_allocation
from .models import ExperimentCreate, ExperimentOut, Promote, PromoteOut

RUNNING, STOPPED = "running", "stopped"


def _out(r: Any) -> ExperimentOut:
    return ExperimentOut(id=r.id, name=r.name, org_id=r.org_id, team_id=r.team_id, prompt=r.prompt,
                         model=(r.spec or {}).get("model"), spec=r.spec, status=r.status, started_at=r.started_at,
                         stopped_at=r.stopped_at, stop_reason=r.stop_reason)


def _row(conn: sa.Connection, ops: Ops, exp_id: str, lock: bool = False) -> Any:
    q = sa.select(experiments).where(experiments.c.id == exp_id)
    r = conn.execute(q.with_for_update() if lock else q).first()
    if r is None or not registry.reads(ops.actor, r.org_id, r.team_id):
        raise not_found("experiment", exp_id)
    return r


def _overlaps(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two audiences overlap unless they name different teams or different tags."""
    return all(not (a.get(k) and b.get(k) and a[k] != b[k]) for k in ("team_id", "tag"))


def create(conn: sa.Connection, ops: Ops, body: ExperimentCreate, metrics: Mapping[str, Any]) -> ExperimentOut:
    if body.prompt is None and body.model is None:
        raise InvalidRequest("An experiment splits the requests that name a prompt ('prompt') or a model or route "
                             "('model'): give one.", param="prompt")
    if body.model == PLACEHOLDER:
        raise InvalidRequest(f"'model' must name a deployment, a route or auto, not the placeholder "
                             f"{PLACEHOLDER!r}.", param="model")
    prompt = registry.get_prompt(conn, ops, body.prompt) if body.prompt is not None else None
    a = ops.actor
    if prompt is not None:
        org_id, team_id = prompt.org_id, body.team_id or prompt.team_id
    else:  # on a model: the caller's org (or the one named), as a prompt is created
        org_id = body.org_id if body.org_id is not None else a.org_id
        team_id = body.team_id if body.team_id is not None else (a.team_id if a.role == TEAM_ADMIN else None)
    if not registry.manages(a, org_id, team_id):
        raise forbid("run experiments on this prompt" if body.model is None else "run experiments here")
    if not sum(v.weight for v in body.variants) > 0:
        raise InvalidRequest("The variants' weights must sum to a positive number.", param="variants",
                             code="invalid_weights")
    names = [v.name for v in body.variants]
    if len(set(names)) != len(names):
        raise InvalidRequest("Variant names must be unique.", param="variants")
    for i, v in enumerate(body.variants):
        if v.version is None and v.model is None:
            raise InvalidRequest(f"Variant {v.name!r} names neither a version nor a model.",
                                 param=f"variants[{i}]")
        if v.version is None:
            continue
        if prompt is None:
            raise InvalidRequest(f"Variant {v.name!r} serves a prompt version, but the experiment names no prompt: "
                                 f"give 'prompt' (the prompt whose versions it renders).", param=f"variants[{i}]")
        version = registry.get_version(conn, ops, prompt.id, v.version)
        if body.model is not None:
            _renders_without_variables(prompt.name, version.version, version.spec, v.name, i)
    if body.metric is not None and body.metric not in metrics:
        raise InvalidRequest(f"Unknown metric {body.metric!r}: declare it under prompts.metrics in the config.",
                             param="metric", code="unknown_metric")
    if body.allocation == "bandit" and body.metric is None:
        raise InvalidRequest("A bandit needs a 'metric' to optimize.", param="metric")
    target = body.targeting.model_dump()
    q = sa.select(experiments).where(experiments.c.status == RUNNING)
    if body.model is None:
        assert prompt is not None
        q = q.where(experiments.c.prompt == prompt.name)
    for other in conn.execute(q).all():
        if other.org_id == org_id and (other.spec or {}).get("model") == body.model \
                and _overlaps(target, other.spec.get("targeting") or {}):
            what = f"prompt {prompt.name!r}" if body.model is None and prompt is not None else \
                f"model {body.model!r}"
            raise Conflict(f"Experiment {other.id} ({other.name}) already runs on {what} for an overlapping "
                           f"audience; stop it first or target another team or tag.",
                           param="targeting", code="experiment_overlap")
    eid = "exp_" + secrets.token_hex(8)
    spec = body.model_dump(exclude={"org_id", "team_id", "name", "prompt"})
    prompt_name = prompt.name if prompt is not None else None
    conn.execute(sa.insert(experiments).values(id=eid, org_id=org_id, team_id=team_id, name=body.name,
                                               prompt=prompt_name, spec=spec, status=RUNNING, started_at=utcnow(),
                                               created_by=a.id))
    ops.record(conn, "experiment.create", eid, Owner(org_id, team_id),
               {"name": body.name, "prompt": prompt_name, "model": body.model, "variants": names,
                "allocation": body.allocation})
    return _out(_row(conn, ops, eid))


def _renders_without_variables(name: str, version: int, spec: dict[str, Any], variant: str, i: int) -> None:
    """An experiment on a model renders its versions into requests that send no variables: each must render
    without any (its schema requires none, its templates need none)."""
    from .template import PromptError, compile_version

    try:
        compile_version(name, version, spec).render({})
    except PromptError as e:
        raise InvalidRequest(f"Variant {variant!r}: an experiment on a model renders {name}@{version} without "
                             f"variables, and it does not render so: {e.message}", param=f"variants[{i}]",
                             code="variables_required") from None


def list_experiments(conn: sa.Connection, ops: Ops) -> list[ExperimentOut]:
    rows = conn.execute(sa.select(experiments).order_by(experiments.c.started_at)).all()
    return [_out(r) for r in rows if registry.reads(ops.actor, r.org_id, r.team_id)]


def get(conn: sa.Connection, ops: Ops, exp_id: str) -> ExperimentOut:
    return _out(_row(conn, ops, exp_id))


def stop(conn: sa.Connection, ops: Ops, exp_id: str, reason: str = "stopped by hand") -> ExperimentOut:
    r = _row(conn, ops, exp_id, lock=True)
    if not registry.manages(ops.actor, r.org_id, r.team_id):
        raise forbid("stop this experiment")
    if r.status != RUNNING:
        raise Conflict(f"Experiment {exp_id} is already stopped.", code="experiment_stopped")
    conn.execute(sa.update(experiments).where(experiments.c.id == exp_id)
                 .values(status=STOPPED, stopped_at=utcnow(), stop_reason=reason))
    ops.record(conn, "experiment.stop", exp_id, Owner(r.org_id, r.team_id), {"reason": reason})
    return _out(_row(conn, ops, exp_id))


def promote(conn: sa.Connection, ops: Ops, exp_id: str, body: Promote) -> PromoteOut:
    """Move the experiment's label to the winner's version and stop the experiment: one audited transaction."""
    r = _row(conn, ops, exp_id, lock=True)
    if not registry.manages(ops.actor, r.org_id, r.team_id):
        raise forbid("promote this experiment's variants")
    if r.status != RUNNING:
        raise Conflict(f"Experiment {exp_id} is stopped ({r.stop_reason}); promote only from a running one.",
                       code="experiment_stopped")
    if r.spec.get("model") is not None:
        raise InvalidRequest(f"Experiment {exp_id} splits the requests for model {r.spec['model']!r}: there is no "
                             f"label to move. Point the route at the winner in the config, then stop the "
                             f"experiment.", param="experiment", code="nothing_to_promote")
    variant = next((v for v in r.spec["variants"] if v["name"] == body.variant), None)
    if variant is None:
        raise InvalidRequest(f"Experiment {exp_id} has no variant {body.variant!r}.", param="variant")
    if variant.get("version") is None:
        raise InvalidRequest(f"Variant {body.variant!r} names a model, not a prompt version: change the prompt's "
                             f"model by publishing a version.", param="variant")
    label = str(r.spec.get("label") or "production")
    prompt = registry.get_prompt(conn, ops, _prompt_ref(conn, r))
    moved = registry.move_label(conn, ops, prompt.id, label, int(variant["version"]),
                                {"experiment_id": exp_id, "variant": body.variant})
    conn.execute(sa.update(experiments).where(experiments.c.id == exp_id)
                 .values(status=STOPPED, stopped_at=utcnow(), stop_reason=f"promoted {body.variant}"))
    ops.record(conn, "experiment.promote", exp_id, Owner(r.org_id, r.team_id),
               {"variant": body.variant, "label": label, "version": moved.version, "previous": moved.previous})
    return PromoteOut(experiment_id=exp_id, variant=body.variant, prompt=r.prompt, label=label,
                      version=moved.version, previous=moved.previous)


def _prompt_ref(conn: sa.Connection, r: Any) -> str:
    from ..store.prompt_tables import prompts

    t = prompts.c
    pid = conn.execute(sa.select(t.id).where(t.name == r.prompt, t.org_id.is_(None) if r.org_id is None
                                             else t.org_id == r.org_id)).scalar()
    return str(pid or r.prompt)


# --- the request path's view --------------------------------------------------------------------------------------


def metric_values(conn: sa.Connection, exp_id: str, metric: str) -> dict[str, list[float]]:
    """Each variant's values of ``metric`` on its calls."""
    rl, fm = request_log.c, feedback_metrics.c
    rows = conn.execute(sa.select(rl.variant, fm.value).select_from(
        request_log.join(feedback_metrics, fm.request_id == rl.request_id))
        .where(rl.experiment_id == exp_id, fm.metric == metric, fm.pending.is_(False)))
    out: dict[str, list[float]] = {}
    for variant, value in rows:
        out.setdefault(str(variant), []).append(float(value))
    return out


def any_running(conn: sa.Connection) -> bool:
    return conn.execute(sa.select(experiments.c.id).where(experiments.c.status == RUNNING).limit(1)).first() \
        is not None


def running(conn: sa.Connection, metrics: Mapping[str, Any]) -> dict[tuple[str, str], list[Running]]:
    """The running experiments by what they split: ``("prompt", name)`` or ``("model", name)``, each with its
    bandit's current allocation."""
    out: dict[tuple[str, str], list[Running]] = {}
    for r in conn.execute(sa.select(experiments).where(experiments.c.status == RUNNING)).all():
        run = Running(r.id, r.org_id, r.prompt, dict(r.spec))
        metric = r.spec.get("metric")
        if r.spec.get("allocation") == "bandit" and metric:
            run.allocation = bandit_allocation(r.spec, metric_values(conn, r.id, metric), metrics.get(metric))
        key = ("model", str(run.model)) if run.model is not None else ("prompt", str(run.prompt))
        out.setdefault(key, []).append(run)
    return out


def requests_served(conn: sa.Connection, exp_id: str) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(request_log)
                            .where(request_log.c.experiment_id == exp_id)).scalar() or 0)
