"""Routing a case: decide where it goes (`node.routing.decide`), then write what that decision
sends — a new report version and outbox rows for peers, channel rows for our own channels — and
withdraw it from peers that no longer get it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from node.cases.actionlog import ActionLog
from node.cases.door import admit_txn, transition_txn
from node.cases.lifecycle import CaseEvent, CaseStatus, allows, next_status
from node.cases.wire import build_report_record
from node.clock import Clock, iso
from node.hashes.values import HashValue
from node.routing import (
    REROUTED_SUSPENDED,
    Decision,
    HostingFacts,
    PeerView,
    RoutingDecision,
    decide,
)
from node.store import audit, channel_outbox, peer_outbox, report_hashes
from node.store import peers as peer_store
from node.store.channel_outbox import ChannelItem
from node.store.db import Tx
from node.store.peer_outbox import Queued
from node.store.peers import PeerRow
from node.store.reports import Case, ReportStore, Routing, Version
from protocol.features import report_for
from protocol.ids import new_id
from protocol.records import Report, Tlp, Withdrawal, record_bytes

Routed = tuple[RoutingDecision | None, list[str]]  # the decision, and the peers to push to
ROUTING_EVENTS = {
    Decision.CLOSED: CaseEvent.ROUTED_CLOSED,
    Decision.MANUAL: CaseEvent.ROUTED_MANUAL,
}
ROUTING_EVENTS.update({d: CaseEvent.ROUTED for d in Decision if d not in ROUTING_EVENTS})


@dataclass
class RoutePlan:
    """Routing decided for a set of cases, and every row it will write (`write_routes`)."""

    decisions: dict[str, RoutingDecision] = field(default_factory=dict)
    states: dict[str, tuple[str, int]] = field(default_factory=dict)  # id: (status, seq)
    versions: list[Version] = field(default_factory=list)
    outbox: dict[str, list[Queued]] = field(default_factory=dict)
    channels: list[ChannelItem] = field(default_factory=list)
    routings: list[Routing] = field(default_factory=list)
    entries: list[audit.Entry] = field(default_factory=list)


class Router:
    """Routes cases inside the caller's transaction; the caller pushes to the peers returned."""

    def __init__(self, clock: Clock, *, node_id: str, country: str) -> None:
        self.clock = clock
        self.node_id = node_id
        self.country = country

    def route_txn(self, conn: Tx, report_id: str, actor: str, force: bool = False) -> Routed:
        """Route once a case is both assessed and traced; outbox rows join this transaction.

        What an earlier decision queued is re-planned with it (`_replan_txn`). Returns the
        decision and the peers that got new outbox rows (to push after commit).
        """
        row = ReportStore.get_txn(conn, report_id)
        if row is None:
            return None, []
        plan = self.plan_routes(conn, [row], actor, force)
        if report_id not in plan.states:
            return None, []
        decision = plan.decisions[report_id]
        seq = plan.states[report_id][1]
        transition_txn(
            conn, report_id, ROUTING_EVENTS[decision.decision], at=iso(self.clock.now()), seq=seq
        )
        dropped = self._replan_txn(conn, report_id, plan, decision)
        told = self.write_routes(conn, plan)
        if dropped:
            reason = (
                "re-assessed: not illegal"
                if decision.decision is Decision.CLOSED
                else "routed again: no longer for this hotline"
            )
            self.queue_withdrawal_txn(conn, report_id, dropped, reason, self.clock.now(), actor)
        return decision, sorted({*told, *dropped})

    def _replan_txn(
        self, conn: Tx, report_id: str, plan: RoutePlan, decision: RoutingDecision
    ) -> list[str]:
        """Reconcile what earlier decisions queued for the case with this one, before `plan`
        is written. Returns the peers that hold an earlier version and are no longer targets
        (they are sent a withdrawal).

        - Channel messages not sent yet (pending, held, waiting for a retry, or dead and so
          requeueable) that the decision no longer wants are cancelled, with the reason; those
          it still wants carry its new content. A message it wants that went out already with
          the same verdict and category is not sent again.
        - Versions not sent yet to peers that are no longer targets are cancelled.
        """
        why = f"cancelled: the case is now {decision.decision.value}: {'; '.join(decision.reasons)}"
        wanted = {_channel_key(item.role, item.payload): item for item in plan.channels}
        to_send = dict(wanted)
        for message in channel_outbox.planned_for_report_txn(conn, report_id):
            key = _channel_key(message.role, message.payload)
            item = wanted.get(key)
            if item is None:
                if message.state != "delivered":
                    channel_outbox.cancel_txn(conn, [message.id], why)
            elif message.kind != "report":
                continue  # a reminder of a notice the decision still wants
            elif message.state != "delivered":
                channel_outbox.set_payload_txn(conn, message.id, item.payload)
                to_send.pop(key, None)
            elif _same_verdict(message.payload, item.payload):
                to_send.pop(key, None)  # went out already, saying the same
        plan.channels = list(to_send.values())
        targets = {t.name for t in decision.targets if t.kind == "peer"}
        peer_outbox.cancel_reports_txn(conn, report_id, keep=targets, reason=why)
        return [peer for peer in peer_outbox.holders_txn(conn, report_id) if peer not in targets]

    def sent_despite_cancel_txn(
        self, conn: Tx, peer_id: str, report_ids: list[str], now: datetime
    ) -> list[str]:
        """Versions cancelled while a push already carried them reached the peer: unless the
        case goes to that peer again (a newer version waits for it), the peer is sent a
        withdrawal, as any peer holding a case it no longer gets is. Returns those cases."""
        withdrawn = []
        for report_id in dict.fromkeys(report_ids):
            if peer_outbox.has_pending_report_txn(conn, peer_id, report_id):
                continue
            reason = "routed again: no longer for this hotline"
            self.queue_withdrawal_txn(conn, report_id, [peer_id], reason, now, "delivery")
            withdrawn.append(report_id)
        return withdrawn

    def withdraw_txn(
        self,
        conn: Tx,
        report_id: str,
        *,
        by: str,
        country: str,
        at: datetime,
        reason: str | None,
        actor: str,
        withdrawal_id: str | None = None,
    ) -> list[str]:
        """Withdraw a case (ours, or a peer's when its origin withdraws it, `at` its time):
        withdrawn for good, nothing still queued for it goes out, and the timeline says so.
        For our own case (`withdrawal_id` None) every peer holding it is sent a tombstone;
        returns them."""
        now = self.clock.now()
        transition_txn(conn, report_id, CaseEvent.WITHDRAWAL, at=iso(now))
        why = f"cancelled: the case was withdrawn ({reason or 'no reason given'})"
        channel_outbox.cancel_txn(
            conn, [m.id for m in channel_outbox.planned_for_report_txn(conn, report_id)], why
        )
        peers: list[str] = []
        if withdrawal_id is None:
            peer_outbox.cancel_reports_txn(conn, report_id, keep=(), reason=why)
            peers = peer_outbox.holders_txn(conn, report_id)
            withdrawal = self.queue_withdrawal_txn(conn, report_id, peers, reason or "", at, actor)
            withdrawal_id = str(withdrawal.id)
        ActionLog.withdrawn_txn(
            conn,
            report_id=report_id,
            withdrawal_id=withdrawal_id,
            by=by,
            country=country,
            at=at,
            reason=reason,
        )
        audit.append(
            conn,
            at=now,
            actor=actor,
            event="report.withdrawn",
            subject=report_id,
            details={"reason": reason, **({"peers": peers} if by == self.node_id else {})},
        )
        return peers

    def queue_withdrawal_txn(
        self,
        conn: Tx,
        report_id: str,
        peers: list[str],
        reason: str,
        now: datetime,
        actor: str,
    ) -> Withdrawal:
        withdrawal = Withdrawal(
            id=new_id(now),
            report_id=uuid.UUID(report_id),
            origin=self.node_id,
            at=now,
            reason=reason,
        )
        peer_outbox.enqueue_for_peers_txn(
            conn,
            peers,
            record_type="withdrawal",
            record_id=str(withdrawal.id),
            report_id=report_id,
            payload=record_bytes(withdrawal),
            at=iso(now),
        )
        audit.append(
            conn,
            at=now,
            actor=actor,
            event="report.withdrawal_sent",
            subject=report_id,
            details={"reason": reason, "peers": peers},
        )
        return withdrawal

    def hashes_added_txn(self, conn: Tx, report_id: str, actor: str) -> list[str]:
        """New hashes on a case of ours that peers hold already: it is routed again (as an
        override does), so that a new version carries them to the peers it still goes to.
        Returns the peers to push to; nothing for a case not sent to a peer, a peer's case
        (only its origin sends it), or a finished one."""
        head = ReportStore.head_txn(conn, report_id)
        if head is None or head.origin != self.node_id or not allows(head.status, CaseEvent.ROUTED):
            return []
        if not peer_outbox.current_holders_txn(conn, report_id):
            return []  # no peer holds it now (never sent, or withdrawn from those that did)
        return self.route_txn(conn, report_id, actor, force=True)[1]

    def insert_routed(
        self,
        conn: Tx,
        cases: list[Case],
        actor: str,
        force: bool = False,
        *,
        hashes: Mapping[str, Sequence[HashValue]] | None = None,
    ) -> list[str]:
        """Insert new cases with their routing decided first, so that each is written once,
        with its final status and seq; returns the peers to push to after the commit.
        `hashes` are the new cases' hashes (attached once they are stored): the versions
        written for peers carry them."""
        plan = self.plan_routes(conn, cases, actor, force, hashes=hashes)
        admit_txn(conn, cases, routed=plan.states)
        return self.write_routes(conn, plan)

    def plan_routes(
        self,
        conn: Tx,
        cases: Sequence[Case],
        actor: str,
        force: bool = False,
        *,
        hashes: Mapping[str, Sequence[HashValue]] | None = None,
    ) -> RoutePlan:
        """Decide for cases given as rows (stored, or about to be inserted); nothing written.
        Cases that are not ready (no verdict, or a trace still pending) are left out. A version
        for peers carries the case's hashes: `hashes` for cases not stored yet, else those
        stored."""
        stamp = iso(self.clock.now())
        # Suspended peers too: routing records that a case would have gone to one.
        peers = [peer_view(p) for p in peer_store.routable_txn(conn)]
        reads = {p.node_id: p.reads for p in peers}
        plan = RoutePlan()
        for row in cases:
            report_id = row.id
            if row.verdict is None or row.category is None:
                continue  # not assessed (a verdict always comes with its category)
            # A trace or re-assessment routes an assessed case; anything else needs `force`
            # (an override, a case received from a peer).
            if row.status != CaseStatus.ASSESSED and not force:
                continue
            evidence = orjson.loads(row.trace_json) if row.trace_json else None
            if evidence is None and row.trace_status == "pending" and not force:
                continue
            decision = decide(
                verdict=row.verdict,
                category=row.category,
                tlp=Tlp(row.tlp),
                hosting=hosting_facts(evidence, row.trace_status),
                our_country=self.country,
                peers=peers,
                is_origin=row.origin == self.node_id,
            )
            plan.decisions[report_id] = decision
            seq = int(row.seq)
            payload = b""
            record = None
            if any(t.kind == "peer" for t in decision.targets):
                # Only the origin has peer targets (decide() never relays): a new version goes out.
                seq += 1
                carried = (
                    hashes[report_id]
                    if hashes is not None and report_id in hashes
                    else [h.value for h in report_hashes.for_report_txn(conn, report_id)]
                )
                record = build_report_record(row, evidence, seq=seq, hashes=carried)
                payload = record_bytes(record)
                plan.versions.append(Version(report_id, seq, payload, stamp))
            for target in decision.targets:
                if target.kind == "peer":
                    assert record is not None  # made above for any peer target
                    plan.outbox.setdefault(target.name, []).append(
                        Queued(
                            "report",
                            report_id,
                            report_id,
                            _payload_for(record, payload, reads.get(target.name, frozenset())),
                            stamp,
                        )
                    )
                else:
                    plan.channels.append(
                        ChannelItem(
                            target.name,
                            report_id,
                            "report",
                            {
                                "report_id": report_id,
                                "url": row.url,
                                "category": row.category,
                                "verdict": row.verdict,
                                "legal_basis": row.legal_basis,
                                "country": target.country,
                                "abuse_contact": (evidence or {}).get("abuse_contact"),
                                "cdn_name": (evidence or {}).get("cdn_name"),
                                "reason": target.reason,
                                "tlp": row.tlp,
                            },
                            stamp,
                        )
                    )
            status = next_status(report_id, row.status, ROUTING_EVENTS[decision.decision])
            plan.states[report_id] = (status.value, seq)
            targets = [t.to_dict() for t in decision.targets]
            suspended = [
                t.country
                for t in decision.targets
                if t.rerouted == REROUTED_SUSPENDED and t.country
            ]
            plan.routings.append(
                Routing(
                    report_id,
                    decision.decision.value,
                    targets,
                    decision.reasons,
                    stamp,
                    actor,
                    ",".join(suspended) or None,
                )
            )
            plan.entries.append(
                audit.Entry(
                    stamp,
                    actor,
                    "report.routed",
                    report_id,
                    {
                        "decision": decision.decision.value,
                        "targets": [f"{t.kind}:{t.name}" for t in decision.targets],
                        # A case that went to the fallback though a peer exists says why.
                        **(
                            {"rerouted": [t.rerouted for t in decision.targets if t.rerouted]}
                            if any(t.rerouted for t in decision.targets)
                            else {}
                        ),
                    },
                )
            )
        return plan

    def write_routes(self, conn: Tx, plan: RoutePlan) -> list[str]:
        """Write what `plan_routes` decided, once the cases are stored with its states;
        returns the peers that got new outbox rows (to push after commit)."""
        ReportStore.insert_versions(conn, plan.versions)
        for peer_id, items in plan.outbox.items():
            peer_outbox.enqueue_txn(conn, peer_id, items)
        channel_outbox.enqueue_txn(conn, plan.channels)
        ReportStore.insert_routings(conn, plan.routings)
        audit.append_many(conn, plan.entries)
        return sorted(plan.outbox)


