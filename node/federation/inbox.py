"""What peers send us: open each envelope, apply its record, answer per item, sign a receipt."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import orjson

from keys import KeyUnavailableError, NodeKeys
from node.cases import CaseService
from node.cases.door import transition_txn
from node.cases.hashes import attach_hashes_txn
from node.cases.lifecycle import CaseEvent, CaseStateError, CaseStatus, allows
from node.clock import Clock, iso
from node.contacts import abuse_contact, control_character_in
from node.errors import InvalidInput
from node.federation.crypto_pool import CryptoPool
from node.federation.registry import PeerRegistry
from node.hashes.sharing import HashSetRefused, HashSharing
from node.hashes.values import HashValue, parse_hash
from node.store import audit, dead_letters, inbound, peer_outbox, rejoin
from node.store import peers as peer_store
from node.store.db import Database, Tx
from node.store.dead_letters import DeadLetter, Direction
from node.store.inbound import KeptEnvelope, SeenMessage
from node.store.peer_outbox import Queued
from node.store.rejoin import OrphanAction
from node.store.reports import Case, CaseAction, ReportStore, Version
from node.urls import normalise_url
from protocol import (
    Action,
    ActionCode,
    HashSet,
    MemoryReplayGuard,
    Opened,
    OpenError,
    ReadFrame,
    Receipt,
    Report,
    Withdrawal,
    envelope_digest,
    open_envelope,
    read_header,
    record_bytes,
    seal,
)
from protocol.derived import derived_action_id
from protocol.federation import ItemResult, ItemStatus, TransactionResponse, encode_frame
from protocol.ids import new_id
from protocol.recovery import SignedRecord

log = logging.getLogger("hotline.federation")
# Envelopes per chunk handed from the crypto pool to the write transaction: small enough that
# the writer starts early, large enough that each chunk's writes stay set-based.
OPEN_CHUNK = 50

# A report's abuse contact is checked when its evidence is stored: an invalid one is dropped
# (and said so) there, and the case itself is kept.
_CHECKED_LATER = frozenset({"hosting.abuse_contact"})


class RecordRefused(Exception):
    """A well-signed record that breaks a federation rule (unknown case, not the origin...)."""


# A batch being opened in the crypto pool, chunk by chunk.
Opening = list[Future[list[Opened | OpenError | RecordRefused]]]


@dataclass
class Applied:
    status: ItemStatus
    error: str | None = None
    pushed_to: str | None = None


class Inbox:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        node_id: str,
        country: str,
        keys: Callable[[], NodeKeys],
        registry: PeerRegistry,
        cases: CaseService,
        crypto: CryptoPool,
        hashes: HashSharing | None = None,
    ) -> None:
        self.db = db
        # Applies peers' hash lists (`hashset` records); without it they are refused.
        self.hashes = hashes
        self.crypto = crypto
        self.clock = clock
        self.node_id = node_id
        self.country = country
        self.keys = keys
        self.registry = registry
        self.cases = cases

    # push ---------------------------------------------------------------------------------
    def apply_push_txn(
        self,
        conn: Tx,
        sender: str,
        txn_id: str,
        frames: list[bytes],
        opening: Opening,
        now: datetime,
    ) -> tuple[bytes, set[str]]:
        """Apply a pushed batch inside `conn`'s transaction: the JSON answer (per item, with our
        signed receipt for what was taken) and the peers to push to after the commit."""
        results: list[ItemResult] = []
        pushed: set[str] = set()
        digests = [envelope_digest(frame) for frame in frames]
        for digest, applied in zip(
            digests,
            self._apply_all(conn, sender, frames, digests, opening, now, via_push=True),
            strict=True,
        ):
            results.append(ItemResult(digest=digest, status=applied.status, error=applied.error))
            if applied.pushed_to:
                pushed.add(applied.pushed_to)
        accepted = [r.digest for r in results if r.status is not ItemStatus.REJECTED]
        receipt = self._receipt(sender, txn_id, accepted, now)
        answer = orjson.dumps(
            TransactionResponse(txn_id=txn_id, results=results, receipt=receipt).model_dump(
                mode="json", exclude_none=True
            )
        )
        peer_store.heard_from_txn(conn, sender, received=len(accepted), at=iso(now))
        return answer, pushed

    # pull ---------------------------------------------------------------------------------
    async def apply_pulled(
        self, sender: str, items: list[tuple[int, bytes]], after: int
    ) -> tuple[int, list[str], int]:
        """Apply pulled envelopes and move the cursor in the same transaction."""
        now = self.clock.now()
        frames = [frame for _, frame in items]
        opening = await self.start_opening(sender, frames, now)
        pushed: set[str] = set()

        def apply_pulled_txn(conn: Tx) -> tuple[int, int]:
            accepted = 0
            cursor = after
            digests = [envelope_digest(frame) for frame in frames]
            for (seq, _), applied in zip(
                items,
                self._apply_all(conn, sender, frames, digests, opening, now, via_push=False),
                strict=True,
            ):
                if applied.status is not ItemStatus.REJECTED:
                    accepted += 1
                if applied.pushed_to:
                    pushed.add(applied.pushed_to)
                cursor = max(cursor, seq)
            peer_store.move_pull_cursor_txn(conn, sender, cursor, iso(now))
            # A peer that reaches us is up: forget its backoff so our queue to it moves at once.
            peer_store.heard_from_txn(conn, sender, received=accepted, at=iso(now))
            return cursor, accepted

        cursor, accepted = await self.db.run(apply_pulled_txn)
        return cursor, sorted(pushed), accepted

    # recovery -----------------------------------------------------------------------------
    async def apply_given_back(self, sender: str, frames: list[bytes]) -> tuple[int, int]:
        """A holder's own actions on our cases, sealed to us again with the records of ours it
        gives back (protocol.md §13.8): each opened and applied as if pushed. Only actions; the
        number accepted and the number refused (each refusal is dead-lettered, with why)."""
        actions = [frame for frame in frames if _header_type(frame) == "action"]
        now = self.clock.now()
        opening = await self.start_opening(sender, actions, now)

        def apply_given_back_txn(conn: Tx) -> tuple[int, int]:
            digests = [envelope_digest(frame) for frame in actions]
            applied = self._apply_all(conn, sender, actions, digests, opening, now, via_push=True)
            accepted = sum(1 for item in applied if item.status is ItemStatus.ACCEPTED)
            refused = sum(1 for item in applied if item.status is ItemStatus.REJECTED)
            return accepted, refused + len(frames) - len(actions)

        return await self.db.run(apply_given_back_txn)

    # opening ------------------------------------------------------------------------------
    async def start_opening(self, sender: str, frames: list[bytes], now: datetime) -> Opening:
        """Start opening a batch in the crypto pool, in chunks the write transaction applies
        as they come: the writer stores one chunk while the next ones are being opened."""
        # Headers are read once here (no crypto), for the replay lookup and the relay check,
        # and handed to the opener.
        reads: list[ReadFrame | OpenError] = []
        for frame in frames:
            try:
                reads.append(read_header(frame))
            except OpenError as exc:
                reads.append(exc)
        ids = [r.header.msg_id for r in reads if isinstance(r, ReadFrame)]
        taken = await inbound.seen(self.db, sender, ids)
        # Each chunk gets its own replay guard holding only what is stored: chunks are opened
        # at the same time, so a copy within the batch is told apart in order, by the write
        # transaction, not by whichever chunk happened to open first.
        return self.crypto.submit(
            partial(self._open_batch, sender, taken=frozenset(taken), now=now),
            list(zip(frames, reads, strict=True)),
            OPEN_CHUNK,
        )

    def _open_batch(
        self,
        sender: str,
        items: list[tuple[bytes, ReadFrame | OpenError]],
        *,
        taken: frozenset[str],
        now: datetime,
    ) -> list[Opened | OpenError | RecordRefused]:
        out: list[Opened | OpenError | RecordRefused] = []
        keys = self.keys()
        guard = MemoryReplayGuard()
        for msg_id in taken:
            guard.remember(sender, msg_id, now)
        for frame, read in items:
            try:
                if isinstance(read, OpenError):
                    raise read
                if read.header.from_ != sender:
                    # A peer may only send its own records: nothing is relayed through nodes.
                    out.append(
                        RecordRefused(f"envelope from {read.header.from_} relayed by {sender}")
                    )
                    continue
                opened = open_envelope(
                    frame,
                    recipient=self.node_id,
                    keys=keys,
                    peers=self.registry,
                    replay=guard,
                    now=now,
                    read=read,
                )
                # Text a peer sends is shown to analysts and put in notices: it obeys the same
                # rule as ours (node.contacts: no control character but newline and tab, no
                # bidirectional control), refused with the same words.
                problem = control_character_in(
                    opened.payload, opened.record.model_dump(), skip=_CHECKED_LATER
                )
                if problem is not None:
                    out.append(RecordRefused(str(problem)))
                    continue
                out.append(opened)
            except OpenError as exc:
                log.warning("refused envelope from %s: %s %s", sender, exc.reason.value, exc.detail)
                out.append(exc)
        return out

    # applying -----------------------------------------------------------------------------
    def _apply_all(
        self,
        conn: Tx,
        sender: str,
        frames: list[bytes],
        digests: list[str],
        opening: Opening,
        now: datetime,
        *,
        via_push: bool,
    ) -> list[Applied]:
        """Apply a batch in order, chunk by chunk as the crypto pool opens them. Reports new
        to us (nearly all of a catch-up) are gathered and written per table; anything else is
        applied alone after the gathered ones are written, so every item sees the effects of
        the items before it."""
        batch = _NewReports(self.node_id, self.country, sender, now, via_push=via_push)
        try:
            results: list[Applied] = []
            known: set[str] = set()
            seen: set[str] = set()
            refs: set[str] = set()
            for future in opening:
                opened = future.result()
                start, end = len(results), len(results) + len(opened)
                chunk = zip(frames[start:end], digests[start:end], opened, strict=True)
                good = [o for o in opened if isinstance(o, Opened)]
                reports = [o.record for o in good if isinstance(o.record, Report)]
                known.update(ReportStore.existing_ids(conn, [str(r.id) for r in reports]))
                # Checked again in the write transaction: a copy of the same bytes may have
                # been committed since they were opened.
                seen.update(inbound.seen_txn(conn, sender, [o.header.msg_id for o in good]))
                refs.update(ReportStore.taken_refs(conn, sender, [r.local_ref for r in reports]))
                for frame, digest, item in chunk:
                    record = item.record if isinstance(item, Opened) else None
                    report_id = str(record.id) if isinstance(record, Report) else ""
                    if (
                        isinstance(item, Opened)
                        and isinstance(record, Report)
                        and report_id not in known
                        and item.header.msg_id not in seen
                    ):
                        seen.add(item.header.msg_id)
                        url_key, refusal = _check_new_report(record, refs)
                        if refusal is not None:
                            self._flush(conn, batch)
                            results.append(self._refuse_new(conn, sender, item, refusal, now))
                            continue
                        refs.add(record.local_ref)
                        known.add(report_id)
                        batch.add(item, record, report_id, url_key, digest)
                        results.append(
                            Applied(ItemStatus.ACCEPTED, pushed_to=None if via_push else sender)
                        )
                        continue
                    # Anything else sees the gathered reports written first (an update or
                    # withdrawal of a report earlier in this batch finds it).
                    self._flush(conn, batch)
                    results.append(self._apply(conn, sender, frame, item, now, digest=digest))
                    if isinstance(item, Opened):
                        seen.add(item.header.msg_id)
                # Written while the crypto pool opens the next chunks.
                self._flush(conn, batch)
            return results
        finally:
            cancel_opening(opening)  # after a failure, chunks not yet opened are not needed

    def _refuse_new(
        self, conn: Tx, sender: str, item: Opened, reason: str, now: datetime
    ) -> Applied:
        inbound.mark_seen_txn(conn, SeenMessage(sender, item.header.msg_id, iso(now)))
        self._reject(conn, sender, item, reason, reason, now)
        return Applied(ItemStatus.REJECTED, reason)

    def _flush(self, conn: Tx, batch: _NewReports) -> None:
        if not batch.ids:
            return
        inbound.mark_seen_many_txn(conn, batch.seen)
        audit.append_many(conn, batch.entries)
        # Routed into our own channels as they are inserted.
        self.cases.router.insert_routed(conn, batch.reports, "federation", force=True)
        for report_id, values in batch.hashes.items():
            attach_hashes_txn(
                conn,
                report_id,
                values,
                matcher=self.cases.hash_lists,
                source=f"peer:{batch.sender}",
                at=batch.stamp,
                limit=None,
            )
        ReportStore.insert_versions(conn, batch.versions)
        ReportStore.add_addresses(conn, batch.addresses)
        ReportStore.insert_actions(conn, batch.actions)
        if batch.outgoing:
            peer_outbox.enqueue_txn(conn, batch.sender, batch.outgoing)
        inbound.keep_envelopes_txn(conn, batch.envelopes)
        batch.clear()

    def _apply(
        self,
        conn: Tx,
        sender: str,
        frame: bytes,
        item: Opened | OpenError | RecordRefused,
        now: datetime,
        *,
        digest: str,
    ) -> Applied:
        if isinstance(item, OpenError):
            if item.reason.value == "replay":
                return Applied(ItemStatus.DUPLICATE)
            self._reject(conn, sender, None, str(item), f"{item.reason.value}: {item.detail}", now)
            return Applied(ItemStatus.REJECTED, str(item))
        if isinstance(item, RecordRefused):
            self._reject(conn, sender, None, str(item), str(item), now)
            return Applied(ItemStatus.REJECTED, str(item))
        if not inbound.mark_seen_txn(conn, SeenMessage(sender, item.header.msg_id, iso(now))):
            return Applied(ItemStatus.DUPLICATE)
        record = item.record
        try:
            if isinstance(record, Report):
                result = self._apply_report(conn, sender, record, item.payload, now)
            elif isinstance(record, Action):
                result = self._apply_action(conn, sender, record, item.payload, now)
            elif isinstance(record, Withdrawal):
                result = self._apply_withdrawal(conn, sender, record, now)
            elif isinstance(record, HashSet):
                result = self._apply_hashset(conn, sender, record, now)
            else:
                raise RecordRefused("receipts travel in transaction answers, not as records")
        except RecordRefused as exc:
            self._reject(conn, sender, item, str(exc), str(exc), now)
            return Applied(ItemStatus.REJECTED, str(exc))
        if result.status is ItemStatus.ACCEPTED:
            report_id = (
                ""  # about no case: a hash list's change
                if isinstance(record, HashSet)
                else str(getattr(record, "report_id", getattr(record, "id", "")))
            )
            inbound.keep_envelopes_txn(
                conn, [_kept(item, digest, sender, report_id=report_id, stamp=iso(now))]
            )
        return result

    def _reject(
        self,
        conn: Tx,
        sender: str,
        item: Opened | None,
        public: str,
        reason: str,
        now: datetime,
    ) -> None:
        record = item.record if item else None
        dead_letters.record_txn(
            conn,
            [
                DeadLetter(
                    sender,
                    Direction.IN,
                    reason,
                    iso(now),
                    record_type=record.type if record else None,
                    record_id=str(record.id) if record else None,
                )
            ],
        )
        audit.append(
            conn,
            at=now,
            actor=f"peer:{sender}",
            event="federation.refused",
            subject=sender,
            details={"reason": reason},
        )

    def _apply_report(
        self, conn: Tx, sender: str, report: Report, payload: bytes, now: datetime
    ) -> Applied:
        """A new version of a report we hold (new reports are written per batch)."""
        report_id = str(report.id)
        head = ReportStore.head_txn(conn, report_id)
        if head is None:
            raise RecordRefused(f"report {report_id} is not one we hold")
        if head.origin != sender:
            raise RecordRefused(f"report {report_id} belongs to {head.origin}")
        if head.seq >= report.seq or head.status == CaseStatus.WITHDRAWN:
            # A withdrawal is a tombstone (protocol.md §9.7): a later version adds nothing.
            return Applied(ItemStatus.DUPLICATE)
        try:
            url_key = normalise_url(report.url)
        except InvalidInput as exc:
            raise RecordRefused(f"report url refused: {exc}") from exc
        try:  # the status stays: a new version updates what we hold
            status = transition_txn(
                conn, report_id, CaseEvent.VERSION_RECEIVED, at=iso(now), seq=report.seq
            )
        except CaseStateError as exc:
            raise RecordRefused(str(exc)) from exc
        ReportStore.set_version_txn(
            conn, case_of_report(report_id, report, url_key, report_evidence(report), iso(now))
        )
        ReportStore.insert_version(conn, Version(report_id, report.seq, payload, iso(now)))
        # Hashes the origin added since: kept with those it sent before (none is removed).
        attach_hashes_txn(
            conn,
            report_id,
            received_hashes(report)[0],
            matcher=self.cases.hash_lists,
            source=f"peer:{sender}",
            at=iso(now),
            limit=None,
        )
        audit.append(
            conn,
            at=now,
            actor=f"peer:{sender}",
            event="report.updated",
            subject=report_id,
            details={"seq": report.seq},
        )
        if allows(status, CaseEvent.ROUTED):
            # The origin's new verdict, category or hosting is a new decision here too: what
            # our channels still hold for the case is re-planned with it.
            self.cases.router.route_txn(conn, report_id, f"peer:{sender}", force=True)
        return Applied(ItemStatus.ACCEPTED)

    def _apply_action(
        self, conn: Tx, sender: str, action: Action, payload: bytes, now: datetime
    ) -> Applied:
        """A holder's action on our case, or the origin's on its case that we hold."""
        _check_derived_id(action)
        report_id = str(action.report_id)
        head = ReportStore.head_txn(conn, report_id)
        if head is None and action.report_origin == self.node_id:
            return self._keep_orphan(conn, sender, action, payload, now)
        if head is None:
            raise RecordRefused(f"action on report {report_id}, which is not one of ours")
        origin = head.origin
        if origin == self.node_id:
            if sender not in peer_outbox.holders_txn(conn, report_id):
                if rejoin.was_restored_txn(conn):
                    # We may have sent it after the backup we were restored from, and lost
                    # the record of it: kept, not refused for good.
                    return self._keep_orphan(conn, sender, action, payload, now)
                raise RecordRefused(f"report {report_id} was never sent to {sender}")
        elif origin != sender:
            raise RecordRefused(
                f"action by {sender} on report {report_id}, which is neither ours nor {sender}'s"
            )
        if action.report_origin != origin:
            raise RecordRefused(f"action names origin {action.report_origin} for {report_id}")
        if not self.cases.actions.received_txn(conn, action, now=now):
            return Applied(ItemStatus.DUPLICATE)
        audit.append(
            conn,
            at=now,
            actor=f"peer:{sender}",
            event="action.received",
            subject=report_id,
            details={"action": str(action.id), "code": action.code.value},
        )
        return Applied(ItemStatus.ACCEPTED)

    def _keep_orphan(
        self, conn: Tx, sender: str, action: Action, payload: bytes, now: datetime
    ) -> Applied:
        """A peer's action on a case of ours that we do not hold, or do not know we sent it:
        one forwarded after the backup we were restored from. Refusing it would make the peer
        dead-letter it for good: it is kept apart and shown (`peers show`)."""
        report_id = str(action.report_id)
        kept = rejoin.keep_orphan_txn(
            conn,
            OrphanAction(
                str(action.id),
                report_id,
                sender,
                action.code.value,
                iso(action.at),
                payload,
                iso(now),
            ),
        )
        if not kept:
            return Applied(ItemStatus.DUPLICATE)
        audit.append(
            conn,
            at=now,
            actor=f"peer:{sender}",
            event="action.kept_unknown_case",
            subject=report_id,
            details={"action": str(action.id), "code": action.code.value},
        )
        return Applied(ItemStatus.ACCEPTED)

    def _apply_withdrawal(
        self, conn: Tx, sender: str, withdrawal: Withdrawal, now: datetime
    ) -> Applied:
        report_id = str(withdrawal.report_id)
        head = ReportStore.head_txn(conn, report_id)
        if head is None and rejoin.was_restored_txn(conn):
            # Sent to us after the backup we were restored from, and lost with it: what the
            # withdrawal asks (nothing done with the report here) already holds. Refused, it
            # would be dead-lettered at the origin for good (protocol.md §13.7).
            audit.append(
                conn,
                at=now,
                actor=f"peer:{sender}",
                event="report.withdrawn_unknown",
                subject=report_id,
                details={"withdrawal": str(withdrawal.id)},
            )
            return Applied(ItemStatus.ACCEPTED)
        if head is None or head.origin != sender:
            raise RecordRefused(f"withdrawal of report {report_id}, which {sender} did not send")
        if not allows(head.status, CaseEvent.WITHDRAWAL):  # withdrawn already
            return Applied(ItemStatus.DUPLICATE)
        self.cases.router.withdraw_txn(
            conn,
            report_id,
            by=sender,
            country=peer_store.country_txn(conn, sender) or self.country,
            at=withdrawal.at,
            reason=withdrawal.reason,
            actor=f"peer:{sender}",
            withdrawal_id=str(withdrawal.id),
        )
        return Applied(ItemStatus.ACCEPTED)

    def _apply_hashset(self, conn: Tx, sender: str, record: HashSet, now: datetime) -> Applied:
        """A change to one of the sender's hash lists (node.hashes.sharing)."""
        if self.hashes is None:
            raise RecordRefused("this node does not take hash lists")
        try:
            changed = self.hashes.apply_txn(conn, sender, record, iso(now))
        except HashSetRefused as exc:
            raise RecordRefused(str(exc)) from exc
        return Applied(ItemStatus.ACCEPTED if changed else ItemStatus.DUPLICATE)

    # answers ------------------------------------------------------------------------------
    def _receipt(self, sender: str, txn_id: str, digests: list[str], now: datetime) -> str | None:
        keys = self.registry.keys_for(sender)
        if keys is None:
            return None
        try:
            kid, public = keys.sealing_key(now)
        except KeyUnavailableError:
            log.warning("no encryption key for %s: answering without a receipt", sender)
            return None
        receipt = Receipt(
            id=new_id(now), txn_id=txn_id, by=self.node_id, at=now, accepted=tuple(digests)
        )
        frame = seal(
            receipt,
            sender=self.node_id,
            signing_key=self.keys().current_signing(now),
            recipient=sender,
            recipient_kid=kid,
            recipient_key=public,
            msg_id=new_id(now),
            now=now,
        )
        return encode_frame(frame)


