"""Our outbox to each peer: push with one transaction in flight, backoff, receipts, and pull."""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from keys import KeyUnavailableError, NodeKeys, PublicKeySet
from node.clock import Clock, iso
from node.errors import StorageFull
from node.federation.crypto_pool import CryptoPool
from node.federation.inbox import Inbox
from node.federation.registry import PeerRegistry
from node.federation.wakeups import PushRequests
from node.store import audit, dead_letters, peer_outbox, rejoin
from node.store import peers as peer_store
from node.store.db import Database, Tx
from node.store.dead_letters import DeadLetter, Direction
from node.store.peer_outbox import OutboxItem
from node.store.peers import PeerRow
from node.store.reports import CaseAction, ReportStore
from peers.backoff import backoff_delay
from peers.client import PeerClient, PeerError, PeerProtocolError, PeerRefused
from protocol import (
    ActionCode,
    MemoryReplayGuard,
    Opened,
    OpenError,
    OpenFailure,
    SealError,
    envelope_digest,
    open_envelope,
    seal_payload,
)
from protocol.derived import derived_action_id
from protocol.federation import (
    ItemStatus,
    OutboxPage,
    PulledEnvelope,
    TransactionResponse,
    decode_frame,
    encode_frame,
)
from protocol.ids import new_ids
from protocol.receipts import ReceiptMismatch, check_receipt

log = logging.getLogger("hotline.delivery")
DEFAULT_BATCH = 200
# How often records held by a peer's outright refusal are offered again when nothing else
# (the peer calling us, the operator) clears the refusal first.
REFUSED_RECHECK = timedelta(minutes=5)
WAITING_FOR_SPACE = "our disk is full: waiting for space"

Progress = Callable[[str, int, int], None]


@dataclass
class _Batch:
    """Outbox rows sealed for a peer, with the key set they were sealed for."""

    keys: PublicKeySet
    last_seq: int = 0
    rows: list[OutboxItem] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    unsealable: list[tuple[OutboxItem, str]] = field(default_factory=list)


