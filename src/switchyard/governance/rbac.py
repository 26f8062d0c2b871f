"""Who may see and change what. Pure functions over an :class:`Actor` and an object's owners.

Roles (one per user):

=============  ==========================================================================================
super admin    the master key, or the CLI on the store: everything, every org
``org_admin``  everything inside its org (teams, users, keys, budgets, rate limits, its org's audit log)
``team_admin`` its own team: sees the team; manages the team's users (as member or team_admin), keys, and
               the budgets and rate limits of those keys and users
``member``     its own keys (list, create, change, revoke) and its own user record
``auditor``    read-only: its org's audit log (and, from the ledger, spend); its own keys
=============  ==========================================================================================

Objects outside what an actor may *see* are reported as not found (404), so that nobody learns that another
tenant's object exists; an object it sees but may not change is a 403.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import NotFound, PermissionDenied
from .auth import Principal

ORG_ADMIN, TEAM_ADMIN, MEMBER, AUDITOR = "org_admin", "team_admin", "member", "auditor"


@dataclass(frozen=True, slots=True)
class Actor:
    id: str  # recorded in the audit log as the actor
    super: bool = False
    role: str | None = None
    org_id: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    key_id: str | None = None

    @classmethod
    def of(cls, p: Principal) -> Actor:
        role = next(iter(sorted(p.roles)), None) if p.roles else None
        return cls(id=p.id, super=p.is_admin, role=role, org_id=p.org_id, team_id=p.team_id, user_id=p.user_id,
                   key_id=p.key_id)

    @classmethod
    def cli(cls, name: str) -> Actor:
        return cls(id=f"cli:{name}", super=True)

    @property
    def is_admin(self) -> bool:
        """May use the admin API at all (every role may: a member manages its own keys)."""
        return self.super or self.role is not None

    def in_org(self, org_id: str | None) -> bool:
        return org_id is not None and self.org_id == org_id

    def in_team(self, org_id: str | None, team_id: str | None) -> bool:
        return team_id is not None and self.in_org(org_id) and self.team_id == team_id


@dataclass(frozen=True, slots=True)
class Owner:
    """Where an object sits: its org, team and user (the ones that apply)."""

    org_id: str | None
    team_id: str | None = None
    user_id: str | None = None


def require_admin(a: Actor) -> None:
    if not a.is_admin:
        raise PermissionDenied("This key has no admin rights: it belongs to no user with a role.",
                               code="admin_required")


def not_found(kind: str, obj_id: str) -> NotFound:
    return NotFound(f"No {kind} with id {obj_id!r}.", code=f"{kind}_not_found")


def forbid(what: str) -> PermissionDenied:
    return PermissionDenied(f"Your role may not {what}.", code="forbidden")


# --- seeing --------------------------------------------------------------------------------------------------


def sees_org(a: Actor, org_id: str) -> bool:
    return a.super or a.in_org(org_id)


def sees_team(a: Actor, org_id: str, team_id: str) -> bool:
    return a.super or (a.role == ORG_ADMIN and a.in_org(org_id)) or a.in_team(org_id, team_id)


def sees_user(a: Actor, o: Owner) -> bool:
    if a.super or (a.role == ORG_ADMIN and a.in_org(o.org_id)):
        return True
    if a.role == TEAM_ADMIN and a.in_team(o.org_id, o.team_id):
        return True
    return o.user_id is not None and a.user_id == o.user_id and a.in_org(o.org_id)


def sees_key(a: Actor, o: Owner) -> bool:
    return sees_user(a, o)


def sees_limit(a: Actor, o: Owner) -> bool:
    """A budget or rate limit, placed where its scope is (a key's or user's owners, a team, an org, a tag's org)."""
    return sees_user(a, o)


def sees_audit(a: Actor, org_id: str | None) -> bool:
    return a.super or (a.role in (ORG_ADMIN, AUDITOR) and a.in_org(org_id))


# --- changing ------------------------------------------------------------------------------------------------


def manages_org(a: Actor, org_id: str) -> bool:
    return a.super or (a.role == ORG_ADMIN and a.in_org(org_id))


def manages_team(a: Actor, org_id: str) -> bool:
    return manages_org(a, org_id)


def manages_user(a: Actor, o: Owner, role: str | None) -> bool:
    """May create or change a user at ``o`` with ``role`` (the new role, or the current one)."""
    if manages_org(a, o.org_id or ""):
        return True
    return a.role == TEAM_ADMIN and a.in_team(o.org_id, o.team_id) and role in (MEMBER, TEAM_ADMIN)


def manages_key(a: Actor, o: Owner) -> bool:
    if a.role == AUDITOR and not a.super:
        return o.user_id is not None and a.user_id == o.user_id and a.in_org(o.org_id)
    return sees_key(a, o)


def manages_limit(a: Actor, scope: str, o: Owner) -> bool:
    if manages_org(a, o.org_id or ""):
        return True
    return a.role == TEAM_ADMIN and scope in ("key", "user") and a.in_team(o.org_id, o.team_id)


def visible_filter(a: Actor) -> Owner | None:
    """The narrowest owner filter that a listing must apply for ``a`` (None: no filter, a super admin)."""
    if a.super:
        return None
    if a.role == ORG_ADMIN:
        return Owner(a.org_id)
    if a.role == TEAM_ADMIN and a.team_id is not None:
        return Owner(a.org_id, a.team_id)
    return Owner(a.org_id, None, a.user_id or "\x00nobody")