class _NewReports:
    """Reports new to us from one batch, gathered to be written per table (`Inbox._flush`)."""

    def __init__(
        self, node_id: str, country: str, sender: str, now: datetime, *, via_push: bool
    ) -> None:
        self.node_id = node_id
        self.country = country
        self.sender = sender
        self.now = now
        self.stamp = iso(now)
        self.via_push = via_push
        self.clear()

    def clear(self) -> None:
        self.ids: list[str] = []
        self.seen: list[SeenMessage] = []
        self.reports: list[Case] = []
        self.versions: list[Version] = []
        self.addresses: list[tuple[str, dict[str, Any]]] = []
        self.entries: list[audit.Entry] = []
        self.actions: list[CaseAction] = []
        self.hashes: dict[str, list[HashValue]] = {}
        self.outgoing: list[Queued] = []
        self.envelopes: list[KeptEnvelope] = []

    def add(
        self,
        item: Opened,
        report: Report,
        report_id: str,
        url_key: str,
        digest: str,
    ) -> None:
        stamp = self.stamp
        evidence = report_evidence(report)
        self.ids.append(report_id)
        self.seen.append(SeenMessage(self.sender, item.header.msg_id, stamp))
        self.reports.append(case_of_report(report_id, report, url_key, evidence, stamp))
        self.versions.append(Version(report_id, report.seq, item.payload, stamp))
        self.addresses.extend((report_id, a) for a in evidence["addresses"])
        values = received_hashes(report)[0]
        if values:
            self.hashes[report_id] = values
        self.entries.append(_received_entry(report_id, report, self.sender, stamp))
        # The origin learns at once that the case arrived. Pushed: the signed receipt in our
        # answer says so (it records `received` under this same action id). Pulled: the
        # `received` action is queued back to the origin.
        action_id = derived_action_id(ActionCode.RECEIVED, report_id, self.node_id)
        self.actions.append(
            CaseAction(
                str(action_id),
                report_id,
                ActionCode.RECEIVED.value,
                stamp,
                self.node_id,
                None,
                self.country,
                None,
            )
        )
        if not self.via_push:
            action = Action(
                id=action_id,
                report_id=report.id,
                report_origin=self.sender,
                code=ActionCode.RECEIVED,
                at=self.now,
                by=self.node_id,
                country=self.country,
            )
            self.outgoing.append(
                Queued("action", str(action_id), report_id, record_bytes(action), stamp)
            )
        self.envelopes.append(_kept(item, digest, self.sender, report_id=report_id, stamp=stamp))


