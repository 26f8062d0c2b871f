"""``switchyard teams create|list|delete|add-user|member-budget``: teams (and their orgs and users), on the store.

Like ``switchyard keys``, these commands work on the store named by ``--config`` as a super admin, and every
change is audited as ``cli:<os user>``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import click
import sqlalchemy as sa

from ..governance import identity, limits, member_budget
from ..governance.models import BudgetCreate, BudgetUpdate, OrgCreate, TeamCreate, TeamQuery, UserCreate
from ..store.identity_tables import budgets, orgs
from .keys import _csv, config_option, err, find_team, governance, operate, out
from .output import csv_option, emit, json_option, plain
from .output import print_json as _print_json


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
@csv_option
def list_(config_path: str, org_ref: str | None, as_json: bool, as_csv: bool) -> None:
    """List teams, with their orgs' names and their member budgets."""
    with governance(config_path) as gov:
        org_id = None
        if org_ref:
            with gov.db.read() as conn:
                org_id = _find_org(conn, org_ref)
            if org_id is None:
                raise click.ClickException(f"no org {org_ref!r}")
        rows = operate(gov, identity.list_teams, TeamQuery(org_id=org_id, limit=1000))
        with gov.db.read() as conn:
            org_names = {r.id: r.name for r in conn.execute(sa.select(orgs.c.id, orgs.c.name))}
            templates = _templates(conn, [t.id for t in rows])
    if as_json:
        _print_json([t.model_dump(mode="json") for t in rows])
        return
    emit([{**t.model_dump(mode="json"), "org": org_names.get(t.org_id),
           "models": t.models if t.models is not None else "all",
           "member_budget": ", ".join(_describe(b) for b in templates.get(t.id, ())) or None} for t in rows],
         ["id", "name", "org_id", "org", "models", "member_budget", "created_at"], False, as_csv)


def _templates(conn: sa.Connection, team_ids: list[str]) -> dict[str, list[Any]]:
    """Each team's member budgets (templates), by team id."""
    found: dict[str, list[Any]] = {}
    if team_ids:
        for b in conn.execute(sa.select(budgets).where(budgets.c.scope == member_budget.SCOPE,
                                                       budgets.c.scope_id.in_(team_ids)).order_by(budgets.c.id)):
            found.setdefault(b.scope_id, []).append(b)
    return found


def _describe(b: Any) -> str:
    """``$200.00 weekly``, ``100000 tokens monthly``, or both."""
    parts = ([f"${plain(Decimal(str(b.max_usd)))}"] if b.max_usd is not None else []) + (
        [f"{b.max_tokens} tokens"] if b.max_tokens is not None else [])
    return f"{' and '.join(parts)} {b.period}"


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


@teams.command("member-budget")
@config_option
@click.argument("team_ref")
@click.option("--usd", "max_usd", type=float, help="each member's USD limit per period")
@click.option("--tokens", "max_tokens", type=int, help="each member's token limit per period")
@click.option("--period", type=click.Choice(["daily", "weekly", "monthly", "total"]),
              help="the period (a new member budget: monthly)")
@click.option("--name", help="a label (default: member budget)")
@click.option("--clear", is_flag=True, help="remove the team's member budget (every one, if it has several)")
@json_option
def member_budget_command(config_path: str, team_ref: str, max_usd: float | None, max_tokens: int | None,
                          period: str | None, name: str | None, clear: bool, as_json: bool) -> None:
    """Show, set or clear TEAM's member budget: the budget every user of the team gets a copy of (its own spend,
    its own limit). E.g. --usd 200 --period weekly. Without options, show it."""
    changing = max_usd is not None or max_tokens is not None or period is not None or name is not None
    if clear and changing:
        raise click.UsageError("give --clear alone, or the limits to set")
    with governance(config_path) as gov:
        with gov.db.read() as conn:
            team_id = find_team(conn, team_ref)
            current = _templates(conn, [team_id]).get(team_id, [])
        if len(current) > 1 and changing:
            raise click.UsageError(f"team {team_ref!r} has {len(current)} member budgets: change them with "
                                   "switchyard budgets (scope members)")
        if clear:
            for b in current:
                operate(gov, limits.delete_budget, b.id)
            err.print(f"cleared the member budget of team {team_id}" if current else
                      f"team {team_id} has no member budget", highlight=False)
            return
        if not changing:
            shown = [operate(gov, limits.get_budget, b.id) for b in current]
        elif current:
            fields = {"max_usd": max_usd, "max_tokens": max_tokens, "period": period, "name": name}
            shown = [operate(gov, limits.update_budget, current[0].id,
                             BudgetUpdate(**{k: v for k, v in fields.items() if v is not None}))]
        else:
            if max_usd is None and max_tokens is None:
                raise click.UsageError("give --usd or --tokens (or both)")
            shown = [operate(gov, limits.create_budget, BudgetCreate(
                scope=member_budget.SCOPE, scope_id=team_id, name=name or "member budget",
                period=period or "monthly", max_usd=max_usd, max_tokens=max_tokens))]
    if as_json:
        _print_json([b.model_dump(mode="json") for b in shown])
    elif not shown:
        out.print(f"team {team_id} has no member budget", highlight=False)
    for b in [] if as_json else shown:
        out.print(f"member budget {b.id} of team {team_id}: {_describe(b)} for each member", highlight=False)
