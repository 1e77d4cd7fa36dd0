"""A consistent copy of a live database (SQLite's online backup API), and what a copy holds.

The copy reads through a connection of its own that holds one read transaction from the first
page to the last. In WAL mode that transaction sees the database as of one commit: each of the
writer's transactions is in the copy whole or not at all, and the writer goes on committing
meanwhile (a reader never blocks it). Because the snapshot does not move, SQLite never has to
restart the copy, however busy the node is, so it can go in steps and say how far it is.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from node.store.migrations import MIGRATIONS

# Pages copied per step: 16 MiB of 4 KiB pages, so a progress bar moves often enough.
PAGES_PER_STEP = 4096
BUSY_TIMEOUT_MS = 10_000

# (done, total) pages; it may raise to abandon the copy (the caller has gone).
Progress = Callable[[int, int], None]


class SnapshotError(Exception):
    """The copy could not be made, or a copy is not a sound database of this program."""


@dataclass(frozen=True)
class DatabaseFacts:
    """What a copy of the database holds, for the manifest and for `backup --list`."""

    integrity: str
    schema_version: int
    page_size: int
    pages: int
    cases: int
    actions: int
    audit_entries: int
    audit_head: str | None
    peers: int
    peer_outbox_pending: int
    channel_outbox_pending: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatabaseFacts:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


def copy_database(source: Path, target: Path, progress: Progress | None = None) -> None:
    """Copy the live database at `source` into the new file `target` (blocking: run it in a
    thread). The copy is a self-contained file (rollback journal, not WAL)."""
    # Read-write as the node's own connections are (a read-only one cannot open a WAL
    # database whose -shm file is missing), but it only reads.
    src = sqlite3.connect(source, isolation_level=None)
    try:
        src.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # The snapshot begins with the first read, and lasts until the COMMIT below.
        src.execute("BEGIN")
        src.execute("SELECT COUNT(*) FROM sqlite_schema").fetchone()
        dst = sqlite3.connect(target, isolation_level=None)
        try:

            def step(_status: int, remaining: int, total: int) -> None:
                if progress is not None:
                    progress(total - remaining, total)

            src.backup(dst, pages=PAGES_PER_STEP, progress=step)
            # The copied header says WAL, as the source is: one file is what a backup wants.
            dst.execute("PRAGMA journal_mode = DELETE")
        finally:
            dst.close()
        src.execute("COMMIT")
    except sqlite3.Error as exc:
        raise SnapshotError(f"cannot copy the database: {exc}") from exc
    finally:
        src.close()
    for leftover in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            target.with_name(target.name + leftover).unlink()


def inspect_database(path: Path) -> DatabaseFacts:
    """Integrity and counts of a database copy, read only (blocking: run it in a thread)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise SnapshotError(f"cannot open the database copy: {exc}") from exc
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
        integrity = "ok" if [r[0] for r in rows] == ["ok"] else "; ".join(r[0] for r in rows[:5])
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise SnapshotError(
                f"the database is of schema version {version}, newer than this program"
                f" ({len(MIGRATIONS)}): restore it with the hotline-node that took it, or newer"
            )
        if integrity != "ok":
            return DatabaseFacts(integrity, version, 0, 0, 0, 0, 0, None, 0, 0, 0)
        head = conn.execute("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        return DatabaseFacts(
            integrity=integrity,
            schema_version=version,
            page_size=int(conn.execute("PRAGMA page_size").fetchone()[0]),
            pages=int(conn.execute("PRAGMA page_count").fetchone()[0]),
            cases=_count(conn, "SELECT COUNT(*) FROM reports"),
            actions=_count(conn, "SELECT COUNT(*) FROM actions"),
            audit_entries=_count(conn, "SELECT COUNT(*) FROM audit_log"),
            audit_head=str(head[0]) if head else None,
            peers=_count(conn, "SELECT COUNT(*) FROM peers"),
            peer_outbox_pending=_count(
                conn, "SELECT COUNT(*) FROM peer_outbox WHERE state = 'pending'"
            ),
            channel_outbox_pending=_count(
                conn, "SELECT COUNT(*) FROM channel_outbox WHERE state = 'pending'"
            ),
        )
    except sqlite3.DatabaseError as exc:
        raise SnapshotError(f"the database copy cannot be read: {exc}") from exc
    finally:
        conn.close()


def _count(conn: sqlite3.Connection, sql: str) -> int:
    return int(conn.execute(sql).fetchone()[0])
