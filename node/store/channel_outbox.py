"""The channel outbox: referrals and notices queued for national channels (this module alone
reads and writes the channel_outbox table).

A row is one case for one routing role (`role`: law_enforcement, host_notice, ...); the channel
that carries it is chosen from node.toml when it is sent and recorded in `sent_via`. Readers are
async and run on the reader connection; writers are `*_txn(conn, ...)` and join the caller's
transaction (`Database.run`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from node.store import dead_letters
from node.store.db import Database, Tx, select_in
from node.store.dead_letters import DeadLetter, Direction

ERROR_LIMIT = 500  # a last error is a diagnosis, not a copy of what failed


@dataclass(frozen=True)
class ChannelItem:
    """A message to queue: one case for one role, due at once (`created_at`)."""

    role: str
    report_id: str
    kind: str  # "report", or "reminder" for a host that has not acted
    payload: dict[str, Any]
    created_at: str


@dataclass(frozen=True)
class OutboxRow:
    """A pending row as the dispatcher plans it, with its case's police clearance."""

    id: int
    role: str
    report_id: str
    kind: str
    payload: str  # JSON as stored: a row whose payload cannot be read is dead-lettered alone
    created_at: str
    notice_ref: str | None
    lea_cleared_at: str | None

    @classmethod
    def from_row(cls, row: Any) -> OutboxRow:
        return cls(
            id=int(row["id"]),
            role=str(row["role"]),
            report_id=str(row["report_id"]),
            kind=str(row["kind"]),
            payload=row["payload"],
            created_at=str(row["created_at"]),
            notice_ref=row["notice_ref"],
            lea_cleared_at=row["lea_cleared_at"],
        )


@dataclass(frozen=True)
class DeadRow:
    """A row to give up on, and why. `channel` is the channel that was chosen for it; None when
    none was (the dead letter then names the role, as for a role no channel serves)."""

    row_id: int
    role: str
    report_id: str
    reason: str
    channel: str | None = None


@dataclass(frozen=True)
class QueuedMessage:
    """What a case shows of one of its channel messages."""

    role: str
    state: str
    kind: str
    id: int
    delivered_at: str | None
    created_at: str
    last_error: str | None
    notice_ref: str | None


# reads -------------------------------------------------------------------------------------------
async def due(db: Database, now: str, limit: int) -> list[OutboxRow]:
    """Pending rows whose time has come, oldest first."""
    rows = await db.fetch_all(
        "SELECT o.id, o.role, o.report_id, o.kind, o.payload, o.created_at, o.notice_ref,"
        " r.lea_cleared_at FROM channel_outbox o LEFT JOIN reports r ON r.id = o.report_id"
        " WHERE o.state = 'pending' AND o.next_attempt_at <= ? ORDER BY o.id LIMIT ?",
        (now, limit),
    )
    return [OutboxRow.from_row(row) for row in rows]


async def for_report(db: Database, report_id: str) -> list[QueuedMessage]:
    rows = await db.fetch_all(
        "SELECT role, state, kind, id, delivered_at, created_at, last_error, notice_ref"
        " FROM channel_outbox WHERE report_id = ? ORDER BY id",
        (report_id,),
    )
    return [QueuedMessage(**dict(row)) for row in rows]


async def report_ids_by_notice_ref(db: Database, notice_ref: str) -> list[str]:
    """The cases a grouped notice's own reference names."""
    rows = await db.fetch_all(
        "SELECT DISTINCT report_id FROM channel_outbox WHERE notice_ref = ?", (notice_ref,)
    )
    return [str(row[0]) for row in rows]


async def waiting_host_notices(db: Database, report_id: str) -> list[str]:
    """When each host notice of this case still waiting to go was queued."""
    rows = await db.fetch_all(
        "SELECT created_at FROM channel_outbox WHERE report_id = ? AND role = 'host_notice'"
        " AND kind = 'report' AND state = 'pending'",
        (report_id,),
    )
    return [str(row["created_at"]) for row in rows]


async def pending_by_role(db: Database) -> dict[str, int]:
    rows = await db.fetch_all(
        "SELECT role, COUNT(*) AS n FROM channel_outbox WHERE state = 'pending' GROUP BY role"
    )
    return {str(row["role"]): int(row["n"]) for row in rows}


async def counts_by_channel(db: Database) -> dict[tuple[str, str], int]:
    """(channel name, state): messages a configured channel carried or gave up on."""
    rows = await db.fetch_all(
        "SELECT sent_via, state, COUNT(*) AS n FROM channel_outbox WHERE sent_via IS NOT NULL"
        " GROUP BY sent_via, state"
    )
    return {(str(row["sent_via"]), str(row["state"])): int(row["n"]) for row in rows}


async def counts_by_role(db: Database) -> dict[tuple[str, str], int]:
    """(role, state): every message, whichever channel carried it."""
    rows = await db.fetch_all(
        "SELECT role, state, COUNT(*) AS n FROM channel_outbox GROUP BY role, state"
    )
    return {(str(row["role"]), str(row["state"])): int(row["n"]) for row in rows}


