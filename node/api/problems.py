"""The one place where errors become HTTP: problem+json (RFC 9457) bodies with stable types."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from node.errors import PROBLEM_BASE, NodeError, RateLimited, StorageFull, is_disk_full

log = logging.getLogger("hotline.api")
PROBLEM_JSON = "application/problem+json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_KINDS = {
    400: "malformed-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    408: "request-timeout",
    415: "unsupported-media-type",
    431: "headers-too-large",
}


def problem(
    status: int, kind: str, title: str, detail: str, instance: str, **extra: Any
) -> web.Response:
    body = {
        "type": PROBLEM_BASE + kind,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extra,
    }
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    if status == 401:
        # RFC 9110 §15.5.2: a 401 response carries the challenge for the scheme to use.
        headers["WWW-Authenticate"] = 'Bearer realm="hotline-node"'
    return web.Response(
        status=status, body=orjson.dumps(body), content_type=PROBLEM_JSON, headers=headers
    )


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except NodeError as exc:
        return _node_problem(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = _HTTP_KINDS.get(exc.status, "http-error")
        response = problem(exc.status, kind, exc.reason, exc.text or exc.reason, request.path)
        if "Allow" in exc.headers:
            # RFC 9110 §15.5.6: a 405 names the methods the resource does support.
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception as exc:
        if is_disk_full(exc):
            # A file written outside the database (a key rotation, say) met the full disk.
            return _node_problem(request, StorageFull())
        # Never a traceback to the client; the log has it for the operator.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "internal", "Internal error", "internal error", request.path)


def _node_problem(request: web.Request, exc: NodeError) -> web.Response:
    extra = {"retry_after": exc.retry_after} if isinstance(exc, RateLimited | StorageFull) else {}
    if isinstance(exc, StorageFull):
        # Said once per episode by the store (node/store/disk.py), not once per request.
        log.info("refused %s %s: the disk is full", request.method, request.path)
    elif exc.status >= 500:
        said = str(exc) if exc.logged else exc.kind
        log.error("request failed: %s %s: %s", request.method, request.path, said)
    return problem(exc.status, exc.kind, exc.title, str(exc), request.path, **extra)
