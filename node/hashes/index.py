"""Every active hash-list entry in memory, matchable the moment it is added (no rebuild to wait).

One table per hash type. A table is a few immutable segments (node.hashes.segments: multi-index
hashing for PDQ, sorted digests for the exact types) and one append-only delta that a single
addition lands in, scanned in full by each match while it is small. When the delta grows past
`merge_at` (or past 1/256 of the table) a background thread rebuilds one segment from all the
live rows; matches go on meanwhile against the old parts, and removals made during the rebuild
are replayed on the new segment before it replaces them. A large `add_many` builds its own
segment at once, so a node that loads its lists at start answers at full speed when it returns.

Two locks: the write lock orders the writers (add, remove, the merge's start and swap) and may be
held for a while (a bulk load); the state lock is held only to swap or copy the references a
match reads, so a match never waits for a writer's work, only for those few assignments.

Pure: no SQL, no I/O. Entry ids are the hash_entries rows' ids; an entry is the pair
(entry id, digest), and adding a pair already present changes nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import numpy as np

from node.hashes.segments import (
    PDQ_BYTES,
    Array,
    Delta,
    DeltaView,
    ExactSegment,
    Part,
    PdqQuery,
    PdqSegment,
)
from node.hashes.values import DIGEST_BYTES, PDQ_DEFAULT_MAX_DISTANCE
from protocol.records import HashAlgorithm

MAX_PDQ_DISTANCE = 8 * PDQ_BYTES
# Every match scans the whole delta: 4,096 PDQ rows take about 20 us. A merge rebuilds the
# whole table (a million PDQ rows: about a second of a background thread), so past a million
# rows the delta may grow to 1/256 of the table before one: at ten million, 39,000 rows,
# scanned in about 0.2 ms, against a merge of some ten seconds.
DEFAULT_MERGE_AT = 4096
TABLE_SHARE = 256


def merge_threshold(rows: int, merge_at: int = DEFAULT_MERGE_AT) -> int:
    """How many rows the delta takes before a merge, for a table of `rows` merged rows."""
    return max(merge_at, rows // TABLE_SHARE)


class _Table:
    """The rows of one hash type."""

    def __init__(self, alg: HashAlgorithm, merge_at: int) -> None:
        self.alg = alg
        self.digest_size = DIGEST_BYTES[alg]
        self.merge_at = merge_at
        self.write_lock = threading.Lock()
        self.state_lock = threading.Lock()
        self.parts: tuple[Part, ...] = ()
        self.delta = Delta(self.digest_size)
        self.live = 0
        self.merger: threading.Thread | None = None
        self.merging: tuple[Part, ...] = ()
        self.merge_log: list[tuple[int, bytes]] = []
        self.merge_error: BaseException | None = None

    # Writers -----------------------------------------------------------------------------

    def add(self, entry_id: int, digest: bytes) -> None:
        with self.write_lock:
            if self._find(entry_id, digest) is not None:
                return
            row_ids = np.array([entry_id], dtype=np.int64)
            row = np.frombuffer(digest, dtype=np.uint8).reshape(1, self.digest_size)
            with self.state_lock:
                self.delta.append(row_ids, row)
            self.live += 1
            self._maybe_merge()

    def add_many(self, ids: Array, digests: Array) -> None:
        with self.write_lock:
            ids, digests = _distinct(ids, digests)
            present = np.zeros(len(ids), dtype=bool)
            for part in (*self.parts, self.delta):
                present |= part.holding(ids, digests)
            if present.any():
                ids, digests = ids[~present], digests[~present]
            if len(ids) == 0:
                return
            if len(ids) >= self.merge_at:
                segment = self._build(digests, ids)
                with self.state_lock:
                    self.parts = (*self.parts, segment)
            else:
                with self.state_lock:
                    self.delta.append(ids, digests)
            self.live += len(ids)
            self._maybe_merge()

    def remove(self, entry_id: int, digest: bytes) -> None:
        with self.write_lock:
            for part in (self.delta, *self.parts):
                row = part.find(entry_id, digest)
                if row is None:
                    continue
                part.dead.add(row)
                self.live -= 1
                if part in self.merging:
                    self.merge_log.append((entry_id, digest))
                return

    def _find(self, entry_id: int, digest: bytes) -> int | None:
        for part in (self.delta, *self.parts):
            row = part.find(entry_id, digest)
            if row is not None:
                return row
        return None

    def _build(self, digests: Array, ids: Array) -> Part:
        if self.alg is HashAlgorithm.PDQ:
            return PdqSegment(digests, ids)
        return ExactSegment(digests, ids)

    # Merging -----------------------------------------------------------------------------

    def _merge_needed(self) -> bool:
        rows = sum(part.rows for part in self.parts)
        dead = sum(len(part.dead) for part in (*self.parts, self.delta))
        return (
            self.delta.count >= merge_threshold(rows, self.merge_at)
            or len(self.parts) > 1
            or dead > max(self.merge_at, rows // 8)
        )

    def _maybe_merge(self) -> None:
        """Start a merge if one is due (write lock held)."""
        if self.merger is None and self.merge_error is None and self._merge_needed():
            self.merger = threading.Thread(
                target=self._merge, name=f"hash-index-merge-{self.alg.value}", daemon=True
            )
            self.merger.start()

    def _merge(self) -> None:
        try:
            with self.write_lock:
                parts = (*self.parts, self.delta) if self.delta.count else self.parts
                if not parts:
                    return
                dead_before = [frozenset(part.dead) for part in parts]
                with self.state_lock:
                    self.parts = parts  # the delta, frozen: no more rows go into it
                    self.delta = Delta(self.digest_size)
                self.merging, self.merge_log = parts, []
            lives = [part.live(dead) for part, dead in zip(parts, dead_before, strict=True)]
            digests = np.concatenate([digests for digests, _ in lives])
            ids = np.concatenate([ids for _, ids in lives])
            segment = self._build(digests, ids) if len(ids) else None
            with self.write_lock:
                if segment is not None:
                    for entry_id, digest in self.merge_log:  # removed while we were building
                        row = segment.find(entry_id, digest)
                        if row is not None:
                            segment.dead.add(row)
                kept = tuple(part for part in self.parts if part not in parts)
                with self.state_lock:
                    self.parts = (segment, *kept) if segment is not None else kept
                self.merging, self.merge_log = (), []
        except BaseException as error:  # keep answering from the parts as they are
            with self.write_lock:
                self.merge_error = error
                self.merging, self.merge_log = (), []
            raise
        finally:
            with self.write_lock:
                self.merger = None
                self._maybe_merge()

    def settle(self) -> None:
        while True:
            with self.write_lock:
                self._maybe_merge()
                merger = self.merger
            if merger is None:
                if self.merge_error is not None:
                    raise RuntimeError("a merge of the hash index failed") from self.merge_error
                return
            merger.join()

    # Readers -----------------------------------------------------------------------------

    def snapshot(self) -> tuple[tuple[Part, ...], DeltaView]:
        with self.state_lock:
            return self.parts, self.delta.view()

    def match_pdq(self, query: PdqQuery) -> dict[int, int]:
        parts, delta = self.snapshot()
        found: dict[int, int] = {}
        for part in parts:
            if isinstance(part, PdqSegment):
                rows, distances = part.search(query)
            else:  # a delta frozen for a merge under way
                assert isinstance(part, Delta)
                rows, distances = part.view().pdq_search(query)
            _collect(found, part.ids, part.dead, rows, distances)
        rows, distances = delta.pdq_search(query)
        _collect(found, delta.ids, delta.dead, rows, distances)
        return found

    def match_exact(self, digest: bytes) -> dict[int, int]:
        parts, delta = self.snapshot()
        found: dict[int, int] = {}
        for part in parts:
            if isinstance(part, ExactSegment):
                rows: list[int] = part.lookup(digest)
            else:  # a delta frozen for a merge under way
                assert isinstance(part, Delta)
                rows = part.view().exact_search(digest).tolist()
            for row in rows:
                if row not in part.dead:
                    found[int(part.ids[row])] = 0
        for row in delta.exact_search(digest).tolist():
            if row not in delta.dead:
                found[int(delta.ids[row])] = 0
        return found

    def memory_bytes(self) -> int:
        parts, _ = self.snapshot()
        return sum(part.memory_bytes() for part in parts) + self.delta.memory_bytes()


def _collect(
    found: dict[int, int], ids: Array, dead: set[int], rows: Array, distances: Array
) -> None:
    """Add the live rows' (id, distance) to `found` (a row read from several tables once)."""
    if rows.size == 0:
        return
    for row, distance in zip(rows.tolist(), distances.tolist(), strict=True):
        if row in dead:
            continue
        entry_id = int(ids[row])
        if distance < found.get(entry_id, MAX_PDQ_DISTANCE + 1):
            found[entry_id] = distance


