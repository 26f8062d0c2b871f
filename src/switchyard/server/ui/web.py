"""The console's HTTP plumbing: the page wrapper (session, CSRF, errors as pages), templates, static files.

Every console endpoint is wrapped by :func:`page`: it reads the session cookie, resolves the actor (redirecting
to the sign-in page when there is none), checks the CSRF token and the ``Origin`` of every change, runs the
handler with a :class:`View`, and turns a :class:`~switchyard.errors.SwitchyardError` into an HTML page (or, for an
htmx request, a fragment) with its status. Every response carries a strict Content-Security-Policy: scripts and
styles only from ``/ui/static``, no inline script, no framing.

Jinja2 (autoescaping on) and the templates load on the first console request, never before.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ...errors import AuthenticationFailed, InvalidRequest, NotFound, PermissionDenied, SwitchyardError
from ...governance.rbac import Actor
from ...pipeline import Gateway
from ..asgi import read_body
from . import auth
from .session import COOKIE, CSRF_HEADER, PATH, Session, Sessions, cookie_header

if TYPE_CHECKING:
    from jinja2 import Environment

    from ...governance.runtime import Governance
    from ..admin.api import AdminContext

log = logging.getLogger("switchyard.server.ui")

MAX_FORM = 64 * 1024
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {"content-security-policy": CSP, "x-frame-options": "DENY", "referrer-policy": "same-origin",
                    "x-content-type-options": "nosniff", "cache-control": "no-store"}
_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".txt": "text/plain; charset=utf-8"}


class Console:
    """What the console keeps per app: the session signer and the overview's last metrics sample."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.sessions: Sessions | None = auth.sessions_for(gw)
        self.last_sample: Any = None  # stats.Sample: the previous overview refresh, for rates
        self.verifying = False  # one audit chain verification at a time per process


def console_of(request: Request) -> Console:
    state = request.app.state
    c: Console | None = getattr(state, "console", None)
    if c is None:
        c = state.console = Console(state.gateway)
    return c


# --- templates ---------------------------------------------------------------------------------------------------


