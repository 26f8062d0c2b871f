"""Organizations, teams, users and virtual keys: the operations of the admin API and the CLI.

Each operation is a sync function over an open write (or read) transaction: it checks the actor's rights
(:mod:`.rbac`), changes the rows, bumps the identity version with what it changed (so that every replica's key
cache hears of it within one poll), and appends its audit record, all in that one transaction. Run them through
:meth:`switchyard.governance.db.Db.write` on a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ..errors import InvalidRequest, ServiceUnavailable
from ..store.identity_tables import (
    api_keys,
    budgets,
    identity_changes,
    identity_version,
    orgs,
    rate_limits,
    teams,
    users,
)
from ..store.policy_tables import org_policies
from ..store.workflow_tables import workflow_definitions
from .audit import AuditEntry, AuditLog, utcnow
from .errors import Conflict
from .keys import KeyHasher, display_prefix, new_id, new_key
from .models import (
    MAX_KEY_SECONDS,
    Key,
    KeyCreate,
    KeyCreated,
    KeyQuery,
    KeyUpdate,
    Org,
    OrgCreate,
    OrgScopedPage,
    OrgUpdate,
    Team,
    TeamCreate,
    TeamQuery,
    TeamUpdate,
    User,
    UserCreate,
    UserQuery,
    UserUpdate,
)
from .rbac import (
    AUDITOR,
    ORG_ADMIN,
    TEAM_ADMIN,
    Actor,
    KeyBounds,
    Owner,
    Rights,
    forbid,
    key_rights,
    manages_org,
    manages_team,
    not_found,
    outranks,
    owns,
    sees_key,
    sees_org,
    sees_team,
    sees_user,
    visible_filter,
    widens,
)

Change = tuple[str, str]  # (kind, entity id): kind is key | user | team | org | budget | rate_limit


@dataclass(slots=True)
class Ops:
    """Who performs an operation, and what it needs besides the transaction."""

    actor: Actor
    audit: AuditLog | None
    hasher: KeyHasher | None = None
    known_models: frozenset[str] | None = None  # deployments and routes a key or team may name; None: any
    request_id: str | None = None
    changes: list[Change] = field(default_factory=list)  # what the operation changed (for local invalidation)
    version: int = 0  # the identity version its last change was logged under

    def record(self, conn: sa.Connection, action: str, target: str | None, owner: Owner,
               details: dict[str, Any] | None = None) -> None:
        if self.audit is None:
            return
        a = self.actor
        why = "super admin" if a.super else f"{a.role} of {a.team_id if a.role == TEAM_ADMIN else a.org_id}"
        self.audit.append(conn, [AuditEntry(
            kind="admin", actor=a.id, actor_user_id=a.user_id, org_id=owner.org_id, team_id=owner.team_id,
            action=action, target=target, decision="allow", reason=why, request_id=self.request_id,
            details=details)])


def bump(conn: sa.Connection, ops: Ops, changes: Iterable[Change]) -> int:
    """Advance the identity version (holding its row lock until commit) and log the changes under it."""
    items = list(dict.fromkeys(changes))
    if not items:
        return 0
    conn.execute(sa.update(identity_version).where(identity_version.c.id == 1)
                 .values(version=identity_version.c.version + 1))
    version = int(conn.execute(sa.select(identity_version.c.version).where(identity_version.c.id == 1)).scalar_one())
    now = utcnow()
    conn.execute(sa.insert(identity_changes), [{"version": version, "kind": k, "entity_id": e[:255], "at": now}
                                               for k, e in items])
    if version % 512 == 0:  # keep a day of notices; a replica further behind reloads its whole cache
        conn.execute(sa.delete(identity_changes).where(identity_changes.c.at < now - timedelta(days=1)))
    ops.changes.extend(items)
    ops.version = version
    return version


def _row(conn: sa.Connection, table: sa.Table, obj_id: str) -> sa.Row[Any] | None:
    return conn.execute(sa.select(table).where(table.c.id == obj_id)).one_or_none()


def _dump(body: Any) -> dict[str, Any]:
    """The fields an update sets, with ``null`` meaning "clear": an empty list or map for the fields that are never
    null (``tags``, ``metadata``), and null itself for the others (the models say which fields are nullable)."""
    data: dict[str, Any] = body.model_dump(mode="json", exclude_unset=True)
    for name, empty in (("tags", []), ("metadata", {})):
        if name in data and data[name] is None:
            data[name] = empty
    return data


def _check_models(ops: Ops, models: Sequence[str] | None, param: str, allowed: Sequence[str] | None = None) -> None:
    for i, m in enumerate(models or ()):
        if ops.known_models is not None and m not in ops.known_models:
            raise InvalidRequest(f"Unknown deployment or route {m!r}.", param=f"{param}[{i}]", code="invalid_value")
        if allowed is not None and m not in allowed:
            raise InvalidRequest(f"{m!r} is not among the models the team may use.", param=f"{param}[{i}]",
                                 code="model_not_allowed")


# --- organizations -------------------------------------------------------------------------------------------


def org_out(r: sa.Row[Any]) -> Org:
    return Org.model_validate(dict(r._mapping))


def list_orgs(conn: sa.Connection, ops: Ops, q: OrgScopedPage) -> list[Org]:
    query = sa.select(orgs).order_by(orgs.c.created_at, orgs.c.id).limit(q.limit).offset(q.offset)
    if not ops.actor.super:
        query = query.where(orgs.c.id == (ops.actor.org_id or ""))
    return [org_out(r) for r in conn.execute(query)]


def get_org(conn: sa.Connection, ops: Ops, org_id: str) -> Org:
    r = _row(conn, orgs, org_id)
    if r is None or not sees_org(ops.actor, org_id):
        raise not_found("org", org_id)
    return org_out(r)


def create_org(conn: sa.Connection, ops: Ops, body: OrgCreate) -> Org:
    if not ops.actor.super:
        raise forbid("create organizations")
    now = utcnow()
    org_id = new_id("org")
    conn.execute(sa.insert(orgs).values(id=org_id, name=body.name, metadata=body.metadata, created_at=now,
                                        updated_at=now))
    ops.record(conn, "org.create", org_id, Owner(org_id), {"name": body.name})
    return get_org(conn, ops, org_id)


def update_org(conn: sa.Connection, ops: Ops, org_id: str, body: OrgUpdate) -> Org:
    get_org(conn, ops, org_id)
    if not manages_org(ops.actor, org_id):
        raise forbid("change this organization")
    values = _dump(body)
    if values:
        conn.execute(sa.update(orgs).where(orgs.c.id == org_id).values(**values, updated_at=utcnow()))
        bump(conn, ops, [("org", org_id)])
    ops.record(conn, "org.update", org_id, Owner(org_id), {"changed": sorted(values)})
    return get_org(conn, ops, org_id)


def delete_org(conn: sa.Connection, ops: Ops, org_id: str) -> None:
    get_org(conn, ops, org_id)
    if not ops.actor.super:
        raise forbid("delete organizations")
    n_teams = conn.execute(sa.select(sa.func.count()).where(teams.c.org_id == org_id)).scalar_one()
    n_users = conn.execute(sa.select(sa.func.count()).where(users.c.org_id == org_id)).scalar_one()
    if n_teams or n_users:
        raise Conflict(f"The organization still has {n_teams} teams and {n_users} users; delete them first.")
    changes = _revoke_where(conn, api_keys.c.org_id == org_id) + _drop_limits(conn, "org", org_id)
    conn.execute(sa.delete(org_policies).where(org_policies.c.org_id == org_id))  # its policy sets go with it
    conn.execute(sa.delete(workflow_definitions).where(workflow_definitions.c.org_id == org_id))
    conn.execute(sa.delete(orgs).where(orgs.c.id == org_id))
    bump(conn, ops, [*changes, ("org", org_id)])
    ops.record(conn, "org.delete", org_id, Owner(org_id))


# --- teams ---------------------------------------------------------------------------------------------------


def team_out(r: sa.Row[Any]) -> Team:
    return Team.model_validate(dict(r._mapping))


def list_teams(conn: sa.Connection, ops: Ops, q: TeamQuery) -> list[Team]:
    a = ops.actor
    query = sa.select(teams).order_by(teams.c.created_at, teams.c.id).limit(q.limit).offset(q.offset)
    if q.org_id is not None:
        query = query.where(teams.c.org_id == q.org_id)
    if not a.super:
        query = query.where(teams.c.org_id == (a.org_id or ""))
        if a.role != ORG_ADMIN:  # its own team (an auditor sees none)
            query = query.where(teams.c.id == (a.team_id if a.role != AUDITOR and a.team_id else ""))
    return [team_out(r) for r in conn.execute(query)]


def _team_row(conn: sa.Connection, ops: Ops, team_id: str) -> sa.Row[Any]:
    r = _row(conn, teams, team_id)
    if r is None or not sees_team(ops.actor, r.org_id, r.id):
        raise not_found("team", team_id)
    return r


def get_team(conn: sa.Connection, ops: Ops, team_id: str) -> Team:
    return team_out(_team_row(conn, ops, team_id))


def create_team(conn: sa.Connection, ops: Ops, body: TeamCreate) -> Team:
    org_id = body.org_id or ops.actor.org_id
    if org_id is None:
        raise InvalidRequest("org_id is required.", param="org_id", code="missing_required_parameter")
    if _row(conn, orgs, org_id) is None or not sees_org(ops.actor, org_id):
        raise InvalidRequest(f"No org with id {org_id!r}.", param="org_id", code="invalid_value")
    if not manages_team(ops.actor, org_id):
        raise forbid("create teams")
    _check_models(ops, body.models, "models")
    now = utcnow()
    team_id = new_id("team")
    conn.execute(sa.insert(teams).values(id=team_id, org_id=org_id, name=body.name, models=body.models,
                                         metadata=body.metadata, data_class=body.data_class, pii_mode=body.pii_mode,
                                         retention=body.retention,
                                         created_at=now, updated_at=now))
    ops.record(conn, "team.create", team_id, Owner(org_id, team_id),
               {"name": body.name, "models": body.models, "data_class": body.data_class, "pii_mode": body.pii_mode,
                "retention": body.retention})
    return get_team(conn, ops, team_id)


def update_team(conn: sa.Connection, ops: Ops, team_id: str, body: TeamUpdate) -> Team:
    r = _team_row(conn, ops, team_id)
    if not manages_team(ops.actor, r.org_id, r.id):
        raise forbid("change teams")
    values = _dump(body)
    _check_models(ops, body.models, "models")
    if values:
        conn.execute(sa.update(teams).where(teams.c.id == team_id).values(**values, updated_at=utcnow()))
        bump(conn, ops, [("team", team_id)])
    ops.record(conn, "team.update", team_id, Owner(r.org_id, team_id), {"changed": sorted(values),
                                                                        "models": values.get("models")})
    return get_team(conn, ops, team_id)


def delete_team(conn: sa.Connection, ops: Ops, team_id: str) -> None:
    r = _team_row(conn, ops, team_id)
    if not manages_team(ops.actor, r.org_id, r.id):
        raise forbid("delete teams")
    n_users = conn.execute(sa.select(sa.func.count()).where(users.c.team_id == team_id)).scalar_one()
    if n_users:
        raise Conflict(f"The team still has {n_users} users; move or delete them first.")
    changes = (_revoke_where(conn, api_keys.c.team_id == team_id) + _drop_limits(conn, "team", team_id)
               + _drop_limits(conn, "members", team_id))
    conn.execute(sa.delete(teams).where(teams.c.id == team_id))
    bump(conn, ops, [*changes, ("team", team_id)])
    ops.record(conn, "team.delete", team_id, Owner(r.org_id, team_id))


# --- users ---------------------------------------------------------------------------------------------------


def user_out(r: sa.Row[Any]) -> User:
    return User.model_validate(dict(r._mapping))


def list_users(conn: sa.Connection, ops: Ops, q: UserQuery) -> list[User]:
    query = sa.select(users).order_by(users.c.created_at, users.c.id).limit(q.limit).offset(q.offset)
    if q.org_id is not None:
        query = query.where(users.c.org_id == q.org_id)
    if q.team_id is not None:
        query = query.where(users.c.team_id == q.team_id)
    f = visible_filter(ops.actor)
    if f is not None:
        query = query.where(users.c.org_id == (f.org_id or ""))
        if f.team_id is not None:
            query = query.where(users.c.team_id == f.team_id)
        if f.user_id is not None:
            query = query.where(users.c.id == f.user_id)
    return [user_out(r) for r in conn.execute(query)]


def _user_row(conn: sa.Connection, ops: Ops, user_id: str) -> sa.Row[Any]:
    r = _row(conn, users, user_id)
    if r is None or not sees_user(ops.actor, Owner(r.org_id, r.team_id, r.id)):
        raise not_found("user", user_id)
    return r


def get_user(conn: sa.Connection, ops: Ops, user_id: str) -> User:
    return user_out(_user_row(conn, ops, user_id))


def _placement(conn: sa.Connection, ops: Ops, org_id: str | None, team_id: str | None) -> tuple[str, str | None]:
    """The (org, team) a user is put in, checked to exist and be visible."""
    if team_id is not None:
        t = _row(conn, teams, team_id)
        if t is None or not sees_team(ops.actor, t.org_id, t.id):
            raise InvalidRequest(f"No team with id {team_id!r}.", param="team_id", code="invalid_value")
        if org_id is not None and org_id != t.org_id:
            raise InvalidRequest("The team belongs to another org.", param="team_id", code="invalid_value")
        return t.org_id, t.id
    org_id = org_id or ops.actor.org_id
    if org_id is None:
        raise InvalidRequest("org_id is required.", param="org_id", code="missing_required_parameter")
    if _row(conn, orgs, org_id) is None or not sees_org(ops.actor, org_id):
        raise InvalidRequest(f"No org with id {org_id!r}.", param="org_id", code="invalid_value")
    return org_id, None


def create_user(conn: sa.Connection, ops: Ops, body: UserCreate) -> User:
    org_id, team_id = _placement(conn, ops, body.org_id, body.team_id)
    if body.role == TEAM_ADMIN and team_id is None:
        raise InvalidRequest("A team_admin needs a team_id.", param="team_id", code="missing_required_parameter")
    if not outranks(ops.actor, Rights(body.role, org_id, team_id)):
        raise forbid(f"create a user with the role {body.role} here (only users below its own rights)")
    now = utcnow()
    user_id = new_id("user")
    conn.execute(sa.insert(users).values(id=user_id, org_id=org_id, team_id=team_id, email=body.email,
                                         name=body.name, role=body.role, metadata=body.metadata, created_at=now,
                                         updated_at=now))
    ops.record(conn, "user.create", user_id, Owner(org_id, team_id, user_id), {"role": body.role})
    return get_user(conn, ops, user_id)


def update_user(conn: sa.Connection, ops: Ops, user_id: str, body: UserUpdate) -> User:
    r = _user_row(conn, ops, user_id)
    values = _dump(body)
    if not outranks(ops.actor, Rights(r.role, r.org_id, r.team_id)):
        raise forbid("change this user (only users below its own rights)")
    team_id = values.get("team_id", r.team_id)
    if "team_id" in values and team_id is not None:
        _, team_id = _placement(conn, ops, r.org_id, team_id)
    role = values.get("role", r.role)
    if role == TEAM_ADMIN and team_id is None:
        raise InvalidRequest("A team_admin needs a team_id.", param="team_id", code="missing_required_parameter")
    if not outranks(ops.actor, Rights(role, r.org_id, team_id)):  # the rights it would have after the change
        raise forbid(f"give this user the role {role} in that team", param="role" if "role" in values else "team_id")
    if values:
        now = utcnow()
        conn.execute(sa.update(users).where(users.c.id == user_id).values(**values, updated_at=now))
        changes: list[Change] = [("user", user_id)]
        if team_id != r.team_id:  # a user's keys move with the user
            moved = conn.execute(sa.update(api_keys).where(api_keys.c.user_id == user_id)
                                 .values(team_id=team_id, updated_at=now).returning(api_keys.c.id)).scalars().all()
            changes += [("key", k) for k in moved]
        bump(conn, ops, changes)
    ops.record(conn, "user.update", user_id, Owner(r.org_id, team_id, user_id),
               {"changed": sorted(values), "role": role, "team_id": team_id})
    return get_user(conn, ops, user_id)


def delete_user(conn: sa.Connection, ops: Ops, user_id: str) -> None:
    r = _user_row(conn, ops, user_id)
    if not outranks(ops.actor, Rights(r.role, r.org_id, r.team_id)):
        raise forbid("delete this user (only users below its own rights)")
    revoked = _revoke_where(conn, api_keys.c.user_id == user_id)
    changes = revoked + _drop_limits(conn, "user", user_id)
    conn.execute(sa.delete(users).where(users.c.id == user_id))
    bump(conn, ops, [*changes, ("user", user_id)])
    ops.record(conn, "user.delete", user_id, Owner(r.org_id, r.team_id, user_id), {"keys_revoked": len(revoked)})


# --- keys ----------------------------------------------------------------------------------------------------


def key_out(r: sa.Row[Any], now: datetime | None = None) -> Key:
    d = dict(r._mapping)
    d.pop("key_hash", None)
    d["prefix"] = f"{d['prefix']}…"
    now = now or utcnow()
    d["status"] = ("revoked" if d["revoked_at"] is not None
                   else "expired" if d["expires_at"] is not None and d["expires_at"] <= now else "active")
    return Key.model_validate(d)


def _key_owner(r: sa.Row[Any]) -> Owner:
    return Owner(r.org_id, r.team_id, r.user_id)


def list_keys(conn: sa.Connection, ops: Ops, q: KeyQuery) -> list[Key]:
    query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id).limit(q.limit).offset(q.offset)
    for col, value in ((api_keys.c.org_id, q.org_id), (api_keys.c.team_id, q.team_id),
                       (api_keys.c.user_id, q.user_id)):
        if value is not None:
            query = query.where(col == value)
    if not q.include_revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    f = visible_filter(ops.actor)
    if f is not None:
        query = query.where(api_keys.c.org_id == (f.org_id or ""))
        if f.team_id is not None:
            query = query.where(api_keys.c.team_id == f.team_id)
        if f.user_id is not None:
            query = query.where(api_keys.c.user_id == f.user_id)
    now = utcnow()
    return [key_out(r, now) for r in conn.execute(query)]


def _key_row(conn: sa.Connection, ops: Ops, key_id: str) -> sa.Row[Any]:
    r = _row(conn, api_keys, key_id)
    if r is None or not sees_key(ops.actor, _key_owner(r)):
        raise not_found("key", key_id)
    return r


def get_key(conn: sa.Connection, ops: Ops, key_id: str) -> Key:
    return key_out(_key_row(conn, ops, key_id))


def _key_placement(conn: sa.Connection, ops: Ops, body: KeyCreate) -> tuple[Owner, Rights, list[str] | None]:
    """The key's owner, the rights the key will hold, and the models its team allows (None: all)."""
    role = None
    if body.user_id is not None:
        u = _row(conn, users, body.user_id)
        if u is None or not sees_user(ops.actor, Owner(u.org_id, u.team_id, u.id)):
            raise InvalidRequest(f"No user with id {body.user_id!r}.", param="user_id", code="invalid_value")
        if body.team_id is not None and body.team_id != u.team_id:
            raise InvalidRequest("A user's key belongs to the user's own team.", param="team_id",
                                 code="invalid_value")
        owner, role = Owner(u.org_id, u.team_id, u.id), u.role
    elif body.team_id is not None:
        t = _row(conn, teams, body.team_id)
        if t is None or not sees_team(ops.actor, t.org_id, t.id):
            raise InvalidRequest(f"No team with id {body.team_id!r}.", param="team_id", code="invalid_value")
        owner = Owner(t.org_id, t.id, None)
    elif ops.actor.user_id is not None:
        owner, role = Owner(ops.actor.org_id, ops.actor.team_id, ops.actor.user_id), ops.actor.role
    else:
        raise InvalidRequest("Give user_id or team_id: the key must belong to a user or a team.", param="user_id",
                             code="missing_required_parameter")
    allowed = None
    if owner.team_id is not None:
        allowed = conn.execute(sa.select(teams.c.models).where(teams.c.id == owner.team_id)).scalar_one_or_none()
    return owner, key_rights(role, owner), allowed


