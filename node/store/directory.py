"""The member directory this node trusts: the one module that reads and writes `directory` and
`directory_roots` (migration 18). What the rows mean is node.federation.directory's."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite
import orjson

from node.store.db import Database, Row, Tx

ERROR_LIMIT = 500  # a refusal or a fetch error is a diagnosis, not a copy of a whole answer


@dataclass(frozen=True)
class DirectoryRow:
    """The directory trusted: its root in force, where lists come from, the list held."""

    name: str
    root_version: int
    root: bytes  # the root's wire, as verified
    source: str  # a file path or an http(s) URL, as the operator gave it
    auto_peer: bool
    trusted_at: str
    trusted_by: str
    list: bytes | None  # the last list accepted, as verified
    list_root: bytes | None  # the root it was verified under (a rotation since does not undo it)
    list_version: int | None
    list_issued_at: int | None  # Unix seconds, as signed
    list_expires: int | None
    list_members: int | None
    list_accepted_at: str | None
    refreshed_at: str | None  # the last refresh attempt
    refresh_error: str | None  # why it failed or what it refused; None when it went well
    refusal: str | None  # the refusal word (protocol.directory.Refusal), when one was refused
    notes: dict[str, str]  # node id -> why a member is not a peer yet (auto-peer failed)

    @classmethod
    def of(cls, row: Row | aiosqlite.Row) -> DirectoryRow:
        return cls(
            name=row["name"],
            root_version=int(row["root_version"]),
            root=bytes(row["root"]),
            source=row["source"],
            auto_peer=bool(row["auto_peer"]),
            trusted_at=row["trusted_at"],
            trusted_by=row["trusted_by"],
            list=None if row["list"] is None else bytes(row["list"]),
            list_root=None if row["list_root"] is None else bytes(row["list_root"]),
            list_version=row["list_version"],
            list_issued_at=row["list_issued_at"],
            list_expires=row["list_expires"],
            list_members=row["list_members"],
            list_accepted_at=row["list_accepted_at"],
            refreshed_at=row["refreshed_at"],
            refresh_error=row["refresh_error"],
            refusal=row["refusal"],
            notes=orjson.loads(row["notes"]),
        )


@dataclass(frozen=True)
class HeldList:
    """A list just accepted, to keep."""

    wire: bytes
    root: bytes  # the root it was verified under
    version: int
    issued_at: int
    expires: int
    members: int


# reads ------------------------------------------------------------------------------------
async def get(db: Database) -> DirectoryRow | None:
    row = await db.fetch_one("SELECT * FROM directory WHERE id = 1")
    return None if row is None else DirectoryRow.of(row)


def get_txn(conn: Tx) -> DirectoryRow | None:
    row = conn.execute("SELECT * FROM directory WHERE id = 1").fetchone()
    return None if row is None else DirectoryRow.of(row)


# writes (inside the caller's transaction) ---------------------------------------------------
def trust_txn(
    conn: Tx,
    *,
    name: str,
    root_version: int,
    root: bytes,
    source: str,
    auto_peer: bool,
    at: str,
    actor: str,
    keep_list: bool,
) -> None:
    """Trust a root (the operator's word), replacing any directory trusted before. The held
    list is kept only when `keep_list` (it verifies under the new root, which it is now held
    under)."""
    before = get_txn(conn)
    kept = keep_list and before is not None and before.list is not None
    conn.execute(
        "INSERT OR REPLACE INTO directory (id, name, root_version, root, source, auto_peer,"
        " trusted_at, trusted_by, list, list_root, list_version, list_issued_at, list_expires,"
        " list_members, list_accepted_at, refreshed_at, refresh_error, refusal, notes)"
        " VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, '{}')",
        (
            name,
            root_version,
            root,
            source,
            int(auto_peer),
            at,
            actor,
            before.list if keep_list and before else None,
            root if kept else None,
            before.list_version if keep_list and before else None,
            before.list_issued_at if keep_list and before else None,
            before.list_expires if keep_list and before else None,
            before.list_members if keep_list and before else None,
            before.list_accepted_at if keep_list and before else None,
        ),
    )
    if before is not None and before.name != name:
        conn.execute("DELETE FROM directory_roots WHERE name != ?", (name,))
    conn.execute(
        "INSERT OR REPLACE INTO directory_roots (name, version, root, accepted_at)"
        " VALUES (?, ?, ?, ?)",
        (name, root_version, root, at),
    )


def rotate_txn(conn: Tx, *, version: int, root: bytes, at: str) -> None:
    """A newer root, verified against the one in force (protocol.md §14.5), is now in force."""
    conn.execute("UPDATE directory SET root_version = ?, root = ? WHERE id = 1", (version, root))
    conn.execute(
        "INSERT OR REPLACE INTO directory_roots (name, version, root, accepted_at)"
        " SELECT name, ?, ?, ? FROM directory WHERE id = 1",
        (version, root, at),
    )


def accept_list_txn(conn: Tx, held: HeldList, at: str) -> None:
    conn.execute(
        "UPDATE directory SET list = ?, list_root = ?, list_version = ?, list_issued_at = ?,"
        " list_expires = ?, list_members = ?, list_accepted_at = ? WHERE id = 1",
        (held.wire, held.root, held.version, held.issued_at, held.expires, held.members, at),
    )


def refreshed_txn(
    conn: Tx, *, at: str, error: str | None = None, refusal: str | None = None
) -> None:
    """The outcome of a refresh: `error` None when it went well."""
    conn.execute(
        "UPDATE directory SET refreshed_at = ?, refresh_error = ?, refusal = ? WHERE id = 1",
        (at, None if error is None else error[:ERROR_LIMIT], refusal),
    )


def set_notes_txn(conn: Tx, notes: dict[str, str]) -> None:
    """Why some members are not peers yet (kept until the next time the list is applied)."""
    conn.execute(
        "UPDATE directory SET notes = ? WHERE id = 1",
        (orjson.dumps({k: v[:ERROR_LIMIT] for k, v in sorted(notes.items())}).decode(),),
    )
