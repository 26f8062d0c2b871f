"""``switchyard orgs|users|budgets|rate-limits``: the rest of governance, on the store named by ``--config``.

As ``switchyard keys`` and ``teams``: a super admin on the store, every change audited as ``cli:<os user>``. Each
list prints a table (ids never cut), ``--json`` or ``--csv``. ``budgets status`` shows spent, held, remaining and
the reset time; held is what calls in flight reserve, known only to a running gateway (``GET
/admin/budgets/{id}/status``), so the CLI shows it as unknown.
"""

from __future__ import annotations

import csv
import sys
from typing import Any

import click
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from ..governance import budget_status, identity, limits
from ..governance.models import (
    BudgetCreate,
    LimitQuery,
    OrgCreate,
    OrgScopedPage,
    RateLimitCreate,
    UserCreate,
    UserQuery,
)
from ..store.identity_tables import orgs as orgs_table
from .keys import _print_json, config_option, err, find_team, find_user, governance, json_option, operate, out

csv_option = click.option("--csv", "as_csv", is_flag=True, help="print CSV instead of a table")


def emit(rows: list[dict[str, Any]], cols: list[str], as_json: bool, as_csv: bool) -> None:
    """Rows as a table (no cell is ever cut), JSON or CSV."""
    if as_json:
        _print_json(rows)
        return
    if as_csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in cols])
        return
    table = Table()
    for c in cols:
        table.add_column(c, overflow="fold", no_wrap=not sys.stdout.isatty())
    for r in rows:
        table.add_row(*["-" if r.get(c) is None else str(r.get(c)) for c in cols])
    # a pipe or a file gets the whole table, however wide; a terminal folds long cells, never cuts them
    (out if sys.stdout.isatty() else Console(width=100_000)).print(table)


def find_org(conn: sa.Connection, ref: str) -> str:
    rows = conn.execute(sa.select(orgs_table.c.id).where(
        sa.or_(orgs_table.c.id == ref, orgs_table.c.name == ref))).scalars().all()
    if len(rows) != 1:
        raise click.UsageError(f"no org {ref!r}" if not rows else f"several orgs are called {ref!r}: use the id")
    return str(rows[0])


def scope_id(conn: sa.Connection, scope: str, ref: str) -> str:
    """An id from a reference: a team's name, a user's email, an org's name (a key or a tag as given)."""
    if scope == "team":
        return find_team(conn, ref)
    if scope == "user":
        return find_user(conn, ref)
    if scope == "org":
        return find_org(conn, ref)
    return ref


# --- orgs --------------------------------------------------------------------------------------------------------


@click.group()
def orgs() -> None:
    """Organizations: create and list."""


@orgs.command("create")
@config_option
@click.argument("name")
@json_option
def orgs_create(config_path: str, name: str, as_json: bool) -> None:
    """Create an org."""
    with governance(config_path) as gov:
        org = operate(gov, identity.create_org, OrgCreate(name=name))
    if as_json:
        _print_json(org.model_dump(mode="json"))
    else:
        out.print(f"created org {org.id} ({org.name})", highlight=False)


@orgs.command("list")
@config_option
@json_option
@csv_option
def orgs_list(config_path: str, as_json: bool, as_csv: bool) -> None:
    """List orgs."""
    with governance(config_path) as gov:
        rows = operate(gov, identity.list_orgs, OrgScopedPage(limit=1000))
    emit([o.model_dump(mode="json") for o in rows], ["id", "name", "created_at"], as_json, as_csv)


# --- users -------------------------------------------------------------------------------------------------------


@click.group()
def users() -> None:
    """Users: create and list."""


@users.command("create")
@config_option
@click.argument("email")
@click.option("--team", "team_ref", help="the user's team (id or name)")
@click.option("--org", "org_ref", help="the user's org (id or name), for a user in no team")
@click.option("--role", type=click.Choice(["member", "team_admin", "org_admin", "auditor"]), default="member",
              show_default=True)
@click.option("--name", help="the user's display name")
@json_option
def users_create(config_path: str, email: str, team_ref: str | None, org_ref: str | None, role: str,
                 name: str | None, as_json: bool) -> None:
    """Create a user."""
    if not team_ref and not org_ref:
        raise click.UsageError("give --team or --org: a user belongs to an org")
    with governance(config_path) as gov:
        with gov.db.read() as conn:
            team_id = find_team(conn, team_ref) if team_ref else None
            org_id = find_org(conn, org_ref) if org_ref else None
        user = operate(gov, identity.create_user, UserCreate(email=email, name=name, role=role, team_id=team_id,
                                                             org_id=org_id))
    if as_json:
        _print_json(user.model_dump(mode="json"))
    else:
        out.print(f"created user {user.id} ({user.email}, {user.role})", highlight=False)


@users.command("list")
@config_option
@click.option("--team", "team_ref", help="only this team's users (id or name)")
@json_option
@csv_option
def users_list(config_path: str, team_ref: str | None, as_json: bool, as_csv: bool) -> None:
    """List users."""
    with governance(config_path) as gov:
        with gov.db.read() as conn:
            team_id = find_team(conn, team_ref) if team_ref else None
        rows = operate(gov, identity.list_users, UserQuery(team_id=team_id, limit=1000))
    emit([u.model_dump(mode="json") for u in rows], ["id", "email", "name", "role", "team_id", "org_id"],
         as_json, as_csv)


# --- budgets -----------------------------------------------------------------------------------------------------

SCOPES = click.Choice(["key", "user", "team", "org", "tag"])


