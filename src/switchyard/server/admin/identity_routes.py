"""``/admin/orgs``, ``/admin/teams``, ``/admin/users``, ``/admin/keys`` and ``/admin/whoami``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from ...governance import identity
from ...governance.identity import Ops
from ...governance.models import (
    Deleted,
    Key,
    KeyCreate,
    KeyCreated,
    KeyList,
    KeyQuery,
    KeyUpdate,
    Org,
    OrgCreate,
    OrgList,
    OrgScopedPage,
    OrgUpdate,
    Team,
    TeamCreate,
    TeamList,
    TeamQuery,
    TeamUpdate,
    User,
    UserCreate,
    UserList,
    UserQuery,
    UserUpdate,
    Whoami,
)
from ...governance.rbac import Owner
from .api import AdminContext, operation

T = TypeVar("T")
_MUTATIONS = (".create", ".update", ".delete", ".revoke")


async def run(ctx: AdminContext, action: str, fn: Callable[..., T], *args: Any, target: str | None = None) -> T:
    """``fn(conn, ops, *args)`` in one transaction; a read is audited in it too (changes audit themselves)."""

    def work(conn: sa.Connection, ops: Ops) -> T:
        result = fn(conn, ops, *args)
        if not action.endswith(_MUTATIONS):
            org = getattr(result, "org_id", None) if target else ctx.actor.org_id
            team = getattr(result, "team_id", None) if target else None
            ops.record(conn, action, target, Owner(org, team))
        return result

    return await ctx.gov.transact(ctx.ops(), work)


def _deleted(obj_id: str, kind: str) -> Deleted:
    return Deleted(id=obj_id, object=kind, deleted=True)


# --- who am I ------------------------------------------------------------------------------------------------


@operation("GET", "/admin/whoami", summary="The caller's identity and role", tag="identity", action="whoami",
           response=Whoami, errors=(401, 403, 503))
async def whoami(ctx: AdminContext) -> Whoami:
    a = ctx.actor
    return Whoami(id=a.id, name=None, super_admin=a.super, role=a.role, org_id=a.org_id,
                  team_id=a.team_id, user_id=a.user_id, key_id=a.key_id)


# --- organizations -------------------------------------------------------------------------------------------


@operation("GET", "/admin/orgs", summary="List organizations", tag="orgs", action="org.list", response=OrgList,
           query=OrgScopedPage)
async def list_orgs(ctx: AdminContext) -> OrgList:
    """A super admin sees every organization; anyone else only their own."""
    return OrgList(data=await run(ctx, "org.list", identity.list_orgs, ctx.query))


@operation("POST", "/admin/orgs", summary="Create an organization", tag="orgs", action="org.create", body=OrgCreate,
           response=Org, status=201, errors=(400, 401, 403, 409, 503))
async def create_org(ctx: AdminContext, body: OrgCreate) -> Org:
    """Super admins only (the master key)."""
    return await run(ctx, "org.create", identity.create_org, body)


@operation("GET", "/admin/orgs/{org_id}", summary="Get an organization", tag="orgs", action="org.read", response=Org)
async def get_org(ctx: AdminContext) -> Org:
    return await run(ctx, "org.read", identity.get_org, ctx.params["org_id"], target=ctx.params["org_id"])


@operation("PATCH", "/admin/orgs/{org_id}", summary="Change an organization", tag="orgs", action="org.update",
           body=OrgUpdate, response=Org, errors=(400, 401, 403, 404, 409, 503))
async def update_org(ctx: AdminContext, body: OrgUpdate) -> Org:
    return await run(ctx, "org.update", identity.update_org, ctx.params["org_id"], body)


@operation("DELETE", "/admin/orgs/{org_id}", summary="Delete an empty organization", tag="orgs", action="org.delete",
           response=Deleted, errors=(401, 403, 404, 409, 503))
async def delete_org(ctx: AdminContext) -> Deleted:
    """Super admins only; the organization must have no teams and no users left (else 409)."""
    await run(ctx, "org.delete", identity.delete_org, ctx.params["org_id"])
    return _deleted(ctx.params["org_id"], "org")


# --- teams ---------------------------------------------------------------------------------------------------


@operation("GET", "/admin/teams", summary="List teams", tag="teams", action="team.list", response=TeamList,
           query=TeamQuery)
async def list_teams(ctx: AdminContext) -> TeamList:
    """Org admins see their org's teams; team admins and members only their own team; auditors none."""
    return TeamList(data=await run(ctx, "team.list", identity.list_teams, ctx.query))


@operation("POST", "/admin/teams", summary="Create a team", tag="teams", action="team.create", body=TeamCreate,
           response=Team, status=201, errors=(400, 401, 403, 409, 503))
async def create_team(ctx: AdminContext, body: TeamCreate) -> Team:
    return await run(ctx, "team.create", identity.create_team, body)


@operation("GET", "/admin/teams/{team_id}", summary="Get a team", tag="teams", action="team.read", response=Team)
async def get_team(ctx: AdminContext) -> Team:
    return await run(ctx, "team.read", identity.get_team, ctx.params["team_id"], target=ctx.params["team_id"])


@operation("PATCH", "/admin/teams/{team_id}", summary="Change a team", tag="teams", action="team.update",
           body=TeamUpdate, response=Team, errors=(400, 401, 403, 404, 409, 503))
async def update_team(ctx: AdminContext, body: TeamUpdate) -> Team:
    """Org admins only. Changing ``models`` narrows every key of the team at once (on every replica within a
    second)."""
    return await run(ctx, "team.update", identity.update_team, ctx.params["team_id"], body)


