"""Hash lists and their entries (ours, and those peers share with us), and what they matched.

An entry is never deleted: a removal marks it (`removed_at`), so that a list shared with peers
can say what left it, an import of the same file twice changes nothing, and a case's evidence
still names the entry it matched. Only active entries are matched (node.hashes.index holds them
in memory; this module is where they are kept).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from node.hashes.values import PDQ_MIN_QUALITY, HashValue
from node.store.db import Database, Row, Tx, select_in
from protocol.records import HashAlgorithm


@dataclass(frozen=True, slots=True)
class HashList:
    id: int
    name: str  # as shown here: ours as named, a peer's as "<peer>/<its name>"
    owner: str  # the node that writes it: ours, or the peer that shares it
    origin_name: str  # the name at its owner
    shared: bool  # ours only: sent to the peers whose policy allows hashes
    seq: int  # ours: the number of its last change; a peer's: the last change applied here
    entries: int  # active entries
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One entry as imported or received: the hash and what the list says about it."""

    value: HashValue
    category: str
    grade: str | None = None
    use: str = "hotlines"  # permitted use: "hotlines", or "industry" too
    note: str | None = None
    source: str | None = None
    added_at: str | None = None  # when its owner added it (a peer's entry); else now


@dataclass(frozen=True, slots=True)
class StoredEntry:
    id: int
    list_id: int
    entry: ListEntry
    removed_at: str | None


@dataclass(frozen=True, slots=True)
class Applied:
    """What a change did: the entries that became active (new, re-added or changed) and those
    that left, as (entry id, value) for the matching index and the peers."""

    added: list[tuple[int, ListEntry]]
    removed: list[tuple[int, HashValue]]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


@dataclass(frozen=True, slots=True)
class CaseMatch:
    """A case's hash found on a list: the evidence an analyst sees."""

    list_name: str
    list_owner: str
    entry_id: int
    value: HashValue
    category: str
    grade: str | None
    distance: int
    since: str  # when the entry was added to its list (at its owner)
    matched_at: str
    removed_at: str | None  # the entry left its list since
    owner_country: str | None  # a peer's list: the peer's country (None: ours)


_LIST_COLUMNS = (
    "l.id, l.name, l.owner, l.origin_name, l.shared, l.seq,"
    " (SELECT count(*) FROM hash_entries e WHERE e.list_id = l.id AND e.removed_at IS NULL),"
    " l.created_at, l.updated_at"
)


def _hash_list(row: Row) -> HashList:
    return HashList(
        id=int(row[0]),
        name=str(row[1]),
        owner=str(row[2]),
        origin_name=str(row[3]),
        shared=bool(row[4]),
        seq=int(row[5]),
        entries=int(row[6]),
        created_at=str(row[7]),
        updated_at=str(row[8]),
    )


def _value(alg: str, value: bytes, quality: int | None) -> HashValue:
    return HashValue(HashAlgorithm(alg), bytes(value), quality)


def _entry(columns: Sequence[Any]) -> ListEntry:
    """A list entry from its columns alg, value, quality, category, grade, use, note, source,
    added_at (in that order)."""
    alg, value, quality, category, grade, use, note, source, added_at = columns
    return ListEntry(
        value=_value(alg, value, quality),
        category=category,
        grade=grade,
        use=use,
        note=note,
        source=source,
        added_at=added_at,
    )


async def all_lists(db: Database) -> list[HashList]:
    rows = await db.fetch_all(
        f"SELECT {_LIST_COLUMNS} FROM hash_lists l ORDER BY l.name"  # noqa: S608 - fixed columns
    )
    return [_hash_list(row) for row in rows]


def list_named_txn(conn: Tx, name: str) -> HashList | None:
    row = conn.execute(
        f"SELECT {_LIST_COLUMNS} FROM hash_lists l WHERE l.name = ?",  # noqa: S608 - fixed columns
        (name,),
    )
    found = row.fetchone()
    return _hash_list(found) if found is not None else None


def list_of_owner_txn(conn: Tx, owner: str, origin_name: str) -> HashList | None:
    row = conn.execute(
        f"SELECT {_LIST_COLUMNS} FROM hash_lists l"  # noqa: S608 - fixed columns
        " WHERE l.owner = ? AND l.origin_name = ?",
        (owner, origin_name),
    ).fetchone()
    return _hash_list(row) if row is not None else None


def create_list_txn(
    conn: Tx, *, name: str, owner: str, origin_name: str, shared: bool, at: str
) -> HashList:
    conn.execute(
        "INSERT INTO hash_lists (name, owner, origin_name, shared, seq, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, 0, ?, ?)",
        (name, owner, origin_name, int(shared), at, at),
    )
    created = list_named_txn(conn, name)
    assert created is not None  # inserted just above, in this transaction
    return created


def set_shared_txn(conn: Tx, list_id: int, shared: bool, at: str) -> None:
    conn.execute(
        "UPDATE hash_lists SET shared = ?, updated_at = ? WHERE id = ?",
        (int(shared), at, list_id),
    )