MAX_KEY_LIFE = timedelta(seconds=MAX_KEY_SECONDS)  # "never" is expires_at null


def _future(when: datetime, param: str) -> datetime:
    when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    now = utcnow()
    if when <= now:
        raise InvalidRequest("The expiry must be in the future.", param=param, code="invalid_value")
    if when - now > MAX_KEY_LIFE:
        raise InvalidRequest("The expiry must be within 100 years (null: never).", param=param, code="invalid_value")
    return when


def _key_rights(conn: sa.Connection, r: sa.Row[Any]) -> Rights:
    role = (conn.execute(sa.select(users.c.role).where(users.c.id == r.user_id)).scalar_one_or_none()
            if r.user_id is not None else None)
    return key_rights(role, _key_owner(r))  # a user gone (its keys are revoked): the most a user may have


def _own_new_key(conn: sa.Connection, ops: Ops, body: KeyCreate, expires: datetime | None) -> dict[str, Any]:
    """A key that its owner (not an admin over it) makes for itself: at most what the calling key may do. Fields
    left out are the calling key's; a key of its own budget or rate limit would be escaped, so it may not."""
    key_id = ops.actor.key_id or ""
    base = _row(conn, api_keys, key_id)
    if base is None:
        raise forbid("create keys without a key of its own to derive them from")
    for table in (budgets, rate_limits):
        if conn.execute(sa.select(table.c.id).where(table.c.scope == "key", table.c.scope_id == key_id)).first():
            raise forbid("create keys while its own key has a budget or rate limit of its own (ask an admin)")
    given = body.model_fields_set
    fields = {"models": body.models if "models" in given else base.models,
              "tags": list(body.tags) if "tags" in given else list(base.tags or ()),
              "expires_at": expires if given & {"expires_at", "expires_in"} else base.expires_at,
              "logging": body.logging if "logging" in given else base.logging,
              **{f: getattr(body if f in given else base, f) for f in ("data_class", "pii_mode", "retention")}}
    bad = widens(KeyBounds.of(base), fields)
    if bad is not None:
        raise forbid(f"give its own key more than the key it calls with ({bad}); ask an admin", param=bad)
    return fields


