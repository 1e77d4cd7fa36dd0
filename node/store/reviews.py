"""Four-eyes reviews waiting for a reviewer: the reviews table (this module alone writes it)."""

from __future__ import annotations

import aiosqlite

from node.store.db import Database, Tx


class ReviewStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, report_id: str) -> aiosqlite.Row | None:
        return await self.db.fetch_one("SELECT * FROM reviews WHERE report_id = ?", (report_id,))

    async def waiting(self, limit: int) -> list[aiosqlite.Row]:
        return await self.db.fetch_all(
            # CROSS JOIN keeps the (few) reviews as the outer loop: with a plain JOIN the planner
            # may walk a million cases looking for them.
            "SELECT v.*, r.url, r.received_at FROM reviews v CROSS JOIN reports r"
            " ON r.id = v.report_id ORDER BY v.requested_at LIMIT ?",
            (limit,),
        )

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