def _kept(item: Opened, digest: str, sender: str, *, report_id: str, stamp: str) -> KeptEnvelope:
    """What we keep of an accepted envelope: the exact bytes received, as evidence
    (non-repudiation), and what its sender signed, to give back to it (protocol.md §13.8)."""
    signed = SignedRecord(item.header_bytes, item.signature, item.payload)
    return KeptEnvelope(
        digest,
        sender,
        item.header.msg_id,
        item.record.type,
        str(item.record.id),
        report_id,
        stamp,
        item.frame,
        signed.to_bytes(),
    )


def _check_derived_id(action: Action) -> None:
    """`received` travels only under its derived id, so that every copy of the fact is one
    action; `forwarded` never travels: each end records its own (protocol.md §9.8, §9.9)."""
    if action.code is ActionCode.FORWARDED:
        raise RecordRefused("forwarded actions are recorded by each end, never sent")
    if action.code is ActionCode.RECEIVED:
        derived = derived_action_id(ActionCode.RECEIVED, action.report_id, action.by)
        if action.id != derived:
            raise RecordRefused(f"received action {action.id} is not under its id {derived}")


def _header_type(frame: bytes) -> str | None:
    try:
        return read_header(frame).header.type
    except OpenError:
        return None


def cancel_opening(opening: Opening) -> None:
    """Chunks not opened yet are not needed (the batch failed, or it was answered already)."""
    for future in opening:
        future.cancel()


