"""The console's URL map (all under ``/ui``)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route, Router

from . import activity, keys, pages, signin, web

ROUTES: list[BaseRoute] = [
    Route("/", web.page(pages.overview), methods=["GET"]),
    Route("/overview/stats", web.page(pages.overview_stats), methods=["GET"]),
    Route("/sign-in", signin.sign_in_form, methods=["GET"]),
    Route("/sign-in", signin.sign_in, methods=["POST"]),
    Route("/sign-out", web.page(signin.sign_out, change=True), methods=["POST"]),
    Route("/spend", web.page(pages.spend), methods=["GET"]),
    Route("/budgets", web.page(pages.budgets), methods=["GET"]),
    Route("/keys", web.page(keys.keys), methods=["GET"]),
    Route("/keys", web.page(keys.create, change=True), methods=["POST"]),
    Route("/keys/{key_id}/revoke", web.page(keys.revoke, change=True), methods=["POST"]),
    Route("/keys/{key_id}", web.page(keys.revoke, change=True), methods=["DELETE"]),
    Route("/deployments", web.page(pages.deployments), methods=["GET"]),
    Route("/requests", web.page(activity.requests), methods=["GET"]),
    Route("/requests/{request_id}", web.page(activity.request_detail), methods=["GET"]),
    Route("/audit", web.page(activity.audit), methods=["GET"]),
    Route("/audit/verify", web.page(activity.verify_chain, change=True), methods=["POST"]),
    Route("/static/{name}", web.static, methods=["GET"]),
    Route("/{rest:path}", web.not_found),
]


def router() -> Router:
    return Router(routes=ROUTES)
