"""Rejoining the federation after a restore: the marks a restore leaves, the renumbering of
our outbox past a pulling peer's cursor, and peers' actions on cases we no longer hold.

A restored backup is older than what peers saw: our per-peer outbox numbers restart below the
cursor a pulling peer holds, and peers act on cases forwarded after the backup, which we lost.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from node.store.db import Database, Tx, run_offline

# the restore ---------------------------------------------------------------------------------
# How far the versions of our own cases jump at a restore. A peer may hold versions we made
# after the backup; the next version must be above them, or the peer keeps its copy and answers
# `duplicate` (protocol.md §9.7). A version is a decision (an assessment, a trace, a route),
# so no case gets this many between a backup and its restore. (A case with more would still be
# answered `duplicate` until it passes the peer's number; the peer's word is not asked for yet.)
VERSION_GAP = 1000


def mark_restored_txn(conn: Tx, node_id: str, at: str) -> int:
    """Remember, for every peer, the highest outbox number this (restored) database holds, and
    move our own cases' version numbers past any a peer may have seen."""
    conn.execute("INSERT INTO restores (restored_at) VALUES (?)", (at,))
    conn.execute(
        "UPDATE reports SET seq = seq + ? WHERE origin = ? AND seq > 0", (VERSION_GAP, node_id)
    )
    conn.execute(
        "INSERT OR REPLACE INTO peer_rejoin (peer_id, outbox_seq, restored_at) SELECT"
        " p.node_id, COALESCE((SELECT MAX(o.seq) FROM peer_outbox o WHERE o.peer_id ="
        " p.node_id), 0), ? FROM peers p",
        (at,),
    )
    row = conn.execute("SELECT COUNT(*) FROM peer_rejoin").fetchone()
    return int(row[0]) if row else 0


def mark_restored(path: Path, node_id: str, at: str) -> int:
    """Mark the database file at `path` (not served yet) as restored; returns the peers."""
    return run_offline(path, lambda tx: mark_restored_txn(tx, node_id, at))


def was_restored_txn(conn: Tx) -> bool:
    """Whether this database was ever restored from a backup."""
    return conn.execute("SELECT 1 FROM restores LIMIT 1").fetchone() is not None


# a pulling peer's cursor ---------------------------------------------------------------------
@dataclass(frozen=True)
class Rejoined:
    """What a pulling peer's first cursor after a restore told us."""

    restored_seq: int  # the highest number the backup held
    peer_cursor: int  # where the peer stands
    moved: int  # items given numbers the peer had seen, now after its cursor


def rejoin_txn(conn: Tx, peer_id: str, cursor: int) -> Rejoined | None:
    """The first cursor of `peer_id` since a restore: every item numbered after the backup's
    highest number was numbered again, and if the peer already saw numbers up to `cursor`
    those items move after it, keeping their order, and what is queued later is numbered
    after it too. Nothing but a restore marks a peer."""
    row = conn.execute(
        "SELECT outbox_seq FROM peer_rejoin WHERE peer_id = ?", (peer_id,)
    ).fetchone()
    if row is None:
        return None
    restored = int(row[0])
    conn.execute("DELETE FROM peer_rejoin WHERE peer_id = ?", (peer_id,))
    if cursor <= restored:  # the peer never saw a number we gave after the backup
        return Rejoined(restored, cursor, 0)
    conn.execute(
        "INSERT OR REPLACE INTO peer_outbox_floor (peer_id, seq) VALUES (?, ?)", (peer_id, cursor)
    )
    shift = cursor - restored
    # In two steps (through negative numbers): (peer_id, seq) is unique at every row.
    moved = conn.execute(
        "UPDATE peer_outbox SET seq = -(seq + ?) WHERE peer_id = ? AND seq > ?",
        (shift, peer_id, restored),
    ).rowcount
    conn.execute("UPDATE peer_outbox SET seq = -seq WHERE peer_id = ? AND seq < 0", (peer_id,))
    return Rejoined(restored, cursor, moved)


def furthest_cursor_txn(conn: Tx, peer_id: str, cursor: int) -> int:
    """The furthest cursor this pulling peer ever sent us, this one included. One behind it
    means the peer lost what it had applied (it was restored from a backup)."""
    conn.execute(
        "INSERT INTO pull_cursor_high (peer_id, seq) VALUES (?, ?) ON CONFLICT (peer_id)"
        " DO UPDATE SET seq = MAX(seq, excluded.seq)",
        (peer_id, cursor),
    )
    row = conn.execute("SELECT seq FROM pull_cursor_high WHERE peer_id = ?", (peer_id,)).fetchone()
    return int(row[0]) if row else cursor


# actions on cases we no longer hold -----------------------------------------------------------
@dataclass(frozen=True)
class OrphanAction:
    id: str
    report_id: str
    sender: str
    code: str
    at: str
    payload: bytes
    received_at: str


def keep_orphan_txn(conn: Tx, action: OrphanAction) -> bool:
    """Keep a peer's action on a case of ours we do not hold; False if it is held already."""
    cursor = conn.execute(
        "INSERT OR IGNORE INTO orphan_actions (id, report_id, sender, code, at, payload,"
        " received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            action.id,
            action.report_id,
            action.sender,
            action.code,
            action.at,
            action.payload,
            action.received_at,
        ),
    )
    return cursor.rowcount == 1


async def orphans_from(db: Database, peer_id: str) -> list[aiosqlite.Row]:
    """A peer's actions on cases we do not hold, oldest first."""
    return await db.fetch_all(
        "SELECT id, report_id, code, at, received_at FROM orphan_actions WHERE sender = ?"
        " ORDER BY received_at, id",
        (peer_id,),
    )


def orphans_for_txn(conn: Tx, report_id: str) -> list[sqlite3.Row]:
    """The actions kept for a case, with their signed payloads, oldest first (for a case that
    comes back)."""
    return conn.execute(
        "SELECT id, sender, payload FROM orphan_actions WHERE report_id = ? ORDER BY at, id",
        (report_id,),
    ).fetchall()


def drop_orphan_txn(conn: Tx, action_id: str) -> None:
    conn.execute("DELETE FROM orphan_actions WHERE id = ?", (action_id,))
