"""Prompts in the store: immutable versions, movable labels, scoped to an org (or a team) under RBAC.

Every function takes ``(conn, ops, ...)`` and runs in the caller's transaction (the admin API's, or the CLI's),
so a refused change writes nothing. Rights: an org's members (and its team's) read; its org admins, and a team's
admins for that team's prompts, create, publish and move labels; super admins anything. Every publish and label
move is audited (``prompt.version.create``, ``prompt.label.update``: the version and the spec's SHA-256, never
the text).
"""

from __future__ import annotations

import difflib
import re
import secrets
from typing import Any

import sqlalchemy as sa
import yaml

from ..errors import InvalidRequest
from ..governance.audit import utcnow
from ..governance.errors import Conflict
from ..governance.identity import Ops
from ..governance.rbac import ORG_ADMIN, TEAM_ADMIN, Actor, Owner, forbid, not_found
from ..store.prompt_tables import prompt_labels, prompt_versions, prompts
from .models import LABEL, DiffOut, LabelOut, PromptCreate, PromptOut, VersionOut, VersionPublish
from .template import check_spec, sha256


def reads(a: Actor, org_id: str | None, team_id: str | None) -> bool:
    """Members read their org's prompts (a team's: that team's members and admins, and the org admins)."""
    if a.super:
        return True
    if org_id is None:
        return a.org_id is not None  # a gateway-wide prompt: every org may use it
    if not a.in_org(org_id):
        return False
    return team_id is None or a.role == ORG_ADMIN or a.team_id == team_id


def manages(a: Actor, org_id: str | None, team_id: str | None) -> bool:
    """Publish and move labels: the org's admins; a team's admins for its prompts; super admins."""
    if a.super:
        return True
    if org_id is None or not a.in_org(org_id):
        return False
    return a.role == ORG_ADMIN or (a.role == TEAM_ADMIN and team_id is not None and a.team_id == team_id)


def _row(conn: sa.Connection, ops: Ops, ref: str, lock: bool = False) -> Any:
    """A prompt by id, or by name in the caller's org (then gateway-wide); a 404 when the caller may not read it."""
    t = prompts.c
    q = sa.select(prompts).where(t.id == ref)
    row = conn.execute(q.with_for_update() if lock else q).first()
    if row is None:
        for org in ([ops.actor.org_id] if ops.actor.org_id else []) + [None]:
            q = sa.select(prompts).where(t.name == ref, t.org_id.is_(None) if org is None else t.org_id == org)
            row = conn.execute(q.with_for_update() if lock else q).first()
            if row is not None:
                break
    if row is None and ops.actor.super:  # a super admin without an org: a name unique across orgs
        rows = conn.execute(sa.select(prompts).where(t.name == ref)).all()
        if len(rows) > 1:
            raise Conflict(f"Several orgs have a prompt {ref!r}: name it by its id.", param="prompt",
                           code="ambiguous_prompt")
        row = rows[0] if rows else None
    if row is None or not reads(ops.actor, row.org_id, row.team_id):
        raise not_found("prompt", ref)
    return row


def _out(conn: sa.Connection, row: Any) -> PromptOut:
    labels = {r.label: r.version for r in conn.execute(
        sa.select(prompt_labels).where(prompt_labels.c.prompt_id == row.id).order_by(prompt_labels.c.label))}
    latest = conn.execute(sa.select(sa.func.max(prompt_versions.c.version))
                          .where(prompt_versions.c.prompt_id == row.id)).scalar() or 0
    return PromptOut(id=row.id, name=row.name, org_id=row.org_id, team_id=row.team_id, description=row.description,
                     labels=labels, latest_version=int(latest), created_at=row.created_at, created_by=row.created_by)


def _version_out(row: Any, v: Any, unchanged: bool = False) -> VersionOut:
    return VersionOut(prompt_id=row.id, name=row.name, version=v.version, spec=v.spec, sha256=v.sha256,
                      comment=v.comment, created_at=v.created_at, created_by=v.created_by, unchanged=unchanged)


def create_prompt(conn: sa.Connection, ops: Ops, body: PromptCreate) -> PromptOut:
    a = ops.actor
    org_id = body.org_id if body.org_id is not None else a.org_id
    team_id = body.team_id if body.team_id is not None else (a.team_id if a.role == TEAM_ADMIN else None)
    if not manages(a, org_id, team_id):
        raise forbid("create prompts here", param="team_id" if team_id else "org_id")
    clash = conn.execute(sa.select(prompts.c.id).where(
        prompts.c.name == body.name, prompts.c.org_id.is_(None) if org_id is None else prompts.c.org_id == org_id))
    if clash.first() is not None:
        raise Conflict(f"A prompt named {body.name!r} exists in this org.", param="name", code="prompt_exists")
    pid = "pr_" + secrets.token_hex(8)
    conn.execute(sa.insert(prompts).values(id=pid, org_id=org_id, team_id=team_id, name=body.name,
                                           description=body.description, created_at=utcnow(), created_by=a.id))
    ops.record(conn, "prompt.create", pid, Owner(org_id, team_id), {"name": body.name})
    return _out(conn, _row(conn, ops, pid))


def list_prompts(conn: sa.Connection, ops: Ops) -> list[PromptOut]:
    rows = conn.execute(sa.select(prompts).order_by(prompts.c.org_id, prompts.c.name)).all()
    return [_out(conn, r) for r in rows if reads(ops.actor, r.org_id, r.team_id)]


def get_prompt(conn: sa.Connection, ops: Ops, ref: str) -> PromptOut:
    return _out(conn, _row(conn, ops, ref))


