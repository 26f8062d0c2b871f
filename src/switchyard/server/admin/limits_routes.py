"""``/admin/budgets`` and ``/admin/rate_limits``: definitions that the ledger enforces."""

from __future__ import annotations

from ...errors import InvalidRequest
from ...governance import budget_status as budget_state
from ...governance import limits
from ...governance.budget_status import BudgetStatus
from ...governance.models import (
    Budget,
    BudgetCreate,
    BudgetList,
    BudgetUpdate,
    Deleted,
    LimitQuery,
    RateLimit,
    RateLimitCreate,
    RateLimitList,
    RateLimitUpdate,
)
from ...netguard import NonPublicTarget, UnsafeTarget, check_url
from .api import AdminContext, operation
from .identity_routes import run


def _check_webhook(ctx: AdminContext, url: str | None) -> None:
    """Refuse a webhook URL that names a non-public address outright (names are checked at each delivery)."""
    if url is None:
        return
    try:
        check_url(url, ctx.gov.config.ledger.webhooks.allow_private)
    except UnsafeTarget as e:
        hint = " (set ledger.webhooks.allow_private to allow non-public targets)" if isinstance(
            e, NonPublicTarget) else ""
        raise InvalidRequest(f"Invalid value for 'webhook_url': {e}{hint}.", param="webhook_url",
                             code="invalid_value") from None


@operation("GET", "/admin/budgets", summary="List budgets", tag="budgets", action="budget.list", response=BudgetList,
           query=LimitQuery)
async def list_budgets(ctx: AdminContext) -> BudgetList:
    return BudgetList(data=await run(ctx, "budget.list", limits.list_budgets, ctx.query))


@operation("POST", "/admin/budgets", summary="Define a budget", tag="budgets", action="budget.create",
           body=BudgetCreate, response=Budget, status=201, errors=(400, 401, 403, 503))
async def create_budget(ctx: AdminContext, body: BudgetCreate) -> Budget:
    """A budget in USD, tokens or both, over a calendar period (or ``total``), for a key, user, team, org or tag.
    Every key in its scope carries it from the next call on (on every replica within a second). Setting, changing or
    deleting one needs rights above everyone it binds: an org's and a tag's are a super admin's, a team's an org
    admin's."""
    _check_webhook(ctx, body.webhook_url)
    return await run(ctx, "budget.create", limits.create_budget, body)


@operation("GET", "/admin/budgets/{budget_id}", summary="Get a budget", tag="budgets", action="budget.read",
           response=Budget)
async def get_budget(ctx: AdminContext) -> Budget:
    bid = ctx.params["budget_id"]
    return await run(ctx, "budget.read", limits.get_budget, bid, target=bid)


@operation("GET", "/admin/budgets/{budget_id}/status", summary="Where a budget stands: spent, held, remaining, reset",
           tag="budgets", action="budget.read", response=BudgetStatus)
async def budget_status(ctx: AdminContext) -> BudgetStatus:
    bid = ctx.params["budget_id"]
    budget = await run(ctx, "budget.read", limits.get_budget, bid, target=bid)
    tz = ctx.gov.config.ledger.budget_timezone
    ledger = ctx.gw.ledger if ctx.gw is not None else None
    live = budget_state.live_bucket(ledger, budget, tz)
    if live is not None:
        return budget_state.status(None, budget, tz, live=live)
    holds_known = ledger is not None and ledger.memory is not None
    return await ctx.gov.transact(ctx.ops(), lambda conn, _ops: budget_state.status(conn, budget, tz,
                                                                                   holds_known=holds_known))


@operation("PATCH", "/admin/budgets/{budget_id}", summary="Change a budget", tag="budgets", action="budget.update",
           body=BudgetUpdate, response=Budget)
async def update_budget(ctx: AdminContext, body: BudgetUpdate) -> Budget:
    _check_webhook(ctx, body.webhook_url)
    return await run(ctx, "budget.update", limits.update_budget, ctx.params["budget_id"], body)


@operation("DELETE", "/admin/budgets/{budget_id}", summary="Delete a budget", tag="budgets", action="budget.delete",
           response=Deleted, errors=(401, 403, 404, 503))
async def delete_budget(ctx: AdminContext) -> Deleted:
    await run(ctx, "budget.delete", limits.delete_budget, ctx.params["budget_id"])
    return Deleted(id=ctx.params["budget_id"], object="budget", deleted=True)


@operation("GET", "/admin/rate_limits", summary="List rate limits", tag="rate_limits", action="rate_limit.list",
           response=RateLimitList, query=LimitQuery)
async def list_rate_limits(ctx: AdminContext) -> RateLimitList:
    return RateLimitList(data=await run(ctx, "rate_limit.list", limits.list_rate_limits, ctx.query))


@operation("POST", "/admin/rate_limits", summary="Define a rate limit", tag="rate_limits",
           action="rate_limit.create", body=RateLimitCreate, response=RateLimit, status=201,
           errors=(400, 401, 403, 503))
async def create_rate_limit(ctx: AdminContext, body: RateLimitCreate) -> RateLimit:
    """Requests per minute, tokens per minute and requests in flight, for a key, user or team."""
    return await run(ctx, "rate_limit.create", limits.create_rate_limit, body)


@operation("GET", "/admin/rate_limits/{limit_id}", summary="Get a rate limit", tag="rate_limits",
           action="rate_limit.read", response=RateLimit)
async def get_rate_limit(ctx: AdminContext) -> RateLimit:
    lid = ctx.params["limit_id"]
    return await run(ctx, "rate_limit.read", limits.get_rate_limit, lid, target=lid)


@operation("PATCH", "/admin/rate_limits/{limit_id}", summary="Change a rate limit", tag="rate_limits",
           action="rate_limit.update", body=RateLimitUpdate, response=RateLimit)
async def update_rate_limit(ctx: AdminContext, body: RateLimitUpdate) -> RateLimit:
    return await run(ctx, "rate_limit.update", limits.update_rate_limit, ctx.params["limit_id"], body)


@operation("DELETE", "/admin/rate_limits/{limit_id}", summary="Delete a rate limit", tag="rate_limits",
           action="rate_limit.delete", response=Deleted, errors=(401, 403, 404, 503))
async def delete_rate_limit(ctx: AdminContext) -> Deleted:
    await run(ctx, "rate_limit.delete", limits.delete_rate_limit, ctx.params["limit_id"])
    return Deleted(id=ctx.params["limit_id"], object="rate_limit", deleted=True)