def set_seq_txn(conn: Tx, list_id: int, seq: int, at: str) -> None:
    """Ours: the number of its latest change; a peer's: the last of its changes applied here."""
    conn.execute("UPDATE hash_lists SET seq = ?, updated_at = ? WHERE id = ?", (seq, at, list_id))


def upsert_entries_txn(conn: Tx, list_id: int, entries: Iterable[ListEntry], at: str) -> Applied:
    """Add entries to a list. An entry already active with the same attributes changes nothing;
    a removed one comes back; an active one with other attributes takes the new ones."""
    by_key: dict[tuple[str, bytes], ListEntry] = {}
    for entry in entries:  # the last of a key in one batch wins, as it would in two batches
        by_key[(entry.value.alg.value, entry.value.digest)] = entry
    added: list[tuple[int, ListEntry]] = []
    for (alg, digest), entry in by_key.items():
        row = conn.execute(
            "SELECT id, quality, category, grade, use, note, source, removed_at"
            " FROM hash_entries WHERE list_id = ? AND alg = ? AND value = ?",
            (list_id, alg, digest),
        ).fetchone()
        fields = (
            entry.value.quality,
            entry.category,
            entry.grade,
            entry.use,
            entry.note,
            entry.source,
        )
        if row is None:
            cursor = conn.execute(
                "INSERT INTO hash_entries (list_id, alg, value, quality, category, grade, use,"
                " note, source, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (list_id, alg, digest, *fields, entry.added_at or at),
            )
            added.append((int(cursor.lastrowid or 0), entry))
        elif row[7] is not None or tuple(row[1:7]) != fields:
            conn.execute(
                "UPDATE hash_entries SET quality = ?, category = ?, grade = ?, use = ?, note = ?,"
                " source = ?, removed_at = NULL,"
                " added_at = CASE WHEN removed_at IS NULL THEN added_at ELSE ? END WHERE id = ?",
                (*fields, entry.added_at or at, row[0]),
            )
            added.append((int(row[0]), entry))
    return Applied(added=added, removed=[])


def remove_entries_txn(conn: Tx, list_id: int, values: Iterable[HashValue], at: str) -> Applied:
    """Mark entries removed; an entry absent or already removed is not an error (a removal
    applied twice changes nothing)."""
    removed: list[tuple[int, HashValue]] = []
    for value in {(v.alg, v.digest): v for v in values}.values():
        row = conn.execute(
            "SELECT id, quality FROM hash_entries WHERE list_id = ? AND alg = ? AND value = ?"
            " AND removed_at IS NULL",
            (list_id, value.alg.value, value.digest),
        ).fetchone()
        if row is None:
            continue
        conn.execute("UPDATE hash_entries SET removed_at = ? WHERE id = ?", (at, row[0]))
        removed.append((int(row[0]), HashValue(value.alg, value.digest, row[1])))
    return Applied(added=[], removed=removed)


def active_entries_txn(conn: Tx, list_id: int | None = None) -> Iterator[tuple[int, ListEntry]]:
    """Every active entry (of one list, or of all): what the index loads at start and what a
    peer gets when a list is first shared with it. Read in rowid order, streamed."""
    sql = (
        "SELECT id, alg, value, quality, category, grade, use, note, source, added_at"
        " FROM hash_entries WHERE removed_at IS NULL"
    )
    params: tuple[int, ...] = ()
    if list_id is not None:
        sql += " AND list_id = ?"
        params = (list_id,)
    for row in conn.execute(sql + " ORDER BY id", params):
        yield (
            int(row[0]),
            _entry(row[1:10]),
        )


def matchable_keys_txn(conn: Tx) -> Iterator[tuple[int, HashAlgorithm, bytes]]:
    """(entry id, type, digest) of every active entry that may be matched, for the index at
    start: a PDQ hash of low quality is kept but never matched. Plain rows, streamed: a node
    with ten million entries reads them all."""
    algs = {alg.value: alg for alg in HashAlgorithm}
    rows = conn.execute(
        "SELECT id, alg, value FROM hash_entries WHERE removed_at IS NULL"
        " AND (quality IS NULL OR quality >= ?)",
        (PDQ_MIN_QUALITY,),
    )
    for entry_id, alg, value in rows:
        yield entry_id, algs[alg], value


def add_matches_txn(
    conn: Tx, report_id: str, found: Iterable[tuple[int, HashAlgorithm, int]], at: str
) -> int:
    """Record (entry id, type, distance) matches of a case; a match already recorded stays as
    it was first found. Returns how many are new."""
    cursor = conn.executemany(
        "INSERT OR IGNORE INTO hash_matches (report_id, entry_id, alg, distance, matched_at)"
        " VALUES (?, ?, ?, ?, ?)",
        [(report_id, entry_id, alg.value, distance, at) for entry_id, alg, distance in found],
    )
    return max(cursor.rowcount, 0)


_MATCH_COLUMNS = (
    "l.name, l.owner, e.id, e.alg, e.value, e.quality, e.category, e.grade, m.distance,"
    " e.added_at, m.matched_at, e.removed_at, m.report_id, p.country"
)