def create_key(conn: sa.Connection, ops: Ops, body: KeyCreate) -> KeyCreated:
    if ops.hasher is None:
        raise ServiceUnavailable("Virtual keys are disabled: set governance.key_secret (or SWITCHYARD_KEY_SECRET, "
                                 "or a master_key).", code="key_secret_missing")
    owner, rights, allowed = _key_placement(conn, ops, body)
    if not outranks(ops.actor, rights) and not owns(ops.actor, owner):
        raise forbid("create keys for that owner (only its own, or for users or teams below its own rights)")
    now = utcnow()
    expires = (now + timedelta(seconds=body.expires_in) if body.expires_in is not None
               else _future(body.expires_at, "expires_at") if body.expires_at is not None else None)
    fields: dict[str, Any] = {"models": body.models, "tags": body.tags, "expires_at": expires,
                              "logging": body.logging, "data_class": body.data_class, "pii_mode": body.pii_mode,
                              "retention": body.retention}
    if not outranks(ops.actor, rights):
        fields = _own_new_key(conn, ops, body, expires)
    _check_models(ops, fields["models"], "models", allowed)
    secret = new_key()
    key_id = new_id("vk")
    fields["tags"] = list(dict.fromkeys(fields["tags"]))
    conn.execute(sa.insert(api_keys).values(
        id=key_id, key_hash=ops.hasher.hash(secret), prefix=display_prefix(secret), name=body.name,
        org_id=owner.org_id, team_id=owner.team_id, user_id=owner.user_id, metadata=body.metadata, revoked_at=None,
        created_by=ops.actor.id, created_at=now, updated_at=now, **fields))
    bump(conn, ops, [("key", key_id)])
    ops.record(conn, "key.create", key_id, owner, {"name": body.name, **fields})
    key = get_key(conn, ops, key_id)
    return KeyCreated(**key.model_dump(), secret=secret)