@functools.cache
def environment() -> Environment:
    from jinja2 import Environment, PackageLoader, select_autoescape

    from . import charts

    env = Environment(loader=PackageLoader("switchyard.server.ui", "templates"),
                      autoescape=select_autoescape(["html"], default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(usd=charts.usd, num=charts.num, ms=charts.ms, when=charts.when)
    env.globals["static"] = static_url
    return env


@functools.cache
def _static_files() -> dict[str, tuple[bytes, str]]:
    """The package's static/ folder, read once: name -> (bytes, ETag)."""
    out = {}
    for f in resources.files("switchyard.server.ui").joinpath("static").iterdir():
        if f.is_file() and not f.name.startswith("."):
            data = f.read_bytes()
            out[f.name] = (data, hashlib.sha256(data).hexdigest()[:16])
    return out


def _static_file(name: str) -> tuple[bytes, str] | None:
    return _static_files().get(name)


def static_url(name: str) -> str:
    found = _static_file(name)
    return f"{PATH}/static/{name}" + (f"?v={found[1]}" if found else "")


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    found = _static_file(name)
    media = _STATIC_TYPES.get("." + name.rpartition(".")[2])
    if found is None or media is None:
        return HTMLResponse("Not found", status_code=404, headers=SECURITY_HEADERS)
    data, etag = found
    headers = {**SECURITY_HEADERS, "cache-control": "public, max-age=86400", "etag": f'"{etag}"'}
    if request.headers.get("if-none-match") == f'"{etag}"':
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media, headers=headers)


def render(template: str, status: int = 200, headers: Mapping[str, str] | None = None, **ctx: Any) -> HTMLResponse:
    html = environment().get_template(template).render(**ctx)
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


# --- the view of one request -------------------------------------------------------------------------------------


@dataclass(slots=True)
class View:
    request: Request
    console: Console
    actor: Actor
    session: Session
    csrf: str
    form: dict[str, list[str]] = field(default_factory=dict)

    @property
    def gw(self) -> Gateway:
        return self.console.gw

    @property
    def gov(self) -> Governance:
        gov = self.console.gw.governance
        assert gov is not None
        return gov

    @property
    def htmx(self) -> bool:
        return self.request.headers.get("hx-request") == "true"

    @property
    def request_id(self) -> str:
        return str(self.request.state.request_id)

    def arg(self, name: str) -> str | None:
        """A query parameter, or a form field: stripped, None when empty."""
        value = self.request.query_params.get(name)
        if value is None and name in self.form:
            value = self.form[name][0]
        value = (value or "").strip()
        return value or None

    def admin(self, params: dict[str, str] | None = None, query: Any = None) -> AdminContext:
        """An admin API context for this actor: the console calls the admin API's own operations with it."""
        from ..admin.api import AdminContext

        return AdminContext(actor=self.actor, gov=self.gov, request_id=self.request_id, params=params or {},
                            query=query, gw=self.gw)

    def page(self, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        return render(template, status, actor=self.actor, csrf=self.csrf, nav=self.request.url.path, **ctx)


Handler = Callable[[View], Awaitable[Response]]


def same_origin(request: Request) -> bool:
    """A change must come from a page of ours: its Origin (sent by browsers on every POST), when present, is this
    host (as the client addressed it: ``Host``, or ``X-Forwarded-Host`` from a proxy that rewrites it; a cross-site
    form cannot set either). The CSRF token is the real check; this is a second one that costs nothing."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    netloc = urllib.parse.urlsplit(origin).netloc
    hosts = {request.headers.get("host", ""), request.headers.get("x-forwarded-host", "").split(",")[0].strip()}
    return origin != "null" and netloc in hosts - {""}


def secure(request: Request) -> bool:
    wanted = request.app.state.gateway.config.console.secure_cookie
    return bool(wanted) if wanted is not None else request.url.scheme == "https"


def clear_cookie(request: Request) -> str:
    return cookie_header(COOKIE, "", max_age=0, secure=secure(request))


SIGN_IN_REASONS = {"ended": "Your session ended: the key you signed in with was revoked, expired or changed. "
                             "Sign in again."}


def to_sign_in(request: Request, reason: str | None = None) -> Response:
    """Back to the sign-in form (``reason``: a key of ``SIGN_IN_REASONS``, never free text in the URL)."""
    target = f"{PATH}/sign-in" + (f"?reason={reason}" if reason in SIGN_IN_REASONS else "")
    headers = {**SECURITY_HEADERS, "set-cookie": clear_cookie(request)}
    if request.headers.get("hx-request") == "true":
        return Response(status_code=401, headers={**headers, "hx-redirect": target})
    return RedirectResponse(target, status_code=303, headers=headers)


async def read_form(request: Request) -> dict[str, list[str]]:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("application/x-www-form-urlencoded"):
        return {}
    body = await read_body(request, MAX_FORM)
    try:
        return urllib.parse.parse_qs(body.decode(), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("The form could not be read.") from None


def error_response(request: Request, e: SwitchyardError, actor: Actor | None = None, csrf: str = "") -> Response:
    titles = {400: "Not accepted", 401: "Signed out", 403: "Not allowed", 404: "Not found", 409: "Conflict",
              429: "Too many attempts", 503: "Unavailable"}
    status = e.status if e.status in titles else 500
    message = e.message if status != 500 else "The console failed unexpectedly; the request id says where to look."
    ctx: dict[str, Any] = {"title": titles.get(status, "Error"), "message": message}
    if request.headers.get("hx-request") == "true":
        return render("_error.html", status, **ctx)
    if actor is None:
        return render("error_bare.html", status, **ctx)
    return render("error.html", status, actor=actor, csrf=csrf, nav="", **ctx)


def page(handler: Handler, *, change: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a console endpoint: session, actor, CSRF for changes, errors as pages."""

    async def endpoint(request: Request) -> Response:
        c = console_of(request)
        if c.sessions is None:
            return render("error_bare.html", 503, title="Unavailable",
                          message="The console needs a key secret: set governance.key_secret (or "
                                  "$SWITCHYARD_KEY_SECRET) or a master_key.")
        s = c.sessions.read(request.cookies.get(COOKIE))
        if s is None:
            return to_sign_in(request)
        actor: Actor | None = None
        csrf = c.sessions.csrf(s)
        try:
            actor = await auth.resolve(c.gw, c.sessions, s)
            form: dict[str, list[str]] = {}
            if change:
                form = await read_form(request)
                given = request.headers.get(CSRF_HEADER) or next(iter(form.get("csrf", [])), None)
                if not same_origin(request) or not c.sessions.csrf_ok(s, given):
                    raise PermissionDenied("This change did not come with the console's CSRF token; reload the "
                                           "page and try again.", code="csrf_failed")
            return await handler(View(request, c, actor, s, csrf, form))
        except AuthenticationFailed:
            return to_sign_in(request, "ended")
        except SwitchyardError as e:
            return error_response(request, e, actor, csrf)
        except Exception:
            log.exception("console failure in %s %s (request %s)", request.method, request.url.path,
                          request.state.request_id)
            return error_response(request, SwitchyardError("unexpected"), actor, csrf)

    endpoint.__name__ = handler.__name__
    return endpoint


async def not_found(request: Request) -> Response:
    return error_response(request, NotFound(f"No console page at {request.url.path}."))
