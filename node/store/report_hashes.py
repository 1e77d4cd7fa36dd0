"""The hashes on cases (table report_hashes): one row per case and digest, never a duplicate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from node.hashes.values import HashValue
from node.store.db import Database, Row, Tx, select_in
from protocol.records import HashAlgorithm

_COLUMNS = "report_id, alg, value, quality, source, added_at"
# Oldest first; within one addition, by type and value (the key gives no other order).
_ORDER = "ORDER BY added_at, alg, value"


@dataclass(frozen=True, slots=True)
class ReportHash:
    """A hash on a case: its value, who gave it (`analyst`, `import`, `peer:<node id>`) and when."""

    report_id: str
    value: HashValue
    source: str
    added_at: str


def _row(row: Row) -> ReportHash:
    return ReportHash(
        report_id=str(row[0]),
        value=HashValue(HashAlgorithm(row[1]), bytes(row[2]), row[3]),
        source=str(row[4]),
        added_at=str(row[5]),
    )


def add_txn(
    conn: Tx, report_id: str, values: Sequence[HashValue], *, source: str, at: str
) -> list[HashValue]:
    """Add hashes to a case; returns those it did not hold yet, in the order given. A digest
    the case holds already (of the same type) is left as it is, whatever its quality and source:
    adding the same hash again changes nothing."""
    wanted: dict[tuple[str, bytes], HashValue] = {}
    for value in values:
        wanted.setdefault((value.alg.value, value.digest), value)
    if not wanted:
        return []
    held = {
        (str(row[0]), bytes(row[1]))
        for row in conn.execute(
            "SELECT alg, value FROM report_hashes WHERE report_id = ?", (report_id,)
        )
    }
    added = [value for key, value in wanted.items() if key not in held]
    conn.executemany(
        f"INSERT INTO report_hashes ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",  # noqa: S608
        [(report_id, v.alg.value, v.digest, v.quality, source, at) for v in added],
    )
    return added


def count_txn(conn: Tx, report_id: str) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM report_hashes WHERE report_id = ?", (report_id,)
    ).fetchone()
    return int(row[0])


def for_report_txn(conn: Tx, report_id: str) -> list[ReportHash]:
    return [
        _row(row)
        for row in conn.execute(
            f"SELECT {_COLUMNS} FROM report_hashes WHERE report_id = ? {_ORDER}",  # noqa: S608
            (report_id,),
        )
    ]


def for_reports_txn(conn: Tx, report_ids: Sequence[str]) -> dict[str, list[ReportHash]]:
    """The hashes of several cases at once (routing a batch), by case; cases without any are
    absent."""
    found: dict[str, list[ReportHash]] = {}
    rows = select_in(
        conn,
        f"SELECT {_COLUMNS} FROM report_hashes WHERE report_id IN ({{marks}}) {_ORDER}",  # noqa: S608
        list(dict.fromkeys(report_ids)),
    )
    for row in rows:
        item = _row(row)
        found.setdefault(item.report_id, []).append(item)
    return found


async def for_report(db: Database, report_id: str) -> list[ReportHash]:
    """A case's hashes, oldest first."""
    rows = await db.fetch_all(
        f"SELECT {_COLUMNS} FROM report_hashes WHERE report_id = ? {_ORDER}",  # noqa: S608
        (report_id,),
    )
    return [_row(row) for row in rows]
