"""Our outbox to each peer, in per-peer sequence order, and the receipts peers signed for it."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import NamedTuple

import aiosqlite

from node.store.db import Database, Row, Tx, select_in

REPORT_TYPE = "report"


@dataclass(frozen=True)
class OutboxItem:
    """A record queued for a peer: the payload is signed and sealed when it goes."""

    seq: int
    record_type: str
    record_id: str
    report_id: str
    payload: bytes = b""

    @property
    def label(self) -> str:
        """How the audit log names it."""
        return f"{self.record_type}:{self.record_id}"


def _item(row: Row | aiosqlite.Row) -> OutboxItem:
    return OutboxItem(int(row[0]), row[1], row[2], row[3], bytes(row[4]))


def _item_without_payload(row: Row) -> OutboxItem:
    return OutboxItem(int(row[0]), row[1], row[2], row[3])


# reads ------------------------------------------------------------------------------------
async def pending(db: Database, peer_id: str, *, after: int, limit: int) -> list[OutboxItem]:
    """Up to `limit` pending items after seq `after`, in order."""
    rows = await db.fetch_all(
        "SELECT seq, record_type, record_id, report_id, payload FROM peer_outbox"
        " WHERE peer_id = ? AND state = 'pending' AND seq > ? ORDER BY seq LIMIT ?",
        (peer_id, after, limit),
    )
    return [_item(row) for row in rows]


async def servable(
    db: Database, peer_id: str, *, after: int, limit: int, again_up_to: int
) -> list[OutboxItem]:
    """What a pulling peer gets after its cursor `after`: pending items, and the items it was
    delivered up to `again_up_to`, the furthest cursor it ever sent (a peer asking from behind
    that lost them: it was restored from a backup; the cursor is its word for what it holds)."""
    rows = await db.fetch_all(
        "SELECT seq, record_type, record_id, report_id, payload FROM peer_outbox"
        " WHERE peer_id = ? AND seq > ? AND (state = 'pending' OR (state = 'sent' AND seq <= ?))"
        " ORDER BY seq LIMIT ?",
        (peer_id, after, again_up_to, limit),
    )
    return [_item(row) for row in rows]


async def pending_count(db: Database, peer_id: str) -> int:
    row = await db.fetch_one(
        "SELECT COUNT(*) FROM peer_outbox WHERE peer_id = ? AND state = 'pending'", (peer_id,)
    )
    return int(row[0]) if row else 0


async def dead_count(db: Database, peer_id: str) -> int:
    """Items the peer rejected that `requeue_dead_txn` would queue again."""
    row = await db.fetch_one(
        "SELECT COUNT(*) FROM peer_outbox WHERE peer_id = ? AND state = 'dead'", (peer_id,)
    )
    return int(row[0]) if row else 0


async def peers_with_pending(db: Database) -> list[str]:
    rows = await db.fetch_all("SELECT DISTINCT peer_id FROM peer_outbox WHERE state = 'pending'")
    return [row["peer_id"] for row in rows]


async def for_report(db: Database, report_id: str) -> list[aiosqlite.Row]:
    """What of a case was queued for peers, as its view lists it (name, kind, state...)."""
    return await db.fetch_all(
        "SELECT peer_id AS name, 'peer' AS kind, state, record_type, seq, sent_at AS done_at,"
        " last_error FROM peer_outbox WHERE report_id = ? ORDER BY peer_id, seq",
        (report_id,),
    )


def holders_txn(conn: Tx, report_id: str) -> list[str]:
    """Peers holding our case: a version of it was queued for them and not refused."""
    return [
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT o.peer_id FROM peer_outbox o JOIN peers p ON p.node_id ="
            " o.peer_id WHERE o.report_id = ? AND o.record_type = 'report' AND o.state IN"
            " ('pending', 'sent') AND p.status != 'removed' ORDER BY o.peer_id",
            (report_id,),
        )
    ]


def current_holders_txn(conn: Tx, report_id: str) -> list[str]:
    """Peers holding our case now: a version of it was queued for them and not refused, and no
    withdrawal of it was queued for them after that version."""
    return [
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT o.peer_id FROM peer_outbox o JOIN peers p ON p.node_id ="
            " o.peer_id WHERE o.report_id = ? AND o.record_type = 'report' AND o.state IN"
            " ('pending', 'sent') AND p.status != 'removed' AND NOT EXISTS (SELECT 1 FROM"
            " peer_outbox w WHERE w.peer_id = o.peer_id AND w.report_id = o.report_id AND"
            " w.record_type = 'withdrawal' AND w.seq > o.seq) ORDER BY o.peer_id",
            (report_id,),
        )
    ]


# writes (inside the caller's transaction) ---------------------------------------------------
class Queued(NamedTuple):
    """A record to append to a peer's outbox."""

    record_type: str
    record_id: str
    report_id: str | None
    payload: bytes
    created_at: str


