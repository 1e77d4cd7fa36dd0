"""The console's aiohttp sub-application: routes, guards, templates, static files."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from node.console import operator, render, views
from node.console.context import CONSOLE, ConsoleContext
from node.console.security import HEADERS, Handler, guard
from node.errors import N_, NodeError, Sentence, StorageFull, is_disk_full

log = logging.getLogger("hotline.console")
STATIC_DIR = Path(__file__).parent / "static"


@web.middleware
async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(HEADERS)
        raise
    response.headers.update(HEADERS)
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A refused change is shown as a page in the console's language, never as JSON."""
    try:
        return await handler(request)
    except StorageFull as exc:
        return _storage_full(request, exc)
    except NodeError as exc:
        return render.render(
            request,
            "error.html",
            {"title": "Not done", "status": exc.status, "detail": render.say(request, exc)},
            status=exc.status,
        )
    except web.HTTPException:
        raise
    except Exception as exc:
        if is_disk_full(exc):
            return _storage_full(request, StorageFull())
        # Never a traceback to the person; the log has it for the operator.
        log.exception("console error on %s %s", request.method, request.path)
        return render.render(
            request,
            "error.html",
            {
                "title": "Not done",
                "status": 500,
                "detail": render.say(request, Sentence(N_("internal error (see the node's log)"))),
            },
            status=500,
        )


def _storage_full(request: web.Request, exc: StorageFull) -> web.Response:
    """A page of its own: nothing is wrong with what the person did, and nothing was lost."""
    response = render.render(
        request, "storage_full.html", {"title": "The disk is full"}, status=exc.status
    )
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/console/queue")


def make_console(ctx: ConsoleContext) -> web.Application:
    app = web.Application(middlewares=[headers, errors, guard])
    app[CONSOLE] = ctx
    render.setup(app)
    r = app.router
    r.add_get("/", home)
    r.add_get("/sign-in", views.sign_in_page)
    r.add_post("/sign-in", views.sign_in)
    r.add_post("/sign-out", views.sign_out)
    r.add_post("/language", views.choose_language)
    r.add_get("/password", views.password_page)
    r.add_post("/password", views.set_password)
    r.add_get("/queue", views.queue)
    r.add_get("/cases", views.all_cases)
    r.add_get("/search", views.search)
    r.add_post("/bulk", views.bulk)
    r.add_get("/case/{ref}", views.case_page)
    r.add_post("/case/{ref}/{what}", views.case_form)
    r.add_get("/peers", operator.peers_page)
    r.add_post("/peers/add", operator.peer_add)
    r.add_post("/peers/{id}/{what}", operator.peer_form)
    r.add_get("/channels", operator.channels_page)
    r.add_post("/channels/{name}/test", operator.channel_test)
    r.add_post("/channels/{name}/requeue", operator.channel_requeue)
    r.add_get("/users", operator.users_page)
    r.add_post("/users/{what}", operator.users_form)
    r.add_get("/audit", operator.audit_page)
    r.add_get("/stats", operator.stats_page)
    r.add_static("/static/", STATIC_DIR, append_version=True)
    return app
