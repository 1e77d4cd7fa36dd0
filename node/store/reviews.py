"""Four-eyes reviews waiting for a reviewer: the reviews table (this module alone writes it)."""

from __future__ import annotations

from dataclasses import dataclass

from node.store.db import Database, Tx


@dataclass(frozen=True)
class Review:
    """A verdict waiting for a second person."""

    report_id: str
    verdict: str
    category: str
    legal_basis: str | None
    analyst: str
    requested_at: str


@dataclass(frozen=True)
class WaitingReview(Review):
    """A review as the triage queue lists it, with its case's URL and arrival."""

    url: str
    received_at: str


_COLUMNS = "v.report_id, v.verdict, v.category, v.legal_basis, v.analyst, v.requested_at"


class ReviewStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, report_id: str) -> Review | None:
        row = await self.db.fetch_one(
            f"SELECT {_COLUMNS} FROM reviews v WHERE v.report_id = ?",  # noqa: S608 - fixed columns
            (report_id,),
        )
        return None if row is None else Review(**dict(row))

    async def waiting(self, limit: int) -> list[WaitingReview]:
        rows = await self.db.fetch_all(
            # CROSS JOIN keeps the (few) reviews as the outer loop: with a plain JOIN the planner
            # may walk a million cases looking for them.
            f"SELECT {_COLUMNS}, r.url, r.received_at FROM reviews v CROSS JOIN reports r"  # noqa: S608 - fixed columns
            " ON r.id = v.report_id ORDER BY v.requested_at LIMIT ?",
            (limit,),
        )
        return [WaitingReview(**dict(row)) for row in rows]

    async def count(self) -> int:
        row = await self.db.fetch_one("SELECT COUNT(*) AS n FROM reviews")
        return int(row["n"]) if row else 0

    @staticmethod
    def put(
        conn: Tx,
        *,
        report_id: str,
        verdict: str,
        category: str,
        legal_basis: str | None,
        analyst: str,
        at: str,
    ) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO reviews (report_id, verdict, category, legal_basis, analyst,"
            " requested_at) VALUES (?, ?, ?, ?, ?, ?)",
            (report_id, verdict, category, legal_basis, analyst, at),
        )

    @staticmethod
    def remove(conn: Tx, report_id: str) -> None:
        conn.execute("DELETE FROM reviews WHERE report_id = ?", (report_id,))
