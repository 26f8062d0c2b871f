"""The web console at ``/ui``: server-rendered pages (Jinja2, autoescaped) with htmx, served by the gateway itself.

Only :func:`routes` is imported by the app (``server/app.py``); it returns nothing unless the console is on
(``console.enabled``, by default wherever the admin API is), and the templates and Jinja2 load on the first console
request. Modules: :mod:`.session` (signed session tokens, CSRF), :mod:`.auth` (who is signed in), :mod:`.web`
(the page wrapper, templates, static files), :mod:`.signin`, :mod:`.pages` (overview, spend, budgets,
deployments), :mod:`.keys`, :mod:`.activity` (requests, audit log), :mod:`.data` (scoped reads), :mod:`.stats`
and :mod:`.charts` (inline SVG). See docs/console.md.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from ..config import Config


def enabled(config: Config) -> bool:
    g = config.governance
    return config.console.active(g.enabled, g.admin.enabled)


def routes(config: Config) -> list[BaseRoute]:
    """The console's routes under ``/ui`` (none when it is off)."""
    if not enabled(config):
        return []
    from .routes import ROUTES

    return ROUTES
