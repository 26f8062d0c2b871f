"""``switchyard teams create|list|delete|add-user``: teams (and their orgs and users), on the store.

Like ``switchyard keys``, these commands work on the store named by ``--config`` as a super admin, and every
change is audited as ``cli:<os user>``.
"""

from __future__ import annotations

import click
import sqlalchemy as sa
from rich.table import Table

from ..governance import identity
from ..governance.models import OrgCreate, TeamCreate, TeamQuery, UserCreate
from ..store.identity_tables import orgs
from .keys import _csv, _print_json, config_option, err, find_team, governance, json_option, operate, out


def _find_org(conn: sa.Connection, ref: str) -> str | None:
    return conn.execute(sa.select(orgs.c.id).where(sa.or_(orgs.c.id == ref, orgs.c.name == ref))).scalar()


@click.group()
def teams() -> None:
    """Teams: create, list, delete, and add users to them."""


@teams.command("create")
@config_option
@click.argument("name")
@click.option("--org", "org_ref", required=True, help="the org's id or name; a new name creates the org")
@click.option("--models", multiple=True, help="deployments and routes the team's keys may use (default: all)")
@json_option
def create(config_path: str, name: str, org_ref: str, models: tuple[str, ...], as_json: bool) -> None:
    """Create a team in an org (creating the org if ORG is a new name)."""
    with governance(config_path) as gov:
        with gov.db.read() as conn:
            org_id = _find_org(conn, org_ref)
        if org_id is None:
            org_id = operate(gov, identity.create_org, OrgCreate(name=org_ref)).id
            err.print(f"created org {org_id} ({org_ref})", highlight=False)
        team = operate(gov, identity.create_team, TeamCreate(name=name, org_id=org_id, models=_csv(models) or None))
    if as_json:
        _print_json(team.model_dump(mode="json"))
    else:
        out.print(f"created team {team.id} ({team.name}) in org {team.org_id}", highlight=False)


@teams.command("list")
@config_option
@click.option("--org", "org_ref", help="only this org's teams (id or name)")
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="print CSV instead of a table")
def list_(config_path: str, org_ref: str | None, as_json: bool, as_csv: bool) -> None:
    """List teams."""
    with governance(config_path) as gov:
        org_id = None
        if org_ref:
            with gov.db.read() as conn:
                org_id = _find_org(conn, org_ref)
            if org_id is None:
                raise click.UsageError(f"no org {org_ref!r}")
        rows = operate(gov, identity.list_teams, TeamQuery(org_id=org_id, limit=1000))
    if as_json:
        _print_json([t.model_dump(mode="json") for t in rows])
        return
    if as_csv:
        import csv
        import sys

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["id", "name", "org_id", "models", "created_at"])
        for t in rows:
            w.writerow([t.id, t.name, t.org_id, " ".join(t.models) if t.models is not None else "all",
                        t.created_at.isoformat()])
        return
    table = Table("id", "name", "org", "models", "created")
    for t in rows:
        table.add_row(t.id, t.name, t.org_id, ", ".join(t.models) if t.models is not None else "all",
                      t.created_at.strftime("%Y-%m-%d %H:%M"))
    out.print(table)


@teams.command("delete")
@config_option
@click.argument("team_ref")
def delete(config_path: str, team_ref: str) -> None:
    """Delete a team with no users left; its keys are revoked."""
    with governance(config_path) as gov:
        with gov.db.read() as conn:
            team_id = find_team(conn, team_ref)
        operate(gov, identity.delete_team, team_id)
    err.print(f"deleted team {team_id}", highlight=False)


@teams.command("add-user")
@config_option
@click.argument("team_ref")
@click.argument("email")
@click.option("--role", type=click.Choice(["member", "team_admin", "org_admin", "auditor"]), default="member",
              show_default=True)
@click.option("--name", help="the user's display name")
@json_option
def add_user(config_path: str, team_ref: str, email: str, role: str, name: str | None, as_json: bool) -> None:
    """Create a user in a team (e.g. its first team_admin)."""
    with governance(config_path) as gov:
        with gov.db.read() as conn:
            team_id = find_team(conn, team_ref)
        user = operate(gov, identity.create_user, UserCreate(email=email, name=name, role=role,
                                                             team_id=team_id))
    if as_json:
        _print_json(user.model_dump(mode="json"))
    else:
        out.print(f"created user {user.id} ({user.email}, {user.role}) in team {team_id}", highlight=False)
