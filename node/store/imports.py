"""Import runs: how far each imported file got, written in the same transaction as its cases."""

from __future__ import annotations

from dataclasses import dataclass

from node.store.db import Database, Tx


@dataclass(frozen=True)
class ImportRun:
    digest: str
    items: int
    done: int
    started_at: str
    finished_at: str | None


async def get(db: Database, digest: str) -> ImportRun | None:
    row = await db.fetch_one(
        "SELECT digest, items, done, started_at, finished_at FROM import_runs WHERE digest = ?",
        (digest,),
    )
    if row is None:
        return None
    return ImportRun(
        row["digest"], int(row["items"]), int(row["done"]), row["started_at"], row["finished_at"]
    )


def advance(conn: Tx, *, digest: str, name: str, items: int, done: int, at: str) -> None:
    """Record that the file's first `done` records are committed (with them, atomically)."""
    conn.execute(
        "INSERT INTO import_runs (digest, name, items, done, started_at, finished_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(digest) DO UPDATE SET done = excluded.done,"
        " finished_at = excluded.finished_at",
        (digest, name, items, done, at, at if done >= items else None),
    )
