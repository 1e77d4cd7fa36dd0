"""The federation API peers call: push a transaction, pull our outbox, ask for the records they
gave us back (signed requests only)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiohttp import web

from node.api.bodies import json_response, read_capped
from node.errors import InvalidInput, MalformedRequest, PayloadTooLarge
from node.federation.inbound import InboundFederation
from protocol.federation import MAX_TRANSACTION_BYTES, TXN_ID_PATTERN
from protocol.httpsig import SignedRequest
from protocol.recovery import MAX_RECOVERY_PAGE

_TXN_ID = re.compile(TXN_ID_PATTERN)
MAX_PULL = 1000
_COUNT = re.compile(r"[0-9]{1,18}")


@dataclass
class FederationContext:
    inbound: InboundFederation
    authority: str
    # The path of our endpoint ("" or "/prefix"): requests are signed for it (protocol.md §13.1).
    path_prefix: str = ""


FEDERATION = web.AppKey("federation", FederationContext)


def _signed(request: web.Request, body: bytes) -> SignedRequest:
    """The request as its sender signed it."""
    ctx = request.app[FEDERATION]
    raw_query = request.rel_url.raw_query_string
    path = request.rel_url.raw_path
    if ctx.path_prefix and not path.startswith(ctx.path_prefix + "/"):
        # Behind a proxy that removed our endpoint's path: the peer signed the full path.
        path = ctx.path_prefix + path
    return SignedRequest(
        request.method, ctx.authority, path, f"?{raw_query}" if raw_query else "?", body
    )


async def _body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_TRANSACTION_BYTES:
        raise PayloadTooLarge(f"transaction is larger than {MAX_TRANSACTION_BYTES} bytes")
    return await read_capped(request, MAX_TRANSACTION_BYTES)


async def push_transaction(request: web.Request) -> web.Response:
    inbound = request.app[FEDERATION].inbound
    txn_id = request.match_info["txn_id"]
    if not _TXN_ID.match(txn_id):
        raise MalformedRequest("txn_id must be 8-64 base64url characters")
    inbound.check_sender(request.method, request.path, request.headers)
    body = await _body(request)
    answer = await inbound.push(_signed(request, body), request.headers, txn_id)
    return web.Response(body=answer, content_type="application/json")


async def pull_outbox(request: web.Request) -> web.Response:
    inbound = request.app[FEDERATION].inbound
    after, limit = _page(request, default_limit=100, max_limit=MAX_PULL)
    # A pull is a GET: a body is refused before a byte of it is read, and strangers and stale
    # signatures before anything else is done.
    if request.content_length or request.headers.get("Transfer-Encoding"):
        raise MalformedRequest("a pull request has no body")
    inbound.check_sender(request.method, request.path, request.headers)
    page = await inbound.pull(_signed(request, b""), request.headers, after=after, limit=limit)
    return json_response(page.model_dump(mode="json"))


async def recover_records(request: web.Request) -> web.Response:
    """A restored peer asks for the records it gave us (protocol.md §13.8)."""
    inbound = request.app[FEDERATION].inbound
    after, limit = _page(request, default_limit=MAX_RECOVERY_PAGE, max_limit=MAX_RECOVERY_PAGE)
    if request.content_length or request.headers.get("Transfer-Encoding"):
        raise MalformedRequest("a recovery request has no body")
    inbound.check_sender(request.method, request.path, request.headers)
    page = await inbound.recover(_signed(request, b""), request.headers, after=after, limit=limit)
    return json_response(page.model_dump(mode="json"))


def _page(request: web.Request, *, default_limit: int, max_limit: int) -> tuple[int, int]:
    """`after` and `limit` of a paged GET, checked."""
    after_text = request.query.get("after", "0")
    limit_text = request.query.get("limit", str(default_limit))
    # ASCII digits only: str.isdigit() is also true for "²", which int() refuses.
    if not (_COUNT.fullmatch(after_text) and _COUNT.fullmatch(limit_text)):
        raise InvalidInput("after and limit must be non-negative integers")
    after, limit = int(after_text), int(limit_text)
    if not 1 <= limit <= max_limit:
        raise InvalidInput(f"limit must be between 1 and {max_limit}")
    return after, limit


def add_routes(app: web.Application, prefix: str = "") -> None:
    """At the root, and under the endpoint's path too when it has one (with or without a
    proxy that removes it, the node answers)."""
    for base in dict.fromkeys(("", prefix)):
        app.router.add_post(base + "/federation/v1/transactions/{txn_id}", push_transaction)
        app.router.add_get(base + "/federation/v1/outbox", pull_outbox)
        app.router.add_get(base + "/federation/v1/recover", recover_records)
