"""The audit log: every decision and state change, appended in a SHA-256 hash chain."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from node.clock import iso
from node.store.db import Database, Tx

GENESIS = "0" * 64


def entry_hash(
    prev_hash: str, seq: int, at: str, actor: str, event: str, subject: str, details: str
) -> str:
    # Canonical JSON (keys.canonical_json) without its generic walk: the members are one
    # integer and strings by this signature, and every stored entry is hashed through here.
    body = orjson.dumps(
        {
            "seq": seq,
            "at": at,
            "actor": actor,
            "event": event,
            "subject": subject,
            "details": details,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + body).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One audit entry before it is chained (see `append_many`)."""

    at: str
    actor: str
    event: str
    subject: str
    details: dict[str, Any]


def append(
    conn: Tx,
    *,
    at: datetime,
    actor: str,
    event: str,
    subject: str,
    details: dict[str, Any] | None = None,
) -> int:
    """Append one entry inside the caller's write transaction; returns its sequence number."""
    return append_many(conn, [Entry(iso(at), actor, event, subject, details or {})])


def append_many(conn: Tx, entries: list[Entry]) -> int:
    """Chain and append entries in order inside the caller's transaction; returns the last seq.

    A received or imported batch writes thousands of entries: reading the chain head once and
    inserting them together costs a fraction of appending them one by one.
    """
    last = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (int(last[0]), str(last[1])) if last else (0, GENESIS)
    rows = []
    for entry in entries:
        seq += 1
        text = orjson.dumps(entry.details, option=orjson.OPT_SORT_KEYS).decode()
        digest = entry_hash(prev, seq, entry.at, entry.actor, entry.event, entry.subject, text)
        rows.append((seq, entry.at, entry.actor, entry.event, entry.subject, text, prev, digest))
        prev = digest
    conn.executemany(
        "INSERT INTO audit_log (seq, at, actor, event, subject, details, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    return seq


@dataclass(frozen=True)
class AuditVerification:
    entries: int
    first_broken: int | None
    problem: str | None
    # The last hash of an intact chain: record it elsewhere to detect later removal of the
    # newest entries (the chain alone cannot show a truncated tail).
    head: str | None = None

    @property
    def ok(self) -> bool:
        return self.first_broken is None


async def verify(db: Database, batch: int = 5000) -> AuditVerification:
    """Walk the chain from the start; name the first entry whose link or hash is wrong."""
    expected_prev, expected_seq, count = GENESIS, 1, 0
    while True:
        rows = await db.fetch_all(
            "SELECT seq, at, actor, event, subject, details, prev_hash, hash FROM audit_log"
            " WHERE seq >= ? ORDER BY seq LIMIT ?",
            (expected_seq, batch),
        )
        if not rows:
            return AuditVerification(count, None, None, expected_prev)
        for row in rows:
            seq = int(row["seq"])
            if seq != expected_seq:
                return AuditVerification(count, expected_seq, f"entry {expected_seq} is missing")
            if row["prev_hash"] != expected_prev:
                return AuditVerification(
                    count, seq, f"entry {seq} does not link to entry {seq - 1}"
                )
            recomputed = entry_hash(
                row["prev_hash"],
                seq,
                row["at"],
                row["actor"],
                row["event"],
                row["subject"],
                row["details"],
            )
            if recomputed != row["hash"]:
                return AuditVerification(count, seq, f"entry {seq} was altered (hash mismatch)")
            expected_prev, expected_seq, count = row["hash"], seq + 1, count + 1


async def initialised(db: Database) -> dict[str, Any] | None:
    """The details `init` wrote in the first entry (node id, country, fingerprint), if any."""
    row = await db.fetch_one(
        "SELECT details FROM audit_log WHERE seq = 1 AND event = 'node.initialised'"
    )
    if row is None:
        return None
    details: dict[str, Any] = orjson.loads(row["details"])
    return details
