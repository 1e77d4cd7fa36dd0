"""Signed requests peers send us: who signed, their nonces, pushes in flight, answers, pulls."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from node.clock import Clock, iso, parse_iso
from node.errors import Conflict, MalformedRequest, SignatureRefused, StorageFull
from node.federation.delivery import Delivery
from node.federation.inbox import Inbox, cancel_opening
from node.federation.registry import PeerRegistry
from node.store import audit, inbound
from node.store import peers as peer_store
from node.store.db import Database, Tx
from node.store.peer_outbox import OutboxItem
from node.store.reports import CaseAction, ReportStore
from protocol import Action, ActionCode, OpenError, record_bytes
from protocol.envelope import unseal_kept
from protocol.federation import OutboxPage, TransactionRequest, decode_frame, encode_frame
from protocol.httpsig import RequestSignatureError, SignedRequest, claimed_sender, verify_request
from protocol.recovery import (
    RECOVERABLE_TYPES,
    RECOVERY_PAGE_BYTES,
    RecoveredRecord,
    RecoveryPage,
    SignedRecord,
)

log = logging.getLogger("hotline.federation")
_NONCE = re.compile(r';nonce="([A-Za-z0-9_-]+)"')


class ClaimRefused(Exception):
    """The caller's claim on a batch was refused (the request that carried it was a replay)."""


class _AcceptAll:
    """verify_request's nonce hook: the database is the real, durable check (`Nonce.claim`)."""

    def use(self, sender: str, nonce: str, created: object) -> bool:
        return True


@dataclass(frozen=True)
class Nonce:
    """A verified request's nonce, to be recorded once."""

    sender: str
    value: str
    at: datetime

    def claim(self, conn: Tx) -> bool:
        """Record it inside `conn`'s transaction; False when it was already used (a replay)."""
        return inbound.claim_nonce_txn(conn, self.sender, self.value, iso(self.at))


