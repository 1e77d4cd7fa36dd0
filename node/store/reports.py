"""Case storage: reports, their versions, actions, hosting evidence and routing.

The outboxes are node.store.peer_outbox's and node.store.channel_outbox's; a case's reads and
writes that involve them call there."""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Any, NamedTuple

import aiosqlite
import orjson

from node.store import channel_outbox, peer_outbox
from node.store.db import Database, Row, Tx, select_in


class Version(NamedTuple):
    """A version of a case as it travelled: the exact record bytes, kept as evidence."""

    report_id: str
    seq: int
    payload: bytes
    created_at: str


class Routing(NamedTuple):
    """One routing decision on a case, as stored."""

    report_id: str
    decision: str
    targets: list[dict[str, Any]]
    reasons: list[str]
    decided_at: str
    decided_by: str
    # Countries whose suspended peer sent the case to the fallback instead ("DE,AT"), if any.
    suspended_in: str | None = None


@dataclass(frozen=True)
class WaitingForPeer:
    """An open case that went to the fallback because its country's peer is suspended."""

    report_id: str
    url: str
    countries: tuple[str, ...]
    reasons: tuple[str, ...]
    decided_at: str


@dataclass(frozen=True, slots=True)
class Case:
    """A case as stored (the reports table's row), or about to be inserted."""

    id: str
    origin: str
    local_ref: str
    seq: int
    url: str
    url_key: str
    source: str
    status: str
    verdict: str | None
    category: str | None
    legal_basis: str | None
    tlp: str
    description: str | None  # from before migration 12; a reporter's words are submissions
    contact: str | None
    notes: str | None
    duplicates: int
    received_at: str
    assessed_at: str | None
    updated_at: str
    trace_status: str
    trace_json: str | None
    traced_at: str | None
    lea_cleared_at: str | None = None

    def values(self) -> tuple[Any, ...]:
        """The columns' values, in `CASE_COLUMNS` order."""
        return _case_values(self)


CASE_COLUMNS = tuple(Case.__dataclass_fields__)
_case_values = attrgetter(*CASE_COLUMNS)
_SEQ, _STATUS = CASE_COLUMNS.index("seq"), CASE_COLUMNS.index("status")
_SELECT_CASE = f"SELECT {', '.join(CASE_COLUMNS)} FROM reports"  # noqa: S608 - fixed columns


def _case(row: Row | aiosqlite.Row) -> Case:
    return Case(*row)


@dataclass(frozen=True, slots=True)
class CaseAction:
    """An entry of a case's timeline: an action by a node (or a withdrawal)."""

    id: str
    report_id: str
    code: str
    at: str
    by_node: str
    analyst: str | None
    country: str | None
    reason: str | None


_ACTION_COLUMNS = tuple(CaseAction.__dataclass_fields__)
_action_values = attrgetter(*_ACTION_COLUMNS)


@dataclass(frozen=True, slots=True)
class StoredAddress:
    """A hosting address of a case as its trace found it."""

    ip: str
    country: str | None
    basis: str | None
    source: str | None
    asn: int | None
    cdn: bool


class CaseHead(NamedTuple):
    """What the inbox and the channels check before they touch a case."""

    origin: str
    status: str
    seq: int


_INSERT_CASE = (
    f"INSERT INTO reports ({', '.join(CASE_COLUMNS)})"  # noqa: S608 - fixed columns
    f" VALUES ({', '.join('?' for _ in CASE_COLUMNS)})"
)


