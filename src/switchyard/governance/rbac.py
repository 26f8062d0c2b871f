"""Who may see and change what. Pure functions over an :class:`Actor` and an object's owners.

Roles (one per user), as rights within a scope:

=============  ==========================================================================================
super admin    the master key, or the CLI on the store: everything, every org
``org_admin``  everything inside its org, except acting on its peers (other org admins) and lifting the limits
               that bind itself (the org's budgets, tag budgets)
``team_admin`` its own team: sees the team; manages the team's members, their keys and the team's own keys, and
               the budgets and rate limits of those
``member``     its own keys (list, create, narrow, revoke) and its own user record (read)
``auditor``    read-only: its org's audit log (and, from the ledger, spend); its own keys. Sees no team.
=============  ==========================================================================================

**The one rule of every change** (:func:`outranks`): an actor may create, change, delete or revoke something only
if its rights *strictly exceed* the rights of every principal the object holds or binds, both before and after the
change. A user holds its role where it sits; a key holds its owner's rights (a team's own key: its team's data
plane, no admin rights); a budget or rate limit binds its scope (a key, a user, a whole team, a whole org; a tag
budget binds keys anywhere in its org). Hence: nobody acts on a peer (equal rights) or on itself, nobody creates a
principal, key or limit above or beside itself, and nobody lifts a limit that binds itself.

The only exception is **a principal's own keys** (:func:`owns`): it may revoke them, create more and change them,
but only *narrowing* (:func:`widens`): a key it makes or changes never gets more than the key it calls with, or the
key as it was.

Objects outside what an actor may *see* are reported as not found (404), so that nobody learns that another
tenant's object exists; an object it sees but may not change is a 403.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..classification import highest
from ..errors import NotFound, PermissionDenied
from .auth import Principal

ORG_ADMIN, TEAM_ADMIN, MEMBER, AUDITOR = "org_admin", "team_admin", "member", "auditor"
TEAM_KEY = "team_key"  # the rights a team's own key (no user) holds: its team's data plane, no admin rights


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


@dataclass(frozen=True, slots=True)
class Rights:
    """The rights a principal holds, or that an object confers or binds: a role within an org (and team)."""

    role: str  # ORG_ADMIN | TEAM_ADMIN | MEMBER | AUDITOR | TEAM_KEY
    org_id: str | None  # None: every org (a global tag budget)
    team_id: str | None = None


def key_rights(owner_role: str | None, o: Owner) -> Rights:
    """What a key holds: its user's rights (an unknown role: the most an org's user may have), or (no user) its
    team's data plane."""
    if o.user_id is None:
        return Rights(TEAM_KEY, o.org_id, o.team_id)
    return Rights(owner_role or ORG_ADMIN, o.org_id, o.team_id)


def scope_rights(scope: str, o: Owner, holder: Rights | None) -> Rights:
    """What a budget or rate limit on ``scope`` binds: its key's or user's rights (``holder``), a whole team (so,
    its team admins), or a whole org (an org budget, a tag budget: its org admins too)."""
    if scope in ("key", "user") and holder is not None:
        return holder
    if scope in ("team", "members"):  # a team budget, or its member budget: binds its team admins too
        return Rights(TEAM_ADMIN, o.org_id, o.team_id)
    return Rights(ORG_ADMIN, o.org_id)


def outranks(a: Actor, t: Rights) -> bool:
    """``a``'s rights strictly exceed ``t``'s: the condition of every change (see the module's docstring).

    super > org_admin(org) > team_admin(team) > member(team) and team keys(team); an org admin also outranks its
    org's auditors, a team admin does not (an auditor reads the org's audit log, which a team admin may not)."""
    if a.super:
        return True
    if not a.in_org(t.org_id):
        return False
    if a.role == ORG_ADMIN:
        return t.role != ORG_ADMIN
    if a.role == TEAM_ADMIN and a.team_id is not None:
        return t.role in (MEMBER, TEAM_KEY) and t.team_id == a.team_id
    return False


