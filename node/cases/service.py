"""The case workflow: one service over intake, qualification, routing and views, every change
audited in the same transaction as the change itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import orjson

from node.cases.actionlog import ActionLog, Recorded
from node.cases.door import transition_txn
from node.cases.gate import Confirmation, ReviewGate
from node.cases.hashes import HashMatcher, attach_hashes_txn, checked_hashes
from node.cases.intake import (
    MAX_NOTE,
    CaseIntake,
    choice,
    text_field,
)
from node.cases.lifecycle import CaseEvent
from node.cases.router import Routed, Router
from node.cases.views import CaseViews, NoticeRules
from node.clock import Clock, iso, parse_iso
from node.countries import country_problem
from node.errors import N_, Conflict, InvalidInput, StorageFull
from node.hashes.values import HashValue
from node.routing import RoutingDecision
from node.store import audit, channel_outbox
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
# Cases routed again per transaction when a peer is resumed, and at most per resumption (the
# rest show in the triage queue and follow on the next resumption or by hand).
REROUTE_BATCH = 200
REROUTE_LIMIT = 100_000
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
        hash_lists: HashMatcher,
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
        # Every hash a case gets is matched against the hash lists (node.cases.hashes).
        self.hash_lists = hash_lists
        self.router = Router(clock, node_id=node_id, country=country)
        self.intake = CaseIntake(
            db,
            clock,
            self.router,
            node_id=node_id,
            wake=wake,
            four_eyes=four_eyes,
            hash_lists=hash_lists,
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
        if row.origin != self.node_id:
            raise Conflict(
                N_("only the origin hotline assesses its report; record actions instead")
            )
        the_verdict = choice(Verdict, verdict, "verdict")
        the_category = choice(Category, category, "category")
        legal_basis = text_field(legal_basis, "legal_basis", 256)
        now = self.clock.now()

        def assess_txn(conn: Tx) -> Routed:
            transition_txn(conn, report_id, CaseEvent.ASSESSMENT, at=iso(now))
            # Four-eyes: inside the write, so neither a path nor a race can route it alone.
            self.four_eyes.check_txn(
                conn,
                report_id,
                verdict=the_verdict.value,
                category=the_category.value,
                legal_basis=legal_basis,
                confirmation=confirmation,
            )
            ReportStore.set_assessment_txn(
                conn,
                report_id,
                verdict=the_verdict.value,
                category=the_category.value,
                legal_basis=legal_basis,
                at=iso(now),
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

        decision, peers = await self.db.run(assess_txn)
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
        reason = text_field(reason, "reason", MAX_NOTE)
        now = self.clock.now()

        def record_action_txn(conn: Tx) -> Recorded:
            # Refused by the case door, with nothing written, if the table refuses it (a
            # withdrawn case), whatever the case looked like when the analyst read it.
            if row.origin == self.node_id:
                # Four-eyes: our own `not_illegal` would close a case on one person's word.
                self.four_eyes.check_action_txn(conn, report_id, code=the_code.value)
            recorded = self.actions.record_txn(
                conn,
                report_id=report_id,
                origin=row.origin,
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

        recorded = await self.db.run(record_action_txn)
        self.wake(recorded.told)
        return recorded.action_id

    async def add_hashes(
        self, report_id: str, hashes: object, *, actor: str, source: str = "analyst"
    ) -> list[HashValue]:
        """Put hashes (TYPE:VALUE texts) on an existing case; returns those it did not hold.
        A case of ours that peers hold already goes to them again, carrying them."""
        await self.views.require(report_id)
        values = checked_hashes(hashes)
        if not values:
            raise InvalidInput(N_("give at least one hash (TYPE:VALUE)"))
        now = iso(self.clock.now())

        def add_hashes_txn(conn: Tx) -> tuple[list[HashValue], list[str]]:
            added = attach_hashes_txn(
                conn,
                report_id,
                values,
                matcher=self.hash_lists,
                source=source,
                at=now,
                actor=actor,
            )
            return added, self.router.hashes_added_txn(conn, report_id, actor) if added else []

        added, peers = await self.db.run(add_hashes_txn)
        self.wake(peers)
        return added

    async def clear_for_host(self, report_id: str, *, reason: str | None, actor: str) -> int:
        """Police cleared the case: a host notice held for them may go now. Returns how many
        host notices the clearance released (0: it is recorded, and nothing was held)."""
        row = await self.views.require(report_id)
        hours = self.notices.hold_hours(row.category)
        if row.lea_cleared_at is not None:
            raise Conflict(
                N_("report {report} was already cleared at {at}"),
                report=report_id,
                at=row.lea_cleared_at,
            )
        reason_text = text_field(reason, "reason", MAX_NOTE)
        now = self.clock.now()

        def clear_txn(conn: Tx) -> None:
            ReportStore.set_cleared_once(conn, report_id, iso(now))
            audit.append(
                conn,
                at=now,
                actor=actor,
                event="report.cleared",
                subject=report_id,
                details={"reason": reason_text},
            )

        await self.db.run(clear_txn)
        if hours is None:
            return 0
        return sum(
            parse_iso(queued) + timedelta(hours=hours) > now
            for queued in await channel_outbox.waiting_host_notices(self.db, report_id)
        )

    async def withdraw(self, report_id: str, *, reason: str, actor: str) -> list[str]:
        """Retract our report: closed here, and a tombstone to every peer that received it."""
        row = await self.views.require(report_id)
        if row.origin != self.node_id:
            raise Conflict(N_("only the origin hotline can withdraw a report"))
        reason_text = text_field(reason, "reason", MAX_NOTE)
        if not reason_text:
            raise InvalidInput(N_("a withdrawal needs a reason"))
        now = self.clock.now()

        def withdraw_txn(conn: Tx) -> list[str]:
            return self.router.withdraw_txn(
                conn,
                report_id,
                by=self.node_id,
                country=self.country,
                at=now,
                reason=reason_text,
                actor=actor,
            )

        peers = await self.db.run(withdraw_txn)
        self.wake(peers)
        return peers

    async def reroute_waiting_for(self, country: str, *, actor: str) -> int:
        """The peer of `country` is active again: the open cases that went to the fallback
        while it was suspended are routed again, so they reach it, and what still waits for
        the fallback is cancelled (what went out stays). Returns how many were routed."""
        waiting = await self.store.waiting_for_peer(country=country, limit=REROUTE_LIMIT)
        for start in range(0, len(waiting), REROUTE_BATCH):
            batch = [w.report_id for w in waiting[start : start + REROUTE_BATCH]]

            def reroute_txn(conn: Tx, batch: list[str] = batch) -> list[str]:
                pushed: set[str] = set()
                for report_id in batch:
                    pushed.update(self.router.route_txn(conn, report_id, actor, force=True)[1])
                return sorted(pushed)

            self.wake(await self.db.run(reroute_txn))
        return len(waiting)

    # jurisdiction ------------------------------------------------------------------------
    async def trace_pending(self, trace: TraceFunction, limit: int = 50) -> int:
        """Trace reports waiting for it; a failed trace is recorded, never retried forever."""
        done = 0
        for report_id, url in await self.store.pending_traces(limit):
            try:
                evidence: dict[str, Any] | None = await trace(url)
                error = None
            except Exception as exc:  # any failure is recorded on the case for the analyst
                evidence, error = None, str(exc) or type(exc).__name__
            try:
                await self.record_trace(report_id, evidence, error=error)
            except StorageFull:
                raise  # not this case's fault: it stays pending, traced again once space returns
            except Exception as exc:
                # Evidence that cannot be stored or routed (a poisoned answer, a bug) fails this
                # case alone: it is marked failed with the reason, and the next case goes on.
                reason = f"the trace could not be recorded: {type(exc).__name__}: {exc}"
                await self.record_trace(report_id, None, error=reason[:500])
            done += 1
        return done

    async def record_trace(
        self, report_id: str, evidence: dict[str, Any] | None, *, error: str | None = None
    ) -> RoutingDecision | None:
        now = self.clock.now()
        stored = evidence if evidence is not None else {"errors": [error or "trace failed"]}

        def record_trace_txn(conn: Tx) -> Routed:
            ReportStore.set_trace_txn(
                conn,
                report_id,
                trace_status="done" if evidence is not None else "failed",
                trace_json=orjson.dumps(stored).decode(),
                at=iso(now),
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

        decision, peers = await self.db.run(record_trace_txn)
        self.wake(peers)
        return decision

    async def override_jurisdiction(
        self, report_id: str, *, country: str, reason: str, actor: str
    ) -> RoutingDecision | None:
        row = await self.views.require(report_id)
        problem = country_problem(country)
        if problem:
            raise InvalidInput(N_("country {problem}"), problem=problem)
        reason_text = text_field(reason, "reason", MAX_NOTE)
        if not reason_text:
            raise InvalidInput(N_("an override needs a reason"))
        evidence = orjson.loads(row.trace_json) if row.trace_json else {}
        evidence["override"] = {"country": country.upper(), "reason": reason_text, "by": actor}
        now = self.clock.now()

        def override_txn(conn: Tx) -> Routed:
            # As for assess: a finished case is not routed again (it would be re-sent).
            transition_txn(conn, report_id, CaseEvent.OVERRIDE, at=iso(now))
            ReportStore.set_evidence_txn(
                conn, report_id, trace_json=orjson.dumps(evidence).decode(), at=iso(now)
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

        decision, peers = await self.db.run(override_txn)
        self.wake(peers)
        return decision
