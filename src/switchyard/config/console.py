"""The ``console:`` section: the web console at ``/ui`` (switchyard.server.ui; docs/console.md)."""

from __future__ import annotations

from pydantic import Field

from .base import Strict


class ConsoleConfig(Strict):
    # null (the default): on exactly when the admin API is (governance.enabled and governance.admin.enabled); the
    # console is a view over the same rights, so it is there wherever the admin API is, and nowhere else
    enabled: bool | None = None
    # how long a sign-in lasts (seconds, at most a week); the key's revocation ends it sooner
    session_ttl: float = Field(8 * 3600.0, ge=60, le=7 * 86400)
    # null: the session cookie is Secure exactly when the request came over https (uvicorn's proxy headers count);
    # true: always (behind a TLS-terminating proxy that does not say so); false: never
    secure_cookie: bool | None = None

    def active(self, governance_enabled: bool, admin_enabled: bool) -> bool:
        return self.enabled if self.enabled is not None else (governance_enabled and admin_enabled)
