"""``switchyard keys create|list|revoke``: virtual keys, straight on the store named by ``--config``.

The CLI talks to the store directly (not to a running gateway): whoever can read the config and reach the store
is a super admin, as the master key is. Every change is audited with the actor ``cli:<os user>``, bumps the
identity version like an admin API call, and so reaches every running gateway within a second.
"""

from __future__ import annotations

import contextlib
import getpass
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click
import sqlalchemy as sa
from rich.console import Console

from ..config import Config, ConfigError, default_config_path, load_config
from ..errors import SwitchyardError
from ..governance import identity
from ..governance.identity import Ops
from ..governance.models import KeyCreate, KeyQuery
from ..governance.rbac import Actor
from ..store.db import migrate
from ..store.identity_tables import teams, users
from .output import csv_option, emit, json_option
from .output import print_json as _print_json

T = TypeVar("T")
err = Console(stderr=True, soft_wrap=True)  # an error or warning stays on one line, however long
out = Console() if sys.stdout.isatty() else Console(width=100_000)  # a pipe or a file gets whole tables: no id cut

config_option = click.option("--config", "config_path", default=default_config_path, type=click.Path(dir_okay=False),
                             help="the gateway's YAML config, whose store and secrets are used (default: "
                                  "$SWITCHYARD_CONFIG, else ./switchyard.yaml)")


def load(path: str) -> Config:
    from .main import require_file

    require_file(path)
    try:
        return load_config(path)
    except ConfigError as e:
        err.print(f"[red]{e.source}: invalid configuration[/red]")
        for p in e.problems:
            err.print(f"  {p}", markup=False, highlight=False)
        sys.exit(2)


