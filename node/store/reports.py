"""Case storage: reports, their versions, actions, hosting evidence, routing and outbox rows."""

from __future__ import annotations

from typing import Any

import aiosqlite
import orjson

from node.store.db import Database, Row, Tx


class ReportStore:
    """Narrow access to cases; writes take the caller's transaction connection."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # reads -------------------------------------------------------------------------------
    async def get(self, report_id: str) -> aiosqlite.Row | None:
        return await self.db.fetch_one("SELECT * FROM reports WHERE id = ?", (report_id,))

    async def list_cases(
        self, *, status: str | None, limit: int, after: str | None
    ) -> list[aiosqlite.Row]:
        clauses, params = [], []
        if status:
            clauses.append("status = ?")
            params.append(status)
        if after:
            clauses.append("received_at || id < ?")
            params.append(after)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return await self.db.fetch_all(
            f"SELECT * FROM reports {where} ORDER BY received_at DESC, id DESC LIMIT ?",  # noqa: S608 - fixed clauses
            (*params, limit),
        )

    async def actions(self, report_id: str) -> list[aiosqlite.Row]:
        return await self.db.fetch_all(
            "SELECT * FROM actions WHERE report_id = ? ORDER BY at, rowid", (report_id,)
        )

    async def addresses(self, report_id: str) -> list[aiosqlite.Row]:
        return await self.db.fetch_all(
            "SELECT * FROM hosting_addresses WHERE report_id = ? ORDER BY ip", (report_id,)
        )

    async def latest_routing(self, report_id: str) -> aiosqlite.Row | None:
        return await self.db.fetch_one(
            "SELECT * FROM routing_decisions WHERE report_id = ? ORDER BY id DESC LIMIT 1",
            (report_id,),
        )

    async def queued(self, report_id: str) -> list[dict[str, Any]]:
        peers = await self.db.fetch_all(
            "SELECT peer_id AS name, 'peer' AS kind, state, record_type, seq, sent_at AS done_at"
            " FROM peer_outbox WHERE report_id = ? ORDER BY peer_id, seq",
            (report_id,),
        )
        channels = await self.db.fetch_all(
            "SELECT channel AS name, 'channel' AS kind, state, kind AS record_type, id AS seq,"
            " delivered_at AS done_at FROM channel_outbox WHERE report_id = ? ORDER BY id",
            (report_id,),
        )
        return [dict(row) for row in [*peers, *channels]]

    async def pending_traces(self, limit: int) -> list[aiosqlite.Row]:
        return await self.db.fetch_all(
            "SELECT id, url FROM reports WHERE trace_status = 'pending' ORDER BY received_at"
            " LIMIT ?",
            (limit,),
        )

    # writes (inside a transaction) --------------------------------------------------------
    @staticmethod
    def find_open_by_url(conn: Tx, url_key: str) -> Row | None:
        row: Row | None = conn.execute(
            "SELECT id, duplicates FROM reports WHERE url_key = ?"
            " AND status NOT IN ('closed', 'withdrawn') ORDER BY received_at LIMIT 1",
            (url_key,),
        ).fetchone()
        return row

    @staticmethod
    def insert(conn: Tx, values: dict[str, Any]) -> None:
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        conn.execute(
            f"INSERT INTO reports ({columns}) VALUES ({marks})",  # noqa: S608 - our own keys
            tuple(values.values()),
        )

    @staticmethod
    def update(conn: Tx, report_id: str, values: dict[str, Any]) -> None:
        assignments = ", ".join(f"{key} = ?" for key in values)
        conn.execute(
            f"UPDATE reports SET {assignments} WHERE id = ?",  # noqa: S608 - our own keys
            (*values.values(), report_id),
        )

    @staticmethod
    def mark_withdrawn(conn: Tx, report_id: str, at: str) -> None:
        """A withdrawn case: closed for good, and nothing still queued for channels goes out."""
        conn.execute(
            "UPDATE channel_outbox SET state = 'cancelled' WHERE report_id = ? AND state ="
            " 'pending'",
            (report_id,),
        )
        conn.execute(
            "UPDATE reports SET status = 'withdrawn', updated_at = ? WHERE id = ?", (at, report_id)
        )

    @staticmethod
    def insert_version(conn: Tx, report_id: str, seq: int, payload: bytes, at: str) -> None:
        conn.execute(
            "INSERT INTO report_versions (report_id, seq, payload, created_at) VALUES (?, ?, ?, ?)",
            (report_id, seq, payload, at),
        )

    @staticmethod
    def insert_action(conn: Tx, values: dict[str, Any]) -> bool:
        """Insert unless an action with this id exists (actions arrive again on retries)."""
        cursor = conn.execute(
            "INSERT OR IGNORE INTO actions (id, report_id, code, at, by_node, analyst, country,"
            " reason) VALUES (:id, :report_id, :code, :at, :by_node, :analyst, :country, :reason)",
            values,
        )
        return cursor.rowcount == 1

    @staticmethod
    def replace_addresses(conn: Tx, report_id: str, addresses: list[dict[str, Any]]) -> None:
        conn.execute("DELETE FROM hosting_addresses WHERE report_id = ?", (report_id,))
        conn.executemany(
            "INSERT OR REPLACE INTO hosting_addresses (report_id, ip, country, basis, source, asn,"
            " cdn) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    report_id,
                    a["ip"],
                    a.get("country"),
                    a.get("basis"),
                    a.get("source"),
                    a.get("asn"),
                    int(bool(a.get("cdn"))),
                )
                for a in addresses
            ],
        )

    @staticmethod
    def insert_routing(
        conn: Tx,
        report_id: str,
        decision: str,
        targets: list[dict[str, Any]],
        reasons: list[str],
        at: str,
        by: str,
    ) -> None:
        conn.execute(
            "INSERT INTO routing_decisions (report_id, decision, targets, reasons, decided_at,"
            " decided_by) VALUES (?, ?, ?, ?, ?, ?)",
            (
                report_id,
                decision,
                orjson.dumps(targets).decode(),
                orjson.dumps(reasons).decode(),
                at,
                by,
            ),
        )

    @staticmethod
    def enqueue_peer(
        conn: Tx,
        *,
        peer_id: str,
        record_type: str,
        record_id: str,
        report_id: str,
        payload: bytes,
        at: str,
    ) -> int:
        """Append to the peer's outbox with the next per-peer sequence number."""
        row = conn.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM peer_outbox WHERE peer_id = ?", (peer_id,)
        ).fetchone()
        seq = int(row[0]) if row else 1
        conn.execute(
            "INSERT INTO peer_outbox (peer_id, seq, record_type, record_id, report_id, payload,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (peer_id, seq, record_type, record_id, report_id, payload, at),
        )
        return seq

    @staticmethod
    def enqueue_channel(
        conn: Tx,
        *,
        channel: str,
        report_id: str,
        kind: str,
        payload: dict[str, Any],
        at: str,
    ) -> int:
        cursor = conn.execute(
            "INSERT INTO channel_outbox (channel, report_id, kind, payload, created_at,"
            " next_attempt_at) VALUES (?, ?, ?, ?, ?, ?)",
            (channel, report_id, kind, orjson.dumps(payload).decode(), at, at),
        )
        return int(cursor.lastrowid or 0)
