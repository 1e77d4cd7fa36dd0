"""The statistics and metrics queries: read-only figures over cases, outboxes and the audit log.

`node.stats` computes and renders the annual figures from these; `node.api.metrics` writes the
scrape-time ones in the Prometheus format. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from node.store import channel_outbox
from node.store.db import Database

GroupColumn = Literal["status", "category", "verdict", "source"]
_GROUP_COLUMNS: frozenset[str] = frozenset(("status", "category", "verdict", "source"))


@dataclass(frozen=True)
class Received:
    """Reports received in [since, until) (stored RFC 3339 text, which sorts by time); either
    end may be open."""

    since: str | None = None
    until: str | None = None

    def where(self) -> tuple[str, list[str]]:
        """The condition on `r.received_at` (every query names reports `r`) and its values."""
        clauses, params = ["1"], []
        if self.since is not None:
            clauses.append("r.received_at >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("r.received_at < ?")
            params.append(self.until)
        return " AND ".join(clauses), params


@dataclass(frozen=True)
class PeerOutboxCount:
    """Our reports in one state of a peer's outbox (each report counted once)."""

    peer: str
    state: str
    reports: int


async def _counts(db: Database, sql: str, params: Sequence[Any]) -> dict[str, int]:
    return {str(row[0]): int(row[1]) for row in await db.fetch_all(sql, params)}


# the annual figures (node.stats) ---------------------------------------------------------------
async def report_count(db: Database, received: Received) -> int:
    cond, params = received.where()
    row = await db.fetch_one(f"SELECT COUNT(*) FROM reports r WHERE {cond}", params)  # noqa: S608 - fixed clauses
    return int(row[0]) if row else 0


async def counts_by(
    db: Database, column: GroupColumn, empty: str, received: Received
) -> dict[str, int]:
    """Reports per value of a column (`empty` for none), most frequent first."""
    if column not in _GROUP_COLUMNS:
        raise ValueError(f"reports are not counted by {column!r}")
    cond, params = received.where()
    return await _counts(
        db,
        f"SELECT COALESCE(r.{column}, ?), COUNT(*) FROM reports r WHERE {cond}"  # noqa: S608 - fixed columns
        " GROUP BY 1 ORDER BY 2 DESC, 1",
        [empty, *params],
    )


async def counts_by_hosting_country(db: Database, received: Received) -> dict[str, int]:
    """Reports per hosting country (a report hosted in two countries counts in both).

    The country is the one routing used: an analyst's override, else the traced countries
    (CDN edge addresses excluded). Without one: `cdn`, `untraced` (trace pending) or `unknown`.
    """
    cond, params = received.where()
    override = "json_extract(r.trace_json, '$.override.country')"
    sql = f"""
        SELECT country, COUNT(*) FROM (
            SELECT r.id, {override} AS country FROM reports r
            WHERE {cond} AND {override} IS NOT NULL
            UNION
            SELECT r.id, c.value FROM reports r, json_each(r.trace_json, '$.countries') c
            WHERE {cond} AND {override} IS NULL
            UNION ALL
            SELECT r.id, CASE
                WHEN r.trace_status = 'pending' THEN 'untraced'
                WHEN json_extract(r.trace_json, '$.cdn') THEN 'cdn'
                ELSE 'unknown' END
            FROM reports r
            WHERE {cond} AND {override} IS NULL
              AND COALESCE(json_array_length(r.trace_json, '$.countries'), 0) = 0
        ) GROUP BY country ORDER BY 2 DESC, 1
    """  # noqa: S608 - fixed clauses
    return await _counts(db, sql, [*params, *params, *params])


async def forwarded_by_peer(db: Database, received: Received) -> list[PeerOutboxCount]:
    """Per peer and outbox state: our reports queued for it (each report once)."""
    cond, params = received.where()
    sql = f"""
        SELECT o.peer_id, o.state, COUNT(DISTINCT o.report_id) FROM peer_outbox o
        JOIN reports r ON r.id = o.report_id WHERE o.record_type = 'report' AND {cond}
        GROUP BY o.peer_id, o.state
    """  # noqa: S608 - fixed clauses
    return [
        PeerOutboxCount(str(row[0]), str(row[1]), int(row[2]))
        for row in await db.fetch_all(sql, params)
    ]