@dataclass
class DeliveryReport:
    peer_id: str
    sent: int = 0
    rejected: int = 0
    pulled: int = 0
    error: str | None = None
    skipped: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Delivery:
    """One queue per peer; pushes run at once after a commit and on the scheduled sweep."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        node_id: str,
        keys: Callable[[], NodeKeys],
        registry: PeerRegistry,
        inbox: Inbox,
        client: PeerClient,
        crypto: CryptoPool,
        rng: random.Random,
        refresh_peer_keys: Callable[[str], Awaitable[bool]],
        requests: PushRequests,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        self.db = db
        self.clock = clock
        self.node_id = node_id
        self.keys = keys
        self.registry = registry
        self.inbox = inbox
        self.client = client
        self.crypto = crypto
        self.rng = rng
        self.batch_size = batch_size
        self._locks: dict[str, asyncio.Lock] = {}
        # Per pulling peer: the versions of cases served in pages it has not acknowledged yet.
        # One cancelled meanwhile reached the peer all the same (`sent_though_cancelled_txn`).
        self._served: dict[str, set[int]] = {}
        # Fetch a peer's key document now (after its rotation): False when it was not.
        self.refresh_peer_keys = refresh_peer_keys
        self.requests = requests

    # triggering ---------------------------------------------------------------------------
    def kick(self, peer_ids: list[str]) -> None:
        """Ask for an immediate push to these peers (called after a commit)."""
        self.requests.kick(peer_ids)

    async def worker(self) -> None:
        running: dict[str, asyncio.Task[DeliveryReport]] = {}
        while True:
            for peer_id in await self.requests.wait():
                task = running.get(peer_id)
                if task is not None and not task.done():
                    # Already pushing: it stays wanted, and the end of that push wakes this
                    # loop for one more pass (a commit after its last read needs one).
                    continue
                self.requests.take(peer_id)
                task = asyncio.create_task(self.push(peer_id))
                task.add_done_callback(lambda _: self.requests.wake())
                running[peer_id] = task

    def _lock(self, peer_id: str) -> asyncio.Lock:
        return self._locks.setdefault(peer_id, asyncio.Lock())

    # push ---------------------------------------------------------------------------------
    async def push(
        self, peer_id: str, *, force: bool = False, progress: Progress | None = None
    ) -> DeliveryReport:
        report = DeliveryReport(peer_id)
        if self.db.disk.waiting():
            # Whatever the peer took could not be recorded: send nothing until space returns.
            report.skipped = WAITING_FOR_SPACE
            return report
        try:
            async with self._lock(peer_id):
                await self._push_locked(peer_id, force, report, progress)
        except StorageFull:
            # Our disk, not the peer: no backoff for it, nothing dead-lettered. A batch the
            # peer took but we could not record stays pending and goes again once space
            # returns; the peer answers it as a duplicate, and it is recorded then.
            report.error = WAITING_FOR_SPACE
        except Exception as exc:  # a bug here must not kill the worker
            log.exception("push to %s failed", peer_id)
            report.error = f"{type(exc).__name__}: {exc}"
            # Backing off keeps a lasting fault from being retried (and logged) every second.
            try:
                await self._failed(peer_id, report.error, self.clock.now())
            except Exception:  # the store itself is failing: the report says what happened
                log.exception("could not record the failed push to %s", peer_id)
        return report

    async def _push_locked(
        self, peer_id: str, force: bool, report: DeliveryReport, progress: Progress | None
    ) -> None:
        # One transaction in flight, but not one at a time end to end: the next batch is read
        # and sealed while the current one is with the peer, and the answer to a batch is
        # recorded while the next one travels.
        total: int | None = None
        upcoming: asyncio.Task[_Batch] | None = None
        settling: asyncio.Task[tuple[int, int]] | None = None

        async def settled() -> None:
            nonlocal settling
            if settling is None:
                return
            sent, rejected = await settling
            settling = None
            report.sent += sent
            report.rejected += rejected
            if progress is not None:
                progress(peer_id, report.sent + report.rejected, total or 0)

        try:
            while True:
                peer = await peer_store.get(self.db, peer_id)
                now = self.clock.now()
                if peer is None or peer.status != "active":
                    report.skipped = "not an active peer"
                    return
                if peer.mode != "push":
                    report.skipped = "pull-only peer: it collects its records itself"
                    return
                if not force and peer.backoff_until and peer.backoff_until > iso(now):
                    report.skipped = f"backing off until {peer.backoff_until}"
                    return
                if total is None and progress is not None:
                    total = await peer_outbox.pending_count(self.db, peer_id)
                try:
                    ahead, upcoming = upcoming, None
                    batch = await ahead if ahead is not None else None
                    if batch is None or batch.keys is not self.registry.keys_for(peer_id):
                        # From the first pending row: after the answer before is recorded (its
                        # rows are no longer pending), and for the keys in force (a batch
                        # sealed ahead of a refresh after the peer's rotation is sealed again).
                        await settled()
                        batch = await self._prepare(peer_id, after=0, now=now)
                    if batch.unsealable:
                        await settled()
                        report.rejected += await self._dead_letter(peer_id, batch.unsealable, now)
                    if not batch.rows:
                        if batch.unsealable:
                            continue
                        return
                    if len(batch.rows) + len(batch.unsealable) == self.batch_size:
                        upcoming = asyncio.create_task(
                            self._prepare(peer_id, after=batch.last_seq, now=now)
                        )
                    txn_id = secrets.token_urlsafe(12)
                    answer = await self.client.push(peer.endpoint, txn_id, batch.frames)
                    receipt, receipt_at = await self._check_receipt(peer_id, txn_id, answer, now)
                except (PeerError, KeyUnavailableError) as exc:
                    await settled()
                    if isinstance(exc, PeerError) and not exc.retryable:
                        await self._refused(peer_id, str(exc), now)
                    else:
                        asked = exc.retry_after if isinstance(exc, PeerRefused) else None
                        await self._failed(peer_id, str(exc), now, retry_after=asked)
                    report.error = str(exc)
                    return
                digests = [envelope_digest(frame) for frame in batch.frames]
                if not {r.digest for r in answer.results}.issuperset(digests) and upcoming:
                    # Some records went unanswered: they go again before anything after them,
                    # so the batch sealed ahead is dropped (its rows stay pending).
                    upcoming.cancel()
                    await asyncio.gather(upcoming, return_exceptions=True)
                    upcoming = None
                await settled()
                settling = asyncio.create_task(
                    self._settle(peer, batch, digests, answer, receipt, receipt_at, now)
                )
                if len(batch.rows) + len(batch.unsealable) < self.batch_size:
                    return
        finally:
            if upcoming is not None:
                # A batch sealed ahead and not sent is dropped; its rows stay pending.
                upcoming.cancel()
            try:
                await settled()
            finally:
                if upcoming is not None:
                    await asyncio.gather(upcoming, return_exceptions=True)

    async def _prepare(self, peer_id: str, *, after: int, now: datetime) -> _Batch:
        """The next pending rows after `after`, sealed for the peer's current keys."""
        rows = await peer_outbox.pending(self.db, peer_id, after=after, limit=self.batch_size)
        return await self._prepare_rows(peer_id, rows, now)

    async def _prepare_rows(self, peer_id: str, rows: list[OutboxItem], now: datetime) -> _Batch:
        public = self.registry.keys_for(peer_id)
        if public is None:
            raise KeyUnavailableError(f"no verified keys for {peer_id}")
        sealed = await self.crypto.map(partial(self._seal_rows, peer_id, public, now=now), rows)
        batch = _Batch(public, last_seq=rows[-1].seq if rows else 0)
        for row, frame in zip(rows, sealed, strict=True):
            if isinstance(frame, SealError):
                batch.unsealable.append((row, f"cannot be sealed: {frame}"))
            else:
                batch.rows.append(row)
                batch.frames.append(frame)
        return batch

    def _seal_rows(
        self, peer_id: str, public: PublicKeySet, rows: list[OutboxItem], *, now: datetime
    ) -> list[bytes | SealError]:
        kid, key = public.sealing_key(now)
        signing = self.keys().current_signing(now)
        msg_ids = new_ids(now, len(rows))
        sealed: list[bytes | SealError] = []
        for n, row in enumerate(rows):
            try:
                sealed.append(
                    seal_payload(
                        row.payload,
                        record_type=row.record_type,
                        sender=self.node_id,
                        signing_key=signing,
                        recipient=peer_id,
                        recipient_kid=kid,
                        recipient_key=key,
                        msg_id=msg_ids[n],
                        now=now,
                    )
                )
            except SealError as exc:
                # One record that cannot go (too large once sealed) must not block the queue.
                sealed.append(exc)
            except Exception as exc:  # a poisoned row (or a bug) fails alone too
                sealed.append(SealError(f"{type(exc).__name__}: {exc}"))
        return sealed

    def _open_receipt(self, frame: bytes, now: datetime) -> Opened:
        return open_envelope(
            frame,
            recipient=self.node_id,
            keys=self.keys(),
            peers=self.registry,
            replay=MemoryReplayGuard(),
            now=now,
        )

    async def _check_receipt(
        self, peer_id: str, txn_id: str, answer: TransactionResponse, now: datetime
    ) -> tuple[bytes, datetime]:
        """The signed receipt must cover exactly what the answer says was taken."""
        if answer.txn_id != txn_id or answer.receipt is None:
            raise PeerProtocolError(f"{peer_id} answered without a receipt for {txn_id}")
        frame = decode_frame(answer.receipt)
        try:
            try:
                opened = self._open_receipt(frame, now)
            except OpenError as exc:
                # The peer may have rotated: fetch its key document once and try again.
                if exc.reason is not OpenFailure.SENDER_KEY:
                    raise
                if not await self.refresh_peer_keys(peer_id):
                    raise
                opened = self._open_receipt(frame, now)
        except OpenError as exc:
            raise PeerProtocolError(f"receipt from {peer_id} refused: {exc.reason.value}") from exc
        try:
            record = check_receipt(answer, txn_id, opened.record, peer_id)
        except ReceiptMismatch as exc:
            raise PeerProtocolError(f"receipt from {peer_id} does not match its answer") from exc
        return frame, record.at

    async def _settle(
        self,
        peer: PeerRow,
        batch: _Batch,
        digests: list[str],
        answer: TransactionResponse,
        receipt: bytes,
        receipt_at: datetime,
        now: datetime,
    ) -> tuple[int, int]:
        peer_id = peer.node_id
        outcome = {r.digest: r for r in answer.results}
        sent: list[OutboxItem] = []
        dead: list[tuple[OutboxItem, str]] = []
        for row, digest in zip(batch.rows, digests, strict=True):
            result = outcome.get(digest)
            if result is None:
                continue  # not answered: stays pending and goes again
            if result.status is ItemStatus.REJECTED:
                dead.append((row, result.error or "rejected"))
            else:
                sent.append(row)

        def settle_txn(conn: Tx) -> None:
            late = peer_outbox.mark_sent_txn(conn, peer_id, [row.seq for row in sent], iso(now))
            if late:
                self.inbox.cases.router.sent_despite_cancel_txn(conn, peer_id, late, now)
            _mark_dead(conn, peer_id, dead, now)
            _record_delivered(
                conn,
                self.node_id,
                peer,
                sent,
                forwarded_at=now,
                received_at=receipt_at,
                how=f"signed receipt for transaction {answer.txn_id}",
            )
            peer_outbox.store_receipt_txn(conn, peer_id, answer.txn_id, receipt, iso(now))
            peer_store.delivered_txn(conn, peer_id, count=len(sent), at=iso(now))
            audit.append(
                conn,
                at=now,
                actor="delivery",
                event="federation.delivered",
                subject=peer_id,
                details={
                    "txn": answer.txn_id,
                    "sent": [r.label for r in sent],
                    "dead": [r.label for r, _ in dead],
                },
            )

        await self.db.run(settle_txn)
        return len(sent), len(dead)

    async def _dead_letter(
        self, peer_id: str, rows: list[tuple[OutboxItem, str]], now: datetime
    ) -> int:
        for row, reason in rows:
            log.warning(
                "dead-lettered %s %s for %s: %s", row.record_type, row.record_id, peer_id, reason
            )

        def dead_letter_txn(conn: Tx) -> None:
            _mark_dead(conn, peer_id, rows, now)

        await self.db.run(dead_letter_txn)
        return len(rows)

    async def _failed(
        self, peer_id: str, error: str, now: datetime, *, retry_after: int | None = None
    ) -> None:
        def failed_txn(conn: Tx) -> tuple[int, datetime] | None:
            # Read here, not before the push: an answer settled meanwhile may have reset it.
            before = peer_store.backoff_attempts_txn(conn, peer_id)
            if before is None:
                return None
            attempts = before + 1
            delay = backoff_delay(attempts, self.rng)
            if retry_after is not None:
                # The peer said when to try again (a full disk answers 507 with Retry-After):
                # the backoff grows as usual but never past that, so that a peer whose disk was
                # full for hours is tried again within a minute of its recovery, not an hour.
                delay = min(delay, timedelta(seconds=max(1, retry_after)))
            until = now + delay
            peer_store.back_off_txn(conn, peer_id, attempts=attempts, until=iso(until), error=error)
            return attempts, until

        result = await self.db.run(failed_txn)
        if result is not None:
            attempts, until = result
            log.warning(
                "push to %s failed (attempt %d, next at %s): %s",
                peer_id,
                attempts,
                iso(until),
                error,
            )

    async def _refused(self, peer_id: str, error: str, now: datetime) -> None:
        """The peer refused the whole transaction in a way retrying cannot fix (a 4xx such as
        "not a peer of this node"): its records are held, pending, until the cause is fixed.

        Held, not dead-lettered: the usual cause is that its operator has not added us yet.
        They go when that peer contacts us or our operator edits or resumes it (both clear
        this), or at the next quiet re-check, which does not grow the way a backoff does.
        """
        until = now + REFUSED_RECHECK

        def refused_txn(conn: Tx) -> None:
            peer_store.refused_txn(conn, peer_id, error=error, until=iso(until))

        await self.db.run(refused_txn)
        log.warning(
            "%s refused our push; its records are held until %s: %s", peer_id, iso(until), error
        )

    # pull (we collect from peers) -----------------------------------------------------------
    async def pull(self, peer_id: str, progress: Progress | None = None) -> DeliveryReport:
        report = DeliveryReport(peer_id)
        peer = await peer_store.get(self.db, peer_id)
        if peer is None or peer.status != "active":
            report.skipped = "not an active peer"
            return report
        cursor = await peer_store.pull_cursor(self.db, peer_id)
        while True:
            try:
                page = await self.client.pull(peer.endpoint, cursor, self.batch_size)
            except PeerError as exc:
                report.error = str(exc)
                return report
            items = [(item.seq, _frame_or_text(item.frame)) for item in page.envelopes]
            if not items:
                return report
            before = cursor
            cursor, pushed, accepted = await self.inbox.apply_pulled(peer_id, items, cursor)
            report.pulled += accepted
            if cursor <= before:  # a peer that serves nothing past our cursor: stop, not spin
                self.kick(pushed)
                return report
            self.kick(pushed)
            if progress is not None:
                progress(peer_id, report.pulled, report.pulled + (1 if page.more else 0))
            # No return on the last page: the next request, with the cursor moved past it, is
            # what acknowledges it (protocol.md §13.5), and it comes back empty.

    # serving pull (peers collect from us) ---------------------------------------------------
    async def outbox_page(self, peer_id: str, after: int, limit: int) -> OutboxPage:
        now = self.clock.now()
        served = self._served.setdefault(peer_id, set())
        covered = sorted(seq for seq in served if seq <= after)

        def acknowledge_txn(conn: Tx) -> int:
            # The cursor, in a request the peer signed, says it committed everything up to
            # `after`: those rows are delivered, as a push answered `accepted` is.
            peer = peer_store.get_txn(conn, peer_id)
            if peer is None:
                return after
            furthest = rejoin.furthest_cursor_txn(conn, peer_id, after)
            # The first cursor since a restore says where the peer stands: numbers it saw
            # are never given to anything else, before anything is acknowledged by them.
            rejoined = rejoin.rejoin_txn(conn, peer_id, after)
            if rejoined is not None:
                audit.append(
                    conn,
                    at=now,
                    actor="delivery",
                    event="federation.rejoined",
                    subject=peer_id,
                    details={
                        "restored_seq": rejoined.restored_seq,
                        "peer_cursor": rejoined.peer_cursor,
                        "renumbered": rejoined.moved,
                    },
                )
            late = peer_outbox.sent_though_cancelled_txn(conn, peer_id, covered, iso(now))
            if late:
                self.inbox.cases.router.sent_despite_cancel_txn(conn, peer_id, late, now)
            acknowledged = peer_outbox.acknowledge_txn(conn, peer_id, up_to=after, at=iso(now))
            if not acknowledged:
                return furthest
            # `received` comes from the peer itself, in its signed `received` action (the
            # cursor also moves past frames it refused, which it did not receive).
            _record_delivered(conn, self.node_id, peer, acknowledged, forwarded_at=now)
            peer_store.collected_txn(conn, peer_id, count=len(acknowledged))
            audit.append(
                conn,
                at=now,
                actor="delivery",
                event="federation.delivered",
                subject=peer_id,
                details={
                    "pull_after": after,
                    "sent": [r.label for r in acknowledged],
                },
            )
            return furthest

        furthest = await self.db.run(acknowledge_txn)
        served.difference_update(covered)
        rows = await peer_outbox.servable(
            self.db, peer_id, after=after, limit=limit + 1, again_up_to=furthest
        )
        page_rows = rows[:limit]
        served.update(row.seq for row in page_rows if row.record_type == peer_outbox.REPORT_TYPE)
        batch = await self._prepare_rows(peer_id, page_rows, now)
        if batch.unsealable:
            await self._dead_letter(peer_id, batch.unsealable, now)
        return OutboxPage(
            envelopes=[
                PulledEnvelope(seq=r.seq, frame=encode_frame(f))
                for r, f in zip(batch.rows, batch.frames, strict=True)
            ],
            next_after=page_rows[-1].seq if page_rows else after,
            more=len(rows) > limit,
        )

    async def seal_now(self, peer_id: str, items: list[OutboxItem]) -> list[bytes]:
        """These records sealed for the peer now, outside its outbox (a recovery answer gives
        it our own actions on its cases again); one that cannot be sealed is left out, logged."""
        batch = await self._prepare_rows(peer_id, items, self.clock.now())
        for row, reason in batch.unsealable:
            log.warning("%s for %s left out: %s", row.label, peer_id, reason)
        return batch.frames

    async def pending_peers(self) -> list[str]:
        return await peer_outbox.peers_with_pending(self.db)