@contextlib.contextmanager
def governance(config_path: str) -> Iterator[Any]:
    """A Governance runtime on the config's store (schema brought to head), for one CLI command."""
    from ..governance.runtime import Governance
    from .serve import check_secrets

    cfg = load(config_path)
    check_secrets(cfg, config_path)
    warn_if_new_store(cfg, config_path)
    gov = Governance(cfg)
    try:
        migrate(gov.db.engine)
        yield gov
    except SwitchyardError as e:
        err.print(f"[red]error:[/red] {e.message}", highlight=False)
        sys.exit(1)
    except sa.exc.IntegrityError as e:
        err.print(f"[red]error (409 conflict):[/red] {conflict_message(e)}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except sa.exc.OperationalError as e:
        err.print(f"[red]error:[/red] the store is unreachable ({gov.db.describe(e)})", highlight=False)
        sys.exit(1)
    finally:
        gov.db.engine.dispose()


def warn_if_new_store(cfg: Config, config_path: str) -> None:
    """Say so when a SQLite store does not exist yet: the command is about to create an empty one, which is
    seldom what was meant (a wrong ``--config``, or a relative path that points elsewhere)."""
    prefix = "sqlite:///"
    if not cfg.store.startswith(prefix):
        return
    path = cfg.store[len(prefix):].partition("?")[0]
    if path and path != ":memory:" and not Path(path).exists():
        err.print(f"[yellow]warning:[/yellow] no store at {path}: creating a new, empty one (the store of "
                  f"{config_path}; is this the config the gateway runs with?)", highlight=False, soft_wrap=True)


_UNIQUE = re.compile(r"UNIQUE constraint failed: (\w+)\.|Key \(([^)]*)\)=\(([^)]*)\) already exists"
                     r"|violates unique constraint \W*(\w+)")


def conflict_message(e: sa.exc.IntegrityError) -> str:
    """One line for a uniqueness clash, in the admin API's words, never the driver's exception."""
    text = str(e.orig or e)
    m = _UNIQUE.search(text)
    if m and m.group(1):
        return f"a {m.group(1).rstrip('s').replace('_', ' ')} with that name already exists"
    if m and m.group(2):
        return f"{m.group(2)} {m.group(3)!r} is already taken"
    return "that name is already taken" if m else "the change conflicts with existing data"


def operate(gov: Any, fn: Callable[..., T], *args: Any) -> T:
    """``fn(conn, ops, *args)`` in one write transaction, as the CLI actor."""
    ops = Ops(actor=Actor.cli(getpass.getuser()), audit=gov.audit, hasher=gov.hasher, known_models=gov.known_models)
    with gov.db.write() as conn:
        return fn(conn, ops, *args)


def find_team(conn: sa.Connection, ref: str) -> str:
    """A team id from an id or a unique name."""
    rows = conn.execute(sa.select(teams.c.id).where(sa.or_(teams.c.id == ref, teams.c.name == ref))).scalars().all()
    if len(rows) != 1:
        raise click.ClickException(f"no team {ref!r}" if not rows else f"several teams are called {ref!r}: use the id")
    return str(rows[0])


def find_user(conn: sa.Connection, ref: str) -> str:
    """A user id from an id or a unique email."""
    rows = conn.execute(sa.select(users.c.id).where(sa.or_(users.c.id == ref, users.c.email == ref))).scalars().all()
    if len(rows) != 1:
        raise click.ClickException(f"no user {ref!r}" if not rows else
                                   f"several users have the email {ref!r}: use the id")
    return str(rows[0])


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")


def seconds(text: str) -> float:
    m = _DURATION.match(text.strip())
    if not m:
        raise click.BadParameter("use a number with an optional unit: 3600, 90m, 12h, 30d, 2w")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def _csv(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


@click.group()
def keys() -> None:
    """Virtual keys: create (the secret is shown once), list (never the secret), revoke."""


@keys.command("create")
@config_option
@click.option("--user", "user_ref", help="owner: a user id or email")
@click.option("--team", "team_ref", help="owner (a team key), or the user's team: a team id or name")
@click.option("--name", help="a label for the key")
@click.option("--models", multiple=True, help="deployments and routes it may use (comma-separated; default: all)")
@click.option("--tag", "tags", multiple=True, help="a tag (repeatable), for tag budgets and spend reports")
@click.option("--logging", "logging_mode", type=click.Choice(["none", "metadata", "full"]), default="none",
              show_default=True, help="payload logging in the audit log")
@click.option("--expires-in", help="lifetime: 3600, 90m, 12h, 30d, 2w (default: never)")
@click.option("--meta", multiple=True, help="metadata as key=value (repeatable)")
@json_option
def create(config_path: str, user_ref: str | None, team_ref: str | None, name: str | None, models: tuple[str, ...],
           tags: tuple[str, ...], logging_mode: str, expires_in: str | None, meta: tuple[str, ...],
           as_json: bool) -> None:
    """Create a key for a user or a team. Prints the key: it is never shown again."""
    if not user_ref and not team_ref:
        raise click.UsageError("give --user or --team: a key belongs to a user or a team")
    metadata = {}
    for item in meta:
        k, sep, v = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint="--meta")
        metadata[k] = v
    with governance(config_path) as gov:
        with gov.db.read() as conn:
            user_id = find_user(conn, user_ref) if user_ref else None
            team_id = find_team(conn, team_ref) if team_ref and not user_ref else None
        body = KeyCreate(name=name, user_id=user_id, team_id=team_id, models=_csv(models) or None, tags=list(tags),
                         metadata=metadata, logging=logging_mode,
                         expires_in=seconds(expires_in) if expires_in else None)
        key = operate(gov, identity.create_key, body)
    if as_json:
        _print_json(key.model_dump(mode="json"))
        return
    out.print(f"[bold green]{key.secret}[/bold green]", highlight=False)
    err.print(f"created key {key.id} ({key.prefix}) for {key.user_id or key.team_id}: store it now, it is not "
              f"shown again", highlight=False)


@keys.command("list")
@config_option
@click.option("--org", "org_id", help="only this org's keys (id)")
@click.option("--team", "team_ref", help="only this team's keys (id or name)")
@click.option("--user", "user_ref", help="only this user's keys (id or email)")
@click.option("--all", "include_revoked", is_flag=True, help="include revoked keys")
@json_option
@csv_option
def list_(config_path: str, org_id: str | None, team_ref: str | None, user_ref: str | None, include_revoked: bool,
          as_json: bool, as_csv: bool) -> None:
    """List keys: prefixes only, never secrets or hashes."""
    with governance(config_path) as gov:
        with gov.db.read() as conn:
            team_id = find_team(conn, team_ref) if team_ref else None
            user_id = find_user(conn, user_ref) if user_ref else None
        q = KeyQuery(org_id=org_id, team_id=team_id, user_id=user_id, include_revoked=include_revoked, limit=1000)
        rows = operate(gov, identity.list_keys, q)
        with gov.db.read() as conn:
            emails = {r.id: r.email for r in conn.execute(sa.select(users.c.id, users.c.email).where(
                users.c.id.in_(sorted({k.user_id for k in rows if k.user_id}))))}
    if as_json:  # the admin API's objects, with the owner's email beside its id
        _print_json([{**k.model_dump(mode="json"), "user_email": emails.get(k.user_id or "")} for k in rows])
        return
    emit([{**k.model_dump(mode="json"), "owner": emails.get(k.user_id or "") or k.user_id or f"team {k.team_id}",
           "models": k.models if k.models is not None else "all"} for k in rows],
         ["id", "prefix", "name", "owner", "user_id", "team_id", "models", "tags", "logging", "expires_at", "status"],
         False, as_csv)


@keys.command("revoke")
@config_option
@click.argument("key_ids", nargs=-1, required=True)
def revoke(config_path: str, key_ids: tuple[str, ...]) -> None:
    """Revoke keys by id: every running gateway refuses them within a second."""
    with governance(config_path) as gov:
        for key_id in key_ids:
            key = operate(gov, identity.revoke_key, key_id)
            err.print(f"revoked {key.id} ({key.prefix})", highlight=False)
