"""Routing a case: decide where it goes (`node.routing.decide`), then write what that decision
sends — a new report version and outbox rows for peers, channel rows for our own channels — and
withdraw it from peers that no longer get it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiosqlite
import orjson

from node.cases.lifecycle import CaseEvent, CaseStatus, next_status
from node.cases.wire import CaseRow, build_report_record
from node.clock import Clock, iso
from node.routing import Decision, HostingFacts, PeerView, RoutingDecision, decide
from node.store import audit, channel_outbox, peer_outbox
from node.store import peers as peer_store
from node.store.channel_outbox import ChannelItem
from node.store.db import Tx
from node.store.peer_outbox import Queued
from node.store.reports import ReportStore, Routing, Version
from protocol.ids import new_id
from protocol.records import Tlp, Withdrawal, record_bytes

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

        Returns the decision and the peers that got new outbox rows (to push after commit).
        """
        row = ReportStore.get_txn(conn, report_id)
        if row is None:
            return None, []
        plan = self.plan_routes(conn, [row], actor, force)
        if report_id not in plan.states:
            return None, []
        holders = peer_outbox.holders_txn(conn, report_id)
        status, seq = plan.states[report_id]
        ReportStore.update(conn, report_id, {"status": status, "seq": seq})
        decision = plan.decisions[report_id]
        told = self.write_routes(conn, plan)
        # Routed again (re-assessed, overridden): a peer that holds the case and is no longer
        # a target gets a withdrawal, so it stops acting on a case we no longer send it.
        targets = {t.name for t in decision.targets if t.kind == "peer"}
        dropped = [peer for peer in holders if peer not in targets]
        if dropped:
            reason = (
                "re-assessed: not illegal"
                if decision.decision is Decision.CLOSED
                else "routed again: no longer for this hotline"
            )
            self.queue_withdrawal_txn(conn, report_id, dropped, reason, self.clock.now(), actor)
        return decision, sorted({*told, *dropped})

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

    def insert_routed(
        self, conn: Tx, rows: list[dict[str, Any]], actor: str, force: bool = False
    ) -> list[str]:
        """Insert new cases with their routing decided first, so that each is written once,
        with its final status and seq; returns the peers to push to after the commit."""
        plan = self.plan_routes(conn, rows, actor, force)
        for row in rows:
            if row["id"] in plan.states:
                row["status"], row["seq"] = plan.states[row["id"]]
        ReportStore.insert_many(conn, rows)
        return self.write_routes(conn, plan)

    def plan_routes(
        self, conn: Tx, rows: Sequence[CaseRow], actor: str, force: bool = False
    ) -> RoutePlan:
        """Decide for cases given as rows (stored, or about to be inserted); nothing written.
        Cases that are not ready (no verdict, or a trace still pending) are left out."""
        stamp = iso(self.clock.now())
        # Suspended peers too: routing records that a case would have gone to one.
        peers = [peer_view(p) for p in peer_store.routable_txn(conn)]
        plan = RoutePlan()
        for row in rows:
            report_id = row["id"]
            if row["verdict"] is None:
                continue
            # A trace or re-assessment routes an assessed case; anything else needs `force`
            # (an override, a case received from a peer).
            if row["status"] != CaseStatus.ASSESSED and not force:
                continue
            evidence = orjson.loads(row["trace_json"]) if row["trace_json"] else None
            if evidence is None and row["trace_status"] == "pending" and not force:
                continue
            decision = decide(
                verdict=row["verdict"],
                category=row["category"],
                tlp=Tlp(row["tlp"]),
                hosting=hosting_facts(evidence, row["trace_status"]),
                our_country=self.country,
                peers=peers,
                is_origin=row["origin"] == self.node_id,
            )
            plan.decisions[report_id] = decision
            seq = int(row["seq"])
            payload = b""
            if any(t.kind == "peer" for t in decision.targets):
                # Only the origin has peer targets (decide() never relays): a new version goes out.
                seq += 1
                payload = record_bytes(build_report_record(row, evidence, seq=seq))
                plan.versions.append(Version(report_id, seq, payload, stamp))
            for target in decision.targets:
                if target.kind == "peer":
                    plan.outbox.setdefault(target.name, []).append(
                        Queued("report", report_id, report_id, payload, stamp)
                    )
                else:
                    plan.channels.append(
                        ChannelItem(
                            target.name,
                            report_id,
                            "report",
                            {
                                "report_id": report_id,
                                "url": row["url"],
                                "category": row["category"],
                                "verdict": row["verdict"],
                                "legal_basis": row["legal_basis"],
                                "country": target.country,
                                "abuse_contact": (evidence or {}).get("abuse_contact"),
                                "cdn_name": (evidence or {}).get("cdn_name"),
                                "reason": target.reason,
                                "tlp": row["tlp"],
                            },
                            stamp,
                        )
                    )
            status = next_status(report_id, row["status"], ROUTING_EVENTS[decision.decision])
            plan.states[report_id] = (status.value, seq)
            targets = [t.to_dict() for t in decision.targets]
            plan.routings.append(
                Routing(report_id, decision.decision.value, targets, decision.reasons, stamp, actor)
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


def peer_view(row: aiosqlite.Row) -> PeerView:
    return PeerView(
        node_id=row["node_id"],
        country=row["country"],
        categories=frozenset(orjson.loads(row["categories"])),
        max_tlp=Tlp(row["max_tlp"]),
        active=row["status"] == "active",
    )
