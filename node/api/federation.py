"""The federation API peers call: push a transaction, pull our outbox (signed requests only)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web
from pydantic import ValidationError

from node.api.bodies import json_response, read_capped
from node.clock import Clock, iso
from node.errors import Conflict, InvalidInput, MalformedRequest, PayloadTooLarge, SignatureRefused
from node.federation.admin import PeerAdmin
from node.federation.delivery import Delivery
from node.federation.inbox import ClaimRefused, Inbox
from node.federation.registry import PeerRegistry
from node.store.db import Database, Tx
from protocol.federation import (
    MAX_TRANSACTION_BYTES,
    TXN_ID_PATTERN,
    TransactionRequest,
    decode_frame,
)
from protocol.httpsig import (
    RequestSignatureError,
    SignedRequest,
    claimed_sender,
    verify_request,
)

log = logging.getLogger("hotline.federation")
_TXN_ID = re.compile(TXN_ID_PATTERN)
MAX_PULL = 1000
_COUNT = re.compile(r"[0-9]{1,18}")


class _AcceptAll:
    """verify_request's nonce hook: the database below is the real, durable check."""

    def use(self, sender: str, nonce: str, created: object) -> bool:
        return True


@dataclass
class FederationContext:
    db: Database
    clock: Clock
    authority: str
    registry: PeerRegistry
    inbox: Inbox
    delivery: Delivery
    admin: PeerAdmin
    # The path of our endpoint ("" or "/prefix"): requests are signed for it (protocol.md §13.1).
    path_prefix: str = ""
    # (sender, nonce) of the pushes being handled now: a copy is refused before any work.
    pushes_in_flight: set[tuple[str, str]] = field(default_factory=set)


FEDERATION = web.AppKey("federation", FederationContext)


async def _authenticate(request: web.Request, body: bytes) -> str:
    """The verified sender of a signed request, its nonce recorded (a replay is refused)."""
    nonce = await _verified(request, body)
    await _spend(request.app[FEDERATION], nonce)
    return nonce.sender


async def _verified(request: web.Request, body: bytes) -> _Nonce:
    """Who signed the request, and its nonce: checked, not yet recorded (the caller records it,
    in a transaction of its own or in the one that applies what the request carries)."""
    ctx = request.app[FEDERATION]
    raw_query = request.rel_url.raw_query_string
    path = request.rel_url.raw_path
    if ctx.path_prefix and not path.startswith(ctx.path_prefix + "/"):
        # Behind a proxy that removed our endpoint's path: the peer signed the full path.
        path = ctx.path_prefix + path
    signed = SignedRequest(
        request.method,
        ctx.authority,
        path,
        f"?{raw_query}" if raw_query else "?",
        body,
    )
    now = ctx.clock.now()
    try:
        sender = verify_request(
            signed, request.headers, peers=ctx.registry, nonces=_AcceptAll(), now=now
        )
    except RequestSignatureError as exc:
        # A peer that rotated its keys signs with a key we have not fetched yet: fetch its
        # key document (signed by the pinned identity) once, and check again.
        if not exc.reason.startswith("unknown signing key"):
            raise _refused(request, exc) from exc
        if not await ctx.admin.refresh_peer(claimed_sender(request.headers, now)):
            raise _refused(request, exc) from exc
        try:
            sender = verify_request(
                signed, request.headers, peers=ctx.registry, nonces=_AcceptAll(), now=now
            )
        except RequestSignatureError as again:
            raise _refused(request, again) from again
    nonce = _Nonce(sender, _nonce(request), now)
    used = await ctx.db.fetch_one(
        "SELECT 1 FROM request_nonces WHERE sender = ? AND nonce = ?", (sender, nonce.value)
    )
    if used is not None:
        raise _replayed(sender)
    return nonce


@dataclass(frozen=True)
class _Nonce:
    """A verified request's nonce, to be recorded once."""

    sender: str
    value: str
    at: datetime

    def claim(self, conn: Tx) -> bool:
        """Record it inside `conn`'s transaction; False when it was already used (a replay)."""
        cursor = conn.execute(
            "INSERT OR IGNORE INTO request_nonces (sender, nonce, created_at) VALUES (?, ?, ?)",
            (self.sender, self.value, iso(self.at)),
        )
        return cursor.rowcount == 1


async def _spend(ctx: FederationContext, nonce: _Nonce) -> None:
    """Record a nonce in a transaction of its own; a replay is refused."""
    if not await ctx.db.run(nonce.claim):
        raise _replayed(nonce.sender)


def _replayed(sender: str) -> SignatureRefused:
    log.warning("refused replayed federation request from %s", sender)
    return SignatureRefused("nonce was already used (replayed request)")


def _refused(request: web.Request, exc: RequestSignatureError) -> SignatureRefused:
    """Logged for the operator (refused requests are evidence too), answered as 401.

    Without the client's address: docs/security.md promises logs carry no client IPs (a
    reverse proxy or the firewall logs connections where the operator wants them).
    """
    log.warning("refused federation request %s %s: %s", request.method, request.path, exc.reason)
    return SignatureRefused(exc.reason)


