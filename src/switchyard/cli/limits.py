"""``switchyard orgs|users|budgets|rate-limits``: the rest of governance, on the store named by ``--config``.

As ``switchyard keys`` and ``teams``: a super admin on the store, every change audited as ``cli:<os user>``. Each
list prints a table (ids never cut), ``--json`` or ``--csv``. ``budgets status`` shows spent, held, remaining and
the reset time; held is what calls in flight reserve, known only to a running gateway (``GET
/admin/budgets/{id}/status``), so the CLI shows it as unknown.
"""

from __future__ import annotations

from collections.abc import Iterable

import click
import sqlalchemy as sa

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
from ..store.identity_tables import api_keys as keys_table
from ..store.identity_tables import orgs as orgs_table
from ..store.identity_tables import teams as teams_table
from ..store.identity_tables import users as users_table
from .keys import config_option, err, find_team, find_user, governance, operate, out
from .output import csv_option, emit, json_option
from .output import print_json as _print_json


def who(conn: sa.Connection, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """A readable name for each (scope, id): a user's email, a team's, org's or key's name (a key without one: its
    prefix), a tag as it is; a team's member budget: its team's name."""
    wanted: dict[str, set[str]] = {}
    for scope, ref in refs:
        wanted.setdefault("team" if scope == "members" else scope, set()).add(ref)
    names: dict[tuple[str, str], str] = {("tag", t): t for t in wanted.pop("tag", set())}
    for scope, table, col in (("user", users_table, users_table.c.email), ("team", teams_table, teams_table.c.name),
                              ("org", orgs_table, orgs_table.c.name),
                              ("key", keys_table, sa.func.coalesce(keys_table.c.name, keys_table.c.prefix))):
        ids = sorted(wanted.get(scope, ()))
        for i in range(0, len(ids), 500):
            for obj_id, name in conn.execute(sa.select(table.c.id, col).where(table.c.id.in_(ids[i:i + 500]))):
                names[(scope, obj_id)] = name
    for (scope, ref), name in list(names.items()):
        if scope == "team":
            names[("members", ref)] = name
    return names


def find_org(conn: sa.Connection, ref: str) -> str:
    rows = conn.execute(sa.select(orgs_table.c.id).where(
        sa.or_(orgs_table.c.id == ref, orgs_table.c.name == ref))).scalars().all()
    if len(rows) != 1:
        raise click.ClickException(f"no org {ref!r}" if not rows else f"several orgs are called {ref!r}: use the id")
    return str(rows[0])


def scope_id(conn: sa.Connection, scope: str, ref: str) -> str:
    """An id from a reference: a team's name, a user's email, an org's name (a key or a tag as given)."""
    if scope in ("team", "members"):
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
        with gov.db.read() as conn:
            names = who(conn, [*(("team", u.team_id) for u in rows if u.team_id), *(("org", u.org_id) for u in rows)])
    emit([{**u.model_dump(mode="json"), "team": names.get(("team", u.team_id or "")),
           "org": names.get(("org", u.org_id))} for u in rows],
         ["id", "email", "name", "role", "team_id", "team", "org_id", "org"], as_json, as_csv)


# --- budgets -----------------------------------------------------------------------------------------------------

SCOPES = click.Choice(["key", "user", "team", "org", "tag", "members"])


@click.group()
def budgets() -> None:
    """Budgets: create, list, delete, and where each stands (status)."""


@budgets.command("create")
@config_option
@click.option("--scope", type=SCOPES, required=True)
@click.option("--for", "ref", required=True, help="the key id, user (id or email), team or org (id or name), or tag; "
                                                 "for members: the team (each of its users gets a copy)")
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
        with gov.db.read() as conn:
            names = who(conn, [(b.scope, b.scope_id) for b in rows])
    emit([{**b.model_dump(mode="json"), "for": names.get((b.scope, b.scope_id))} for b in rows],
         ["id", "name", "scope", "scope_id", "for", "period", "max_usd", "max_tokens"], as_json, as_csv,
         amounts=["max_usd"])


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
            statuses = [budget_status.status(conn, b, tz).model_dump(mode="json") for b in found]
            if not as_json:  # a table or CSV: each member's copy of a member budget on a row of its own
                statuses = [s for st in statuses for s in (st, *(st.get("members") or ()))]
            names = who(conn, [(st["scope"], st["scope_id"]) for st in statuses])
    rows = [{**st, "for": names.get((st["scope"], st["scope_id"]))} for st in statuses]
    emit(rows, ["budget_id", "name", "scope", "scope_id", "for", "period", "spent_usd", "held_usd", "remaining_usd",
                "max_usd", "spent_tokens", "remaining_tokens", "resets_at"], as_json, as_csv,
         amounts=["spent_usd", "held_usd", "remaining_usd", "max_usd"])


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
        with gov.db.read() as conn:
            names = who(conn, [(r.scope, r.scope_id) for r in rows])
    emit([{**r.model_dump(mode="json"), "for": names.get((r.scope, r.scope_id))} for r in rows],
         ["id", "name", "scope", "scope_id", "for", "rpm", "tpm", "max_concurrent"], as_json, as_csv)


@rate_limits.command("delete")
@config_option
@click.argument("limit_id")
def rate_limits_delete(config_path: str, limit_id: str) -> None:
    """Delete a rate limit."""
    with governance(config_path) as gov:
        operate(gov, limits.delete_rate_limit, limit_id)
    err.print(f"deleted rate limit {limit_id}", highlight=False)