async def received_by_origin(db: Database, node_id: str, received: Received) -> dict[str, int]:
    """Reports each peer sent us (every origin but this node)."""
    cond, params = received.where()
    return await _counts(
        db,
        f"SELECT r.origin, COUNT(*) FROM reports r WHERE r.origin != ? AND {cond}"  # noqa: S608 - fixed clauses
        " GROUP BY r.origin",
        [node_id, *params],
    )


async def rerouted(db: Database, received: Received) -> dict[str, int]:
    """Cases sent to the fallback although a peer hotline exists there, by reason."""
    cond, params = received.where()
    reason = "json_extract(t.value, '$.rerouted')"
    sql = f"""
        SELECT {reason}, COUNT(DISTINCT r.id) FROM reports r
        JOIN routing_decisions d ON d.report_id = r.id, json_each(d.targets) t
        WHERE {cond} AND {reason} IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1
    """  # noqa: S608 - fixed clauses
    return await _counts(db, sql, params)


async def first_action_delays(db: Database, codes: Sequence[str], received: Received) -> list[int]:
    """Seconds from a report's receipt to the first action with one of `codes`, per report."""
    cond, params = received.where()
    marks = ", ".join("?" for _ in codes)
    # strftime('%s') is whole seconds since the epoch, exact for our second-precision times.
    sql = f"""
        SELECT CAST(strftime('%s', f.first_at) AS INTEGER)
             - CAST(strftime('%s', r.received_at) AS INTEGER)
        FROM (SELECT report_id, MIN(at) AS first_at FROM actions WHERE code IN ({marks})
              GROUP BY report_id) f
        JOIN reports r ON r.id = f.report_id WHERE {cond}
    """  # noqa: S608 - placeholders and fixed clauses only
    rows = await db.fetch_all(sql, [*codes, *params])
    return [int(row[0]) for row in rows]


# scrape-time figures (GET /metrics) ------------------------------------------------------------
@dataclass(frozen=True)
class PeerState:
    node_id: str
    status: str
    backoff_until: str | None


@dataclass(frozen=True)
class DeadLetterCount:
    peer_id: str
    direction: str
    count: int


@dataclass(frozen=True)
class StoreFigures:
    """What `GET /metrics` reads from the database (every query is covered by an index)."""

    peers: list[PeerState]
    peer_outbox: dict[tuple[str, str], int]  # (peer, state): records
    dead_letters: list[DeadLetterCount]
    channel_outbox: dict[tuple[str, str], int]  # (role, state): messages
    reports_by_status: dict[str, int]
    trace_pending: int
    audit_entries: int


async def store_figures(db: Database) -> StoreFigures:
    peers = [
        PeerState(str(row[0]), str(row[1]), row[2])
        for row in await db.fetch_all(
            "SELECT node_id, status, backoff_until FROM peers ORDER BY node_id"
        )
    ]
    outbox = {
        (str(row[0]), str(row[1])): int(row[2])
        for row in await db.fetch_all(
            "SELECT peer_id, state, COUNT(*) FROM peer_outbox GROUP BY peer_id, state"
        )
    }
    dead = [
        DeadLetterCount(str(row[0]), str(row[1]), int(row[2]))
        for row in await db.fetch_all(
            "SELECT peer_id, direction, COUNT(*) FROM dead_letters GROUP BY peer_id, direction"
            " ORDER BY peer_id, direction"
        )
    ]
    statuses = await _counts(
        db, "SELECT status, COUNT(*) FROM reports GROUP BY status ORDER BY status", ()
    )
    pending = await db.fetch_one("SELECT COUNT(*) FROM reports WHERE trace_status = 'pending'")
    audit = await db.fetch_one("SELECT COALESCE(MAX(seq), 0) FROM audit_log")
    return StoreFigures(
        peers=peers,
        peer_outbox=outbox,
        dead_letters=dead,
        channel_outbox=await channel_outbox.counts_by_role(db),
        reports_by_status=statuses,
        trace_pending=int(pending[0]) if pending else 0,
        audit_entries=int(audit[0]) if audit else 0,
    )