# writes (inside the caller's transaction) --------------------------------------------------------
def enqueue_txn(conn: Tx, items: Iterable[ChannelItem]) -> None:
    conn.executemany(
        "INSERT INTO channel_outbox (role, report_id, kind, payload, created_at,"
        " next_attempt_at) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                item.role,
                item.report_id,
                item.kind,
                orjson.dumps(item.payload).decode(),
                item.created_at,
                item.created_at,
            )
            for item in items
        ],
    )


def set_payload_txn(conn: Tx, row_id: int, payload: dict[str, Any]) -> None:
    """A row's payload completed after it was queued (an abuse contact found by RDAP)."""
    conn.execute(
        "UPDATE channel_outbox SET payload = ? WHERE id = ?",
        (orjson.dumps(payload).decode(), row_id),
    )


def postpone_txn(conn: Tx, rows: Iterable[tuple[int, str]], until: str) -> None:
    """Rows (id, why) that cannot go now (no channel serves their role) wait until `until`."""
    conn.executemany(
        "UPDATE channel_outbox SET last_error = ?, next_attempt_at = ? WHERE id = ?",
        [(why[:ERROR_LIMIT], until, row_id) for row_id, why in rows],
    )


def attempts_txn(conn: Tx, row_ids: Sequence[int]) -> int:
    """The most attempts any of these rows has had (a grouped notice's rows go together)."""
    rows = select_in(
        conn, "SELECT attempts FROM channel_outbox WHERE id IN ({marks})", list(row_ids)
    )
    return max((int(row[0]) for row in rows), default=0)


def delivered_txn(
    conn: Tx,
    row_ids: Sequence[int],
    *,
    at: str,
    attempts: int,
    channel: str,
    notice_ref: str | None,
) -> None:
    conn.executemany(
        "UPDATE channel_outbox SET state = 'delivered', delivered_at = ?, attempts = ?,"
        " last_error = NULL, sent_via = ?, notice_ref = ? WHERE id = ?",
        [(at, attempts, channel, notice_ref, row_id) for row_id in row_ids],
    )


def retry_txn(
    conn: Tx,
    row_ids: Sequence[int],
    *,
    attempts: int,
    error: str,
    next_attempt_at: str,
    notice_ref: str | None,
) -> None:
    # The notice keeps its reference across retries: the host may already have one copy.
    conn.executemany(
        "UPDATE channel_outbox SET attempts = ?, last_error = ?, next_attempt_at = ?,"
        " notice_ref = ? WHERE id = ?",
        [
            (attempts, error[:ERROR_LIMIT], next_attempt_at, notice_ref, row_id)
            for row_id in row_ids
        ],
    )


def dead_txn(
    conn: Tx,
    rows: Sequence[DeadRow],
    *,
    at: str,
    attempts: int | None = None,
    sent_via: str | None = None,
) -> None:
    """Give up on rows: each becomes dead with its reason and gets a dead letter, which names
    the row's channel, or its role when no channel was chosen. `attempts` and `sent_via`, when
    given, are recorded too (a delivery that failed for good: `channels requeue` finds them)."""
    conn.executemany(
        "UPDATE channel_outbox SET state = 'dead', last_error = ?,"
        " attempts = COALESCE(?, attempts), sent_via = COALESCE(?, sent_via) WHERE id = ?",
        [(row.reason[:ERROR_LIMIT], attempts, sent_via, row.row_id) for row in rows],
    )
    dead_letters.record_txn(
        conn,
        [
            DeadLetter(
                peer_id=row.channel or row.role,
                direction=Direction.CHANNEL,
                reason=row.reason,
                at=at,
                seq=row.row_id,
                record_type=row.role,
                record_id=row.report_id,
            )
            for row in rows
        ],
    )


def queue_reminders_txn(conn: Tx, *, node_id: str, delivered_before: str, at: str) -> int:
    """Queue a reminder for each case whose host notice went out and whose host has not acted
    (no removal) since our last notice or reminder before `delivered_before`, unless one is
    already waiting or the case is closed. Returns how many were queued."""
    due_rows = conn.execute(
        "SELECT o.report_id, o.role, o.payload, MAX(a.at) AS last_at"
        " FROM channel_outbox o JOIN actions a ON a.report_id = o.report_id"
        " AND a.code IN ('notice_sent', 'reminder_sent') AND a.by_node = ?"
        " JOIN reports r ON r.id = o.report_id"
        " WHERE o.role IN ('host_notice', 'cdn_notice') AND o.state = 'delivered'"
        " AND o.kind = 'report' AND r.status NOT IN ('closed', 'withdrawn')"
        " AND NOT EXISTS (SELECT 1 FROM actions x WHERE x.report_id = o.report_id"
        " AND x.code IN ('content_removed', 'content_unavailable'))"
        " AND NOT EXISTS (SELECT 1 FROM channel_outbox p WHERE p.report_id ="
        " o.report_id AND p.kind = 'reminder' AND p.state = 'pending')"
        " GROUP BY o.report_id HAVING last_at <= ?",
        (node_id, delivered_before),
    ).fetchall()
    conn.executemany(
        "INSERT INTO channel_outbox (role, report_id, kind, payload, created_at,"
        " next_attempt_at) VALUES (?, ?, 'reminder', ?, ?, ?)",
        [(row["role"], row["report_id"], row["payload"], at, at) for row in due_rows],
    )
    return len(due_rows)