def publish(conn: sa.Connection, ops: Ops, ref: str, body: VersionPublish) -> VersionOut:
    """The next version, unless the spec equals the latest one (then that one, ``unchanged``); then the labels
    named in the body move to it."""
    row = _row(conn, ops, ref, lock=True)  # the prompt's row lock serializes its versions (PostgreSQL)
    if not manages(ops.actor, row.org_id, row.team_id):
        raise forbid("publish versions of this prompt")
    spec = check_spec(body.spec)
    digest = sha256(spec)
    t = prompt_versions.c
    last = conn.execute(sa.select(prompt_versions).where(t.prompt_id == row.id).order_by(t.version.desc())
                        .limit(1)).first()
    if last is not None and last.sha256 == digest:
        out = _version_out(row, last, unchanged=True)
    else:
        version = (last.version if last is not None else 0) + 1
        conn.execute(sa.insert(prompt_versions).values(prompt_id=row.id, version=version, spec=spec, sha256=digest,
                                                       comment=body.comment, created_at=utcnow(),
                                                       created_by=ops.actor.id))
        ops.record(conn, "prompt.version.create", row.id, Owner(row.org_id, row.team_id),
                   {"name": row.name, "version": version, "sha256": digest})
        out = get_version(conn, ops, row.id, version)
    for label in body.labels:
        move_label(conn, ops, row.id, label, out.version)
    return out


def versions(conn: sa.Connection, ops: Ops, ref: str) -> list[VersionOut]:
    row = _row(conn, ops, ref)
    rows = conn.execute(sa.select(prompt_versions).where(prompt_versions.c.prompt_id == row.id)
                        .order_by(prompt_versions.c.version))
    return [_version_out(row, v) for v in rows]


def get_version(conn: sa.Connection, ops: Ops, ref: str, version: int) -> VersionOut:
    row = _row(conn, ops, ref)
    v = conn.execute(sa.select(prompt_versions).where(prompt_versions.c.prompt_id == row.id,
                                                      prompt_versions.c.version == version)).first()
    if v is None:
        raise not_found("prompt version", f"{row.name}@{version}")
    return _version_out(row, v)


def move_label(conn: sa.Connection, ops: Ops, ref: str, label: str, version: int,
               reason: dict[str, Any] | None = None) -> LabelOut:
    """Point ``label`` at ``version`` (creating the label); audited with the version it pointed at before."""
    if not re.match(LABEL, label):
        raise InvalidRequest("A label is 1-64 letters, digits, '.', '_' or '-'.", param="label")
    row = _row(conn, ops, ref, lock=True)
    if not manages(ops.actor, row.org_id, row.team_id):
        raise forbid("move this prompt's labels")
    get_version(conn, ops, row.id, version)  # a 404 for a version that does not exist
    t = prompt_labels.c
    prev = conn.execute(sa.select(t.version).where(t.prompt_id == row.id, t.label == label)).scalar()
    now = utcnow()
    if prev is None:
        conn.execute(sa.insert(prompt_labels).values(prompt_id=row.id, label=label, version=version, updated_at=now,
                                                     updated_by=ops.actor.id))
    else:
        conn.execute(sa.update(prompt_labels).where(t.prompt_id == row.id, t.label == label)
                     .values(version=version, updated_at=now, updated_by=ops.actor.id))
    ops.record(conn, "prompt.label.update", row.id, Owner(row.org_id, row.team_id),
               {"name": row.name, "label": label, "version": version, "previous": prev, **(reason or {})})
    return LabelOut(prompt_id=row.id, label=label, version=version, previous=prev)


def diff(conn: sa.Connection, ops: Ops, ref: str, v1: int, v2: int) -> DiffOut:
    a, b = get_version(conn, ops, ref, v1), get_version(conn, ops, ref, v2)
    text = unified(a.spec, b.spec, f"{a.name}@{v1}", f"{b.name}@{v2}")
    return DiffOut(prompt_id=a.prompt_id, v1=v1, v2=v2, diff=text)


def unified(a: dict[str, Any], b: dict[str, Any], name_a: str, name_b: str) -> str:
    """A unified diff of two specs, as YAML (keys in a fixed order; templates as block text)."""
    return "".join(difflib.unified_diff(as_yaml(a).splitlines(keepends=True), as_yaml(b).splitlines(keepends=True),
                                        fromfile=name_a, tofile=name_b))


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(str, _str_presenter)


def as_yaml(spec: dict[str, Any]) -> str:
    order = ("model", "parameters", "variables", "messages", "tools", "response_format")
    data = {k: spec[k] for k in order if spec.get(k) not in (None, {}, [])}
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


def resolve(conn: sa.Connection, org_id: str | None, name: str, label: str | None,
            version: int | None) -> tuple[int, dict[str, Any]] | None:
    """For the request path: the version (and its spec) that ``name`` with ``label`` or ``version`` names, in the
    org (or gateway-wide); None when there is none."""
    t = prompts.c
    for org in ([org_id] if org_id else []) + [None]:
        pid = conn.execute(sa.select(t.id).where(t.name == name, t.org_id.is_(None) if org is None
                                                 else t.org_id == org)).scalar()
        if pid is None:
            continue
        if version is None:
            version = conn.execute(sa.select(prompt_labels.c.version).where(
                prompt_labels.c.prompt_id == pid, prompt_labels.c.label == (label or "production"))).scalar()
            if version is None:
                return None
        spec = conn.execute(sa.select(prompt_versions.c.spec).where(
            prompt_versions.c.prompt_id == pid, prompt_versions.c.version == version)).scalar()
        return (int(version), dict(spec)) if spec is not None else None
    return None