@operation("DELETE", "/admin/teams/{team_id}", summary="Delete a team", tag="teams", action="team.delete",
           response=Deleted, errors=(401, 403, 404, 409, 503))
async def delete_team(ctx: AdminContext) -> Deleted:
    """The team must have no users left (else 409). Its keys are revoked and its limits deleted."""
    await run(ctx, "team.delete", identity.delete_team, ctx.params["team_id"])
    return _deleted(ctx.params["team_id"], "team")


# --- users ---------------------------------------------------------------------------------------------------


@operation("GET", "/admin/users", summary="List users", tag="users", action="user.list", response=UserList,
           query=UserQuery)
async def list_users(ctx: AdminContext) -> UserList:
    """Org admins see their org's users, team admins their team's, anyone else only themselves."""
    return UserList(data=await run(ctx, "user.list", identity.list_users, ctx.query))


@operation("POST", "/admin/users", summary="Create a user", tag="users", action="user.create", body=UserCreate,
           response=User, status=201, errors=(400, 401, 403, 409, 503))
async def create_user(ctx: AdminContext, body: UserCreate) -> User:
    """Team admins may add members and team admins to their own team; org admins any role in their org."""
    return await run(ctx, "user.create", identity.create_user, body)


@operation("GET", "/admin/users/{user_id}", summary="Get a user", tag="users", action="user.read", response=User)
async def get_user(ctx: AdminContext) -> User:
    return await run(ctx, "user.read", identity.get_user, ctx.params["user_id"], target=ctx.params["user_id"])


@operation("PATCH", "/admin/users/{user_id}", summary="Change a user (role, team, name)", tag="users",
           action="user.update", body=UserUpdate, response=User, errors=(400, 401, 403, 404, 409, 503))
async def update_user(ctx: AdminContext, body: UserUpdate) -> User:
    """Moving a user to another team moves the user's keys with it. Needs rights above the user's, both as it is and
    as it would be (its new role and team)."""
    return await run(ctx, "user.update", identity.update_user, ctx.params["user_id"], body)


@operation("DELETE", "/admin/users/{user_id}", summary="Delete a user", tag="users", action="user.delete",
           response=Deleted, errors=(401, 403, 404, 503))
async def delete_user(ctx: AdminContext) -> Deleted:
    """Revokes every key of the user and deletes the user's limits."""
    await run(ctx, "user.delete", identity.delete_user, ctx.params["user_id"])
    return _deleted(ctx.params["user_id"], "user")


# --- keys ----------------------------------------------------------------------------------------------------


@operation("GET", "/admin/keys", summary="List virtual keys (never their secrets)", tag="keys", action="key.list",
           response=KeyList, query=KeyQuery)
async def list_keys(ctx: AdminContext) -> KeyList:
    """Shows each key's prefix (``sk-sy-AbCd…``), never the key or its hash. Revoked keys only with
    ``include_revoked=true``. Members see their own keys."""
    return KeyList(data=await run(ctx, "key.list", identity.list_keys, ctx.query))


@operation("POST", "/admin/keys", summary="Create a virtual key", tag="keys", action="key.create", body=KeyCreate,
           response=KeyCreated, status=201, errors=(400, 401, 403, 409, 503))
async def create_key(ctx: AdminContext, body: KeyCreate) -> KeyCreated:
    """The reply holds the key in ``secret``: the only time it is ever shown. The key belongs to ``user_id``, or
    to ``team_id`` (a service key), or by default to the caller's own user: for a user or team below the caller's
    rights, or for the caller itself, and then at most what the calling key may do (what it leaves out is copied
    from that key)."""
    return await run(ctx, "key.create", identity.create_key, body)


@operation("GET", "/admin/keys/{key_id}", summary="Get a virtual key", tag="keys", action="key.read", response=Key)
async def get_key(ctx: AdminContext) -> Key:
    return await run(ctx, "key.read", identity.get_key, ctx.params["key_id"], target=ctx.params["key_id"])


@operation("PATCH", "/admin/keys/{key_id}", summary="Change a virtual key", tag="keys", action="key.update",
           body=KeyUpdate, response=Key, errors=(400, 401, 403, 404, 409, 503))
async def update_key(ctx: AdminContext, body: KeyUpdate) -> Key:
    """An admin over the key (one that outranks its owner) may change anything; the key's owner may only narrow it:
    rename it, remove models, bring its expiry forward (403 ``forbidden`` naming the field otherwise)."""
    return await run(ctx, "key.update", identity.update_key, ctx.params["key_id"], body)


@operation("POST", "/admin/keys/{key_id}/revoke", summary="Revoke a virtual key", tag="keys", action="key.revoke",
           response=Key, errors=(401, 403, 404, 503))
async def revoke_key(ctx: AdminContext) -> Key:
    """Effective at once on this gateway and within a second on every replica. Idempotent."""
    return await run(ctx, "key.revoke", identity.revoke_key, ctx.params["key_id"])


@operation("DELETE", "/admin/keys/{key_id}", summary="Revoke a virtual key", tag="keys", action="key.revoke",
           response=Key, errors=(401, 403, 404, 503))
async def delete_key(ctx: AdminContext) -> Key:
    """The same as ``POST /admin/keys/{key_id}/revoke``: the key's record is kept (revoked) for the audit trail."""
    return await run(ctx, "key.revoke", identity.revoke_key, ctx.params["key_id"])
