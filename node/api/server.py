"""The aiohttp application: routes, the metrics and problem+json middlewares, the key document."""

from __future__ import annotations

from aiohttp import web

from node.api import admin, federation, metrics, public_form, reports, stats
from node.api.admin import ADMIN, AdminContext
from node.api.context import CONTEXT, ApiContext, context
from node.api.federation import FEDERATION, FederationContext
from node.api.problems import problem_middleware


async def key_document(request: web.Request) -> web.Response:
    return web.Response(body=context(request).key_document(), content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "node_id": context(request).node_id})


def make_app(
    ctx: ApiContext,
    federation_ctx: FederationContext | None = None,
    admin_ctx: AdminContext | None = None,
) -> web.Application:
    # client_max_size is a second cap: handlers cap bodies themselves before parsing.
    # The metrics middleware is outermost, so it counts the status problem+json turned into.
    app = web.Application(
        middlewares=[metrics.metrics_middleware, reports.cors_middleware, problem_middleware],
        client_max_size=32 * 1024 * 1024,
    )
    app[CONTEXT] = ctx
    app.router.add_get("/.well-known/hotline-node", key_document)
    app.router.add_get("/healthz", healthz)
    reports.add_routes(app)
    public_form.add_routes(app)
    stats.add_routes(app)
    metrics.add_routes(app)
    if federation_ctx is not None:
        app[FEDERATION] = federation_ctx
        federation.add_routes(app, federation_ctx.path_prefix)
        if federation_ctx.path_prefix:
            prefixed = federation_ctx.path_prefix + "/.well-known/hotline-node"
            app.router.add_get(prefixed, key_document)
    if admin_ctx is not None:
        app[ADMIN] = admin_ctx
        admin.add_routes(app)
    return app
