"""Who is signed in: a key exchanged for a session, and the session resolved back to an Actor on every request.

Sign-in goes through the gateway's own authenticator (so the failed-authentication limit per address applies),
and then asks for a console role: the master key (a super admin), or a virtual key whose user is an ``org_admin``,
``team_admin`` or ``auditor``. Members and the config's static keys have no console. Each later request reads the
key back from the store by its id (one indexed read, on a worker thread): a revoked or expired key, a deleted
user, or a role taken away ends the session on the next click.
"""

from __future__ import annotations

import hmac
import time

import sqlalchemy as sa

from ...errors import AuthenticationFailed, PermissionDenied
from ...governance.auth import Principal
from ...governance.principals import REVOKED, load_principals
from ...governance.rbac import AUDITOR, ORG_ADMIN, TEAM_ADMIN, Actor
from ...governance.runtime import Governance
from ...pipeline import Gateway
from ...store.identity_tables import api_keys, console_signouts
from .session import Session, Sessions

ROLES = (ORG_ADMIN, TEAM_ADMIN, AUDITOR)
MASTER = "master"
_LABEL = "switchyard/console-session/v1"


def sessions_for(gw: Gateway) -> Sessions | None:
    """The session signer of this gateway: a key derived from its key secret (None: no key secret, so neither
    virtual keys nor a master key, and nobody to sign in)."""
    gov = gw.governance
    if gov is None or gov.hasher is None:
        return None
    secret = bytes.fromhex(gov.hasher.hash(_LABEL))  # HMAC(key secret, label): a derived key, never stored
    return Sessions(secret, gw.config.console.session_ttl)


def console_actor(p: Principal) -> Actor:
    """The principal as an actor, if it has a console role (else 403)."""
    actor = Actor.of(p)
    if actor.super or actor.role in ROLES:
        return actor
    raise PermissionDenied("The console is for org admins, team admins and auditors (and the master key); this key "
                           "has no such role.", code="forbidden")


def open_session(gw: Gateway, sessions: Sessions, principal: Principal) -> tuple[str, Session, Actor]:
    """A session token for an authenticated key (PermissionDenied when it has no console role)."""
    actor = console_actor(principal)
    if actor.super:
        master = gw.config.master_key
        if master is None:  # pragma: no cover - only the master key is a super admin here
            raise PermissionDenied("Only the master key signs in as a super admin.", code="forbidden")
        token, s = sessions.issue(MASTER, sessions.master_tag(master))
    else:
        assert actor.key_id is not None
        token, s = sessions.issue(actor.key_id)
    return token, s, actor


_SIGNED_OUT = "signed-out"


def _signed_out(conn: sa.Connection, sid: str) -> bool:
    return conn.execute(sa.select(console_signouts.c.expires).where(
        console_signouts.c.session_id == sid)).first() is not None


def _load_key(gov: Governance, key_id: str, sid: str) -> Principal | str | None:
    """The key behind a session (None: revoked or gone), or ``_SIGNED_OUT``: one read for both."""
    with gov.db.read() as conn:
        if _signed_out(conn, sid):
            return _SIGNED_OUT
        if key_id == MASTER:
            return None
        h = conn.execute(sa.select(api_keys.c.key_hash).where(api_keys.c.id == key_id)).scalar_one_or_none()
        if h is None:
            return None
        loaded = load_principals(conn, [h]).get(h)
    return None if loaded is None or loaded == REVOKED else loaded


def _store_sign_out(gov: Governance, sid: str, expires: int) -> None:
    """Record a sign-out for every process, and forget the ones whose sessions have expired anyway."""
    with gov.db.write() as conn:
        conn.execute(console_signouts.delete().where(console_signouts.c.expires < int(time.time())))
        if not _signed_out(conn, sid):
            conn.execute(console_signouts.insert().values(session_id=sid, expires=expires))


async def sign_out(gw: Gateway, sessions: Sessions, s: Session) -> None:
    """End a session in this process at once, and in every other process and replica through the store (each
    console request reads it there, in the read that resolves the key)."""
    sessions.sign_out(s)
    gov = gw.governance
    assert gov is not None
    await gov.db.run(_store_sign_out, gov, s.sid, int(s.expires) + 1)


async def resolve(gw: Gateway, sessions: Sessions, s: Session) -> Actor:
    """The actor behind a live session, as it is now (raises AuthenticationFailed when the key no longer works, or
    when the session was signed out in another process)."""
    gov = gw.governance
    assert gov is not None
    if s.who == MASTER:
        master = gw.config.master_key
        if master is None or s.master is None or not hmac.compare_digest(s.master, sessions.master_tag(master)):
            raise AuthenticationFailed("The master key changed; sign in again.", code="session_expired")
        if await gov.db.run(_load_key, gov, MASTER, s.sid) == _SIGNED_OUT:
            raise AuthenticationFailed("This session was signed out; sign in again.", code="session_expired")
        return Actor(id=MASTER, super=True)
    p = await gov.db.run(_load_key, gov, s.who, s.sid)
    if p == _SIGNED_OUT:
        raise AuthenticationFailed("This session was signed out; sign in again.", code="session_expired")
    if not isinstance(p, Principal):
        raise AuthenticationFailed("The key you signed in with was revoked; sign in again.", code="session_expired")
    if p.expires_at is not None and p.expires_at <= time.time():
        raise AuthenticationFailed("The key you signed in with has expired; sign in again.", code="session_expired")
    return console_actor(p)
