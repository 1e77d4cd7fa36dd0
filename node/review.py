"""Four-eyes review: a verdict that could send a case to the police or a host waits for a second
person, a reviewer, who is never the analyst who gave it; both names go into the audit log."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from node.cases import CaseService
from node.cases.gate import Confirmation
from node.cases.intake import MAX_NOTE, choice, text_field
from node.cases.lifecycle import CaseEvent, next_status
from node.clock import Clock, iso
from node.errors import N_, Conflict, Forbidden, InvalidInput, NotFound
from node.store import audit
from node.store.db import Database, Tx
from node.store.reviews import CONFIRMED, PENDING, REJECTED, Review, ReviewStore
from node.users import UserRole, UserService, person_key
from protocol.records import Category, Verdict

NOT_ILLEGAL = Verdict.NOT_ILLEGAL.value


@dataclass(frozen=True)
class Assessed:
    """What an assessment did: routed at once, or waiting for a reviewer."""

    report_id: str
    pending_review: bool


class FourEyes:
    """The rule, checked where a verdict is written (CaseService.assess, the import).

    A first verdict of `not_illegal` needs nobody else: most reports are not illegal, and
    such a verdict sends nothing anywhere. Any other verdict in a reviewed category waits
    for a reviewer. A verdict in force that needed one can only be changed by the same
    road, whatever the new verdict: one person cannot undo what two decided."""

    def __init__(self, clock: Clock, *, categories: Iterable[str]) -> None:
        self.clock = clock
        self.categories = frozenset(categories)

    def wants_review(self, verdict: str, category: str | None) -> bool:
        return verdict != NOT_ILLEGAL and category in self.categories

    def needs_review(
        self, current: tuple[str | None, str | None], verdict: str, category: str
    ) -> bool:
        """Whether giving `verdict` in `category` to a case assessed `current` needs a reviewer."""
        was, was_category = current
        changes_reviewed = was is not None and self.wants_review(was, was_category)
        return self.wants_review(verdict, category) or changes_reviewed

    def check_txn(
        self,
        conn: Tx,
        report_id: str,
        *,
        verdict: str,
        category: str,
        legal_basis: str | None,
        confirmation: Confirmation | None,
    ) -> None:
        review = ReviewStore.get_txn(conn, report_id)
        now = self.clock.now()
        if confirmation is None:
            if self.needs_review(ReviewStore.assessment_txn(conn, report_id), verdict, category):
                raise Conflict(
                    N_(
                        "a {verdict} verdict in {category} on this case waits for a reviewer:"
                        " it is given for review, never written alone"
                    ),
                    verdict=verdict,
                    category=category,
                )
            if review is not None:
                # This verdict replaces whatever the case's last review was about.
                ReviewStore.remove(conn, report_id)
                if review.state == PENDING:
                    _cancelled(conn, review, now, replaced_by=None)
            return
        if review is None or review.state != PENDING:
            raise NotFound(
                N_("report {report} has no verdict waiting for review"), report=report_id
            )
        if review.id != confirmation.review_id or (
            review.verdict,
            review.category,
            review.legal_basis,
        ) != (verdict, category, legal_basis):
            raise _changed_since(review)
        _not_the_analyst(review, confirmation.reviewer)
        ReviewStore.decide_txn(
            conn,
            review.id,
            state=CONFIRMED,
            reviewer=confirmation.reviewer,
            reason=None,
            at=iso(now),
        )
        audit.append(
            conn,
            at=now,
            actor=confirmation.reviewer,
            event="review.confirmed",
            subject=report_id,
            details={
                "review": review.id,
                "analyst": review.analyst,
                "reviewer": confirmation.reviewer,
                "verdict": review.verdict,
                "category": review.category,
            },
        )

    def check_action_txn(self, conn: Tx, report_id: str, *, code: str) -> None:
        """Our analyst recording `not_illegal` on our own case closes it: against a verdict that
        took two people, that is a re-rating, and goes through review like one."""
        was, was_category = ReviewStore.assessment_txn(conn, report_id)
        if code == NOT_ILLEGAL and was is not None and self.wants_review(was, was_category):
            raise Conflict(
                N_(
                    "this case's {verdict} verdict was confirmed by a reviewer: assess it"
                    " not_illegal instead, which waits for a reviewer"
                ),
                verdict=was,
            )

    def request_txn(
        self,
        conn: Tx,
        report_id: str,
        *,
        verdict: str,
        category: str,
        legal_basis: str | None,
        analyst: str,
        person: str | None,
    ) -> str:
        if person is None:
            # Four-eyes compares people; a verdict from no one could be anyone's, the
            # reviewer's own included.
            raise Forbidden(
                N_(
                    "a verdict that waits for a reviewer must come from a named person; this"
                    " API token belongs to no one (an operator creates one with: hotline-node"
                    " tokens create --role analyst --for NAME)"
                )
            )
        now = self.clock.now()
        review_id = secrets.token_hex(8)
        old = ReviewStore.get_txn(conn, report_id)
        if old is not None and old.state == PENDING:
            _cancelled(conn, old, now, replaced_by=review_id)
        ReviewStore.put(
            conn,
            review_id=review_id,
            report_id=report_id,
            verdict=verdict,
            category=category,
            legal_basis=legal_basis,
            analyst=analyst,
            analyst_person=person_key(person),
            at=iso(now),
        )
        audit.append(
            conn,
            at=now,
            actor=analyst,
            event="review.requested",
            subject=report_id,
            details={"review": review_id, "verdict": verdict, "category": category},
        )
        return review_id


def _cancelled(conn: Tx, review: Review, now: Any, *, replaced_by: str | None) -> None:
    """A pending review whose verdict was given again: nobody can confirm it any more."""
    audit.append(
        conn,
        at=now,
        actor=review.analyst,
        event="review.cancelled",
        subject=review.report_id,
        details={
            "review": review.id,
            "verdict": review.verdict,
            "category": review.category,
            "replaced_by": replaced_by,
        },
    )


def _changed_since(review: Review) -> Conflict:
    """A decision on a review other than the one pending now: the verdict was given again."""
    return Conflict(
        N_(
            "the verdict changed since you opened the case: it is now {verdict} /"
            " {category} by {analyst}; reload the case and review that one"
        ),
        verdict=review.verdict,
        category=review.category,
        analyst=review.analyst,
    )


def _not_the_analyst(review: Review, reviewer: str, *, confirming: bool = True) -> None:
    if review.analyst_person is None and confirming:
        raise Conflict(
            N_(
                "this verdict came from no named person (an API token of no one), so nobody can"
                " be its second pair of eyes: an analyst gives it again under their own name"
            )
        )
    if person_key(reviewer) == review.analyst_person:
        raise Conflict(N_("a verdict is confirmed by someone other than the analyst who gave it"))


class ReviewService:
    """Every entry's assessment (console, bulk, API, command line) and every review decision."""

    def __init__(
        self, db: Database, cases: CaseService, users: UserService, gate: FourEyes
    ) -> None:
        self.db = db
        self.clock = gate.clock
        self.cases = cases
        self.users = users
        self.gate = gate
        self.store = ReviewStore(db)

    def needs_review(self, verdict: str, category: str) -> bool:
        """Whether this verdict, as a case's first, waits for a reviewer (the case page's hint)."""
        return self.gate.wants_review(verdict, category)

    async def assess(
        self,
        report_id: str,
        *,
        verdict: str,
        category: str,
        legal_basis: str | None,
        actor: str,
        person: str | None,
    ) -> Assessed:
        """`actor` is the name the audit log records; `person` whose verdict it is (None: an
        API token of no one, which may give only verdicts nobody needs to review)."""
        row = await self.cases.views.require(report_id)
        the_verdict = choice(Verdict, verdict, "verdict").value
        the_category = choice(Category, category, "category").value
        if not self.gate.needs_review((row.verdict, row.category), the_verdict, the_category):
            await self.cases.assess(
                report_id,
                verdict=the_verdict,
                category=the_category,
                legal_basis=legal_basis,
                actor=actor,
            )
            return Assessed(report_id, False)
        if row.origin != self.cases.node_id:
            raise Conflict(
                N_("only the origin hotline assesses its report; record actions instead")
            )
        next_status(report_id, row.status, CaseEvent.ASSESSMENT)  # refused if finished
        basis = text_field(legal_basis, "legal_basis", 256)

        def request_review_txn(conn: Tx) -> None:
            self.gate.request_txn(
                conn,
                report_id,
                verdict=the_verdict,
                category=the_category,
                legal_basis=basis,
                analyst=actor,
                person=person,
            )

        await self.db.run(request_review_txn)
        return Assessed(report_id, True)

    async def pending(self, report_id: str) -> dict[str, Any] | None:
        """The case's latest review (pending, rejected or confirmed), as shown."""
        row = await self.store.get(report_id)
        return row.shown() if row else None

    async def person_named(self, name: str) -> str:
        """A name given on the command line, spelt as its account is when it names a person
        (--as Alice records alice, as the console does); other names as given."""
        try:
            return (await self.users.active(name)).name
        except NotFound:
            return name

    async def _reviewer(self, name: str) -> str:
        """The enabled reviewer this name means, by their account's own spelling. (A person
        still on the password they were given is stopped earlier, by the console's guard; the
        command line's --as is trusted from whoever runs it, see docs/security.md.)"""
        return (await self.users.active(name, UserRole.REVIEWER)).name

    async def confirm(self, report_id: str, *, reviewer: str, review_id: str) -> None:
        """A second person agrees with the verdict they saw: it is written and the case routes."""
        reviewer = await self._reviewer(reviewer)
        row = await self.store.get(report_id)
        if row is None or row.state != PENDING:
            raise NotFound(
                N_("report {report} has no verdict waiting for review"), report=report_id
            )
        await self.cases.assess(
            report_id,
            verdict=row.verdict,
            category=row.category,
            legal_basis=row.legal_basis,
            actor=f"{row.analyst} (confirmed by {reviewer})",
            confirmation=Confirmation(review_id, reviewer),
        )

    async def reject(
        self, report_id: str, *, reviewer: str, reason: str | None, review_id: str | None
    ) -> None:
        """A second person disagrees, and says why: nothing is written, and the analyst finds
        the rejection and its reason in their queue."""
        reviewer = await self._reviewer(reviewer)
        reason_text = text_field(reason, "reason", MAX_NOTE)
        if not reason_text or not reason_text.strip():
            raise InvalidInput(N_("a rejection needs a reason"))
        now = self.clock.now()

        def reject_txn(conn: Tx) -> None:
            review = ReviewStore.get_txn(conn, report_id)
            if review is None or review.state != PENDING:
                raise NotFound(
                    N_("report {report} has no verdict waiting for review"), report=report_id
                )
            if review_id is not None and review.id != review_id:
                raise _changed_since(review)
            _not_the_analyst(review, reviewer, confirming=False)
            ReviewStore.decide_txn(
                conn, review.id, state=REJECTED, reviewer=reviewer, reason=reason_text, at=iso(now)
            )
            audit.append(
                conn,
                at=now,
                actor=reviewer,
                event="review.rejected",
                subject=report_id,
                details={
                    "review": review.id,
                    "analyst": review.analyst,
                    "reviewer": reviewer,
                    "reason": reason_text,
                },
            )

        await self.db.run(reject_txn)