def _case_match(row: Row) -> CaseMatch:
    return CaseMatch(
        list_name=str(row[0]),
        list_owner=str(row[1]),
        entry_id=int(row[2]),
        value=_value(str(row[3]), bytes(row[4]), row[5]),
        category=str(row[6]),
        grade=row[7],
        distance=int(row[8]),
        since=str(row[9]),
        matched_at=str(row[10]),
        removed_at=row[11],
        owner_country=row[13],
    )


_MATCHES_SQL = (
    f"SELECT {_MATCH_COLUMNS} FROM hash_matches m"  # noqa: S608 - fixed columns
    " JOIN hash_entries e ON e.id = m.entry_id JOIN hash_lists l ON l.id = e.list_id"
    " LEFT JOIN peers p ON p.node_id = l.owner"
    " WHERE m.report_id IN ({marks}) ORDER BY m.distance, e.added_at, e.id"
)


def _by_case(rows: Iterable[Row]) -> dict[str, list[CaseMatch]]:
    found: dict[str, list[CaseMatch]] = {}
    for row in rows:
        found.setdefault(str(row[12]), []).append(_case_match(row))
    return found


def matches_for_txn(conn: Tx, report_ids: list[str]) -> dict[str, list[CaseMatch]]:
    """Each case's matches, closest first."""
    return _by_case(select_in(conn, _MATCHES_SQL, report_ids))


async def matches_for(db: Database, report_ids: list[str]) -> dict[str, list[CaseMatch]]:
    """Each case's matches, closest first (on the reader)."""
    return _by_case(await db.fetch_in(_MATCHES_SQL, report_ids))


def entry_categories_txn(conn: Tx, entry_ids: list[int]) -> dict[int, str]:
    """The category of each entry that exists (the index may briefly hold one that does not)."""
    rows = select_in(conn, "SELECT id, category FROM hash_entries WHERE id IN ({marks})", entry_ids)
    return {int(row[0]): str(row[1]) for row in rows}


async def entries_by_id(
    db: Database, entry_ids: list[int]
) -> dict[int, tuple[str, str, ListEntry]]:
    """(list name, list owner, entry) of each entry id."""
    rows = await db.fetch_in(
        "SELECT e.id, l.name, l.owner, e.alg, e.value, e.quality, e.category, e.grade, e.use,"
        " e.note, e.source, e.added_at FROM hash_entries e JOIN hash_lists l ON l.id = e.list_id"
        " WHERE e.id IN ({marks})",
        entry_ids,
    )
    return {
        int(row[0]): (
            str(row[1]),
            str(row[2]),
            _entry(row[3:12]),
        )
        for row in rows
    }


def open_case_hashes_txn(
    conn: Tx, alg: HashAlgorithm, digests: list[bytes], statuses: tuple[str, ...]
) -> list[tuple[str, bytes]]:
    """(case id, digest) of the open cases that carry one of these exact digests."""
    marks = ", ".join("?" for _ in statuses)
    rows = select_in(
        conn,
        "SELECT h.report_id, h.value FROM report_hashes h"  # noqa: S608 - placeholders only
        " JOIN reports r ON r.id = h.report_id"
        f" WHERE r.status IN ({marks}) AND h.alg = ? AND h.value IN ({{marks}})",
        digests,
        *statuses,
        alg.value,
    )
    return [(str(row[0]), bytes(row[1])) for row in rows]


def open_case_pdq_txn(conn: Tx, statuses: tuple[str, ...]) -> Iterator[tuple[str, HashValue]]:
    """(case id, PDQ hash) of every open case that carries one."""
    marks = ", ".join("?" for _ in statuses)
    rows = conn.execute(
        "SELECT h.report_id, h.value, h.quality FROM report_hashes h"  # noqa: S608 - placeholders
        " JOIN reports r ON r.id = h.report_id"
        f" WHERE h.alg = 'pdq' AND r.status IN ({marks})",
        statuses,
    )
    for row in rows:
        yield str(row[0]), _value("pdq", row[1], row[2])


# sharing with peers (node.hashes.sharing) ---------------------------------------------------
def shared_lists_txn(conn: Tx, owner: str) -> list[HashList]:
    """`owner`'s lists marked shared, by name: what a peer that starts receiving our lists is
    sent whole."""
    rows = conn.execute(
        f"SELECT {_LIST_COLUMNS} FROM hash_lists l"  # noqa: S608 - fixed columns
        " WHERE l.owner = ? AND l.shared = 1 ORDER BY l.name",
        (owner,),
    )
    return [_hash_list(row) for row in rows]


def removed_values_txn(conn: Tx, list_id: int) -> Iterator[HashValue]:
    """The hashes that left a list and are not back in it: a peer sent the list whole is told
    they left too, in case it holds them from earlier (removals made while it was not sent
    anything). Read in rowid order, streamed."""
    for row in conn.execute(
        "SELECT alg, value, quality FROM hash_entries WHERE list_id = ?"
        " AND removed_at IS NOT NULL ORDER BY id",
        (list_id,),
    ):
        yield _value(row[0], row[1], row[2])