@click.group()
def budgets() -> None:
    """Budgets: create, list, delete, and where each stands (status)."""


@budgets.command("create")
@config_option
@click.option("--scope", type=SCOPES, required=True)
@click.option("--for", "ref", required=True, help="the key id, user (id or email), team or org (id or name), or tag")
@click.option("--usd", "max_usd", type=float, help="the USD limit per period")
@click.option("--tokens", "max_tokens", type=int, help="the token limit per period")
@click.option("--period", type=click.Choice(["daily", "weekly", "monthly", "total"]), default="monthly",
              show_default=True)
@click.option("--name", help="a label")
@json_option
def budgets_create(config_path: str, scope: str, ref: str, max_usd: float | None, max_tokens: int | None,
                   period: str, name: str | None, as_json: bool) -> None:
    """Define a budget."""
    if max_usd is None and max_tokens is None:
        raise click.UsageError("give --usd or --tokens (or both)")
    with governance(config_path) as gov:
        with gov.db.read() as conn:
            sid = scope_id(conn, scope, ref)
        b = operate(gov, limits.create_budget, BudgetCreate(scope=scope, scope_id=sid, name=name, period=period,
                                                            max_usd=max_usd, max_tokens=max_tokens))
    if as_json:
        _print_json(b.model_dump(mode="json"))
    else:
        out.print(f"created budget {b.id} ({b.scope} {b.scope_id}, {b.period})", highlight=False)


@budgets.command("list")
@config_option
@json_option
@csv_option
def budgets_list(config_path: str, as_json: bool, as_csv: bool) -> None:
    """List budgets."""
    with governance(config_path) as gov:
        rows = operate(gov, limits.list_budgets, LimitQuery(limit=1000))
    emit([b.model_dump(mode="json") for b in rows],
         ["id", "name", "scope", "scope_id", "period", "max_usd", "max_tokens"], as_json, as_csv)


@budgets.command("delete")
@config_option
@click.argument("budget_id")
def budgets_delete(config_path: str, budget_id: str) -> None:
    """Delete a budget."""
    with governance(config_path) as gov:
        operate(gov, limits.delete_budget, budget_id)
    err.print(f"deleted budget {budget_id}", highlight=False)


@budgets.command("status")
@config_option
@click.argument("budget_ids", nargs=-1)
@json_option
@csv_option
def budgets_status(config_path: str, budget_ids: tuple[str, ...], as_json: bool, as_csv: bool) -> None:
    """Spent, remaining and reset time of the given budgets (default: all). Held amounts live in a running
    gateway: ask it with GET /admin/budgets/{id}/status."""
    with governance(config_path) as gov:
        found = [operate(gov, limits.get_budget, b) for b in budget_ids] if budget_ids else operate(
            gov, limits.list_budgets, LimitQuery(limit=1000))
        tz = gov.config.ledger.budget_timezone
        with gov.db.read() as conn:
            rows = [budget_status.status(conn, b, tz).model_dump(mode="json") for b in found]
    emit(rows, ["budget_id", "name", "scope", "scope_id", "period", "spent_usd", "held_usd", "remaining_usd",
                "max_usd", "spent_tokens", "remaining_tokens", "resets_at"], as_json, as_csv)


# --- rate limits ---------------------------------------------------------------------------------------------------


@click.group("rate-limits")
def rate_limits() -> None:
    """Rate limits: create, list, delete."""


@rate_limits.command("create")
@config_option
@click.option("--scope", type=click.Choice(["key", "user", "team"]), required=True)
@click.option("--for", "ref", required=True, help="the key id, user (id or email) or team (id or name)")
@click.option("--rpm", type=int, help="requests per minute")
@click.option("--tpm", type=int, help="tokens per minute")
@click.option("--concurrent", "max_concurrent", type=int, help="requests in flight")
@click.option("--name", help="a label")
@json_option
def rate_limits_create(config_path: str, scope: str, ref: str, rpm: int | None, tpm: int | None,
                       max_concurrent: int | None, name: str | None, as_json: bool) -> None:
    """Define a rate limit."""
    if rpm is None and tpm is None and max_concurrent is None:
        raise click.UsageError("give --rpm, --tpm or --concurrent")
    with governance(config_path) as gov:
        with gov.db.read() as conn:
            sid = scope_id(conn, scope, ref)
        r = operate(gov, limits.create_rate_limit, RateLimitCreate(scope=scope, scope_id=sid, name=name, rpm=rpm,
                                                                   tpm=tpm, max_concurrent=max_concurrent))
    if as_json:
        _print_json(r.model_dump(mode="json"))
    else:
        out.print(f"created rate limit {r.id} ({r.scope} {r.scope_id})", highlight=False)


@rate_limits.command("list")
@config_option
@json_option
@csv_option
def rate_limits_list(config_path: str, as_json: bool, as_csv: bool) -> None:
    """List rate limits."""
    with governance(config_path) as gov:
        rows = operate(gov, limits.list_rate_limits, LimitQuery(limit=1000))
    emit([r.model_dump(mode="json") for r in rows],
         ["id", "name", "scope", "scope_id", "rpm", "tpm", "max_concurrent"], as_json, as_csv)


@rate_limits.command("delete")
@config_option
@click.argument("limit_id")
def rate_limits_delete(config_path: str, limit_id: str) -> None:
    """Delete a rate limit."""
    with governance(config_path) as gov:
        operate(gov, limits.delete_rate_limit, limit_id)
    err.print(f"deleted rate limit {limit_id}", highlight=False)