def requeue_dead_txn(conn: Tx, channel: str, at: str) -> list[int]:
    """Make the rows this channel gave up on pending again, due at `at`, with their attempts
    reset; they keep their ids (their place) and their notice reference. Only dead rows move.
    Returns their ids."""
    ids = [
        int(row[0])
        for row in conn.execute(
            "SELECT id FROM channel_outbox WHERE state = 'dead' AND sent_via = ? ORDER BY id",
            (channel,),
        )
    ]
    conn.executemany(
        "UPDATE channel_outbox SET state = 'pending', attempts = 0, next_attempt_at = ?,"
        " last_error = NULL WHERE id = ?",
        [(at, row_id) for row_id in ids],
    )
    return ids


@dataclass(frozen=True)
class Planned:
    """A case's message as a new decision re-plans it: one not sent yet (pending, or dead and
    so still requeueable) or one delivered, with the payload it carried."""

    id: int
    role: str
    kind: str
    state: str
    payload: dict[str, Any]


def planned_for_report_txn(conn: Tx, report_id: str) -> list[Planned]:
    """The case's messages that are not cancelled, in the order they were queued."""
    return [
        Planned(int(row[0]), row[1], row[2], row[3], orjson.loads(row[4]))
        for row in conn.execute(
            "SELECT id, role, kind, state, payload FROM channel_outbox WHERE report_id = ?"
            " AND state IN ('pending', 'dead', 'delivered') ORDER BY id",
            (report_id,),
        )
    ]


def cancel_txn(conn: Tx, row_ids: Sequence[int], reason: str) -> None:
    """These messages never go (the decision that queued them changed), and say why. Only a
    message not sent yet is cancelled: what went out stays delivered."""
    conn.executemany(
        "UPDATE channel_outbox SET state = 'cancelled', last_error = ? WHERE id = ?"
        " AND state IN ('pending', 'dead')",
        [(reason[:ERROR_LIMIT], row_id) for row_id in row_ids],
    )


def release_unserved_txn(conn: Tx, at: str) -> int:
    """Messages set aside because no channel served them are due again (the channels changed):
    the next dispatch sends them, or sets aside again those that still have no channel.

    Such a row is pending with a reason and no attempt (`postpone_txn`); a failed delivery
    counts an attempt (`retry_txn`)."""
    cursor = conn.execute(
        "UPDATE channel_outbox SET next_attempt_at = ?, last_error = NULL WHERE state = 'pending'"
        " AND attempts = 0 AND last_error IS NOT NULL",
        (at,),
    )
    return cursor.rowcount


# the console's alerts ----------------------------------------------------------------------------
@dataclass(frozen=True)
class WaitingNotice:
    """A host notice not sent yet, with its case's category and police clearance."""

    id: int
    role: str
    report_id: str
    created_at: str
    attempts: int
    last_error: str | None
    category: str | None
    lea_cleared_at: str | None


@dataclass(frozen=True)
class Failure:
    """A message that failed at least once (still retried), was given up on, or is set aside
    because no channel serves it."""

    id: int
    role: str
    report_id: str
    kind: str
    created_at: str
    attempts: int
    last_error: str | None
    state: str


async def waiting_notices(db: Database, limit: int) -> list[WaitingNotice]:
    """Host notices not yet sent, oldest first."""
    rows = await db.fetch_all(
        "SELECT o.id, o.role, o.report_id, o.created_at, o.attempts, o.last_error,"
        " r.category, r.lea_cleared_at FROM channel_outbox o JOIN reports r ON r.id ="
        " o.report_id WHERE o.state = 'pending' AND o.role = 'host_notice' AND"
        " o.kind = 'report' ORDER BY o.id LIMIT ?",
        (limit,),
    )
    return [WaitingNotice(**dict(row)) for row in rows]


async def failures(db: Database, limit: int) -> list[Failure]:
    rows = await db.fetch_all(
        "SELECT id, role, report_id, kind, created_at, attempts, last_error, state"
        " FROM channel_outbox WHERE state = 'dead' OR (state = 'pending' AND (attempts > 0"
        " OR last_error IS NOT NULL))"
        " ORDER BY id LIMIT ?",
        (limit,),
    )
    return [Failure(**dict(row)) for row in rows]