def case_of_report(
    report_id: str,
    report: Report,
    url_key: str,
    evidence: dict[str, Any],
    stamp: str,
    *,
    source: str = "peer",
    status: CaseStatus = CaseStatus.RECEIVED,
) -> Case:
    """A case as this version of its report gives it: a peer's (new here, or updated), or one
    of ours given back by a peer after a restore (`source`, `status`)."""
    assessment = report.assessment
    return Case(
        id=report_id,
        origin=report.origin,
        local_ref=report.local_ref,
        seq=report.seq,
        url=report.url,
        url_key=url_key,
        source=source,
        status=status.value,
        verdict=assessment.verdict.value,
        category=assessment.category.value,
        legal_basis=assessment.legal_basis,
        tlp=report.tlp.value,
        description=None,
        contact=None,
        notes=None,
        duplicates=0,
        received_at=stamp,
        assessed_at=iso(report.assessed_at) if report.assessed_at else None,
        updated_at=stamp,
        trace_status="done",
        trace_json=orjson.dumps(evidence).decode(),
        traced_at=evidence.get("traced_at"),
    )


def _check_new_report(report: Report, taken_refs: set[str]) -> tuple[str, str | None]:
    """The normalised URL of a report new to us, and why it is refused if it is. The origin's
    reference names one case: a second case under it is a bug at the origin, refused alone
    (like a bad URL) instead of failing the batch."""
    try:
        url_key = normalise_url(report.url)
    except InvalidInput as exc:
        return "", f"report url refused: {exc}"
    if report.local_ref in taken_refs:
        return url_key, f"local_ref {report.local_ref!r} already names another report"
    return url_key, None