def update_key(conn: sa.Connection, ops: Ops, key_id: str, body: KeyUpdate) -> Key:
    """An admin over the key (outranking its owner) may change anything; its owner may only narrow it."""
    r = _key_row(conn, ops, key_id)
    admin = outranks(ops.actor, _key_rights(conn, r))
    if not admin and not owns(ops.actor, _key_owner(r)):
        raise forbid("change this key")
    if r.revoked_at is not None:
        raise Conflict("The key is revoked; a revoked key cannot be changed.")
    values = _dump(body)
    if "models" in values:
        allowed = (conn.execute(sa.select(teams.c.models).where(teams.c.id == r.team_id)).scalar_one_or_none()
                   if r.team_id else None)
        _check_models(ops, values["models"], "models", allowed)
    if values.get("expires_at") is not None:
        values["expires_at"] = _future(body.expires_at, "expires_at")  # type: ignore[arg-type]
    if "tags" in values:
        values["tags"] = list(dict.fromkeys(values["tags"]))
    bad = None if admin else widens(KeyBounds.of(r), values)
    if bad is not None:
        raise forbid(f"widen its own key ({bad}): only narrow it (an admin over the key may widen it)", param=bad)
    if values:
        conn.execute(sa.update(api_keys).where(api_keys.c.id == key_id).values(**values, updated_at=utcnow()))
        bump(conn, ops, [("key", key_id)])
    ops.record(conn, "key.update", key_id, _key_owner(r), {"changed": sorted(values)})
    return get_key(conn, ops, key_id)


