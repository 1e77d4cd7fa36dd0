"""The case workflow: one service over intake, qualification, routing and views, every change
audited in the same transaction as the change itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import orjson

from node.cases.actionlog import ActionLog, Recorded
from node.cases.gate import Confirmation, ReviewGate
from node.cases.intake import (
    MAX_NOTE,
    CaseIntake,
    choice,
    text_field,
)
from node.cases.lifecycle import ActionSource, CaseEvent, action_event, next_status
from node.cases.router import Routed, Router
from node.cases.views import CaseViews, NoticeRules
from node.clock import Clock, iso, parse_iso
from node.countries import country_problem
from node.errors import N_, Conflict, InvalidInput
from node.routing import RoutingDecision
from node.store import audit, channel_outbox, peer_outbox
from node.store.db import Database, Tx
from node.store.reports import ReportStore
from protocol.records import ActionCode, Category, Verdict

# What an analyst may record (the others are recorded by the node itself), in the order shown.
ANALYST_ACTIONS = (
    ActionCode.CONTENT_REMOVED,
    ActionCode.CONTENT_UNAVAILABLE,
    ActionCode.MOVED,
    ActionCode.NOT_ILLEGAL,
    ActionCode.LEA_REFERRED,
    ActionCode.NOTICE_SENT,
)
TraceFunction = Callable[[str], Awaitable[dict[str, Any]]]


class CaseService:
    """The hotline's case workflow: what analysts, the public, imports and traces do to cases."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        node_id: str,
        country: str,
        actions: ActionLog,
        notices: NoticeRules,
        wake: Callable[[list[str]], None],
        four_eyes: ReviewGate,
    ) -> None:
        self.db = db
        self.store = ReportStore(db)
        self.clock = clock
        self.node_id = node_id
        self.country = country
        self.actions = actions
        self.notices = notices
        # Called after a commit with the peers that got new outbox rows: they are pushed at once.
        self.wake = wake
        # Four-eyes review guards every write of a verdict (node/review.py holds the rule).
        self.four_eyes = four_eyes
        self.router = Router(clock, node_id=node_id, country=country)
        self.intake = CaseIntake(
            db, clock, self.router, node_id=node_id, wake=wake, four_eyes=four_eyes
        )
        self.views = CaseViews(self.store, clock, notices)
        # Intake and reading are theirs; the service offers them under its own name.
        self.submit = self.intake.submit
        self.import_batch = self.intake.import_batch
        self.list_cases = self.views.list_cases
        self.list_page = self.views.list_page
        self.resolve = self.views.resolve
        self.resolve_one = self.views.resolve_one
        self.show = self.views.show

    # qualification -----------------------------------------------------------------------
    async def assess(
        self,
        report_id: str,
        *,
        verdict: str,
        category: str,
        legal_basis: str | None,
        actor: str,
        confirmation: Confirmation | None = None,
    ) -> RoutingDecision | None:
        """Write a verdict and route. One that needs a reviewer is refused unless it comes
        with the confirmation of its pending review (ReviewService gives both)."""
        row = await self.views.require(report_id)
        if row["origin"] != self.node_id:
            raise Conflict(
                N_("only the origin hotline assesses its report; record actions instead")
            )
        assessed = next_status(report_id, row["status"], CaseEvent.ASSESSMENT)
        the_verdict = choice(Verdict, verdict, "verdict")
        the_category = choice(Category, category, "category")
        legal_basis = text_field(legal_basis, "legal_basis", 256)
        now = self.clock.now()

        def transaction(conn: Tx) -> Routed:
            # Four-eyes: inside the write, so neither a path nor a race can route it alone.
            self.four_eyes.check_txn(
                conn,
                report_id,
                verdict=the_verdict.value,
                category=the_category.value,
                legal_basis=legal_basis,
                confirmation=confirmation,
            )
            self.store.update(
                conn,
                report_id,
                {
                    "verdict": the_verdict.value,
                    "category": the_category.value,
                    "legal_basis": legal_basis,
                    "assessed_at": iso(now),
                    "updated_at": iso(now),
                    "status": assessed.value,
                },
            )
            audit.append(
                conn,
                at=now,
                actor=actor,
                event="report.assessed",
                subject=report_id,
                details={"verdict": the_verdict.value, "category": the_category.value},
            )
            return self.router.route_txn(conn, report_id, actor)

        decision, peers = await self.db.run(transaction)
        self.wake(peers)
        return decision

    async def record_action(
        self, report_id: str, *, code: str, reason: str | None, actor: str
    ) -> str:
        row = await self.views.require(report_id)
        the_code = choice(ActionCode, code, "code")
        if the_code not in ANALYST_ACTIONS:
            allowed = ", ".join(sorted(c.value for c in ANALYST_ACTIONS))
            raise InvalidInput(
                N_("code must be one of {allowed} (got {value!r})"), allowed=allowed, value=code
            )
        # Refused here, before anything is written, if the table refuses it (a withdrawn case).
        next_status(
            report_id,
            row["status"],
            action_event(
                the_code,
                ActionSource.LOCAL,
                by=self.node_id,
                origin=row["origin"],
                here=self.node_id,
            ),
        )
        reason = text_field(reason, "reason", MAX_NOTE)
        now = self.clock.now()

        def transaction(conn: Tx) -> Recorded:
            if row["origin"] == self.node_id:
                # Four-eyes: our own `not_illegal` would close a case on one person's word.
                self.four_eyes.check_action_txn(conn, report_id, code=the_code.value)
            recorded = self.actions.record_txn(
                conn,
                report_id=report_id,
                origin=row["origin"],
                status=row["status"],
                code=the_code,
                at=now,
                analyst=actor,
                reason=reason,
            )
            audit.append(
                conn,
                at=now,
                actor=actor,
                event="action.recorded",
                subject=report_id,
                details={
                    "action": recorded.action_id,
                    "code": the_code.value,
                    "told": recorded.told,
                },
            )
            return recorded

        recorded = await self.db.run(transaction)
        self.wake(recorded.told)
        return recorded.action_id

    async def clear_for_host(self, report_id: str, *, reason: str | None, actor: str) -> int:
        """Police cleared the case: a host notice held for them may go now. Returns how many
        host notices the clearance released (0: it is recorded, and nothing was held)."""
        row = await self.views.require(report_id)
        hours = self.notices.hold_hours(row["category"])
        if row["lea_cleared_at"] is not None:
            raise Conflict(
                N_("report {report} was already cleared at {at}"),
                report=report_id,
                at=row["lea_cleared_at"],
            )
        reason_text = text_field(reason, "reason", MAX_NOTE)
        now = self.clock.now()

        def transaction(conn: Tx) -> None:
            self.store.update(conn, report_id, {"lea_cleared_at": iso(now), "updated_at": iso(now)})
            audit.append(
                conn,
                at=now,
                actor=actor,
                event="report.cleared",
                subject=report_id,
                details={"reason": reason_text},
            )

        await self.db.run(transaction)
        if hours is None:
            return 0
        return sum(
            parse_iso(queued) + timedelta(hours=hours) > now
            for queued in await channel_outbox.waiting_host_notices(self.db, report_id)
        )

    async def withdraw(self, report_id: str, *, reason: str, actor: str) -> list[str]:
        """Retract our report: closed here, and a tombstone to every peer that received it."""
        row = await self.views.require(report_id)
        if row["origin"] != self.node_id:
            raise Conflict(N_("only the origin hotline can withdraw a report"))
        withdrawn = next_status(report_id, row["status"], CaseEvent.WITHDRAWAL)
        reason_text = text_field(reason, "reason", MAX_NOTE)
        if not reason_text:
            raise InvalidInput(N_("a withdrawal needs a reason"))
        now = self.clock.now()

        def transaction(conn: Tx) -> list[str]:
            peers = peer_outbox.holders_txn(conn, report_id)
            withdrawal = self.router.queue_withdrawal_txn(
                conn, report_id, peers, reason_text, now, actor
            )
            self.store.mark_withdrawn(conn, report_id, iso(now), withdrawn.value)
            ActionLog.withdrawn_txn(
                conn,
                report_id=report_id,
                withdrawal_id=str(withdrawal.id),
                by=self.node_id,
                country=self.country,
                at=now,
                reason=reason_text,
            )
            audit.append(
                conn,
                at=now,
                actor=actor,
                event="report.withdrawn",
                subject=report_id,
                details={"reason": reason_text, "peers": peers},
            )
            return peers

        peers = await self.db.run(transaction)
        self.wake(peers)
        return peers

    # jurisdiction ------------------------------------------------------------------------
    async def trace_pending(self, trace: TraceFunction, limit: int = 50) -> int:
        """Trace reports waiting for it; a failed trace is recorded, never retried forever."""
        done = 0
        for row in await self.store.pending_traces(limit):
            try:
                evidence: dict[str, Any] | None = await trace(row["url"])
                error = None
            except Exception as exc:  # any failure is recorded on the case for the analyst
                evidence, error = None, str(exc) or type(exc).__name__
            try:
                await self.record_trace(row["id"], evidence, error=error)
            except Exception as exc:
                # Evidence that cannot be stored or routed (a poisoned answer, a bug) fails this
                # case alone: it is marked failed with the reason, and the next case goes on.
                reason = f"the trace could not be recorded: {type(exc).__name__}: {exc}"
                await self.record_trace(row["id"], None, error=reason[:500])
            done += 1
        return done

    async def record_trace(
        self, report_id: str, evidence: dict[str, Any] | None, *, error: str | None = None
    ) -> RoutingDecision | None:
        now = self.clock.now()
        stored = evidence if evidence is not None else {"errors": [error or "trace failed"]}

        def transaction(conn: Tx) -> Routed:
            self.store.update(
                conn,
                report_id,
                {
                    "trace_status": "done" if evidence is not None else "failed",
                    "trace_json": orjson.dumps(stored).decode(),
                    "traced_at": iso(now),
                    "updated_at": iso(now),
                },
            )
            self.store.replace_addresses(
                conn, report_id, list((evidence or {}).get("addresses", []))
            )
            audit.append(
                conn,
                at=now,
                actor="jurisdiction",
                event="report.traced",
                subject=report_id,
                details={
                    "countries": (evidence or {}).get("countries", []),
                    "error": error,
                },
            )
            return self.router.route_txn(conn, report_id, "jurisdiction")

        decision, peers = await self.db.run(transaction)
        self.wake(peers)
        return decision

    async def override_jurisdiction(
        self, report_id: str, *, country: str, reason: str, actor: str
    ) -> RoutingDecision | None:
        row = await self.views.require(report_id)
        # As for assess: a finished case is not routed again (it would be re-sent).
        next_status(report_id, row["status"], CaseEvent.OVERRIDE)
        problem = country_problem(country)
        if problem:
            raise InvalidInput(N_("country {problem}"), problem=problem)
        reason_text = text_field(reason, "reason", MAX_NOTE)
        if not reason_text:
            raise InvalidInput(N_("an override needs a reason"))
        evidence = orjson.loads(row["trace_json"]) if row["trace_json"] else {}
        evidence["override"] = {"country": country.upper(), "reason": reason_text, "by": actor}
        now = self.clock.now()

        def transaction(conn: Tx) -> Routed:
            self.store.update(
                conn,
                report_id,
                {"trace_json": orjson.dumps(evidence).decode(), "updated_at": iso(now)},
            )
            audit.append(
                conn,
                at=now,
                actor=actor,
                event="jurisdiction.override",
                subject=report_id,
                details={"country": country.upper(), "reason": reason_text},
            )
            return self.router.route_txn(conn, report_id, actor, force=True)

        decision, peers = await self.db.run(transaction)
        self.wake(peers)
        return decision
