"""Our outbox to each peer: push with one transaction in flight, backoff, receipts, and pull."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import aiosqlite

from keys import KeyUnavailableError, NodeKeys
from node.clock import Clock, iso
from node.federation.crypto_pool import CryptoPool
from node.federation.inbox import RECEIVED_NAMESPACE, Inbox
from node.federation.registry import PeerRegistry
from node.store import audit
from node.store.db import Database, Tx
from peers.backoff import backoff_delay
from peers.client import PeerClient, PeerError, PeerProtocolError
from protocol import (
    MemoryReplayGuard,
    Opened,
    OpenError,
    OpenFailure,
    Receipt,
    envelope_digest,
    open_envelope,
    seal_payload,
)
from protocol.federation import (
    ItemStatus,
    OutboxPage,
    PulledEnvelope,
    TransactionResponse,
    decode_frame,
    encode_frame,
)

log = logging.getLogger("hotline.delivery")
FORWARDED_NAMESPACE = uuid.UUID("0b8f5d0e-52c4-4f7e-8d0c-3c1f2a9e7b44")
DEFAULT_BATCH = 200

Progress = Callable[[str, int, int], None]


@dataclass
class _Batch:
    rows: list[aiosqlite.Row]
    frames: list[bytes]

    @property
    def last_seq(self) -> int:
        return int(self.rows[-1]["seq"]) if self.rows else 0


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
        # Set by the composition root: fetch a peer's key document now (after its rotation).
        self.refresh_peer_keys: Callable[[str], Awaitable[bool]] | None = None
        self._wanted: set[str] = set()
        self._event = asyncio.Event()

    # triggering ---------------------------------------------------------------------------
    def kick(self, peer_ids: list[str]) -> None:
        """Ask for an immediate push to these peers (called after a commit)."""
        self._wanted.update(peer_ids)
        self._event.set()

    async def worker(self) -> None:
        running: dict[str, asyncio.Task[DeliveryReport]] = {}
        while True:
            await self._event.wait()
            self._event.clear()
            wanted, self._wanted = self._wanted, set()
            for peer_id in wanted:
                task = running.get(peer_id)
                if task is not None and not task.done():
                    # Already pushing: the running loop drains rows committed meanwhile, but a
                    # commit after its last read needs one more pass.
                    self._wanted.add(peer_id)
                    continue
                running[peer_id] = asyncio.create_task(self.push(peer_id))
            if self._wanted:
                await asyncio.sleep(0.05)
                self._event.set()

    def _lock(self, peer_id: str) -> asyncio.Lock:
        return self._locks.setdefault(peer_id, asyncio.Lock())

    # push ---------------------------------------------------------------------------------
    async def push(
        self, peer_id: str, *, force: bool = False, progress: Progress | None = None
    ) -> DeliveryReport:
        report = DeliveryReport(peer_id)
        try:
            async with self._lock(peer_id):
                await self._push_locked(peer_id, force, report, progress)
        except Exception as exc:  # a bug here must not kill the worker; the sweep retries
            log.exception("push to %s failed", peer_id)
            report.error = f"{type(exc).__name__}: {exc}"
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
                peer = await self.db.fetch_one("SELECT * FROM peers WHERE node_id = ?", (peer_id,))
                now = self.clock.now()
                if peer is None or peer["status"] != "active":
                    report.skipped = "not an active peer"
                    return
                if peer["mode"] != "push":
                    report.skipped = "pull-only peer: it collects its records itself"
                    return
                if not force and peer["backoff_until"] and peer["backoff_until"] > iso(now):
                    report.skipped = f"backing off until {peer['backoff_until']}"
                    return
                if total is None and progress is not None:
                    count = await self.db.fetch_one(
                        "SELECT COUNT(*) FROM peer_outbox WHERE peer_id = ? AND state = 'pending'",
                        (peer_id,),
                    )
                    total = int(count[0]) if count else 0
                try:
                    batch = await (upcoming or self._prepare(peer_id, after=0, now=now))
                    upcoming = None
                    if not batch.rows:
                        return
                    if len(batch.rows) == self.batch_size:
                        upcoming = asyncio.create_task(
                            self._prepare(peer_id, after=batch.last_seq, now=now)
                        )
                    txn_id = secrets.token_urlsafe(12)
                    answer = await self.client.push(peer["endpoint"], txn_id, batch.frames)
                    receipt, receipt_at = await self._check_receipt(peer_id, txn_id, answer, now)
                except (PeerError, KeyUnavailableError) as exc:
                    await settled()
                    await self._failed(peer_id, int(peer["backoff_attempts"]), str(exc), now)
                    report.error = str(exc)
                    return
                await settled()
                settling = asyncio.create_task(
                    self._settle(peer, batch.rows, batch.frames, answer, receipt, receipt_at, now)
                )
                if len(batch.rows) < self.batch_size:
                    return
        finally:
            if upcoming is not None:
                upcoming.cancel()
                with contextlib.suppress(asyncio.CancelledError, PeerError, KeyUnavailableError):
                    await upcoming
            await settled()

    async def _prepare(self, peer_id: str, *, after: int, now: datetime) -> _Batch:
        """The next pending rows after `after`, sealed for the peer."""
        rows = await self.db.fetch_all(
            "SELECT seq, record_type, record_id, report_id, payload FROM peer_outbox"
            " WHERE peer_id = ? AND state = 'pending' AND seq > ? ORDER BY seq LIMIT ?",
            (peer_id, after, self.batch_size),
        )
        return _Batch(rows, await self._seal(peer_id, rows, now))

    async def _seal(self, peer_id: str, rows: list[aiosqlite.Row], now: datetime) -> list[bytes]:
        if not rows:
            return []
        return await self.crypto.map(partial(self._seal_rows, peer_id, now=now), rows)

    def _seal_rows(self, peer_id: str, rows: list[aiosqlite.Row], *, now: datetime) -> list[bytes]:
        public = self.registry.keys_for(peer_id)
        if public is None:
            raise KeyUnavailableError(f"no verified keys for {peer_id}")
        kid, key = public.encryption_key(now)
        signing = self.keys().current_signing(now)
        # Random msg_ids for the whole chunk from one read of the OS generator: uuid4() per
        # record gives up and retakes the GIL each time, which stalls the other sealing thread.
        randomness = os.urandom(16 * len(rows))
        return [
            seal_payload(
                bytes(row["payload"]),
                record_type=row["record_type"],
                sender=self.node_id,
                signing_key=signing,
                recipient=peer_id,
                recipient_kid=kid,
                recipient_key=key,
                msg_id=uuid.UUID(bytes=randomness[16 * n : 16 * n + 16], version=4),
                now=now,
            )
            for n, row in enumerate(rows)
        ]

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
                refresh = self.refresh_peer_keys
                if exc.reason is not OpenFailure.SENDER_KEY or refresh is None:
                    raise
                if not await refresh(peer_id):
                    raise
                opened = self._open_receipt(frame, now)
        except OpenError as exc:
            raise PeerProtocolError(f"receipt from {peer_id} refused: {exc.reason.value}") from exc
        record = opened.record
        taken = {r.digest for r in answer.results if r.status is not ItemStatus.REJECTED}
        if (
            not isinstance(record, Receipt)
            or record.txn_id != txn_id
            or set(record.accepted) != taken
        ):
            raise PeerProtocolError(f"receipt from {peer_id} does not match its answer")
        return frame, record.at

    async def _settle(
        self,
        peer: aiosqlite.Row,
        rows: list[aiosqlite.Row],
        frames: list[bytes],
        answer: TransactionResponse,
        receipt: bytes,
        receipt_at: datetime,
        now: datetime,
    ) -> tuple[int, int]:
        peer_id = peer["node_id"]
        outcome = {r.digest: r for r in answer.results}
        sent: list[aiosqlite.Row] = []
        dead: list[tuple[aiosqlite.Row, str]] = []
        for row, frame in zip(rows, frames, strict=True):
            result = outcome.get(envelope_digest(frame))
            if result is None:
                continue  # not answered: stays pending and goes again
            if result.status is ItemStatus.REJECTED:
                dead.append((row, result.error or "rejected"))
            else:
                sent.append(row)

        def transaction(conn: Tx) -> None:
            conn.executemany(
                "UPDATE peer_outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1"
                " WHERE peer_id = ? AND seq = ?",
                [(iso(now), peer_id, row["seq"]) for row in sent],
            )
            for row, reason in dead:
                # Dead-lettered, never retried: one bad record must not block the queue.
                conn.execute(
                    "UPDATE peer_outbox SET state = 'dead', last_error = ? WHERE peer_id = ?"
                    " AND seq = ?",
                    (reason, peer_id, row["seq"]),
                )
                conn.execute(
                    "INSERT INTO dead_letters (peer_id, direction, seq, record_type, record_id,"
                    " reason, at) VALUES (?, 'out', ?, ?, ?, ?, ?)",
                    (peer_id, row["seq"], row["record_type"], row["record_id"], reason, iso(now)),
                )
            conn.executemany(
                "INSERT OR IGNORE INTO actions (id, report_id, code, at, by_node, analyst,"
                " country, reason) VALUES (?, ?, 'forwarded', ?, ?, NULL, ?, ?)",
                [
                    (
                        str(uuid.uuid5(FORWARDED_NAMESPACE, f"{row['report_id']}/{peer_id}")),
                        row["report_id"],
                        iso(now),
                        self.node_id,
                        peer["country"],
                        f"delivered to {peer_id}",
                    )
                    for row in sent
                    if row["record_type"] == "report"
                ],
            )
            # The peer's signed receipt is its statement that it received each report: record
            # `received` under the id the peer uses for it in its own timeline.
            conn.executemany(
                "INSERT OR IGNORE INTO actions (id, report_id, code, at, by_node, analyst,"
                " country, reason) VALUES (?, ?, 'received', ?, ?, NULL, ?, ?)",
                [
                    (
                        str(uuid.uuid5(RECEIVED_NAMESPACE, f"{row['report_id']}/{peer_id}")),
                        row["report_id"],
                        iso(receipt_at),
                        peer_id,
                        peer["country"],
                        f"signed receipt for transaction {answer.txn_id}",
                    )
                    for row in sent
                    if row["record_type"] == "report"
                ],
            )
            conn.execute(
                "INSERT OR IGNORE INTO receipts (peer_id, txn_id, frame, at) VALUES (?, ?, ?, ?)",
                (peer_id, answer.txn_id, receipt, iso(now)),
            )
            conn.execute(
                "UPDATE peers SET delivered = delivered + ?, last_contact_at = ?,"
                " backoff_until = NULL, backoff_attempts = 0, last_error = NULL"
                " WHERE node_id = ?",
                (len(sent), iso(now), peer_id),
            )
            audit.append(
                conn,
                at=now,
                actor="delivery",
                event="federation.delivered",
                subject=peer_id,
                details={
                    "txn": answer.txn_id,
                    "sent": [f"{r['record_type']}:{r['record_id']}" for r in sent],
                    "dead": [f"{r['record_type']}:{r['record_id']}" for r, _ in dead],
                },
            )

        await self.db.run(transaction)
        return len(sent), len(dead)

    async def _failed(self, peer_id: str, attempts: int, error: str, now: datetime) -> None:
        attempts += 1
        until = now + backoff_delay(attempts, self.rng)
        log.warning(
            "push to %s failed (attempt %d, next at %s): %s", peer_id, attempts, iso(until), error
        )

        def transaction(conn: Tx) -> None:
            conn.execute(
                "UPDATE peers SET backoff_attempts = ?, backoff_until = ?, last_error = ?"
                " WHERE node_id = ?",
                (attempts, iso(until), error[:500], peer_id),
            )

        await self.db.run(transaction)

    # pull (we collect from peers) -----------------------------------------------------------
    async def pull(self, peer_id: str, progress: Progress | None = None) -> DeliveryReport:
        report = DeliveryReport(peer_id)
        peer = await self.db.fetch_one("SELECT * FROM peers WHERE node_id = ?", (peer_id,))
        if peer is None or peer["status"] != "active":
            report.skipped = "not an active peer"
            return report
        row = await self.db.fetch_one(
            "SELECT after_seq FROM pull_cursors WHERE peer_id = ?", (peer_id,)
        )
        cursor = int(row["after_seq"]) if row else 0
        while True:
            try:
                page = await self.client.pull(peer["endpoint"], cursor, self.batch_size)
            except PeerError as exc:
                report.error = str(exc)
                return report
            items = [(item.seq, decode_frame(item.frame)) for item in page.envelopes]
            if not items:
                return report
            cursor, pushed, accepted = await self.inbox.apply_pulled(peer_id, items, cursor)
            report.pulled += accepted
            self.kick(pushed)
            if progress is not None:
                progress(peer_id, report.pulled, report.pulled + (1 if page.more else 0))
            if not page.more:
                return report

    # serving pull (peers collect from us) ---------------------------------------------------
    async def outbox_page(self, peer_id: str, after: int, limit: int) -> OutboxPage:
        now = self.clock.now()

        def transaction(conn: Tx) -> None:
            # The cursor says the peer committed everything up to `after`.
            conn.execute(
                "UPDATE peer_outbox SET state = 'sent', sent_at = ? WHERE peer_id = ? AND"
                " state = 'pending' AND seq <= ?",
                (iso(now), peer_id, after),
            )

        await self.db.run(transaction)
        rows = await self.db.fetch_all(
            "SELECT seq, record_type, record_id, report_id, payload FROM peer_outbox"
            " WHERE peer_id = ? AND state = 'pending' AND seq > ? ORDER BY seq LIMIT ?",
            (peer_id, after, limit + 1),
        )
        page_rows = rows[:limit]
        frames = await self._seal(peer_id, page_rows, now)
        return OutboxPage(
            envelopes=[
                PulledEnvelope(seq=int(r["seq"]), frame=encode_frame(f))
                for r, f in zip(page_rows, frames, strict=True)
            ],
            next_after=int(page_rows[-1]["seq"]) if page_rows else after,
            more=len(rows) > limit,
        )

    async def pending_peers(self) -> list[str]:
        rows = await self.db.fetch_all(
            "SELECT DISTINCT peer_id FROM peer_outbox WHERE state = 'pending'"
        )
        return [row["peer_id"] for row in rows]