class ReportStore:
    """Narrow access to cases; writes take the caller's transaction connection."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # reads -------------------------------------------------------------------------------
    async def get(self, report_id: str) -> Case | None:
        row = await self.db.fetch_one(f"{_SELECT_CASE} WHERE id = ?", (report_id,))
        return None if row is None else _case(row)

    async def list_cases(self, *, status: str | None, limit: int, after: str | None) -> list[Case]:
        clauses, params = [], []
        if status:
            clauses.append("status = ?")
            params.append(status)
        if after:
            # `received_at|id` of the last case shown; row values keep the index in use.
            at, _, case_id = after.partition("|")
            clauses.append("(received_at, id) < (?, ?)")
            params.extend([at, case_id])
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self.db.fetch_all(
            f"{_SELECT_CASE} {where} ORDER BY received_at DESC, id DESC LIMIT ?",
            (*params, limit),
        )
        return [_case(row) for row in rows]

    async def actions(self, report_id: str) -> list[CaseAction]:
        rows = await self.db.fetch_all(
            f"SELECT {', '.join(_ACTION_COLUMNS)} FROM actions WHERE report_id = ?"  # noqa: S608 - fixed columns
            " ORDER BY at, rowid",
            (report_id,),
        )
        return [CaseAction(*row) for row in rows]

    async def addresses(self, report_id: str) -> list[StoredAddress]:
        rows = await self.db.fetch_all(
            "SELECT ip, country, basis, source, asn, cdn FROM hosting_addresses"
            " WHERE report_id = ? ORDER BY ip",
            (report_id,),
        )
        return [
            StoredAddress(
                ip=row[0], country=row[1], basis=row[2], source=row[3], asn=row[4], cdn=bool(row[5])
            )
            for row in rows
        ]

    async def latest_routing(self, report_id: str) -> Routing | None:
        row = await self.db.fetch_one(
            "SELECT report_id, decision, targets, reasons, decided_at, decided_by, suspended_in"
            " FROM routing_decisions WHERE report_id = ? ORDER BY id DESC LIMIT 1",
            (report_id,),
        )
        if row is None:
            return None
        return Routing(
            row[0], row[1], orjson.loads(row[2]), orjson.loads(row[3]), row[4], row[5], row[6]
        )

    async def queued(self, report_id: str) -> list[dict[str, Any]]:
        peers = await peer_outbox.for_report(self.db, report_id)
        channels = [
            {
                "detail": None,
                "name": message.role,
                "kind": "channel",
                "state": message.state,
                "record_type": message.kind,
                "seq": message.id,
                "done_at": message.delivered_at,
                "created_at": message.created_at,
                "last_error": message.last_error,
                "notice_ref": message.notice_ref,
            }
            for message in await channel_outbox.for_report(self.db, report_id)
        ]
        return [dict(row) for row in peers] + channels

    async def waiting_for_peer(
        self, *, country: str | None = None, limit: int = 1000
    ) -> list[WaitingForPeer]:
        """Open cases whose current routing sent them to the fallback because the peer of
        their hosting country (`country`, if given) is suspended, oldest first."""
        # The partial index holds only such routings; the page is cut in SQL, so a console
        # page costs `limit` rows however many cases wait.
        rows = await self.db.fetch_all(
            "SELECT d.report_id, r.url, d.suspended_in, d.reasons, d.decided_at"
            " FROM routing_decisions d JOIN reports r ON r.id = d.report_id"
            " WHERE d.suspended_in IS NOT NULL AND r.status IN ('routed', 'manual')"
            " AND d.id = (SELECT MAX(id) FROM routing_decisions WHERE report_id = d.report_id)"
            " AND (? IS NULL OR ',' || d.suspended_in || ',' LIKE '%,' || ? || ',%')"
            " ORDER BY d.id LIMIT ?",
            (country, country, limit),
        )
        return [
            WaitingForPeer(
                row[0], row[1], tuple(row[2].split(",")), tuple(orjson.loads(row[3])), row[4]
            )
            for row in rows
        ]

    async def ids_by_reference(self, ref: str) -> list[str]:
        """Cases a short reference names: the public 8-character one, a notice's, a local_ref."""
        rows = await self.db.fetch_all(
            "SELECT id FROM reports WHERE substr(id, -8) = ? UNION SELECT id FROM reports"
            " WHERE local_ref = ?",
            (ref.lower(), ref),
        )
        noticed = await channel_outbox.report_ids_by_notice_ref(self.db, ref.upper())
        return sorted({str(row["id"]) for row in rows} | set(noticed))

    async def pending_traces(self, limit: int) -> list[tuple[str, str]]:
        """(case id, URL) of cases waiting for their trace, oldest first."""
        rows = await self.db.fetch_all(
            "SELECT id, url FROM reports WHERE trace_status = 'pending' ORDER BY received_at"
            " LIMIT ?",
            (limit,),
        )
        return [(row[0], row[1]) for row in rows]

    # writes (inside a transaction) --------------------------------------------------------
    @staticmethod
    def get_txn(conn: Tx, report_id: str) -> Case | None:
        row = conn.execute(f"{_SELECT_CASE} WHERE id = ?", (report_id,)).fetchone()
        return None if row is None else _case(row)

    @staticmethod
    def open_by_urls(conn: Tx, url_keys: list[str]) -> dict[str, tuple[str, int]]:
        """Url key -> (case id, duplicates) of the oldest open case with that URL, if any."""
        found: dict[str, tuple[str, int]] = {}
        for row in select_in(
            conn,
            "SELECT id, url_key, duplicates FROM reports WHERE url_key IN ({marks})"
            " AND status NOT IN ('closed', 'withdrawn') ORDER BY received_at DESC, rowid DESC",
            list(dict.fromkeys(url_keys)),
        ):
            # Oldest last, so it is the one kept.
            found[row["url_key"]] = (row["id"], int(row["duplicates"]))
        return found

    @staticmethod
    def insert_many(
        conn: Tx, cases: list[Case], routed: dict[str, tuple[str, int]] | None = None
    ) -> None:
        """Insert new cases, each with the (status, seq) routing gave it in `routed`, if any.
        Only the case door calls this (node/cases/door.py), for cases entering the lifecycle.
        (No copy of a case per state: an import or a received batch inserts thousands.)"""
        routed = routed or {}
        rows = []
        for case in cases:
            values = case.values()
            if case.id in routed:
                status, seq = routed[case.id]
                values = (
                    *values[:_SEQ],
                    seq,
                    *values[_SEQ + 1 : _STATUS],
                    status,
                    *values[_STATUS + 1 :],
                )
            rows.append(values)
        conn.executemany(_INSERT_CASE, rows)

    # What a new version of a peer's case rewrites (its status is the door's, its seq moves
    # with the status).
    VERSION_COLUMNS = (
        "url",
        "url_key",
        "verdict",
        "category",
        "legal_basis",
        "tlp",
        "assessed_at",
        "trace_status",
        "trace_json",
        "traced_at",
    )

    @staticmethod
    def set_version_txn(conn: Tx, version: Case) -> None:
        """The content of a peer's new version of its case (`VERSION_COLUMNS`)."""
        columns = ReportStore.VERSION_COLUMNS
        assignments = ", ".join(f"{column} = ?" for column in columns)
        conn.execute(
            f"UPDATE reports SET {assignments} WHERE id = ?",  # noqa: S608 - fixed columns
            (*(getattr(version, column) for column in columns), version.id),
        )

    @staticmethod
    def head_txn(conn: Tx, report_id: str) -> CaseHead | None:
        row = conn.execute(
            "SELECT origin, status, seq FROM reports WHERE id = ?", (report_id,)
        ).fetchone()
        return None if row is None else CaseHead(row[0], row[1], int(row[2]))

    @staticmethod
    async def originated_by(db: Database, origin: str, report_ids: list[str]) -> list[str]:
        """Those of these cases that `origin` made, in the order given."""
        sql = "SELECT id FROM reports WHERE origin = ? AND id IN ({marks})"
        held = {row[0] for row in await db.fetch_in(sql, report_ids, origin)}
        return [report_id for report_id in report_ids if report_id in held]

    @staticmethod
    async def actions_by(db: Database, node_id: str, report_ids: list[str]) -> list[CaseAction]:
        """The actions `node_id` took on these cases (withdrawal entries left out: a
        withdrawal is the origin's record), oldest first."""
        sql = (
            f"SELECT {', '.join(_ACTION_COLUMNS)} FROM actions"  # noqa: S608 - fixed columns
            " WHERE by_node = ? AND code != 'withdrawn' AND report_id IN ({marks})"
        )
        rows = await db.fetch_in(sql, report_ids, node_id)
        return sorted((CaseAction(*row) for row in rows), key=lambda a: (a.at, a.id))

    @staticmethod
    def raise_seq_txn(conn: Tx, report_id: str, seq: int) -> None:
        """A version of our case numbered `seq` is held by a peer: our next one goes above it."""
        conn.execute("UPDATE reports SET seq = MAX(seq, ?) WHERE id = ?", (seq, report_id))

    @staticmethod
    def existing_ids(conn: Tx, report_ids: list[str]) -> set[str]:
        """Those of these case ids that are stored."""
        sql = "SELECT id FROM reports WHERE id IN ({marks})"
        return {row[0] for row in select_in(conn, sql, report_ids)}

    @staticmethod
    def taken_refs(conn: Tx, origin: str, local_refs: list[str]) -> set[str]:
        """Those of these references that already name a case of `origin`."""
        sql = "SELECT local_ref FROM reports WHERE origin = ? AND local_ref IN ({marks})"
        return {row[0] for row in select_in(conn, sql, local_refs, origin)}

    @staticmethod
    def set_abuse_contact(conn: Tx, report_id: str, contact: str, *, source: str) -> None:
        """The abuse desk found after the case's evidence was written (a case from a peer)."""
        row = conn.execute("SELECT trace_json FROM reports WHERE id = ?", (report_id,)).fetchone()
        evidence = orjson.loads(row[0]) if row is not None and row[0] else {}
        evidence.update(abuse_contact=contact, abuse_contact_source=source)
        conn.execute(
            "UPDATE reports SET trace_json = ? WHERE id = ?",
            (orjson.dumps(evidence).decode(), report_id),
        )

    @staticmethod
    def purge_personal_data(conn: Tx, *, received_before: str) -> int:
        """Erase the personal data of cases received before then; returns how many.

        The public's words and contacts are node.store.submissions' (purged there); the
        description and contact columns stay for rows written before migration 12."""
        cursor = conn.execute(
            "UPDATE reports SET description = NULL, contact = NULL, notes = NULL"
            " WHERE received_at < ? AND (description IS NOT NULL OR contact IS NOT NULL"
            " OR notes IS NOT NULL)",
            (received_before,),
        )
        return cursor.rowcount

    @staticmethod
    def set_cleared_once(conn: Tx, report_id: str, at: str) -> None:
        """The police cleared the case's host notice (the first clearance is kept)."""
        conn.execute(
            "UPDATE reports SET lea_cleared_at = COALESCE(lea_cleared_at, ?) WHERE id = ?",
            (at, report_id),
        )

    @staticmethod
    def set_status_txn(
        conn: Tx, report_id: str, *, expected: str, status: str, at: str, seq: int | None = None
    ) -> bool:
        """Move a case from `expected` to `status` (and to version `seq`); False, and nothing
        written, when it is no longer in `expected`. Only the case door calls this
        (node/cases/door.py), after the lifecycle table allowed the move."""
        cursor = conn.execute(
            "UPDATE reports SET status = ?, updated_at = ?, seq = COALESCE(?, seq)"
            " WHERE id = ? AND status = ?",
            (status, at, seq, report_id, expected),
        )
        return cursor.rowcount == 1

    @staticmethod
    def set_assessment_txn(
        conn: Tx, report_id: str, *, verdict: str, category: str, legal_basis: str | None, at: str
    ) -> None:
        conn.execute(
            "UPDATE reports SET verdict = ?, category = ?, legal_basis = ?, assessed_at = ?,"
            " updated_at = ? WHERE id = ?",
            (verdict, category, legal_basis, at, at, report_id),
        )

    @staticmethod
    def set_trace_txn(
        conn: Tx, report_id: str, *, trace_status: str, trace_json: str, at: str
    ) -> None:
        conn.execute(
            "UPDATE reports SET trace_status = ?, trace_json = ?, traced_at = ?, updated_at = ?"
            " WHERE id = ?",
            (trace_status, trace_json, at, at, report_id),
        )

    @staticmethod
    def set_evidence_txn(conn: Tx, report_id: str, *, trace_json: str, at: str) -> None:
        """The hosting evidence rewritten (an analyst's override added to it)."""
        conn.execute(
            "UPDATE reports SET trace_json = ?, updated_at = ? WHERE id = ?",
            (trace_json, at, report_id),
        )

    @staticmethod
    def mark_known_txn(conn: Tx, report_id: str, *, category: str, at: str) -> None:
        """A case's hash was found on a hash list: it comes first in the triage queue (from
        the first time), and a case not yet given a category takes the entry's. Neither is a
        verdict: the analyst still decides."""
        conn.execute(
            "UPDATE reports SET known_since = COALESCE(known_since, ?),"
            " category = COALESCE(category, ?) WHERE id = ?",
            (at, category, report_id),
        )

    @staticmethod
    def set_duplicates_txn(conn: Tx, rows: list[tuple[int, str, str]]) -> None:
        """Rows of (duplicate count, time, case id): the URL was reported again."""
        conn.executemany("UPDATE reports SET duplicates = ?, updated_at = ? WHERE id = ?", rows)

    @staticmethod
    def insert_version(conn: Tx, version: Version) -> None:
        ReportStore.insert_versions(conn, [version])

    @staticmethod
    def insert_versions(conn: Tx, rows: list[Version]) -> None:
        conn.executemany(
            "INSERT INTO report_versions (report_id, seq, payload, created_at) VALUES (?, ?, ?, ?)",
            rows,
        )

    _INSERT_ACTION = (
        f"INSERT OR IGNORE INTO actions ({', '.join(_ACTION_COLUMNS)})"  # noqa: S608 - fixed columns
        f" VALUES ({', '.join('?' for _ in _ACTION_COLUMNS)})"
    )

    @staticmethod
    def insert_action(conn: Tx, action: CaseAction) -> bool:
        """Insert unless an action with this id exists (actions arrive again on retries)."""
        cursor = conn.execute(ReportStore._INSERT_ACTION, _action_values(action))
        return cursor.rowcount == 1

    @staticmethod
    def insert_actions(conn: Tx, actions: list[CaseAction]) -> None:
        """Like insert_action for many; an action whose id exists is skipped."""
        conn.executemany(ReportStore._INSERT_ACTION, [_action_values(a) for a in actions])

    @staticmethod
    def replace_addresses(conn: Tx, report_id: str, addresses: list[dict[str, Any]]) -> None:
        conn.execute("DELETE FROM hosting_addresses WHERE report_id = ?", (report_id,))
        ReportStore.add_addresses(conn, [(report_id, a) for a in addresses])

    @staticmethod
    def add_addresses(conn: Tx, addresses: list[tuple[str, dict[str, Any]]]) -> None:
        """Rows of (report id, address evidence as in a trace)."""
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
                for report_id, a in addresses
            ],
        )

    @staticmethod
    def insert_routings(conn: Tx, rows: list[Routing]) -> None:
        conn.executemany(
            "INSERT INTO routing_decisions (report_id, decision, targets, reasons, decided_at,"
            " decided_by, suspended_in) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    report_id,
                    decision,
                    orjson.dumps(targets).decode(),
                    orjson.dumps(reasons).decode(),
                    at,
                    by,
                    suspended_in,
                )
                for report_id, decision, targets, reasons, at, by, suspended_in in rows
            ],
        )
