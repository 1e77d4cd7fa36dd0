"""Asking a peer for the records we gave it, after a restore from an older backup (protocol.md
§13.8): each is checked as one we signed, then the cases we lost are restored with their
timelines, and the peer is a holder of each again.

A restored node lost what it did since its backup: cases made since, and what happened to the
others. Its peers hold the records it sent them, as it signed them. What comes back is checked
with our own signing keys, so a peer cannot give us a case we never made; what cannot be
checked (a key rotation after the backup took the key) is counted and left out, not trusted.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial

from keys import NodeKeys
from keys.document import from_unix
from node.cases import CaseService
from node.cases.door import admit_txn, entry_status
from node.cases.hashes import attach_hashes_txn
from node.cases.lifecycle import CaseEvent, allows
from node.clock import Clock, iso
from node.errors import N_, InvalidInput, UpstreamError
from node.federation.inbox import Inbox, case_of_report, received_hashes, report_evidence
from node.federation.registry import PeerRegistry
from node.store import audit, peer_outbox, rejoin
from node.store.db import Database, Tx
from node.store.peers import PeerRow
from node.store.reports import CaseAction, ReportStore, Version
from node.urls import normalise_url
from peers.client import PeerClient, PeerError
from protocol import Action, ActionCode, Report, Withdrawal
from protocol.derived import derived_action_id
from protocol.federation import decode_frame
from protocol.recovery import (
    MAX_RECOVERY_PAGE,
    OwnRecord,
    RecoveredRecord,
    RecoveryRefused,
    SignedRecord,
    check_own_record,
)

log = logging.getLogger("hotline.federation")
# A case's source when a peer gave it back (the peer it came from is in its timeline: the
# `forwarded` action, and the audit log's `report.recovered`).
RECOVERED_SOURCE = "recovered"


@dataclass
class Recovered:
    """What one recovery from one peer did, as the command shows it."""

    peer: str
    records: int = 0  # records of ours the peer gave back
    restored: int = 0  # cases we no longer held, restored
    held: int = 0  # cases we still held: what was new of them applied
    versions: int = 0  # report versions kept
    actions: int = 0  # our own actions and withdrawals restored
    peer_actions: int = 0  # the peer's own actions on them, accepted
    unverifiable: int = 0  # ours, but signed with a key we no longer hold: left out
    refused: int = 0  # not what we signed (see the log): left out
    elsewhere: int = 0  # about others' cases we do not hold: left out
    pages: int = 0
    cases: list[str] = field(default_factory=list)  # the cases restored

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class Recovery:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        node_id: str,
        keys: Callable[[], NodeKeys],
        registry: PeerRegistry,
        client: PeerClient,
        inbox: Inbox,
        cases: CaseService,
    ) -> None:
        self.db = db
        self.clock = clock
        self.node_id = node_id
        self.keys = keys
        self.registry = registry
        self.client = client
        self.inbox = inbox
        self.cases = cases

    async def recover_from(
        self,
        peer_id: str,
        *,
        actor: str,
        progress: Callable[[Recovered], None] | None = None,
    ) -> Recovered:
        """Ask `peer_id` for every record of ours it holds, page by page, and restore."""
        peer = await self.registry.peer(peer_id)
        done = Recovered(peer_id)
        after = 0
        while True:
            try:
                page = await self.client.recover(peer.endpoint, after, MAX_RECOVERY_PAGE)
            except PeerError as exc:
                raise UpstreamError(
                    N_("cannot recover from {peer}: {reason}"), peer=peer_id, reason=exc
                ) from exc
            done.pages += 1
            done.records += len(page.records)
            own = self._checked(peer_id, page.records, done)
            await self.db.run(partial(self._restore_txn, peer=peer, own=own, done=done))
            frames = [_frame(text) for text in page.actions]
            if frames:
                accepted, _refused = await self.inbox.apply_given_back(peer_id, frames)
                done.peer_actions += accepted
            if progress is not None:
                progress(done)
            if not page.more:
                break
            if page.next_after <= after:
                raise UpstreamError(
                    N_("cannot recover from {peer}: its pages do not move forward"), peer=peer_id
                )
            after = page.next_after

        def recorded_txn(conn: Tx) -> None:
            summary = done.as_dict()
            summary.pop("cases")
            audit.append(
                conn,
                at=self.clock.now(),
                actor=actor,
                event="report.recovery",
                subject=peer_id,
                details=summary,
            )

        await self.db.run(recorded_txn)
        return done

    def _checked(
        self, peer_id: str, records: list[RecoveredRecord], done: Recovered
    ) -> list[OwnRecord]:
        keys = self.keys()
        own: list[OwnRecord] = []
        for item in records:
            try:
                signed = SignedRecord.from_wire(item)
                own.append(
                    check_own_record(signed, node_id=self.node_id, holder=peer_id, keys=keys)
                )
            except ValueError:
                done.refused += 1
                log.warning("record %d from %s refused: not base64url", item.n, peer_id)
            except RecoveryRefused as exc:
                if exc.forged:
                    done.refused += 1
                    log.warning("record %d from %s refused: %s", item.n, peer_id, exc)
                else:
                    done.unverifiable += 1
        return own

    # restoring ----------------------------------------------------------------------------
    def _restore_txn(
        self, conn: Tx, *, peer: PeerRow, own: list[OwnRecord], done: Recovered
    ) -> None:
        """Restore what one page gave back, in the order the peer received it: a case's first
        version before what happened to it."""
        now = self.clock.now()
        versions: dict[str, list[OwnRecord]] = defaultdict(list)
        for item in own:
            if isinstance(item.record, Report):
                versions[str(item.record.id)].append(item)
        for report_id, given in versions.items():
            head = ReportStore.head_txn(conn, report_id)
            if head is None:
                self._restore_case_txn(conn, peer, report_id, given, now)
                done.restored += 1
                done.cases.append(report_id)
                done.versions += len(given)
            else:
                ReportStore.raise_seq_txn(conn, report_id, max(_seq(v) for v in given))
                done.held += 1
            if peer.node_id not in peer_outbox.holders_txn(conn, report_id):
                _hold(conn, peer.node_id, max(given, key=_seq), now)
        for item in own:
            record = item.record
            if isinstance(record, Report):
                continue
            report_id = str(record.report_id)
            head = ReportStore.head_txn(conn, report_id)
            if head is None or head.origin != self.node_id:
                done.elsewhere += 1  # our action on a peer's case we no longer hold
            elif isinstance(record, Action):
                done.actions += self.cases.actions.recovered_txn(conn, record, now=now)
            elif allows(head.status, CaseEvent.WITHDRAWAL):
                self._withdrawn_txn(conn, record, peer.node_id)
                done.actions += 1
        for report_id in versions:  # restored, or held without the record of sending it
            self._attach_kept_actions_txn(conn, report_id, now)

    def _restore_case_txn(
        self, conn: Tx, peer: PeerRow, report_id: str, given: list[OwnRecord], now: datetime
    ) -> None:
        """A case of ours we lost, as its newest version held by the peer gives it. It was
        routed (the peer holds it because we sent it there); what happened to it since follows
        as its own records."""
        newest = max(given, key=_seq)
        report = newest.record
        assert isinstance(report, Report)
        stamp = iso(now)
        try:
            url_key = normalise_url(report.url)
        except InvalidInput:
            url_key = report.url  # it was ours, and passed our own rule then
        status = entry_status(report_id, [CaseEvent.ASSESSMENT, CaseEvent.ROUTED], ours=True)
        case = case_of_report(
            report_id,
            report,
            url_key,
            report_evidence(report, source="recovered"),
            iso(report.received_at),
            source=RECOVERED_SOURCE,
            status=status,
        )
        admit_txn(conn, [case])
        ReportStore.insert_versions(
            conn,
            [
                Version(report_id, _seq(item), item.signed.payload, stamp)
                for item in sorted(given, key=_seq)
            ],
        )
        ReportStore.add_addresses(
            conn,
            [(report_id, address.model_dump(mode="json")) for address in report.hosting.addresses],
        )
        attach_hashes_txn(
            conn,
            report_id,
            received_hashes(report)[0],
            matcher=self.cases.hash_lists,
            source=f"recovered:{peer.node_id}",
            at=stamp,
            limit=None,
        )
        # We forwarded it when we sealed its first version to the peer (derived id: §9.8).
        first = min(given, key=_seq)
        ReportStore.insert_actions(
            conn,
            [
                CaseAction(
                    str(derived_action_id(ActionCode.FORWARDED, report_id, peer.node_id)),
                    report_id,
                    ActionCode.FORWARDED.value,
                    iso(from_unix(first.header.created_at)),
                    self.node_id,
                    None,
                    peer.country,
                    f"delivered to {peer.node_id}",
                )
            ],
        )
        audit.append(
            conn,
            at=now,
            actor=f"peer:{peer.node_id}",
            event="report.recovered",
            subject=report_id,
            details={"seq": report.seq, "versions": len(given), "url": report.url},
        )

    def _withdrawn_txn(self, conn: Tx, withdrawal: Withdrawal, peer_id: str) -> None:
        """Our withdrawal, given back: the case is withdrawn again, nothing is sent (the holders
        had it then)."""
        self.cases.router.withdraw_txn(
            conn,
            str(withdrawal.report_id),
            by=self.node_id,
            country=self.cases.country,
            at=withdrawal.at,
            reason=withdrawal.reason,
            actor=f"peer:{peer_id}",
            withdrawal_id=str(withdrawal.id),
        )

    def _attach_kept_actions_txn(self, conn: Tx, report_id: str, now: datetime) -> None:
        """Peers' actions on the case that arrived while we did not hold it (kept apart since
        the restore) join its timeline, from the peers that hold it again."""
        holders = set(peer_outbox.holders_txn(conn, report_id))
        for action_id, sender, payload in rejoin.orphans_for_txn(conn, report_id):
            if sender not in holders:
                continue  # kept until that peer is a holder again: its own recovery says so
            self.cases.actions.received_txn(conn, Action.model_validate_json(payload), now=now)
            rejoin.drop_orphan_txn(conn, action_id)


def _seq(item: OwnRecord) -> int:
    record = item.record
    return record.seq if isinstance(record, Report) else 0


def _hold(conn: Tx, peer_id: str, newest: OwnRecord, now: datetime) -> None:
    """The peer holds this version of our case: as if we had just sent it (it is not sent
    again), so that what we do to the case later reaches it."""
    record = newest.record
    assert isinstance(record, Report)
    report_id = str(record.id)
    peer_outbox.hold_txn(
        conn,
        peer_id=peer_id,
        report_id=report_id,
        payload=newest.signed.payload,
        sent_at=iso(from_unix(newest.header.created_at)),
        at=iso(now),
    )


def _frame(text: str) -> bytes:
    try:
        return decode_frame(text)
    except ValueError:
        return text.encode("utf-8", "replace")  # refused by the inbox, and dead-lettered