def _nonce(request: web.Request) -> str:
    match = re.search(r';nonce="([A-Za-z0-9_-]+)"', request.headers.get("Signature-Input", ""))
    return match.group(1) if match else ""


async def _body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_TRANSACTION_BYTES:
        raise PayloadTooLarge(f"transaction is larger than {MAX_TRANSACTION_BYTES} bytes")
    return await read_capped(request, MAX_TRANSACTION_BYTES)


def _precheck(request: web.Request) -> None:
    """Refuse strangers and stale signatures before reading up to 16 MiB of body."""
    ctx = request.app[FEDERATION]
    try:
        sender = claimed_sender(request.headers, ctx.clock.now())
    except RequestSignatureError as exc:
        raise _refused(request, exc) from exc
    if not ctx.registry.is_active(sender):
        log.warning("refused federation request from %s: not an active peer", sender)
        raise SignatureRefused(f"{sender} is not a peer of this node")


async def push_transaction(request: web.Request) -> web.Response:
    ctx = request.app[FEDERATION]
    txn_id = request.match_info["txn_id"]
    if not _TXN_ID.match(txn_id):
        raise MalformedRequest("txn_id must be 8-64 base64url characters")
    _precheck(request)
    body = await _body(request)
    nonce = await _verified(request, body)
    in_flight = (nonce.sender, nonce.value)
    if in_flight in ctx.pushes_in_flight:
        # A copy of a request still being handled: refused before it costs any work.
        raise _replayed(nonce.sender)
    ctx.pushes_in_flight.add(in_flight)
    try:
        return await _apply_push(ctx, nonce, txn_id, body)
    finally:
        ctx.pushes_in_flight.discard(in_flight)


async def _apply_push(
    ctx: FederationContext, nonce: _Nonce, txn_id: str, body: bytes
) -> web.Response:
    sender = nonce.sender
    stored = await ctx.inbox.stored_answer(sender, txn_id)
    if stored is not None:
        # The same transaction again gets the same answer (a retry after a lost response).
        await _spend(ctx, nonce)
        return web.Response(body=stored, content_type="application/json")
    try:
        transaction = TransactionRequest.model_validate_json(body)
        frames = [decode_frame(text) for text in transaction.envelopes]
    except (ValidationError, ValueError) as exc:
        await _spend(ctx, nonce)
        raise MalformedRequest(f"transaction body is malformed: {_first(exc)}") from exc
    try:
        # The nonce is recorded in the transaction that applies the batch: one commit (and
        # one disk flush) per push instead of two.
        answer, pushed = await ctx.inbox.receive_transaction(
            sender, txn_id, frames, claim=nonce.claim
        )
    except ClaimRefused as exc:
        raise _replayed(sender) from exc
    except Exception:
        # Nothing was applied, and the claim rolled back with the rest: spend the nonce all
        # the same, so that copies of this request cannot make us do the work again.
        try:
            await ctx.db.run(nonce.claim)
        except Exception:  # the store itself is failing: the first error is the one to report
            log.exception("could not record the nonce of a failed push from %s", sender)
        raise
    ctx.delivery.kick([*pushed, sender])
    return web.Response(body=answer, content_type="application/json")


async def pull_outbox(request: web.Request) -> web.Response:
    ctx = request.app[FEDERATION]
    after_text = request.query.get("after", "0")
    limit_text = request.query.get("limit", "100")
    # ASCII digits only: str.isdigit() is also true for "²", which int() refuses.
    if not (_COUNT.fullmatch(after_text) and _COUNT.fullmatch(limit_text)):
        raise InvalidInput("after and limit must be non-negative integers")
    after, limit = int(after_text), int(limit_text)
    if not 1 <= limit <= MAX_PULL:
        raise InvalidInput(f"limit must be between 1 and {MAX_PULL}")
    # A pull is a GET: a body is refused before a byte of it is read, and strangers and stale
    # signatures before anything else is done.
    if request.content_length or request.headers.get("Transfer-Encoding"):
        raise MalformedRequest("a pull request has no body")
    _precheck(request)
    sender = await _authenticate(request, b"")
    peer = await ctx.registry.get(sender)
    if peer.mode.value != "pull":
        raise Conflict(f"{sender} is a push peer: this node delivers to it")
    page = await ctx.delivery.outbox_page(sender, after, limit)

    def transaction(conn: Tx) -> None:
        conn.execute(
            "UPDATE peers SET last_contact_at = ? WHERE node_id = ?", (iso(ctx.clock.now()), sender)
        )

    await ctx.db.run(transaction)
    return json_response(page.model_dump(mode="json"))


def _first(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
    return str(exc)


def add_routes(app: web.Application, prefix: str = "") -> None:
    """At the root, and under the endpoint's path too when it has one (with or without a
    proxy that removes it, the node answers)."""
    for base in dict.fromkeys(("", prefix)):
        app.router.add_post(base + "/federation/v1/transactions/{txn_id}", push_transaction)
        app.router.add_get(base + "/federation/v1/outbox", pull_outbox)