def enqueue_txn(conn: Tx, peer_id: str, items: list[Queued]) -> int:
    """Append records in order to the peer's outbox with consecutive sequence numbers; returns
    the last one."""
    # Above the peer's cursor too, when a restore put our numbers behind it (node.store.rejoin).
    row = conn.execute(
        "SELECT MAX(COALESCE((SELECT MAX(seq) FROM peer_outbox WHERE peer_id = ?), 0),"
        " COALESCE((SELECT seq FROM peer_outbox_floor WHERE peer_id = ?), 0))",
        (peer_id, peer_id),
    ).fetchone()
    last = int(row[0]) if row else 0
    conn.executemany(
        "INSERT INTO peer_outbox (peer_id, seq, record_type, record_id, report_id, payload,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(peer_id, last + n, *item) for n, item in enumerate(items, start=1)],
    )
    return last + len(items)


def enqueue_one_txn(
    conn: Tx,
    *,
    peer_id: str,
    record_type: str,
    record_id: str,
    report_id: str,
    payload: bytes,
    at: str,
) -> int:
    """Append one record to the peer's outbox with the next per-peer sequence number."""
    return enqueue_txn(conn, peer_id, [Queued(record_type, record_id, report_id, payload, at)])


def hold_txn(
    conn: Tx, *, peer_id: str, report_id: str, payload: bytes, sent_at: str, at: str
) -> int:
    """A version of our case that the peer holds, which we lost in a restore and learned back
    from it: recorded as delivered (not sent again), numbered after the rest so that no number
    is given twice, and it makes the peer a holder (`holders_txn`)."""
    seq = enqueue_one_txn(
        conn,
        peer_id=peer_id,
        record_type=REPORT_TYPE,
        record_id=report_id,
        report_id=report_id,
        payload=payload,
        at=at,
    )
    conn.execute(
        "UPDATE peer_outbox SET state = 'sent', sent_at = ? WHERE peer_id = ? AND seq = ?",
        (sent_at, peer_id, seq),
    )
    return seq


def enqueue_for_peers_txn(
    conn: Tx,
    peers: list[str],
    *,
    record_type: str,
    record_id: str,
    report_id: str,
    payload: bytes,
    at: str,
) -> None:
    """The same record queued for each of these peers (an action, a withdrawal)."""
    for peer in peers:
        enqueue_one_txn(
            conn,
            peer_id=peer,
            record_type=record_type,
            record_id=record_id,
            report_id=report_id,
            payload=payload,
            at=at,
        )


def cancel_reports_txn(conn: Tx, report_id: str, *, keep: Collection[str], reason: str) -> None:
    """Versions of the case not sent yet to peers other than `keep` never go (the decision
    that queued them changed), and say why. A peer that got none is then no holder; one that
    got an earlier version still is (`holders_txn`), and is told by a withdrawal."""
    waiting = conn.execute(
        "SELECT peer_id, seq FROM peer_outbox WHERE report_id = ? AND record_type = 'report'"
        " AND state = 'pending'",
        (report_id,),
    ).fetchall()
    conn.executemany(
        "UPDATE peer_outbox SET state = 'cancelled', last_error = ? WHERE peer_id = ? AND seq = ?",
        [(reason[:500], peer, seq) for peer, seq in waiting if peer not in keep],
    )


