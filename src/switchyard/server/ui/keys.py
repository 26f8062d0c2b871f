"""The keys page: list, create (the secret shown once) and revoke.

Creating and revoking call the admin API's own operations (``POST /admin/keys``, ``POST
/admin/keys/{key_id}/revoke``) with the signed-in actor, so the rights checked, the change notices that reach every
replica and the audit records are exactly the admin API's; a refusal is audited as a denial, as there.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from ...errors import InvalidRequest, NotFound, PermissionDenied, SwitchyardError
from ...governance import identity
from ...governance.models import Key, KeyCreate, KeyQuery, TeamQuery, UserQuery
from ..admin import identity_routes
from ..admin.api import validation_error
from . import data
from .pages import bound_of
from .session import PATH
from .web import View

LOGGING = ("none", "metadata", "full")


async def _listing(v: View, team: str | None, revoked: bool) -> dict[str, Any]:
    gov = v.gov
    ops = gov.ops(v.actor, v.request_id)

    def work() -> dict[str, Any]:
        with gov.db.read() as conn:
            if team is not None:
                data.with_team(conn, v.actor, bound_of(v.actor), team)
            keys = identity.list_keys(conn, ops, KeyQuery(limit=1000, team_id=team, include_revoked=revoked))
            people = identity.list_users(conn, ops, UserQuery(limit=1000, team_id=team))
            teams = identity.list_teams(conn, ops, TeamQuery(limit=1000))
            found = data.names(conn, team=[k.team_id for k in keys] + [team],
                               user=[k.user_id for k in keys], org=[k.org_id for k in keys])
            return {"keys": keys[::-1], "users": people, "teams": [t for t in teams if team in (None, t.id)],
                    "names": found}

    return await gov.db.run(work)


async def keys(v: View, created: Any = None, status: int = 200) -> Response:
    team = v.arg("team")
    revoked = v.arg("revoked") == "1"
    got = await _listing(v, team, revoked)
    return v.page("keys.html", status, team=team, revoked=revoked, created=created, logging_modes=LOGGING,
                  models=_model_names(v), team_name=got["names"]["team"].get(team or ""), **got)


def _model_names(v: View) -> list[str]:
    catalog = v.gw.catalog
    return sorted({*catalog.deployments, *catalog.routes})


def _body(v: View) -> KeyCreate:
    """The create form as the admin API's body (a 400 names the field)."""
    fields: dict[str, Any] = {"name": v.arg("name"), "logging": v.arg("logging") or "none"}
    owner = v.arg("owner") or ""
    kind, _, owner_id = owner.partition(":")
    if kind == "user" and owner_id:
        fields["user_id"] = owner_id
    elif kind == "team" and owner_id:
        fields["team_id"] = owner_id
    models = [m for m in v.form.get("models", []) if m.strip()]
    if models:
        fields["models"] = models
    days = v.arg("expires_days")
    if days is not None:
        try:
            fields["expires_in"] = float(days) * 86400
        except ValueError:
            raise InvalidRequest("Expires in: a number of days.", param="expires_days") from None
    try:
        return KeyCreate.model_validate({k: val for k, val in fields.items() if val is not None})
    except ValidationError as e:
        raise validation_error(e) from None


async def _admin_op(v: View, action: str, target: str | None, call: Any) -> Any:
    """Run an admin API operation; a refusal (403, 404) is audited as a denial, as the admin API does."""
    try:
        return await call
    except (PermissionDenied, NotFound) as e:
        await v.gov.record_denial(v.actor, action, target, e.message, e.status, v.request_id)
        raise


async def create(v: View) -> Response:
    try:
        body = _body(v)
        created = await _admin_op(v, "key.create", None, identity_routes.create_key(v.admin(), body))
    except SwitchyardError as e:
        if not v.htmx:
            raise
        return v.page("_key_created.html", e.status, created=None, error=e.message, key_row=None)
    if not v.htmx:
        return await keys(v, created=created, status=201)
    found = await v.gov.db.run(_row_names, v, created)
    return v.page("_key_created.html", 201, created=created, error=None, key_row=created, names=found)


def _row_names(v: View, key: Key) -> dict[str, dict[str, str]]:
    with v.gov.db.read() as conn:
        return data.names(conn, team=[key.team_id], user=[key.user_id], org=[key.org_id])


async def revoke(v: View) -> Response:
    key_id = v.request.path_params["key_id"]
    ctx = v.admin(params={"key_id": key_id})
    key: Key = await _admin_op(v, "key.revoke", key_id, identity_routes.revoke_key(ctx))
    if not v.htmx:
        return RedirectResponse(f"{PATH}/keys", status_code=303)
    found = await v.gov.db.run(_row_names, v, key)
    return v.page("_key_row.html", k=key, names=found)
