"""``switchyard workflow validate|run|status|list``: check a definition offline, or drive a gateway's runs.

``validate`` needs no gateway: it names the exact step and field of every problem (exit status 2). The others call
a running gateway (``--url``, ``$SWITCHYARD_URL``; the key: ``--key`` or ``$SWITCHYARD_API_KEY``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import click

_url = click.option("--url", envvar="SWITCHYARD_URL", default="http://127.0.0.1:4000", show_default=True,
                    help="the gateway (or $SWITCHYARD_URL)")
_key = click.option("--key", envvar="SWITCHYARD_API_KEY", required=True, help="an API key (or $SWITCHYARD_API_KEY)")


@click.group()
def workflow() -> None:
    """Durable multi-model workflows (docs/workflows.md)."""


@workflow.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="a gateway config: its tools, its managed prompts (in its store) and conversations are then "
                   "checked too")
@click.option("--org", "org_id", default=None, help="with --config: look prompts up as this org's keys would")
def validate(path: str, config_path: str | None, org_id: str | None) -> None:
    """Check a workflow file: each problem names the step and the field."""
    from ..workflows.definition import Known, WorkflowInvalid, load_workflow_file

    with contextlib.ExitStack() as stack:
        known = None
        if config_path is not None:
            from .main import _load

            cfg = _load(config_path)
            known = Known(tools=set(cfg.workflows.tools) if cfg.workflows is not None else set(),
                          prompts=stack.enter_context(_prompts(cfg.store, org_id)),
                          conversations=cfg.state is not None)
        try:
            wf = load_workflow_file(path, known)
        except WorkflowInvalid as e:
            click.secho(f"{e.source}: invalid workflow", fg="red", err=True)
            for p in e.problems:
                click.echo(f"  {p}", err=True)
            sys.exit(2)
    order = " -> ".join(s.id for s in wf.order())
    click.echo(f"{path}: workflow {wf.name!r} version {wf.version} is valid ({len(wf.steps)} steps: {order})")


@contextlib.contextmanager
def _prompts(store: str, org_id: str | None) -> Iterator[Any]:
    """A prompt lookup on the config's store, read only. A store that does not exist (or was never migrated) has
    no prompts: each prompt reference is then reported unknown."""
    import sqlalchemy as sa

    from ..store.db import create_engine_for
    from ..workflows.definition import PromptMissing
    from ..workflows.prompt_lookup import prompt_lookup

    path = store[len("sqlite:///"):].partition("?")[0] if store.startswith("sqlite:///") else None
    if path is not None and (path == ":memory:" or not os.path.exists(path)):
        yield lambda name, label, version: PromptMissing("name", f"unknown prompt {name!r} (the store {store} "
                                                                 "does not exist)")
        return
    engine = create_engine_for(store)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("prompts"):
                yield lambda name, label, version: PromptMissing("name", f"unknown prompt {name!r} (the store has "
                                                                         "no prompts)")
            else:
                yield prompt_lookup(conn, org_id)
    except sa.exc.OperationalError as e:
        click.secho(f"cannot read the store to check prompts: {e.orig or e}", fg="red", err=True)
        sys.exit(1)
    finally:
        engine.dispose()


def _call(method: str, url: str, key: str, path: str, **kwargs: Any) -> Any:
    import httpx

    try:
        r = httpx.request(method, url.rstrip("/") + path, headers={"authorization": f"Bearer {key}",
                                                                    **kwargs.pop("headers", {})},
                          timeout=60, **kwargs)
    except httpx.HTTPError as e:
        click.secho(f"cannot reach {url}: {e}", fg="red", err=True)
        sys.exit(1)
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    if r.status_code >= 400:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        click.secho(f"{r.status_code}: {err.get('message') or r.text}", fg="red", err=True)
        sys.exit(1)
    return body


def _show(run: dict[str, Any]) -> None:
    click.echo(json.dumps(run, indent=2, sort_keys=False))


@workflow.command()
@click.argument("name")
@click.option("--input", "input_json", default="{}", help="the run's input, as JSON")
@click.option("--idempotency-key", default=None, help="retrying with the same key never starts a second run")
@click.option("--wait/--no-wait", default=True, show_default=True, help="wait for the run to end")
@_url
@_key
def run(name: str, input_json: str, idempotency_key: str | None, wait: bool, url: str, key: str) -> None:
    """Start a run of workflow NAME and (by default) wait for it."""
    try:
        value = json.loads(input_json)
    except ValueError as e:
        raise click.BadParameter(f"not JSON: {e}", param_hint="--input") from None
    headers = {"idempotency-key": idempotency_key} if idempotency_key else {}
    got = _call("POST", url, key, f"/v1/workflows/{name}/runs", json={"input": value}, headers=headers)
    while wait and got["status"] in ("running", "queued"):
        time.sleep(0.2)
        got = _call("GET", url, key, f"/v1/workflows/runs/{got['id']}")
    _show(got)
    if got["status"] in ("failed", "cancelled"):
        sys.exit(1)


@workflow.command()
@click.argument("run_id")
@_url
@_key
def status(run_id: str, url: str, key: str) -> None:
    """A run's status, output, cost and steps."""
    _show(_call("GET", url, key, f"/v1/workflows/runs/{run_id}"))


@workflow.command("list")
@click.option("--scope", type=click.Choice(["key", "team", "org"]), default="key", show_default=True)
@click.option("--workflow", "name", default=None, help="only this workflow's runs")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
@_url
@_key
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of lines")
@click.option("--csv", "as_csv", is_flag=True, help="print CSV instead of lines")
def list_runs(scope: str, name: str | None, limit: int, url: str, key: str, as_json: bool, as_csv: bool) -> None:
    """The runs you may see, newest first."""
    params: dict[str, Any] = {"scope": scope, "limit": limit}
    if name:
        params["workflow"] = name
    runs = _call("GET", url, key, "/v1/workflows/runs", params=params)["data"]
    if as_json or as_csv:
        from .output import emit

        emit(runs, ["id", "created_at", "status", "workflow", "version", "key"], as_json, as_csv)
        return
    for r in runs:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["created_at"]))
        click.echo(f"{r['id']}  {created}  {r['status']:<9}  {r['workflow']} v{r['version']}  key={r['key']}")