def revoke_key(conn: sa.Connection, ops: Ops, key_id: str) -> Key:
    r = _key_row(conn, ops, key_id)
    if not owns(ops.actor, _key_owner(r)) and not outranks(ops.actor, _key_rights(conn, r)):
        raise forbid("revoke this key (only its own, or those of users or teams below its own rights)")
    if r.revoked_at is None:
        conn.execute(sa.update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=utcnow(),
                                                                                updated_at=utcnow()))
        bump(conn, ops, [("key", key_id)])
        ops.record(conn, "key.revoke", key_id, _key_owner(r))
    return get_key(conn, ops, key_id)


# Row changes come before ``bump`` in every transaction: the identity version's row lock is always taken after
# the rows an operation changes, never before, so two operations cannot wait on each other (PostgreSQL).


def _revoke_where(conn: sa.Connection, where: sa.ColumnElement[bool]) -> list[Change]:
    now = utcnow()
    ids = conn.execute(sa.update(api_keys).where(where, api_keys.c.revoked_at.is_(None))
                       .values(revoked_at=now, updated_at=now).returning(api_keys.c.id)).scalars().all()
    return [("key", k) for k in ids]


def _drop_limits(conn: sa.Connection, scope: str, scope_id: str) -> list[Change]:
    changes: list[Change] = []
    for table, kind in ((budgets, "budget"), (rate_limits, "rate_limit")):
        gone = conn.execute(sa.delete(table).where(table.c.scope == scope, table.c.scope_id == scope_id)
                            .returning(table.c.id)).scalars().all()
        if gone:
            changes.append((kind, f"{scope}:{scope_id}"))
    return changes
