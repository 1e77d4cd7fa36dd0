"""The console's reads: the triage queue, filtered and full-text search with paging, alerts."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

import aiosqlite

from node.store import channel_outbox
from node.store.db import Database


@dataclass(frozen=True, slots=True)
class ListedCase:
    """A case as a list shows it; the case page reads the whole case through CaseService.show.
    `rid` is its full-text index position, for a search's paging."""

    id: str
    url: str
    origin: str
    local_ref: str
    status: str
    source: str
    verdict: str | None
    category: str | None
    received_at: str
    duplicates: int
    trace_status: str
    rid: int | None = None


@dataclass(frozen=True, slots=True)
class KnownCase:
    """A waiting case whose hash is on a hash list: the queue shows these first."""

    id: str
    status: str
    category: str | None
    known_since: str


LIST_COLUMNS = ", ".join(
    f"reports.{column}" for column in ListedCase.__dataclass_fields__ if column != "rid"
)


@dataclass(frozen=True)
class Filters:
    """What a person narrows a list by; every field is optional."""

    statuses: tuple[str, ...] = ()
    category: str | None = None
    country: str | None = None
    source: str | None = None
    origin: str | None = None
    since: str | None = None  # received_at >= since (ISO text)
    until: str | None = None  # received_at < until

    def clauses(self) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("category", self.category),
            ("source", self.source),
            ("origin", self.origin),
        ):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.country:
            clauses.append(
                "EXISTS (SELECT 1 FROM hosting_addresses h WHERE h.report_id = reports.id"
                " AND h.country = ?)"
            )
            params.append(self.country)
        if self.since:
            clauses.append("received_at >= ?")
            params.append(self.since)
        if self.until:
            clauses.append("received_at < ?")
            params.append(self.until)
        return clauses, params


def split_cursor(cursor: str | None) -> tuple[str, str] | None:
    """A cursor is `received_at|id` of the last row shown; anything else starts over."""
    if not cursor or "|" not in cursor:
        return None
    at, _, case_id = cursor.partition("|")
    return at, case_id


def make_cursor(case: ListedCase) -> str:
    return f"{case.received_at}|{case.id}"


