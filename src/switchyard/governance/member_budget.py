"""A team's member budget: one budget definition (scope ``members``) that every user of the team gets a copy of.

**The rule.** A budget whose scope is ``members`` and whose ``scope_id`` is a team is a template. Every key of a
user whose team it is (a user's keys move with the user) carries the user's own *copy*: a budget of scope ``user``
on that user, with the template's limits, period, zone and thresholds, and its own id ``<template id>~<user>``
(:func:`copy_id`). A team's own keys (service keys, with no user) get none. So a member spends only their own copy:
one member past their limit is refused while every other member still has theirs.

The copy is made when the key's Principal is loaded (:mod:`.principals`): the first call of any key of the user
after the user joined the team, or after the template was set (each is an identity change that evicts the key
from every cache within ``poll_interval``). It ends when the user leaves the team or the template is deleted. Its
spend is kept under its id, like any budget's (``budget_spend``), so leaving and rejoining the team does not reset
it, and a change to the template's limit keeps what was spent. The ledger enforces a copy exactly as any other
budget; nothing of this runs on the request path.

A copy is not a row: it is read through its template (``GET /admin/budgets/<copy id>`` and ``/status`` answer it),
and it changes only with its template. Setting, changing or deleting a template needs the rights of a team budget
(it binds the team's team admins: an org admin's).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from ..store.identity_tables import budgets, users
from .auth import BudgetDef
from .errors import Conflict

SCOPE = "members"
_SEP = "~"
_USER_CHARS = 12  # of the user id's random part: a copy id stays within the 40 characters of a budget id


def copy_id(template_id: str, user_id: str) -> str:
    """The id of a user's copy of a template: ``bud_3f…~9a0c…`` (the template's id, and the user's id's random
    part, cut to fit)."""
    return f"{template_id}{_SEP}{user_id.removeprefix('user_')[:_USER_CHARS]}"


def is_copy(budget_id: str) -> bool:
    return _SEP in budget_id


def copies(templates: Iterable[BudgetDef], team_id: str | None, user_id: str | None) -> tuple[BudgetDef, ...]:
    """A user's copies of its team's templates (none for a team's own key, which has no user)."""
    if team_id is None or user_id is None:
        return ()
    return tuple(replace(t, id=copy_id(t.id, user_id), scope="user", scope_id=user_id, template_id=t.id)
                 for t in templates if t.scope == SCOPE and t.scope_id == team_id)


def resolve(conn: sa.Connection, budget_id: str) -> tuple[sa.Row[Any], str] | None:
    """A copy id's template row and user id, or None when there is no such copy (no such template, or no user of
    its team with that id)."""
    template_id, _, part = budget_id.partition(_SEP)
    t = conn.execute(sa.select(budgets).where(budgets.c.id == template_id, budgets.c.scope == SCOPE)).one_or_none()
    if t is None or not part:
        return None
    found = conn.execute(sa.select(users.c.id).where(users.c.team_id == t.scope_id,
                                                     users.c.id.like(f"user_{part}%"))).scalars().all()
    mine = [u for u in found if copy_id(template_id, u) == budget_id]
    return (t, mine[0]) if len(mine) == 1 else None


def members(conn: sa.Connection, team_id: str) -> list[tuple[str, str, str | None]]:
    """The team's users (id, email, name), in a stable order: who holds a copy of its templates."""
    rows = conn.execute(sa.select(users.c.id, users.c.email, users.c.name).where(users.c.team_id == team_id)
                        .order_by(users.c.email, users.c.id)).all()
    return [(r.id, r.email, r.name) for r in rows]


def refuse_change(budget_id: str, verb: str) -> Conflict:
    template_id = budget_id.partition(_SEP)[0]
    return Conflict(f"Budget {budget_id!r} is a member's copy of the team's member budget {template_id!r}; "
                    f"{verb} the template instead (it applies to every member).")
