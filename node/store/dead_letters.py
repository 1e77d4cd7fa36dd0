"""Dead letters: what a peer sent us that was refused, and what we gave up delivering."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from node.store.db import Database, Tx

REASON_LIMIT = 500  # a reason is a diagnosis, not a copy of what failed


class Direction(StrEnum):
    IN = "in"  # a record a peer sent that we refused
    OUT = "out"  # a record we gave up sending to a peer
    CHANNEL = "channel"  # a referral or notice a national channel never took


@dataclass(frozen=True)
class DeadLetter:
    # A channel letter: `peer_id` holds the channel (its name; its role if none serves the role)
    # and `record_type` the role.
    peer_id: str
    direction: Direction
    reason: str
    at: str
    seq: int | None = None
    record_type: str | None = None
    record_id: str | None = None


def record_txn(conn: Tx, letters: Iterable[DeadLetter]) -> None:
    conn.executemany(
        "INSERT INTO dead_letters (peer_id, direction, seq, record_type, record_id, reason, at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                letter.peer_id,
                letter.direction.value,
                letter.seq,
                letter.record_type,
                letter.record_id,
                letter.reason[:REASON_LIMIT],
                letter.at,
            )
            for letter in letters
        ],
    )


async def count_for(db: Database, peer_id: str) -> int:
    row = await db.fetch_one("SELECT COUNT(*) FROM dead_letters WHERE peer_id = ?", (peer_id,))
    return int(row[0]) if row else 0
