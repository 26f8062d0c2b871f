"""``POST /admin/config/reload``: load the config file again and swap in what reloads (see
:mod:`switchyard.reload`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from ...config import ConfigError
from ...errors import InvalidRequest, ServiceUnavailable
from ...governance.rbac import ORG_ADMIN, forbid
from .api import AdminContext, operation


class ReloadSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    generation: int  # the configuration now serving: 0 at start-up, one more each reload that changed something
    added: list[str]  # deployments
    removed: list[str]
    changed: list[str]  # their settings, prices or provider changed


@operation("POST", "/admin/config/reload", summary="Reload the config file", tag="config", action="config.reload",
           response=ReloadSummary, errors=(400, 401, 403, 503))
async def reload_config(ctx: AdminContext) -> ReloadSummary:
    """Read the config file again and apply its providers, deployments, routes, prices and routing settings; calls
    in flight finish on the configuration they started with. A file that fails ``switchyard check`` (or changes a
    key that does not reload: the server, store, keys, governance, ledger, metrics or tracing) is refused with
    400 and the same messages, and the configuration in use keeps serving. Super admins and org admins: the
    configuration is the whole gateway's, so an org admin's reload affects every tenant. Under
    ``serve --workers N`` every worker reloads. Audited as ``config.reload`` with what changed."""
    a = ctx.actor
    if not (a.super or a.role == ORG_ADMIN):
        raise forbid("reload the configuration")
    reloader = ctx.gw.reloader if ctx.gw is not None else None
    if reloader is None or reloader.path is None:
        raise ServiceUnavailable("The gateway was not started from a config file: there is nothing to reload.",
                                 code="reload_unavailable")
    try:
        summary = await reloader.reload(a, ctx.request_id)
    except ConfigError as e:
        raise InvalidRequest(str(e), param="config", code="invalid_config") from None
    if reloader.notify is not None:
        reloader.notify()  # serve --workers N: the supervisor forwards SIGHUP to every worker
    return ReloadSummary(**summary.as_dict())