def owns(a: Actor, o: Owner) -> bool:
    """``o`` (a key) is the actor's own: it belongs to the actor's user."""
    return o.user_id is not None and a.user_id == o.user_id and a.in_org(o.org_id)


@dataclass(frozen=True, slots=True)
class KeyBounds:
    """What a key may do, in the fields its owner may only narrow."""

    models: Sequence[str] | None  # None: every model (within its team's)
    tags: Sequence[str]  # each may carry a budget
    expires_at: dt.datetime | None  # None: never
    logging: str
    data_class: str | None = None  # the lowest class of its calls: raising it narrows the key
    pii_mode: str | None = None
    retention: Mapping[str, str] | None = None

    @classmethod
    def of(cls, row: Any) -> KeyBounds:
        return cls(row.models, row.tags or (), row.expires_at, row.logging, row.data_class, row.pii_mode,
                   row.retention)


def widens(old: KeyBounds, new: Mapping[str, Any]) -> str | None:
    """The first field of ``new`` (a key's fields, as changed or created) that gives more than ``old``; None if every
    field only narrows: models a subset (never null once restricted), tags unchanged (tags carry budgets: adding one
    would spend another team's tag budget, removing one would escape it), expiry no
    later (never removed), logging unchanged (only an admin over a key chooses how much of its traffic is kept), data
    class no lower (a key's class is a floor that policies read: raising it only restricts where its calls may go),
    PII mode unchanged (only an admin over a key chooses how its personal data is handled), retention unchanged
    (only an admin over a key chooses what of its payloads is kept)."""
    models, expires, data_class = new.get("models"), new.get("expires_at"), new.get("data_class")
    checks = (
        ("models", old.models is not None and (models is None or not set(models) <= set(old.models))),
        ("tags", set(old.tags) != set(new.get("tags") or ())),
        ("expires_at", old.expires_at is not None and (expires is None or expires > old.expires_at)),
        ("logging", new.get("logging") != old.logging),
        ("data_class", highest(old.data_class, data_class) != data_class),
        ("pii_mode", new.get("pii_mode") != old.pii_mode),
        ("retention", (new.get("retention") or None) != (old.retention or None)),
    )
    return next((name for name, wider in checks if name in new and wider), None)


def require_admin(a: Actor) -> None:
    if not a.is_admin:
        raise PermissionDenied("This key has no admin rights: it belongs to no user with a role.",
                               code="admin_required")


def not_found(kind: str, obj_id: str) -> NotFound:
    return NotFound(f"No {kind} with id {obj_id!r}.", code=f"{kind}_not_found")


def forbid(what: str, param: str | None = None) -> PermissionDenied:
    return PermissionDenied(f"Your role may not {what}.", param=param, code="forbidden")


# --- seeing --------------------------------------------------------------------------------------------------


def sees_org(a: Actor, org_id: str) -> bool:
    return a.super or a.in_org(org_id)


def sees_team(a: Actor, org_id: str, team_id: str) -> bool:
    """Org admins see their org's teams; members and team admins their own team; auditors none."""
    if a.super or (a.role == ORG_ADMIN and a.in_org(org_id)):
        return True
    return a.role != AUDITOR and a.in_team(org_id, team_id)


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
    """May change the org's own record (its name and metadata: nobody's rights)."""
    return a.super or (a.role == ORG_ADMIN and a.in_org(org_id))


def manages_team(a: Actor, org_id: str, team_id: str | None = None) -> bool:
    """May create, change (its models bind every key of it) or delete a team: outranks its team admins."""
    return outranks(a, Rights(TEAM_ADMIN, org_id, team_id))


def visible_filter(a: Actor) -> Owner | None:
    """The narrowest owner filter that a listing must apply for ``a`` (None: no filter, a super admin)."""
    if a.super:
        return None
    if a.role == ORG_ADMIN:
        return Owner(a.org_id)
    if a.role == TEAM_ADMIN and a.team_id is not None:
        return Owner(a.org_id, a.team_id)
    return Owner(a.org_id, None, a.user_id or "\x00nobody")
