"""What peers sent us: message ids taken, envelopes kept as evidence, answers, request nonces."""

from __future__ import annotations

from typing import NamedTuple

from node.store.db import Database, Tx, select_in

_SEEN_SQL = "SELECT msg_id FROM inbox_seen WHERE sender = ? AND msg_id IN ({marks})"
_INSERT_SEEN = "INSERT OR IGNORE INTO inbox_seen (sender, msg_id, created_at) VALUES (?, ?, ?)"
_INSERT_ENVELOPE = (
    "INSERT INTO inbox_envelopes (digest, sender, msg_id, record_type, record_id,"
    " report_id, received_at, frame, signed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ANSWER_SQL = "SELECT response FROM inbound_transactions WHERE sender = ? AND txn_id = ?"


class SeenMessage(NamedTuple):
    """A message id taken from a sender (a tuple: a batch writes thousands as they are)."""

    sender: str
    msg_id: str
    created_at: str


class KeptEnvelope(NamedTuple):
    """The exact bytes of an envelope we accepted, kept as evidence (non-repudiation)."""

    digest: str
    sender: str
    msg_id: str
    record_type: str
    record_id: str
    report_id: str
    received_at: str
    frame: bytes
    # Header, signature and payload as the sender signed them (protocol.recovery.SignedRecord),
    # what we give back to that sender if it asks for its records (a restored node).
    signed: bytes | None = None


# message ids (replay) -------------------------------------------------------------------------
async def seen(db: Database, sender: str, msg_ids: list[str]) -> set[str]:
    """Those of `msg_ids` already taken from `sender`."""
    return {row[0] for row in await db.fetch_in(_SEEN_SQL, msg_ids, sender)}


def seen_txn(conn: Tx, sender: str, msg_ids: list[str]) -> set[str]:
    return {row[0] for row in select_in(conn, _SEEN_SQL, msg_ids, sender)}


def mark_seen_txn(conn: Tx, message: SeenMessage) -> bool:
    """Take a message id; False when it was already taken (a copy)."""
    return conn.execute(_INSERT_SEEN, message).rowcount == 1


def mark_seen_many_txn(conn: Tx, messages: list[SeenMessage]) -> None:
    conn.executemany(_INSERT_SEEN, messages)


# evidence ---------------------------------------------------------------------------------
def keep_envelopes_txn(conn: Tx, envelopes: list[KeptEnvelope]) -> None:
    conn.executemany(_INSERT_ENVELOPE, envelopes)


class KeptRecord(NamedTuple):
    """A record a sender gave us, as kept: to give back to that sender (protocol.md §13.8)."""

    n: int  # its arrival number here: pages of a recovery follow it
    record_type: str
    report_id: str
    frame: bytes
    signed: bytes | None  # None for what arrived before we kept it (migration 17)


async def kept_records_of(
    db: Database, sender: str, *, after: int, limit: int, types: tuple[str, ...]
) -> list[KeptRecord]:
    """Up to `limit` records of these types that `sender` gave us after arrival number `after`,
    in arrival order. Read along the table's own order (no index on the sender: a recovery is
    rare, and each record we take should not pay for one)."""
    marks = ", ".join("?" for _ in types)
    rows = await db.fetch_all(
        "SELECT id, record_type, report_id, frame, signed FROM inbox_envelopes"  # noqa: S608
        f" WHERE id > ? AND sender = ? AND record_type IN ({marks}) ORDER BY id LIMIT ?",
        (after, sender, *types, limit),
    )
    return [
        KeptRecord(int(r[0]), r[1], r[2], bytes(r[3]), None if r[4] is None else bytes(r[4]))
        for r in rows
    ]


# answers to pushed transactions ---------------------------------------------------------------
async def stored_answer(db: Database, sender: str, txn_id: str) -> bytes | None:
    """The answer we gave to this transaction, if we took it (a retry gets the same)."""
    row = await db.fetch_one(_ANSWER_SQL, (sender, txn_id))
    return bytes(row[0]) if row else None


def stored_answer_txn(conn: Tx, sender: str, txn_id: str) -> bytes | None:
    row = conn.execute(_ANSWER_SQL, (sender, txn_id)).fetchone()
    return bytes(row[0]) if row else None


def store_answer_txn(conn: Tx, sender: str, txn_id: str, answer: bytes, at: str) -> None:
    conn.execute(
        "INSERT INTO inbound_transactions (sender, txn_id, response, received_at)"
        " VALUES (?, ?, ?, ?)",
        (sender, txn_id, answer, at),
    )


# request nonces -------------------------------------------------------------------------------
async def nonce_used(db: Database, sender: str, nonce: str) -> bool:
    row = await db.fetch_one(
        "SELECT 1 FROM request_nonces WHERE sender = ? AND nonce = ?", (sender, nonce)
    )
    return row is not None


def claim_nonce_txn(conn: Tx, sender: str, nonce: str, at: str) -> bool:
    """Record a request's nonce; False when it was already used (a replay)."""
    cursor = conn.execute(
        "INSERT OR IGNORE INTO request_nonces (sender, nonce, created_at) VALUES (?, ?, ?)",
        (sender, nonce, at),
    )
    return cursor.rowcount == 1


# housekeeping ---------------------------------------------------------------------------------
def prune_txn(
    conn: Tx, *, seen_before: str, nonces_before: str, answers_before: str
) -> dict[str, int]:
    """Forget what replay checks no longer need: message ids and nonces older than the windows
    in which they are accepted, and answers older than a sender's retries. Counts per table."""
    counts: dict[str, int] = {}
    for table, column, horizon in (
        ("inbox_seen", "created_at", seen_before),
        ("request_nonces", "created_at", nonces_before),
        ("inbound_transactions", "received_at", answers_before),
    ):
        cursor = conn.execute(
            f"DELETE FROM {table} WHERE {column} < ?",  # noqa: S608 - fixed names
            (horizon,),
        )
        counts[table] = cursor.rowcount
    return counts
