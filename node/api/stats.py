"""`GET /api/v1/stats`: the same figures as `hotline-node stats`, for analysts and operators."""

from __future__ import annotations

from aiohttp import web

from node import stats
from node.api.bodies import json_response
from node.api.context import context, principal
from node.tokens import Role


async def get_stats(request: web.Request) -> web.Response:
    await principal(request, Role.ANALYST, Role.OPERATOR)
    ctx = context(request)
    period = stats.Period.parse(request.query.get("since"), request.query.get("until"))
    # The case service holds the node's database; the stats only read it.
    document = await stats.collect(ctx.cases.db, node_id=ctx.node_id, period=period)
    return json_response(document)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/stats", get_stats)
