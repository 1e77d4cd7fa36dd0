"""What the write of a verdict asks of four-eyes review (the policy itself is node/review.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from node.store.db import Tx


@dataclass(frozen=True)
class Confirmation:
    """A reviewer's agreement with one pending review, named by its id (the one they saw)."""

    review_id: str
    reviewer: str  # a person's name


class ReviewGate(Protocol):
    """Checked inside the transaction that writes a verdict, so that no entry skips it."""

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
        """Refuse a verdict that needs a reviewer and comes without that review's
        confirmation; settle the review it confirms, or cancel one it replaces."""

    def check_action_txn(self, conn: Tx, report_id: str, *, code: str) -> None:
        """Refuse an action of ours on our own case that would undo a reviewed verdict."""

    def wants_review(self, verdict: str, category: str | None) -> bool:
        """Whether this verdict, as a case's first, waits for a reviewer."""

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
        """Put the verdict before a reviewer (replacing a pending one); its review id."""
