"""Console sessions: signed tokens in a cookie, CSRF tokens tied to them, and sign-out.

A session is a token the gateway signs, not a row it stores: ``v1.<payload>.<signature>``, the payload a small JSON
object (session id, who signed in, when, until when) in base64url, the signature HMAC-SHA256 under a key derived
from the gateway's key secret. So every process and replica that shares the key secret accepts it, and rotating the
secret ends every session. Who signed in is named by the key's id (``vk_...``) or ``master``, never by the key: each
request resolves it again from the store, so revoking the key (or taking its role away) ends the session at once.

The CSRF token of a session is HMAC(secret, "csrf:" + session id): tied to the session, nothing to store. Every
change (POST, DELETE) must carry it, in the ``x-csrf-token`` header (htmx sends it from the page's ``hx-headers``)
or in a ``csrf`` form field. Sign-in, before any session, uses a double-submit token: a random value in a
``SameSite=Strict`` cookie that the form must repeat.

Signing out adds the session id to this process's signed-out set (kept until the token would have expired) and
clears the cookie; :func:`.auth.sign_out` also records it in the store, which every process reads on each console
request, so a copy of the cookie is refused by every replica.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from . import PATH

__all__ = ["COOKIE", "CSRF_HEADER", "LOGIN_COOKIE", "PATH", "Session", "Sessions"]

COOKIE = "sy_console"  # the session
LOGIN_COOKIE = "sy_console_login"  # sign-in's double-submit CSRF value
CSRF_HEADER = "x-csrf-token"
_VERSION = "v1"
_MAX_SIGNED_OUT = 100_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Session:
    sid: str  # random, 128 bits
    who: str  # a virtual key's id, or "master"
    issued: float  # epoch seconds
    expires: float
    master: str | None = None  # for "master": a tag of the master key it was (a changed master key ends it)


class Sessions:
    """Issues and checks session tokens and their CSRF tokens. Holds the derived secret; never logs it."""

    def __init__(self, secret: bytes, ttl: float, clock: Any = time.time) -> None:
        self._secret = secret
        self.ttl = ttl
        self._clock = clock
        self._signed_out: OrderedDict[str, float] = OrderedDict()  # sid -> when its token expires

    def __repr__(self) -> str:
        return "Sessions(<secret>)"

    def _mac(self, label: str, data: bytes) -> bytes:
        return hmac.new(self._secret, label.encode() + b"\x00" + data, hashlib.sha256).digest()

    def master_tag(self, master_key: str) -> str:
        """Names the master key in a token without revealing it."""
        return _b64(self._mac("master", master_key.encode())[:12])

    def issue(self, who: str, master: str | None = None) -> tuple[str, Session]:
        now = self._clock()
        s = Session(sid=secrets.token_urlsafe(16), who=who, issued=now, expires=now + self.ttl, master=master)
        body = {"s": s.sid, "w": s.who, "i": int(s.issued), "e": int(s.expires)}
        if master is not None:
            body["m"] = master
        payload = _b64(orjson.dumps(body))
        sig = _b64(self._mac("session", f"{_VERSION}.{payload}".encode()))
        return f"{_VERSION}.{payload}.{sig}", s

    def read(self, token: str | None) -> Session | None:
        """The session a token holds, if its signature is ours, it has not expired and it was not signed out."""
        if not token or len(token) > 1024:
            return None
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _VERSION:
            return None
        try:
            expected = self._mac("session", f"{parts[0]}.{parts[1]}".encode())
            if not hmac.compare_digest(expected, _unb64(parts[2])):
                return None
            body = orjson.loads(_unb64(parts[1]))
            s = Session(sid=str(body["s"]), who=str(body["w"]), issued=float(body["i"]), expires=float(body["e"]),
                        master=body.get("m"))
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            return None
        if s.expires <= self._clock() or s.sid in self._signed_out:
            return None
        return s

    def csrf(self, s: Session) -> str:
        return _b64(self._mac("csrf", s.sid.encode()))

    def csrf_ok(self, s: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf(s).encode(), (given or "").encode())

    def sign_out(self, s: Session) -> None:
        now = self._clock()
        while self._signed_out:  # forget the ones whose tokens have expired anyway (they are in expiry order, mostly)
            sid, until = next(iter(self._signed_out.items()))
            if until > now and len(self._signed_out) < _MAX_SIGNED_OUT:
                break
            del self._signed_out[sid]
        self._signed_out[s.sid] = s.expires


def login_token() -> str:
    return secrets.token_urlsafe(16)


def login_ok(cookie: str | None, given: str | None) -> bool:
    return bool(cookie) and bool(given) and hmac.compare_digest((cookie or "").encode(), (given or "").encode())


def cookie_header(name: str, value: str, *, max_age: int, secure: bool) -> str:
    """A Set-Cookie value: HttpOnly, SameSite=Strict, path /ui, Secure when asked."""
    parts = [f"{name}={value}", f"Path={PATH}", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)