def _received_entry(report_id: str, report: Report, sender: str, stamp: str) -> audit.Entry:
    return audit.Entry(
        stamp,
        f"peer:{sender}",
        "report.received",
        report_id,
        {"seq": report.seq, "url": report.url},
    )


def received_hashes(report: Report) -> tuple[list[HashValue], list[str]]:
    """A peer's hashes read by the same rule as ours (parse_hash). The wire allows digests of
    any length; one that is not its type's is dropped, and the case says so."""
    values: list[HashValue] = []
    problems: list[str] = []
    for given in report.hashes:
        try:
            quality = f":{given.quality}" if given.quality is not None else ""
            values.append(parse_hash(f"{given.alg.value}:{given.value}{quality}"))
        except InvalidInput as exc:
            problems.append(
                f"the origin's hash {given.alg.value}:{given.value:.16}… dropped: {exc}"
            )
    return values, problems


def report_evidence(report: Report, source: str = "origin") -> dict[str, Any]:
    """The hosting evidence a report carries, as a case keeps it (`source`: who traced it)."""
    hosting = report.hosting
    contact = abuse_contact(hosting.abuse_contact)
    errors = []
    if hosting.abuse_contact is not None and contact is None:
        errors.append("the origin's abuse contact is not one valid e-mail address: dropped")
    errors.extend(received_hashes(report)[1])
    return {
        "addresses": [a.model_dump(mode="json") for a in hosting.addresses],
        "countries": list(hosting.countries),
        # A peer's word is input: an abuse contact that is not one valid address is dropped
        # here (and said so), before it can reach a mail header in a channel.
        "abuse_contact": contact,
        "cdn": hosting.cdn,
        "traced_at": iso(hosting.traced_at) if hosting.traced_at else None,
        "source": source,
        "errors": errors,
    }
