"""Four-eyes reviews of verdicts: the reviews table (this module alone writes it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from node.store.db import Database, Tx

PENDING = "pending"
REJECTED = "rejected"
CONFIRMED = "confirmed"


@dataclass(frozen=True)
class Review:
    """A case's latest review: a verdict waiting for a second person, or how they decided.

    `analyst` is the name the audit log records; `analyst_person` the person behind it
    (lower case), None when the verdict came from no person (an API token of no one)."""

    id: str
    report_id: str
    state: str
    verdict: str
    category: str
    legal_basis: str | None
    analyst: str
    analyst_person: str | None
    requested_at: str
    reviewer: str | None
    reason: str | None
    decided_at: str | None

    def shown(self) -> dict[str, Any]:
        """As `reports show`, the API and the console show it (the person key is internal)."""
        return {k: v for k, v in asdict(self).items() if k not in ("report_id", "analyst_person")}


@dataclass(frozen=True)
class WaitingReview(Review):
    """A review as the triage queue lists it, with its case's URL and arrival."""

    url: str
    received_at: str


_COLUMNS = (
    "v.id, v.report_id, v.state, v.verdict, v.category, v.legal_basis, v.analyst,"
    " v.analyst_person, v.requested_at, v.reviewer, v.reason, v.decided_at"
)


class ReviewStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, report_id: str) -> Review | None:
        row = await self.db.fetch_one(
            f"SELECT {_COLUMNS} FROM reviews v WHERE v.report_id = ?",  # noqa: S608 - fixed columns
            (report_id,),
        )
        return None if row is None else Review(**dict(row))

    @staticmethod
    def get_txn(conn: Tx, report_id: str) -> Review | None:
        """The case's review as the writer transaction sees it (a decision is checked here)."""
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM reviews v WHERE v.report_id = ?",  # noqa: S608 - fixed columns
            (report_id,),
        ).fetchone()
        return None if row is None else Review(**dict(row))

    @staticmethod
    def assessment_txn(conn: Tx, report_id: str) -> tuple[str | None, str | None]:
        """The case's verdict and category as written now (not a pending one)."""
        row = conn.execute(
            "SELECT verdict, category FROM reports WHERE id = ?", (report_id,)
        ).fetchone()
        return (None, None) if row is None else (row[0], row[1])

    async def waiting(self, limit: int) -> list[WaitingReview]:
        return await self._listed("v.state = ?", (PENDING,), limit)

    async def rejected_for(self, person: str, limit: int) -> list[WaitingReview]:
        """The verdicts of this person that a reviewer rejected and nobody has given again."""
        return await self._listed("v.analyst_person = ? AND v.state = ?", (person, REJECTED), limit)

    async def _listed(self, where: str, params: tuple[str, ...], limit: int) -> list[WaitingReview]:
        rows = await self.db.fetch_all(
            # CROSS JOIN keeps the (few) reviews as the outer loop: with a plain JOIN the planner
            # may walk a million cases looking for them.
            f"SELECT {_COLUMNS}, r.url, r.received_at FROM reviews v CROSS JOIN reports r"  # noqa: S608 - fixed columns
            f" ON r.id = v.report_id WHERE {where} ORDER BY v.requested_at LIMIT ?",
            (*params, limit),
        )
        return [WaitingReview(**dict(row)) for row in rows]

    async def count(self) -> int:
        row = await self.db.fetch_one(
            "SELECT COUNT(*) AS n FROM reviews WHERE state = ?", (PENDING,)
        )
        return int(row["n"]) if row else 0

    @staticmethod
    def put(
        conn: Tx,
        *,
        review_id: str,
        report_id: str,
        verdict: str,
        category: str,
        legal_basis: str | None,
        analyst: str,
        analyst_person: str | None,
        at: str,
    ) -> None:
        """A verdict waits for a reviewer; it replaces the case's previous review, whatever
        its state (the caller audits what it replaced)."""
        conn.execute(
            "INSERT OR REPLACE INTO reviews (id, report_id, state, verdict, category, legal_basis,"
            " analyst, analyst_person, requested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                review_id,
                report_id,
                PENDING,
                verdict,
                category,
                legal_basis,
                analyst,
                analyst_person,
                at,
            ),
        )

    @staticmethod
    def decide_txn(
        conn: Tx, review_id: str, *, state: str, reviewer: str, reason: str | None, at: str
    ) -> bool:
        """Settle a pending review; False when it is no longer pending (someone was first)."""
        cursor = conn.execute(
            "UPDATE reviews SET state = ?, reviewer = ?, reason = ?, decided_at = ?"
            " WHERE id = ? AND state = ?",
            (state, reviewer, reason, at, review_id, PENDING),
        )
        return bool(cursor.rowcount)

    @staticmethod
    def remove(conn: Tx, report_id: str) -> None:
        conn.execute("DELETE FROM reviews WHERE report_id = ?", (report_id,))
