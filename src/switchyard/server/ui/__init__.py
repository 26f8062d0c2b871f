"""The web console at ``/ui``: server-rendered pages (Jinja2, autoescaped) with htmx, served by the gateway itself.

Only :func:`routes` is imported by the app (``server/app.py``); it returns nothing unless the console is on
(``console.enabled``, by default wherever the admin API is), and then one ``Mount`` whose pages (and the templates)
load on the first console request: a gateway whose console nobody opens never imports them.

Modules: :mod:`.session` (signed session tokens, CSRF), :mod:`.auth` (who is signed in), :mod:`.web` (the page
wrapper, templates, static files), :mod:`.signin`, :mod:`.pages` (overview, spend, budgets,
deployments), :mod:`.keys`, :mod:`.activity` (requests, audit log), :mod:`.data` (scoped reads), :mod:`.stats`
and :mod:`.charts` (inline SVG). See docs/console.md.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute, Mount
from starlette.types import Receive, Scope, Send

from ...config import Config

PATH = "/ui"


class _Lazy:
    """The console's router, imported at its first request."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            from .routes import router

            self.app = router()
        await self.app(scope, receive, send)


def enabled(config: Config) -> bool:
    g = config.governance
    return config.console.active(g.enabled, g.admin.enabled)


def routes(config: Config) -> list[BaseRoute]:
    """The console's routes under ``/ui`` (none when it is off)."""
    if not enabled(config):
        return []
    return [Mount(PATH, app=_Lazy())]  # /ui itself redirects to /ui/ (Starlette's redirect_slashes)