class InboundFederation:
    """What the federation endpoints do, without HTTP: the handlers parse and answer.

    Owns the rules of a signed request (a sender that is an active peer, a signature by a key
    of its, a nonce used once), the pushes in flight (a copy of one is refused before any work),
    the stored answers (a transaction sent again gets the same answer) and pull serving.
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        registry: PeerRegistry,
        inbox: Inbox,
        delivery: Delivery,
        refresh_peer_keys: Callable[[str], Awaitable[bool]],
    ) -> None:
        self.db = db
        self.clock = clock
        self.registry = registry
        self.inbox = inbox
        self.delivery = delivery
        # Fetch a peer's key document now (it signed with a key we do not know yet).
        self.refresh_peer_keys = refresh_peer_keys
        # (sender, nonce) of the pushes being handled now.
        self._in_flight: set[tuple[str, str]] = set()

    # signed requests ----------------------------------------------------------------------
    def check_sender(self, method: str, path: str, headers: Mapping[str, str]) -> None:
        """Refuse strangers and stale signatures before reading up to 16 MiB of body."""
        try:
            sender = claimed_sender(headers, self.clock.now())
        except RequestSignatureError as exc:
            raise _refused(exc, method, path) from exc
        if not self.registry.is_active(sender):
            log.warning("refused federation request from %s: not an active peer", sender)
            raise SignatureRefused(f"{sender} is not a peer of this node")
        if self.db.disk.waiting():
            # Our disk is full: nothing the request carries could be kept. Said before its body
            # is read and its envelopes opened; the peer backs off and sends it again.
            raise StorageFull()

    async def verified(self, request: SignedRequest, headers: Mapping[str, str]) -> Nonce:
        """Who signed the request, and its nonce: checked, not yet recorded (the caller records
        it, in a transaction of its own or in the one that applies what the request carries)."""
        now = self.clock.now()
        try:
            sender = self._verify(request, headers, now)
        except RequestSignatureError as exc:
            # A peer that rotated its keys signs with a key we have not fetched yet: fetch its
            # key document (signed by the pinned identity) once, and check again.
            if not exc.reason.startswith("unknown signing key"):
                raise _refused(exc, request.method, request.path) from exc
            if not await self.refresh_peer_keys(claimed_sender(headers, now)):
                raise _refused(exc, request.method, request.path) from exc
            try:
                sender = self._verify(request, headers, now)
            except RequestSignatureError as again:
                raise _refused(again, request.method, request.path) from again
        match = _NONCE.search(headers.get("Signature-Input", ""))
        nonce = Nonce(sender, match.group(1) if match else "", now)
        if await inbound.nonce_used(self.db, sender, nonce.value):
            raise _replayed(sender)
        return nonce

    def _verify(self, request: SignedRequest, headers: Mapping[str, str], now: datetime) -> str:
        return verify_request(request, headers, peers=self.registry, nonces=_AcceptAll(), now=now)

    async def spend(self, nonce: Nonce) -> None:
        """Record a nonce in a transaction of its own; a replay is refused."""
        if not await self.db.run(nonce.claim):
            raise _replayed(nonce.sender)

    # push ---------------------------------------------------------------------------------
    async def push(self, request: SignedRequest, headers: Mapping[str, str], txn_id: str) -> bytes:
        """A pushed transaction: the JSON answer (stored, so that a retry gets the same)."""
        nonce = await self.verified(request, headers)
        in_flight = (nonce.sender, nonce.value)
        if in_flight in self._in_flight:
            # A copy of a request still being handled: refused before it costs any work.
            raise _replayed(nonce.sender)
        self._in_flight.add(in_flight)
        try:
            return await self._push(nonce, txn_id, request.body)
        finally:
            self._in_flight.discard(in_flight)

    async def _push(self, nonce: Nonce, txn_id: str, body: bytes) -> bytes:
        sender = nonce.sender
        stored = await inbound.stored_answer(self.db, sender, txn_id)
        if stored is not None:
            # The same transaction again gets the same answer (a retry after a lost response).
            await self.spend(nonce)
            return stored
        try:
            transaction = TransactionRequest.model_validate_json(body)
            frames = [decode_frame(text) for text in transaction.envelopes]
        except (ValidationError, ValueError) as exc:
            await self.spend(nonce)
            raise MalformedRequest(f"transaction body is malformed: {_first(exc)}") from exc
        try:
            # The nonce is recorded in the transaction that applies the batch: one commit (and
            # one disk flush) per push instead of two.
            answer, pushed = await self.receive_transaction(
                sender, txn_id, frames, claim=nonce.claim
            )
        except ClaimRefused as exc:
            raise _replayed(sender) from exc
        except StorageFull:
            # Nothing was applied, and the claim cannot be written either: the sender backs
            # off and sends the transaction again (a new request, with a new nonce).
            raise
        except Exception:
            # Nothing was applied, and the claim rolled back with the rest: spend the nonce all
            # the same, so that copies of this request cannot make us do the work again.
            try:
                await self.db.run(nonce.claim)
            except Exception:  # the store itself is failing: the first error is the one to report
                log.exception("could not record the nonce of a failed push from %s", sender)
            raise
        self.delivery.kick([*pushed, sender])
        return answer

    async def receive_transaction(
        self,
        sender: str,
        txn_id: str,
        frames: list[bytes],
        *,
        claim: Callable[[Tx], bool] | None = None,
    ) -> tuple[bytes, list[str]]:
        """Apply a pushed batch; returns the JSON answer and the peers to push to after it.

        `claim` runs first in the same transaction (the request's nonce): when it returns
        False, nothing is applied and ClaimRefused is raised."""
        now = self.clock.now()
        opening = await self.inbox.start_opening(sender, frames, now)
        pushed: set[str] = set()

        def apply_push_txn(conn: Tx) -> bytes:
            if claim is not None and not claim(conn):
                cancel_opening(opening)
                raise ClaimRefused(sender)
            stored = inbound.stored_answer_txn(conn, sender, txn_id)
            if stored is not None:
                # The same transaction, sent again while the first copy was being applied
                # (checked before the batch was opened, and now under the write lock).
                cancel_opening(opening)
                return stored
            answer, to_push = self.inbox.apply_push_txn(conn, sender, txn_id, frames, opening, now)
            inbound.store_answer_txn(conn, sender, txn_id, answer, iso(now))
            pushed.update(to_push)
            return answer

        answer = await self.db.run(apply_push_txn)
        return answer, sorted(pushed)

    # pull ---------------------------------------------------------------------------------
    async def pull(
        self, request: SignedRequest, headers: Mapping[str, str], *, after: int, limit: int
    ) -> OutboxPage:
        """A pulling peer collects its records: those up to `after` it has committed."""
        nonce = await self.verified(request, headers)
        await self.spend(nonce)
        sender = nonce.sender
        peer = await self.registry.get(sender)
        if peer.mode.value != "pull":
            raise Conflict(f"{sender} is a push peer: this node delivers to it")
        page = await self.delivery.outbox_page(sender, after, limit)

        def pull_txn(conn: Tx) -> None:
            peer_store.touched_txn(conn, sender, iso(self.clock.now()))

        await self.db.run(pull_txn)
        return page

    # recovery -----------------------------------------------------------------------------
    async def recover(
        self, request: SignedRequest, headers: Mapping[str, str], *, after: int, limit: int
    ) -> RecoveryPage:
        """A peer asks for the records it gave us (it was restored from an older backup): each
        as it signed it, and our own actions on its cases they are about (protocol.md §13.8).
        Only its own: the request is signed by it, and we answer with what it sent."""
        nonce = await self.verified(request, headers)
        await self.spend(nonce)
        sender = nonce.sender
        kept = await inbound.kept_records_of(
            self.db, sender, after=after, limit=limit + 1, types=RECOVERABLE_TYPES
        )
        rows = kept[:limit]
        records: list[RecoveredRecord] = []
        size, last = 0, after
        for row in rows:
            if size >= RECOVERY_PAGE_BYTES:  # the rest on the next page
                break
            signed = self._signed_record(sender, row)
            if signed is not None:
                item = signed.to_wire(row.n)
                size += len(item.header) + len(item.payload) + len(item.signature)
                records.append(item)
            last = row.n
        more = len(kept) > limit or last != (rows[-1].n if rows else after)
        cases = await ReportStore.originated_by(
            self.db,
            sender,
            list(
                dict.fromkeys(
                    row.report_id for row in rows if row.n <= last and row.record_type == "report"
                )
            ),
        )
        ours = await ReportStore.actions_by(self.db, self.inbox.node_id, cases)
        frames = await self.delivery.seal_now(
            sender, [_outbox_item(action, origin=sender) for action in ours]
        )

        def served_txn(conn: Tx) -> None:
            peer_store.touched_txn(conn, sender, iso(self.clock.now()))
            audit.append(
                conn,
                at=self.clock.now(),
                actor=f"peer:{sender}",
                event="federation.recovery_served",
                subject=sender,
                details={"after": after, "records": len(records), "actions": len(frames)},
            )

        await self.db.run(served_txn)
        return RecoveryPage(
            records=records,
            actions=[encode_frame(frame) for frame in frames],
            next_after=last,
            more=more,
        )

    def _signed_record(self, sender: str, row: inbound.KeptRecord) -> SignedRecord | None:
        """What `sender` signed, as kept; a frame kept before we kept that is opened again with
        our key, while we still hold it."""
        if row.signed is not None:
            return SignedRecord.from_bytes(row.signed)
        try:
            return SignedRecord(*unseal_kept(row.frame, self.inbox.keys()))
        except OpenError as exc:
            log.warning(
                "record %d from %s cannot be given back: %s %s",
                row.n,
                sender,
                exc.reason.value,
                exc.detail,
            )
            return None


def _outbox_item(action: CaseAction, *, origin: str) -> OutboxItem:
    record = Action(
        id=uuid.UUID(action.id),
        report_id=uuid.UUID(action.report_id),
        report_origin=origin,
        code=ActionCode(action.code),
        at=parse_iso(action.at),
        by=action.by_node,
        analyst=action.analyst,
        country=action.country or "",
        reason=action.reason,
    )
    return OutboxItem(0, "action", action.id, action.report_id, record_bytes(record))


def _replayed(sender: str) -> SignatureRefused:
    log.warning("refused replayed federation request from %s", sender)
    return SignatureRefused("nonce was already used (replayed request)")


def _refused(exc: RequestSignatureError, method: str, path: str) -> SignatureRefused:
    """Logged for the operator (refused requests are evidence too), answered as 401.

    Without the client's address: docs/security.md promises logs carry no client IPs (a
    reverse proxy or the firewall logs connections where the operator wants them).
    """
    log.warning("refused federation request %s %s: %s", method, path, exc.reason)
    return SignatureRefused(exc.reason)


def _first(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
    return str(exc)