def _mark_dead(conn: Tx, peer_id: str, rows: list[tuple[OutboxItem, str]], now: datetime) -> None:
    """Dead-lettered, never retried: one bad record must not block the queue."""
    peer_outbox.mark_dead_txn(conn, peer_id, [(row.seq, reason) for row, reason in rows])
    dead_letters.record_txn(
        conn,
        (
            DeadLetter(
                peer_id,
                Direction.OUT,
                reason,
                iso(now),
                seq=row.seq,
                record_type=row.record_type,
                record_id=row.record_id,
            )
            for row, reason in rows
        ),
    )


def _record_delivered(
    conn: Tx,
    node_id: str,
    peer: PeerRow,
    rows: list[OutboxItem],
    *,
    forwarded_at: datetime,
    received_at: datetime | None = None,
    how: str = "",
) -> None:
    """`forwarded` (by us) and, with `received_at`, `received` (by the peer) for each report the
    peer took, under the ids both ends derive (protocol.md §9.8): a copy adds nothing."""
    peer_id = peer.node_id
    reports = [row for row in rows if row.record_type == "report"]
    taken = [
        _action(
            ActionCode.FORWARDED,
            row.report_id,
            peer_id,
            forwarded_at,
            node_id,
            peer.country,
            f"delivered to {peer_id}",
        )
        for row in reports
    ]
    if received_at is not None:
        taken += [
            _action(
                ActionCode.RECEIVED, row.report_id, peer_id, received_at, peer_id, peer.country, how
            )
            for row in reports
        ]
    ReportStore.insert_actions(conn, taken)


def _action(
    code: ActionCode, report_id: str, peer_id: str, at: datetime, by: str, country: str, reason: str
) -> CaseAction:
    """An action under the id both ends derive for this code, case and peer."""
    action_id = str(derived_action_id(code, report_id, peer_id))
    return CaseAction(action_id, report_id, code.value, iso(at), by, None, country, reason)


def _frame_or_text(text: str) -> bytes:
    """A pulled frame; one that is not base64url goes on as its text, which the inbox refuses
    (dead-lettered with the reason) so that the cursor moves past it and the rest applies."""
    try:
        return decode_frame(text)
    except ValueError:
        return text.encode("utf-8", "replace")
