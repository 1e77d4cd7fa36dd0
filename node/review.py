"""Four-eyes review: a `baseline` verdict in a reviewed category routes only once a second
person (a reviewer) confirms it; both names go into the audit log."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from node.cases import CaseService
from node.cases.lifecycle import CaseEvent, next_status
from node.clock import Clock, iso
from node.errors import N_, Conflict, InvalidInput, NotFound
from node.store import audit
from node.store.db import Database, Tx
from node.store.reviews import Review, ReviewStore


@dataclass(frozen=True)
class Assessed:
    """What an assessment did: routed at once, or waiting for a reviewer."""

    report_id: str
    pending_review: bool


class ReviewService:
    def __init__(
        self, db: Database, clock: Clock, cases: CaseService, *, categories: list[str]
    ) -> None:
        self.db = db
        self.clock = clock
        self.cases = cases
        self.store = ReviewStore(db)
        self.categories = frozenset(categories)

    def needs_review(self, verdict: str, category: str) -> bool:
        return verdict == "baseline" and category in self.categories

    async def assess(
        self, report_id: str, *, verdict: str, category: str, legal_basis: str | None, actor: str
    ) -> Assessed:
        if not self.needs_review(verdict, category):
            await self.cases.assess(
                report_id,
                verdict=verdict,
                category=category,
                legal_basis=legal_basis,
                actor=actor,
            )
            return Assessed(report_id, False)
        row = await self.cases.views.require(report_id)
        if row.origin != self.cases.node_id:
            raise Conflict(
                N_("only the origin hotline assesses its report; record actions instead")
            )
        next_status(report_id, row.status, CaseEvent.ASSESSMENT)  # refused if finished
        if legal_basis is not None and len(legal_basis) > 256:
            raise InvalidInput(
                N_("{field} is longer than {limit} characters"), field="legal_basis", limit=256
            )
        now = self.clock.now()

        def transaction(conn: Tx) -> None:
            self.store.put(
                conn,
                report_id=report_id,
                verdict=verdict,
                category=category,
                legal_basis=legal_basis,
                analyst=actor,
                at=iso(now),
            )
            audit.append(
                conn,
                at=now,
                actor=actor,
                event="review.requested",
                subject=report_id,
                details={"verdict": verdict, "category": category},
            )

        await self.db.run(transaction)
        return Assessed(report_id, True)

    async def pending(self, report_id: str) -> dict[str, Any] | None:
        row = await self.store.get(report_id)
        return asdict(row) if row else None

    async def _waiting(self, report_id: str) -> Review:
        row = await self.store.get(report_id)
        if row is None:
            raise NotFound(
                N_("report {report} has no verdict waiting for review"), report=report_id
            )
        return row

    async def confirm(self, report_id: str, *, reviewer: str) -> None:
        """A second person agrees: the verdict is recorded and the case routes."""
        row = await self._waiting(report_id)
        if row.analyst == reviewer:
            raise Conflict(
                N_("a verdict is confirmed by someone other than the analyst who gave it")
            )
        await self.cases.assess(
            report_id,
            verdict=row.verdict,
            category=row.category,
            legal_basis=row.legal_basis,
            actor=f"{row.analyst} (confirmed by {reviewer})",
        )
        await self._settle(
            report_id,
            reviewer=reviewer,
            event="review.confirmed",
            details={
                "analyst": row.analyst,
                "reviewer": reviewer,
                "verdict": row.verdict,
                "category": row.category,
            },
        )

    async def reject(self, report_id: str, *, reviewer: str, reason: str | None) -> None:
        """A second person disagrees: the verdict is dropped and the case waits again."""
        row = await self._waiting(report_id)
        await self._settle(
            report_id,
            reviewer=reviewer,
            event="review.rejected",
            details={"analyst": row.analyst, "reviewer": reviewer, "reason": reason},
        )

    async def _settle(
        self, report_id: str, *, reviewer: str, event: str, details: dict[str, Any]
    ) -> None:
        """The review is over (confirmed or rejected): it leaves the queue, audited."""
        now = self.clock.now()

        def transaction(conn: Tx) -> None:
            self.store.remove(conn, report_id)
            audit.append(
                conn, at=now, actor=reviewer, event=event, subject=report_id, details=details
            )

        await self.db.run(transaction)