def _payload_for(record: Report, payload: bytes, reads: frozenset[str]) -> bytes:
    """The version's bytes as this peer can read them: the same bytes, unless the report
    carries what the peer does not announce it reads (sha1 hashes, a PDQ quality), which it
    goes without (protocol.md §11). Made here, so the outbox keeps the bytes that are signed."""
    readable = report_for(record, reads)
    return payload if readable is record else record_bytes(readable)


def _channel_key(role: str, payload: dict[str, Any]) -> tuple[str, str | None]:
    """A case's message is one per role and hosting country."""
    return role, payload.get("country")


def _same_verdict(sent: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(sent.get(k) == wanted.get(k) for k in ("verdict", "category", "legal_basis"))


def hosting_facts(evidence: dict[str, Any] | None, trace_status: str) -> HostingFacts:
    override = (evidence or {}).get("override") or {}
    if evidence is None or (trace_status == "failed" and not override):
        return HostingFacts(False, [], 0, False, override_country=override.get("country"))
    addresses = evidence.get("addresses", [])
    unknown = sum(1 for a in addresses if not a.get("cdn") and not a.get("country"))
    # Countries with no address: the origin's analyst gave the country (import, override),
    # which is hosting evidence like a trace's.
    traced = bool(addresses) or bool(override) or bool(evidence.get("countries"))
    return HostingFacts(
        traced=traced,
        countries=list(evidence.get("countries", [])),
        unknown_addresses=unknown,
        cdn=bool(evidence.get("cdn")),
        cdn_name=evidence.get("cdn_name"),
        override_country=override.get("country"),
    )


def peer_view(peer: PeerRow) -> PeerView:
    return PeerView(
        node_id=peer.node_id,
        country=peer.country,
        categories=frozenset(orjson.loads(peer.categories)),
        max_tlp=Tlp(peer.max_tlp),
        active=peer.status == "active",
        reads=frozenset(orjson.loads(peer.accepts)),
    )