def _distinct(ids: Array, digests: Array) -> tuple[Array, Array]:
    """The batch without repeated (id, digest) pairs (first kept)."""
    if len(ids) < 2:
        return ids, digests
    ordered = np.sort(ids)
    if not (ordered[1:] == ordered[:-1]).any():
        return ids, digests  # ids all different: so are the pairs
    pairs = np.concatenate([ids.astype("<i8").view(np.uint8).reshape(-1, 8), digests], axis=1)
    pair_type = np.dtype((np.void, pairs.shape[1]))
    _, first = np.unique(np.ascontiguousarray(pairs).view(pair_type).ravel(), return_index=True)
    first.sort()
    return ids[first], digests[first]


class KnownHashIndex:
    """Every active hash-list entry, matchable at once after add (no rebuild wait)."""

    def __init__(
        self, *, pdq_max_distance: int = PDQ_DEFAULT_MAX_DISTANCE, merge_at: int = DEFAULT_MERGE_AT
    ) -> None:
        self.pdq_max_distance = _checked_distance(pdq_max_distance)
        if merge_at < 1:
            raise ValueError("merge_at must be at least 1")
        self._tables = {alg: _Table(alg, merge_at) for alg in HashAlgorithm}

    def add(self, entry_id: int, alg: HashAlgorithm, digest: bytes) -> None:
        self._tables[alg].add(_checked_id(entry_id), _checked_digest(alg, digest))

    def add_many(self, entries: Iterable[tuple[int, HashAlgorithm, bytes]]) -> None:
        """Bulk load (at start, or a big import): one segment per type when the batch is large."""
        ids: dict[HashAlgorithm, list[int]] = {alg: [] for alg in HashAlgorithm}
        digests: dict[HashAlgorithm, list[bytes]] = {alg: [] for alg in HashAlgorithm}
        for entry_id, alg, digest in entries:
            ids[alg].append(entry_id)
            digests[alg].append(digest)
        for alg, table in self._tables.items():
            if not ids[alg]:
                continue
            size = DIGEST_BYTES[alg]
            if any(len(digest) != size for digest in digests[alg]):
                raise ValueError(f"a {alg.value} digest is {size} bytes")
            id_values = np.array(ids[alg], dtype=np.int64)
            if int(id_values.min()) < 1:
                raise ValueError("an entry id is a positive integer")
            rows = np.frombuffer(b"".join(digests[alg]), dtype=np.uint8).reshape(-1, size)
            table.add_many(id_values, rows)

    def remove(self, entry_id: int, alg: HashAlgorithm, digest: bytes) -> None:
        """Idempotent: removing an entry that is not there changes nothing."""
        self._tables[alg].remove(_checked_id(entry_id), _checked_digest(alg, digest))

    def match(
        self, alg: HashAlgorithm, digest: bytes, *, max_distance: int | None = None
    ) -> list[tuple[int, int]]:
        """(entry_id, distance) sorted by distance then id. Exact types: distance 0, equal
        digests only. PDQ: every entry within max_distance bits (default: the index's)."""
        digest = _checked_digest(alg, digest)
        table = self._tables[alg]
        if alg is HashAlgorithm.PDQ:
            distance = self.pdq_max_distance if max_distance is None else max_distance
            found = table.match_pdq(PdqQuery(digest, _checked_distance(distance)))
        else:
            found = table.match_exact(digest)
        return sorted(found.items(), key=_by_distance_then_id)

    def settle(self) -> None:
        """Wait until no merge is due or running (a bulk loader, the bench and tests call it:
        matches are right before too, only slower while the delta is large)."""
        for table in self._tables.values():
            table.settle()

    def __len__(self) -> int:
        return sum(table.live for table in self._tables.values())

    def memory_bytes(self) -> int:
        """What the index holds: its arrays (digests, ids, chunk tables) and dead-row sets."""
        return sum(table.memory_bytes() for table in self._tables.values())


def _by_distance_then_id(item: tuple[int, int]) -> tuple[int, int]:
    return item[1], item[0]


def _checked_id(entry_id: Any) -> int:
    if isinstance(entry_id, bool) or not isinstance(entry_id, int | np.integer):
        raise TypeError("an entry id is an integer")
    if not 0 < int(entry_id) < 1 << 63:
        raise ValueError("an entry id is a positive 64-bit integer")
    return int(entry_id)


def _checked_digest(alg: HashAlgorithm, digest: Any) -> bytes:
    if not isinstance(digest, bytes):
        raise TypeError("a digest is bytes")
    if len(digest) != DIGEST_BYTES[alg]:
        raise ValueError(f"a {alg.value} digest is {DIGEST_BYTES[alg]} bytes")
    return digest


def _checked_distance(distance: Any) -> int:
    if isinstance(distance, bool) or not isinstance(distance, int):
        raise TypeError("a PDQ distance is an integer")
    if not 0 <= distance <= MAX_PDQ_DISTANCE:
        raise ValueError(f"a PDQ distance is from 0 to {MAX_PDQ_DISTANCE}")
    return distance