def sent_though_cancelled_txn(conn: Tx, peer_id: str, seqs: list[int], at: str) -> list[str]:
    """Versions among these items, which the peer took, that were cancelled after they had
    left for it (a push under way, a pulled page): the peer has them all the same, so they
    are sent. Returns their cases."""
    late = select_in(
        conn,
        "SELECT seq, report_id FROM peer_outbox WHERE peer_id = ? AND state = 'cancelled'"
        " AND record_type = 'report' AND seq IN ({marks})",
        seqs,
        peer_id,
    )
    conn.executemany(
        "UPDATE peer_outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1"
        " WHERE peer_id = ? AND seq = ?",
        [(at, peer_id, row[0]) for row in late],
    )
    return [row[1] for row in late]


def mark_sent_txn(conn: Tx, peer_id: str, seqs: list[int], at: str) -> list[str]:
    """Items the peer answered as taken (or as copies of what it holds). Returns the cases
    whose version was cancelled while it was on its way (`sent_though_cancelled_txn`)."""
    late = sent_though_cancelled_txn(conn, peer_id, seqs, at)
    conn.executemany(
        "UPDATE peer_outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1"
        " WHERE peer_id = ? AND seq = ? AND state = 'pending'",
        [(at, peer_id, seq) for seq in seqs],
    )
    return late


def has_pending_report_txn(conn: Tx, peer_id: str, report_id: str) -> bool:
    """Whether a version of the case waits for the peer."""
    row = conn.execute(
        "SELECT 1 FROM peer_outbox WHERE peer_id = ? AND report_id = ? AND record_type = 'report'"
        " AND state = 'pending' LIMIT 1",
        (peer_id, report_id),
    ).fetchone()
    return row is not None


def mark_dead_txn(conn: Tx, peer_id: str, dead: list[tuple[int, str]]) -> None:
    """(seq, reason) of items never to be retried: one bad record must not block the queue."""
    conn.executemany(
        "UPDATE peer_outbox SET state = 'dead', last_error = ? WHERE peer_id = ? AND seq = ?",
        [(reason, peer_id, seq) for seq, reason in dead],
    )


def acknowledge_txn(conn: Tx, peer_id: str, *, up_to: int, at: str) -> list[OutboxItem]:
    """A pulling peer's cursor says it committed everything up to `up_to`: the pending items
    up to it are sent. Returns them (without payloads)."""
    acknowledged = [
        _item_without_payload(row)
        for row in conn.execute(
            "SELECT seq, record_type, record_id, report_id FROM peer_outbox"
            " WHERE peer_id = ? AND state = 'pending' AND seq <= ?",
            (peer_id, up_to),
        )
    ]
    if acknowledged:
        conn.execute(
            "UPDATE peer_outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1"
            " WHERE peer_id = ? AND state = 'pending' AND seq <= ?",
            (at, peer_id, up_to),
        )
    return acknowledged


def requeue_dead_txn(conn: Tx, peer_id: str, at: str) -> list[int]:
    """Queue again, in their order and under new sequence numbers, the items the peer
    rejected; the dead rows stay as history, marked `requeued`. Returns their old seqs."""
    dead = conn.execute(
        "SELECT seq, record_type, record_id, report_id, payload FROM peer_outbox"
        " WHERE peer_id = ? AND state = 'dead' ORDER BY seq",
        (peer_id,),
    ).fetchall()
    if not dead:
        return []
    conn.executemany(
        "UPDATE peer_outbox SET state = 'requeued' WHERE peer_id = ? AND seq = ?",
        [(peer_id, row[0]) for row in dead],
    )
    enqueue_txn(conn, peer_id, [Queued(row[1], row[2], row[3], row[4], at) for row in dead])
    return [int(row[0]) for row in dead]


def store_receipt_txn(conn: Tx, peer_id: str, txn_id: str, frame: bytes, at: str) -> None:
    """The peer's signed receipt for one of our transactions (kept as evidence)."""
    conn.execute(
        "INSERT OR IGNORE INTO receipts (peer_id, txn_id, frame, at) VALUES (?, ?, ?, ?)",
        (peer_id, txn_id, frame, at),
    )
