"""The aiohttp application: routes, middlewares, the key document, and the HTTP/1.1 server
whose own refusals (unparseable requests, read deadlines) are problem+json too."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from node.api import admin, federation, metrics, public_form, reports, stats
from node.api.admin import ADMIN, AdminContext
from node.api.bodies import BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT
from node.api.context import CONTEXT, ApiContext, context
from node.api.federation import FEDERATION, FederationContext
from node.api.problems import problem, problem_middleware
from node.config import HttpConfig

log = logging.getLogger("hotline.api")
MAX_REQUEST_LINE = 16 * 1024


async def key_document(request: web.Request) -> web.Response:
    return web.Response(body=context(request).key_document(), content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "node_id": context(request).node_id})


def make_app(
    ctx: ApiContext,
    federation_ctx: FederationContext | None = None,
    admin_ctx: AdminContext | None = None,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    console: web.Application | None = None,
    public_only: bool = False,
    http_metrics: metrics.HttpMetrics | None = None,
) -> web.Application:
    """The node's HTTP application; `public_only` (the `[http] public_listen` listener) serves
    only what strangers need: the form, public intake, the key document, /healthz and
    federation — no analysts' API, administration, console or /metrics. `http_metrics`: the
    request counts to add to (the main application's, for the public one)."""
    # client_max_size is a second cap: handlers cap bodies themselves before parsing.
    # The metrics middleware is outermost, so it counts the status problem+json turned into.
    app = web.Application(
        middlewares=[metrics.metrics_middleware, reports.cors_middleware, problem_middleware],
        client_max_size=32 * 1024 * 1024,
    )
    app[CONTEXT] = ctx
    app[BODY_TIMEOUT] = body_timeout
    app.router.add_get("/.well-known/hotline-node", key_document)
    app.router.add_get("/healthz", healthz)
    public_form.add_routes(app)
    if public_only:
        reports.add_public_routes(app)
        app[metrics.HTTP_METRICS] = http_metrics or metrics.HttpMetrics()
    else:
        reports.add_routes(app)
        stats.add_routes(app)
        metrics.add_routes(app, http_metrics)
    if federation_ctx is not None:
        app[FEDERATION] = federation_ctx
        federation.add_routes(app, federation_ctx.path_prefix)
        if federation_ctx.path_prefix:
            prefixed = federation_ctx.path_prefix + "/.well-known/hotline-node"
            app.router.add_get(prefixed, key_document)
    if public_only:
        return app
    if admin_ctx is not None:
        app[ADMIN] = admin_ctx
        admin.add_routes(app)
    if console is not None:
        app.add_subapp("/console/", console)
    return app


class _ProblemRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering its own refusals as problem+json.

    aiohttp answers a request its parser refuses (a header over 8,190 bytes, NUL in a header,
    bad chunking, a path that is not UTF-8) with text/plain that quotes the request, and logs
    the client's address with a traceback. Here: a problem+json body that quotes nothing, and
    one log line without the address (docs/security.md: logs carry no client addresses).
    """

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            # Part of an answer is out already: the connection is broken, as in aiohttp.
            raise ConnectionError("response already started; cannot send the error")
        reason = type(exc).__name__ if exc is not None else "error"
        if status >= 500:
            log.error("request failed in the HTTP server: %s", reason, exc_info=exc)
            response = problem(500, "internal", "Internal error", "internal error", "/")
        else:
            log.info("refused a request the HTTP parser could not read: %s", reason)
            response = problem(
                status,
                "malformed-request",
                "Malformed request",
                f"the request is not valid HTTP/1.1 ({reason})",
                "/",
            )
        response.force_close()
        return response


class _ProblemServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class _ProblemAppRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return _ProblemServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **made._kwargs,
        )


def make_runner(app: web.Application, http: HttpConfig | None = None) -> web.AppRunner:
    """The runner `serve` starts: no access log (it would hold client addresses), problem+json
    for parser refusals, and the header read deadline from `[http]` in node.toml.

    aiohttp arms its keep-alive timer when a connection opens and again after each answer, and
    closes the connection when it fires while no request is being handled: that timer is the
    deadline for a request's line and headers.
    """
    settings = http or HttpConfig()
    kwargs: dict[str, Any] = {
        "keepalive_timeout": settings.header_timeout_seconds,
        # A 4,096-character URL in a query (`GET /api/v1/trace?url=`) is up to three times as
        # long once percent-encoded: aiohttp's 8,190-byte request line would refuse it.
        "max_line_size": MAX_REQUEST_LINE,
    }
    return _ProblemAppRunner(app, access_log=None, **kwargs)