class ConsoleStore:
    """Reads only: the tables belong to the case, channel and federation stores."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def page(
        self, filters: Filters, *, after: str | None, limit: int, oldest_first: bool
    ) -> list[ListedCase]:
        """One page of cases in (received_at, id) order after the cursor.

        With several statuses, each is read through its own (status, received_at, id) index
        range and the pages merged, so a page costs `limit` index steps per status whatever
        the size of the store (one query with IN would sort every matching case).
        """
        statuses: tuple[str | None, ...] = filters.statuses or (None,)
        cursor = split_cursor(after)
        pages = []
        for status in statuses:
            clauses, params = filters.clauses()
            if status is not None:
                clauses.insert(0, "status = ?")
                params.insert(0, status)
            if cursor is not None:
                clauses.append(f"(received_at, id) {'>' if oldest_first else '<'} (?, ?)")
                params.extend(cursor)
            where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
            order = "ASC" if oldest_first else "DESC"
            rows = await self.db.fetch_all(
                f"SELECT {LIST_COLUMNS} FROM reports {where}"  # noqa: S608 - fixed clauses
                f" ORDER BY received_at {order}, id {order} LIMIT ?",
                (*params, limit),
            )
            pages.append([ListedCase(*row) for row in rows])
        if len(pages) == 1:
            return pages[0]

        def key(case: ListedCase) -> tuple[str, str]:
            return (case.received_at, case.id)

        merged = heapq.merge(*pages, key=key, reverse=not oldest_first)
        return list(merged)[:limit]

    async def search(self, query: str, *, after: int | None, limit: int) -> list[ListedCase]:
        """Cases whose URL, host, references or notes hold the words of `query` in order, newest
        first; `after` is the `rid` of the last row shown. A trailing `*` makes the last word a
        prefix (costly for a short prefix in a large store, so only when asked).

        FTS5 walks its index in rowid order, so a page costs the same for a word found in ten
        cases or in a million (ranking would score every match first).
        """
        words = "".join(ch if ch.isalnum() or ch in "-_" else " " for ch in query).split()
        if not words:
            return []
        # One quoted phrase: whatever a person types is never read as FTS5 query syntax.
        phrase = '"' + " ".join(words) + '"' + ("*" if query.rstrip().endswith("*") else "")
        cursor = "AND f.rowid < ?" if after is not None else ""
        rows = await self.db.fetch_all(
            f"SELECT {LIST_COLUMNS}, f.rowid AS rid FROM reports_fts f"  # noqa: S608
            f" JOIN reports ON reports.rowid = f.rowid WHERE reports_fts MATCH ? {cursor}"
            " ORDER BY f.rowid DESC LIMIT ?",
            (phrase, *([after] if after is not None else []), limit),
        )
        return [ListedCase(*row) for row in rows]

    async def known_cases(self, statuses: tuple[str, ...], *, limit: int) -> list[KnownCase]:
        """Cases waiting in these statuses whose hash is on a hash list, first known first
        (read through the partial index reports_known, one range per status)."""
        found: list[KnownCase] = []
        for status in statuses:
            rows = await self.db.fetch_all(
                "SELECT id, status, category, known_since FROM reports"
                " WHERE status = ? AND known_since IS NOT NULL ORDER BY known_since LIMIT ?",
                (status, limit),
            )
            found.extend(KnownCase(*row) for row in rows)
        return sorted(found, key=lambda case: case.known_since)[:limit]

    async def status_counts(self, statuses: tuple[str, ...], cap: int) -> dict[str, int]:
        """How many cases have each status, counted up to `cap` (shown as "cap+"): a count
        costs one index range, bounded whatever the size of the store."""
        counts = {}
        for status in statuses:
            row = await self.db.fetch_one(
                "SELECT COUNT(*) AS n FROM (SELECT 1 FROM reports WHERE status = ? LIMIT ?)",
                (status, cap + 1),
            )
            counts[status] = int(row["n"]) if row else 0
        return counts

    # alerts ---------------------------------------------------------------------------------
    async def waiting_notices(self, limit: int) -> list[channel_outbox.WaitingNotice]:
        """Host notices not yet sent, oldest first, with their case's clearance."""
        return await channel_outbox.waiting_notices(self.db, limit)

    async def channel_failures(self, limit: int) -> list[channel_outbox.Failure]:
        return await channel_outbox.failures(self.db, limit)

    async def dead_letters(self, limit: int) -> list[aiosqlite.Row]:
        """Records a peer refused (outbound) or we refused (inbound), oldest first."""
        return await self.db.fetch_all(
            "SELECT d.id, d.peer_id, d.direction, d.record_type, d.record_id, d.reason, d.at,"
            " o.report_id FROM dead_letters d LEFT JOIN peer_outbox o ON o.peer_id = d.peer_id"
            " AND o.seq = d.seq AND d.direction = 'outbound' ORDER BY d.id LIMIT ?",
            (limit,),
        )

    async def peer_queues(self) -> dict[str, dict[str, Any]]:
        """Per peer: records waiting and the age of the oldest, and dead ones."""
        rows = await self.db.fetch_all(
            "SELECT peer_id, state, COUNT(*) AS n, MIN(created_at) AS oldest FROM peer_outbox"
            " WHERE state IN ('pending', 'dead') GROUP BY peer_id, state"
        )
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            entry = out.setdefault(row["peer_id"], {"pending": 0, "dead": 0, "oldest": None})
            entry[row["state"]] = int(row["n"])
            if row["state"] == "pending":
                entry["oldest"] = row["oldest"]
        return out

    async def channel_counts(self) -> dict[tuple[str, str], int]:
        """(role, state): messages, whichever channel carried them."""
        return await channel_outbox.counts_by_role(self.db)

    async def audit_for(self, subject: str, limit: int = 200) -> list[aiosqlite.Row]:
        return await self.db.fetch_all(
            "SELECT seq, at, actor, event, details FROM audit_log WHERE subject = ? ORDER BY seq"
            " LIMIT ?",
            (subject, limit),
        )

    # statistics ------------------------------------------------------------------------------
    async def per_week(self, since: str) -> list[tuple[str, int]]:
        """Reports received per ISO-like week (Monday first) since `since`."""
        rows = await self.db.fetch_all(
            "SELECT date(received_at, '-' || ((CAST(strftime('%w', received_at) AS INTEGER)"
            " + 6) % 7) || ' days') AS week, COUNT(*) AS n FROM reports WHERE received_at >= ?"
            " GROUP BY week ORDER BY week",
            (since,),
        )
        return [(str(row["week"]), int(row["n"])) for row in rows]

    async def peer_lag(self) -> list[tuple[str, float, float, int]]:
        """Per peer: mean and worst seconds from queueing a record to its delivery."""
        rows = await self.db.fetch_all(
            "SELECT peer_id, AVG(lag) AS mean, MAX(lag) AS worst, COUNT(*) AS n FROM ("
            " SELECT peer_id, (julianday(sent_at) - julianday(created_at)) * 86400 AS lag"
            " FROM peer_outbox WHERE state = 'sent' AND sent_at IS NOT NULL"
            ") GROUP BY peer_id ORDER BY peer_id"
        )
        return [
            (str(r["peer_id"]), float(r["mean"] or 0), float(r["worst"] or 0), int(r["n"]))
            for r in rows
        ]
