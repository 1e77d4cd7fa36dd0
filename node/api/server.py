"""The aiohttp application: routes, the problem+json middleware, the public key document."""

from __future__ import annotations

from aiohttp import web

from node.api import reports
from node.api.context import CONTEXT, ApiContext, context
from node.api.problems import problem_middleware


async def key_document(request: web.Request) -> web.Response:
    return web.Response(body=context(request).key_document(), content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "node_id": context(request).node_id})


def make_app(ctx: ApiContext) -> web.Application:
    # client_max_size is a second cap: handlers cap bodies themselves before parsing.
    app = web.Application(middlewares=[problem_middleware], client_max_size=1024 * 1024)
    app[CONTEXT] = ctx
    app.router.add_get("/.well-known/hotline-node", key_document)
    app.router.add_get("/healthz", healthz)
    reports.add_routes(app)
    return app
