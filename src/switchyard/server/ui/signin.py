"""Signing in and out of the console.

``GET /ui/sign-in`` shows the form and sets a random double-submit value in a ``SameSite=Strict`` cookie; ``POST
/ui/sign-in`` needs that value back in the form (and an ``Origin`` of ours, when the browser sends one), then
exchanges the key for a session cookie (:mod:`.auth`, :mod:`.session`). Both events are audited
(``console.sign_in``, ``console.sign_out``); a valid key without a console role is audited as a denial.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ...errors import AuthenticationFailed, PermissionDenied, RateLimited, SwitchyardError
from ...governance.rbac import Actor, Owner
from ...pipeline import Gateway
from ..common import peer
from . import auth
from .session import COOKIE, LOGIN_COOKIE, PATH, cookie_header, login_ok, login_token
from .web import (
    SECURITY_HEADERS,
    SIGN_IN_REASONS,
    View,
    clear_cookie,
    console_of,
    read_form,
    render,
    same_origin,
    secure,
)

log = logging.getLogger("switchyard.console")


def _form(request: Request, status: int = 200, error: str | None = None) -> Response:
    token = login_token()
    reason = SIGN_IN_REASONS.get(request.query_params.get("reason") or "")
    resp = render("sign_in.html", status, login=token, error=error or reason)
    resp.headers.append("set-cookie", cookie_header(LOGIN_COOKIE, token, max_age=3600, secure=secure(request)))
    return resp


async def sign_in_form(request: Request) -> Response:
    c = console_of(request)
    if c.sessions is not None and c.sessions.read(request.cookies.get(COOKIE)) is not None:
        return RedirectResponse(f"{PATH}/", status_code=303, headers=SECURITY_HEADERS)
    return _form(request)


async def _audit(gw: Gateway, actor: Actor, action: str, rid: str) -> None:
    gov = gw.governance
    if gov is None:
        return
    try:
        await gov.transact(gov.ops(actor, rid), lambda conn, ops: ops.record(
            conn, action, actor.key_id, Owner(actor.org_id, actor.team_id)))
    except SwitchyardError as e:  # the store is down: the session works, the record is lost (and logged)
        log.warning("console: %s of %s not audited (%s)", action, actor.id, e.code)


async def sign_in(request: Request) -> Response:
    c = console_of(request)
    if c.sessions is None:
        return render("error_bare.html", 503, title="Unavailable",
                      message="The console needs a key secret: set governance.key_secret or a master_key.")
    try:
        form = await read_form(request)
    except SwitchyardError as e:
        return _form(request, e.status, e.message)
    given = (form.get("login") or [""])[0]
    if not same_origin(request) or not login_ok(request.cookies.get(LOGIN_COOKIE), given):
        return _form(request, 403, "The sign-in form expired; try again.")
    key = (form.get("key") or [""])[0]
    rid = str(request.state.request_id)
    try:
        principal = await c.gw.auth.authenticate(key.strip(), peer(request))
        token, _s, actor = auth.open_session(c.gw, c.sessions, principal)
    except PermissionDenied as e:  # a valid key without a console role: recorded as a denial
        if c.gw.governance is not None:
            await c.gw.governance.record_denial(Actor.of(principal), "console.sign_in", principal.key_id, e.message,
                                                403, rid)
        return _form(request, 403, e.message)
    except AuthenticationFailed:
        return _form(request, 401, "That key was not accepted.")
    except RateLimited as e:
        resp = _form(request, 429, "Too many failed sign-ins from this address; wait a little.")
        resp.headers.update(e.headers)
        return resp
    except SwitchyardError as e:
        return _form(request, e.status, e.message)
    await _audit(c.gw, actor, "console.sign_in", rid)
    resp = RedirectResponse(f"{PATH}/", status_code=303, headers=SECURITY_HEADERS)
    resp.headers.append("set-cookie", cookie_header(COOKIE, token, max_age=int(c.sessions.ttl),
                                                    secure=secure(request)))
    resp.headers.append("set-cookie", cookie_header(LOGIN_COOKIE, "", max_age=0, secure=secure(request)))
    return resp


async def sign_out(v: View) -> Response:
    sessions = v.console.sessions
    assert sessions is not None
    await auth.sign_out(v.gw, sessions, v.session)
    await _audit(v.gw, v.actor, "console.sign_out", v.request_id)
    headers = {**SECURITY_HEADERS, "set-cookie": clear_cookie(v.request)}
    if v.htmx:
        return Response(status_code=204, headers={**headers, "hx-redirect": f"{PATH}/sign-in"})
    return RedirectResponse(f"{PATH}/sign-in", status_code=303, headers=headers)
