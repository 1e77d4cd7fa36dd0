"""Public submissions: each member of the public's words on a case, the first and every later."""

from __future__ import annotations

from dataclasses import dataclass

from node.store.db import Database, Tx


@dataclass(frozen=True)
class Submission:
    """One report of a case's URL by a member of the public, as they gave it."""

    at: str
    description: str | None
    contact: str | None
    language: str | None
    source: str


def add_txn(conn: Tx, report_id: str, submission: Submission) -> None:
    conn.execute(
        "INSERT INTO submissions (report_id, at, description, contact, language, source)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            report_id,
            submission.at,
            submission.description,
            submission.contact,
            submission.language,
            submission.source,
        ),
    )


async def for_case(db: Database, report_id: str) -> list[Submission]:
    """A case's submissions in the order they came (the first one first)."""
    rows = await db.fetch_all(
        "SELECT at, description, contact, language, source FROM submissions"
        " WHERE report_id = ? ORDER BY at, id",
        (report_id,),
    )
    return [Submission(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def purge_txn(conn: Tx, *, given_before: str) -> int:
    """Erase the words and contact of submissions given before then (when they came stays, for
    the statistics); returns how many were erased."""
    cursor = conn.execute(
        "UPDATE submissions SET description = NULL, contact = NULL"
        " WHERE at < ? AND (description IS NOT NULL OR contact IS NOT NULL)",
        (given_before,),
    )
    return cursor.rowcount
