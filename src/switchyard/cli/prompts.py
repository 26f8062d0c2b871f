"""``switchyard prompts push|pull|list|label|diff``: managed prompts kept in git as YAML files.

A prompt file (``prompts/NAME.yaml``) holds the prompt's ``name``, optionally its ``org`` and ``team`` (ids), a
``description``, the ``labels`` to move to the version it pushes, and the version's spec: ``model``,
``parameters``, ``variables`` (a JSON schema), ``messages``, ``tools``, ``response_format``. ``push`` publishes a
version only when the spec differs from the latest one. Like ``switchyard keys``, the commands work on the store
named by ``--config``, as a super admin; every change is audited as ``cli:<os user>``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import yaml

from ..errors import NotFound
from ..governance.rbac import not_found
from ..prompts import registry
from ..prompts.models import PromptCreate, VersionPublish
from ..prompts.template import SPEC_KEYS
from .keys import config_option, err, governance, operate, out
from .output import csv_option, emit, json_option
from .output import print_json as _print_json

FILE_KEYS = frozenset({"name", "org", "team", "description", "labels"})


@click.group()
def prompts() -> None:
    """Managed prompts: push YAML files, pull versions, list, move labels, diff versions."""


def _read(path: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        err.print(f"[red]{path}:[/red] {e}", highlight=False)
        sys.exit(2)
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        err.print(f"[red]{path}:[/red] a prompt file is a mapping with a 'name'", highlight=False)
        sys.exit(2)
    unknown = sorted(set(data) - FILE_KEYS - SPEC_KEYS)
    if unknown:
        err.print(f"[red]{path}:[/red] unknown key {unknown[0]!r}", highlight=False)
        sys.exit(2)
    return data


@prompts.command("push")
@config_option
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@json_option
def push(config_path: str, files: tuple[str, ...], as_json: bool) -> None:
    """Publish each file's prompt when its spec changed (creating the prompt if it is new)."""
    results = []
    with governance(config_path) as gov:
        for path in files:
            data = _read(path)
            spec = {k: data[k] for k in SPEC_KEYS if k in data}
            name = data["name"]

            def work(conn: Any, ops: Any, data: dict[str, Any] = data, spec: dict[str, Any] = spec,
                     name: str = name) -> Any:
                try:
                    ref = registry.get_prompt(conn, ops, _id_in(conn, data["org"], name) if data.get("org")
                                              else name).id
                except NotFound:
                    ref = registry.create_prompt(conn, ops, PromptCreate(
                        name=name, org_id=data.get("org"), team_id=data.get("team"),
                        description=data.get("description"))).id
                return registry.publish(conn, ops, ref, VersionPublish(spec=spec, labels=list(data.get("labels")
                                                                                              or [])))

            v = operate(gov, work)
            results.append(v)
            status = "unchanged" if v.unchanged else "published"
            if not as_json:
                out.print(f"{path}: {name}@{v.version} {status}", highlight=False)
    if as_json:
        _print_json([v.model_dump(mode="json") for v in results])


def _id_in(conn: Any, org: str, name: str) -> str:
    import sqlalchemy as sa

    from ..store.prompt_tables import prompts as table

    pid = conn.execute(sa.select(table.c.id).where(table.c.org_id == org, table.c.name == name)).scalar()
    return str(pid or name)


@prompts.command("pull")
@config_option
@click.argument("name")
@click.option("--version", "version", type=int, help="this version (default: the label's)")
@click.option("--label", default="production", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="write the YAML here (default: stdout)")
def pull(config_path: str, name: str, version: int | None, label: str, output: str | None) -> None:
    """A version as a prompt file."""
    with governance(config_path) as gov:
        def work(conn: Any, ops: Any) -> Any:
            p = registry.get_prompt(conn, ops, name)
            v = version if version is not None else p.labels.get(label)
            if v is None:
                raise not_found("prompt label", f"{name}:{label}")
            return p, registry.get_version(conn, ops, p.id, v)

        p, v = operate(gov, work)
    head: dict[str, Any] = {"name": p.name}
    if p.org_id:
        head["org"] = p.org_id
    if p.team_id:
        head["team"] = p.team_id
    if p.description:
        head["description"] = p.description
    text = yaml.safe_dump(head, sort_keys=False) + registry.as_yaml(v.spec)
    if output:
        Path(output).write_text(text)
        err.print(f"wrote {p.name}@{v.version} to {output}", highlight=False)
    else:
        click.echo(text, nl=False)


@prompts.command("list")
@config_option
@json_option
@csv_option
def list_(config_path: str, as_json: bool, as_csv: bool) -> None:
    """Every prompt, its latest version and labels."""
    with governance(config_path) as gov:
        rows = operate(gov, registry.list_prompts)
    if as_json:
        _print_json([r.model_dump(mode="json") for r in rows])
        return
    emit([{"id": r.id, "name": r.name, "org": r.org_id, "team": r.team_id, "latest": r.latest_version,
           "labels": [f"{k}={v}" for k, v in r.labels.items()]} for r in rows],
         ["id", "name", "org", "team", "latest", "labels"], False, as_csv)


@prompts.command("label")
@config_option
@click.argument("name")
@click.argument("label")
@click.argument("version", type=int)
def label(config_path: str, name: str, label: str, version: int) -> None:
    """Point LABEL of prompt NAME at VERSION (audited)."""
    with governance(config_path) as gov:
        moved = operate(gov, registry.move_label, name, label, version)
    was = f" (was {moved.previous})" if moved.previous is not None else ""
    out.print(f"{name}:{label} -> {version}{was}", highlight=False)


@prompts.command("diff")
@config_option
@click.argument("name")
@click.argument("v1", type=int)
@click.argument("v2", type=int)
def diff(config_path: str, name: str, v1: int, v2: int) -> None:
    """A unified diff between two versions of prompt NAME."""
    with governance(config_path) as gov:
        d = operate(gov, registry.diff, name, v1, v2)
    click.echo(d.diff or f"{name}@{v1} and {name}@{v2} are the same\n", nl=False)
