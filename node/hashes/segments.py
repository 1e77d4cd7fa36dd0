"""The arrays behind the known-hash index (node.hashes.index): what one batch of entries becomes.

Each table of the index (one per hash type) is a few immutable *segments*, built in one go, plus
one append-only *delta* that takes single additions. Rows never move; a removed row is only
marked dead (its number goes in `dead`) until the next merge rebuilds a segment without it.

PDQ segments use multi-index hashing. The 256 bits are cut into 16 chunks of 16 bits; two
hashes within Hamming distance 31 differ in at most one bit in at least one chunk (were every
chunk 2 bits or more apart, the distance would be 32 or more). Each chunk has a table: the row
numbers sorted by the chunk's value, with where each of the 65,536 values starts (CSR). A query
reads, in each table, the rows whose chunk equals its own or differs by one bit (17 buckets per
table, about 4,000 rows at a million hashes) and checks their full distance: the cost is a few
thousand random reads instead of a million. A smaller distance needs fewer buckets (chunks can
be skipped); a much larger one falls back to a full scan.

Exact segments (md5, sha1, sha256) are sorted by the first 8 bytes of the digest; a lookup is a
binary search. Both kinds keep the entry ids as 4-byte integers when they fit.
"""

from __future__ import annotations

import math
import sys
from functools import lru_cache
from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

PDQ_BYTES = 32
CHUNKS = 16
CHUNK_BITS = 16
_BUCKETS = CHUNKS << CHUNK_BITS  # bucket number: chunk << 16 | value
# Past this many buckets per query a full scan of the segment costs less than the probes.
_MAX_PROBES = 16_384
_EMPTY_ROWS: Array = np.empty(0, dtype=np.intp)


def id_array(ids: Array) -> Array:
    """Entry ids as 4-byte integers when they all fit (they do for a SQLite table that has
    not passed four billion rows), 8 bytes otherwise."""
    if ids.size == 0 or (int(ids.min()) >= 0 and int(ids.max()) < 1 << 32):
        return ids.astype(np.uint32)
    return ids.astype(np.int64)


def set_bytes(items: set[int]) -> int:
    """A set of row numbers: its table and its int objects."""
    return sys.getsizeof(items) + 32 * len(items)


_CHUNK_BASES = np.arange(CHUNKS, dtype=np.intp) << CHUNK_BITS


@lru_cache(maxsize=64)
def probe_plan(max_distance: int) -> tuple[Array, Array, Array] | None:
    """For each bucket to read: its chunk and the bits flipped in the chunk's value (the list
    twice, the second time with 1 to add: see PdqQuery); None when a full scan is cheaper.

    Generalised pigeonhole: if chunk c is probed up to radius r_c and the sum of (r_c + 1)
    exceeds max_distance, a hash within max_distance has some chunk within its radius. The
    radii are spread evenly; a chunk of radius -1 is not read at all.
    """
    base, extra = divmod(max_distance + 1, CHUNKS)
    radii = [base - 1 + (1 if chunk < extra else 0) for chunk in range(CHUNKS)]
    probes = sum(math.comb(CHUNK_BITS, flips) for r in radii for flips in range(r + 1))
    if probes > _MAX_PROBES:
        return None
    chunks: list[int] = []
    masks: list[int] = []
    for chunk, radius in enumerate(radii):
        for flips in range(radius + 1):
            for bits in combinations(range(CHUNK_BITS), flips):
                chunks.append(chunk)
                masks.append(sum(1 << bit for bit in bits))
    # Listed twice: a bucket (its start), then the bucket + 1 (its end); see PdqQuery.
    chunk_of = np.array(chunks * 2, dtype=np.intp)
    flip_masks = np.array(masks * 2, dtype=np.intp)
    ends = np.repeat(np.array([0, 1], dtype=np.intp), len(masks))
    return chunk_of, flip_masks, ends


class PdqQuery:
    """One PDQ digest to look for, prepared once for every segment."""

    __slots__ = ("bounds", "digest", "max_distance", "probes", "words")

    def __init__(self, digest: bytes, max_distance: int) -> None:
        self.digest = digest
        self.max_distance = max_distance
        self.words: Array = np.frombuffer(digest, dtype=np.uint64)
        plan = probe_plan(max_distance)
        # Each bucket to read, then each bucket + 1: where it starts and where it ends.
        self.bounds: Array | None = None
        self.probes = 0
        if plan is not None:
            chunk_of, flips, ends = plan
            values = np.frombuffer(digest, dtype=np.uint16).astype(np.intp) | _CHUNK_BASES
            self.bounds = (np.take(values, chunk_of) ^ flips) + ends
            self.probes = len(flips) // 2


def _within(block: Array, query: PdqQuery) -> tuple[Array, Array]:
    """Which rows of `block` (k rows of 4 words) are within the query's distance, and how far.

    The first two words (128 bits) sort out nearly every candidate: an unrelated hash differs
    in about 64 of them, so only true neighbours go on to the full distance.
    """
    words = query.words
    partial = np.bitwise_count(block[:, 0] ^ words[0])
    partial += np.bitwise_count(block[:, 1] ^ words[1])  # 128 at most: fits the byte
    near = np.flatnonzero(partial <= query.max_distance)
    if near.size == 0:
        return _EMPTY_ROWS, _EMPTY_ROWS
    distances = np.bitwise_count(np.take(block, near, axis=0) ^ words).sum(axis=1, dtype=np.intp)
    keep = distances <= query.max_distance
    return near[keep], distances[keep]


def pdq_distances(head: Array, tail: Array, rows: Array, query: PdqQuery) -> tuple[Array, Array]:
    """The rows within the query's distance, and their distances, of a segment whose digests
    are split in two: `head` (the first 16 bytes of each, shape (n, 2)) and `tail` (the rest).

    The heads alone sort out nearly every candidate (see _within), so the random reads that
    dominate a query touch 16 bytes per candidate in an array half the size of the digests.
    """
    if rows.size == 0:
        return _EMPTY_ROWS, _EMPTY_ROWS
    heads = np.take(head, rows, axis=0)
    words = query.words
    partial = np.bitwise_count(heads[:, 0] ^ words[0])
    partial += np.bitwise_count(heads[:, 1] ^ words[1])
    near = np.flatnonzero(partial <= query.max_distance)
    if near.size == 0:
        return _EMPTY_ROWS, _EMPTY_ROWS
    found = np.take(rows, near)
    rest = np.bitwise_count(np.take(tail, found, axis=0) ^ words[2:]).sum(axis=1, dtype=np.intp)
    distances = np.take(partial, near) + rest
    keep = distances <= query.max_distance
    return found[keep], distances[keep]


def scan_distances(words: Array, query: PdqQuery) -> tuple[Array, Array]:
    """Every row of `words` (n, 4, C order) within the query's distance: a full scan."""
    block = 1 << 16
    if len(words) <= block:  # a delta: one block
        return _within(words, query)
    rows: list[Array] = []
    distances: list[Array] = []
    for start in range(0, len(words), block):
        hits, found = _within(words[start : start + block], query)
        rows.append(hits + start)
        distances.append(found)
    if not rows:
        return _EMPTY_ROWS, _EMPTY_ROWS
    return np.concatenate(rows), np.concatenate(distances)


def expand(starts: Array, ends: Array) -> Array:
    """The positions of every range [start, end), one after the other."""
    lengths = ends - starts
    total_ends = np.cumsum(lengths)
    total = int(total_ends[-1]) if total_ends.size else 0
    if total == 0:
        return _EMPTY_ROWS
    return np.repeat(starts - (total_ends - lengths), lengths) + np.arange(total)


class Part:
    """What the table needs of a segment or a delta: rows, ids, digests, dead rows."""

    ids: Array
    dead: set[int]
    digest_size: int

    @property
    def rows(self) -> int:
        raise NotImplementedError

    def find(self, entry_id: int, digest: bytes) -> int | None:
        """The live row holding this entry, if any."""
        raise NotImplementedError

    def digests(self) -> Array:
        """Every row's digest, shape (rows, digest_size), uint8."""
        raise NotImplementedError

    def memory_bytes(self) -> int:
        raise NotImplementedError

    def live(self, dead: frozenset[int]) -> tuple[Array, Array]:
        """(digests, ids) of the rows not in `dead`."""
        digests, ids = self.digests(), self.ids[: self.rows]
        if dead:
            keep = np.ones(self.rows, dtype=bool)
            keep[np.fromiter(dead, dtype=np.intp, count=len(dead))] = False
            digests, ids = digests[keep], ids[keep]
        return digests, ids.astype(np.int64)

    def holding(self, ids: Array, digests: Array) -> Array:
        """Which of these (id, digest) pairs are live here (a mask)."""
        mask = np.zeros(len(ids), dtype=bool)
        if self.rows == 0 or len(ids) == 0:
            return mask
        for index in np.flatnonzero(np.isin(ids, self.ids[: self.rows])).tolist():
            mask[index] = self.find(int(ids[index]), digests[index].tobytes()) is not None
        return mask


class PdqSegment(Part):
    """Immutable PDQ rows with their 16 chunk tables."""

    __slots__ = ("dead", "digest_size", "head", "ids", "offsets", "tables", "tail")

    def __init__(self, digests: Array, ids: Array) -> None:
        count = len(digests)
        self.digest_size = PDQ_BYTES
        # Fresh arrays of aligned 8-byte words, whatever the rows came from.
        self.head: Array = np.empty((count, 2), dtype=np.uint64)
        self.head.view(np.uint8)[:] = digests[:, :16]
        self.tail: Array = np.empty((count, 2), dtype=np.uint64)
        self.tail.view(np.uint8)[:] = digests[:, 16:]
        self.ids = id_array(ids)
        self.dead = set()
        # offsets[chunk << 16 | value] = where that value's rows start in `tables`, in which
        # table c fills [c * count, (c + 1) * count); so offsets[bucket + 1] is its end.
        offset_type = np.uint32 if CHUNKS * count < 1 << 32 else np.int64
        self.offsets: Array = np.empty(_BUCKETS + 1, dtype=offset_type)
        self.tables: Array = np.empty(CHUNKS * count, dtype=np.uint32)
        chunks = np.concatenate([self.head.view(np.uint16), self.tail.view(np.uint16)], axis=1)
        for chunk in range(CHUNKS):
            values = np.ascontiguousarray(chunks[:, chunk])
            # A stable sort of 16-bit keys is a radix sort in numpy: linear time.
            self.tables[chunk * count : (chunk + 1) * count] = np.argsort(values, kind="stable")
            sizes = np.bincount(values, minlength=1 << CHUNK_BITS)
            starts = np.cumsum(sizes) - sizes + chunk * count
            self.offsets[chunk << CHUNK_BITS : (chunk + 1) << CHUNK_BITS] = starts
        self.offsets[_BUCKETS] = CHUNKS * count

    @property
    def rows(self) -> int:
        return len(self.head)

    def search(self, query: PdqQuery) -> tuple[Array, Array]:
        if query.bounds is None:
            return scan_distances(np.concatenate([self.head, self.tail], axis=1), query)
        bounds = np.take(self.offsets, query.bounds).astype(np.intp)
        candidates = np.take(self.tables, expand(bounds[: query.probes], bounds[query.probes :]))
        return pdq_distances(self.head, self.tail, candidates, query)

    def find(self, entry_id: int, digest: bytes) -> int | None:
        value = int(np.frombuffer(digest[:2], dtype=np.uint16)[0])  # chunk 0: table 0
        rows = self.tables[int(self.offsets[value]) : int(self.offsets[value + 1])]
        query = np.frombuffer(digest, dtype=np.uint64)
        same = (
            (np.take(self.ids, rows) == entry_id)
            & (np.take(self.head, rows, axis=0) == query[:2]).all(axis=1)
            & (np.take(self.tail, rows, axis=0) == query[2:]).all(axis=1)
        )
        for row in np.take(rows, np.flatnonzero(same)).tolist():
            if row not in self.dead:
                return int(row)
        return None

    def digests(self) -> Array:
        return np.concatenate([self.head, self.tail], axis=1).view(np.uint8)

    def memory_bytes(self) -> int:
        digests = self.head.nbytes + self.tail.nbytes
        arrays = digests + self.ids.nbytes + self.offsets.nbytes + self.tables.nbytes
        return arrays + set_bytes(self.dead)


class ExactSegment(Part):
    """Immutable rows of one exact type, sorted by the first 8 bytes of the digest."""

    __slots__ = ("dead", "digest_size", "ids", "keys", "rest")

    def __init__(self, digests: Array, ids: Array) -> None:
        count, self.digest_size = digests.shape
        keys = np.ascontiguousarray(digests[:, :8]).view(np.uint64).reshape(count)
        order = np.argsort(keys)
        self.keys: Array = np.take(keys, order)
        self.rest: Array = np.take(digests[:, 8:], order, axis=0)
        self.ids = id_array(np.take(ids, order))
        self.dead = set()

    @property
    def rows(self) -> int:
        return len(self.keys)

    def lookup(self, digest: bytes) -> list[int]:
        """The rows (live or not) whose digest is this one."""
        key = np.frombuffer(digest[:8], dtype=np.uint64)[0]
        row = int(np.searchsorted(self.keys, key))
        found: list[int] = []
        rest = digest[8:]
        while row < len(self.keys) and self.keys[row] == key:
            if self.rest[row].tobytes() == rest:
                found.append(row)
            row += 1
        return found

    def find(self, entry_id: int, digest: bytes) -> int | None:
        for row in self.lookup(digest):
            if int(self.ids[row]) == entry_id and row not in self.dead:
                return row
        return None

    def digests(self) -> Array:
        return np.concatenate([self.keys.view(np.uint8).reshape(-1, 8), self.rest], axis=1)

    def memory_bytes(self) -> int:
        return self.keys.nbytes + self.rest.nbytes + self.ids.nbytes + set_bytes(self.dead)


class Delta(Part):
    """Rows appended one by one (or in small batches), searched by a full scan.

    Append-only: a reader that noted `rows` sees those rows unchanged while more are written
    after them, and a reader holding the old arrays after a growth still sees its rows.
    """

    __slots__ = ("count", "data", "dead", "digest_size", "ids")

    def __init__(self, digest_size: int, capacity: int = 1024) -> None:
        self.digest_size = digest_size
        self.count = 0
        self.data: Array = np.empty((capacity, digest_size), dtype=np.uint8)
        self.ids = np.empty(capacity, dtype=np.int64)
        self.dead = set()

    @property
    def rows(self) -> int:
        return self.count

    def append(self, ids: Array, digests: Array) -> None:
        """Call with the table's state lock held: readers copy (data, ids, count) under it."""
        needed = self.count + len(ids)
        if needed > len(self.ids):
            capacity = max(needed, 2 * len(self.ids))
            data = np.empty((capacity, self.digest_size), dtype=np.uint8)
            data[: self.count] = self.data[: self.count]
            new_ids = np.empty(capacity, dtype=np.int64)
            new_ids[: self.count] = self.ids[: self.count]
            self.data, self.ids = data, new_ids
        self.data[self.count : needed] = digests
        self.ids[self.count : needed] = ids
        self.count = needed

    def find(self, entry_id: int, digest: bytes) -> int | None:
        query = np.frombuffer(digest, dtype=np.uint8)
        for row in np.flatnonzero(self.ids[: self.count] == entry_id).tolist():
            if row not in self.dead and np.array_equal(self.data[row], query):
                return int(row)
        return None

    def digests(self) -> Array:
        return self.data[: self.count]

    def memory_bytes(self) -> int:
        return self.data.nbytes + self.ids.nbytes + set_bytes(self.dead)

    def view(self) -> DeltaView:
        if self.count == 0:
            return EMPTY_VIEW
        return DeltaView(self.data[: self.count], self.ids[: self.count], self.dead)


class DeltaView:
    """The rows of a delta as they were when the view was taken (a match's snapshot)."""

    __slots__ = ("data", "dead", "ids")

    def __init__(self, data: Array, ids: Array, dead: set[int]) -> None:
        self.data, self.ids, self.dead = data, ids, dead

    def pdq_search(self, query: PdqQuery) -> tuple[Array, Array]:
        if len(self.ids) == 0:
            return _EMPTY_ROWS, _EMPTY_ROWS
        return scan_distances(self.data.view(np.uint64), query)  # (k, 32) bytes: (k, 4) words

    def exact_search(self, digest: bytes) -> Array:
        if len(self.ids) == 0:
            return _EMPTY_ROWS
        key = np.frombuffer(digest[:8], dtype=np.uint64)[0]
        keys = self.data[:, :8].view(np.uint64).reshape(-1)
        rows = np.flatnonzero(keys == key)
        query = np.frombuffer(digest, dtype=np.uint8)
        same = [row for row in rows.tolist() if np.array_equal(self.data[row], query)]
        return np.array(same, dtype=np.intp)


EMPTY_VIEW = DeltaView(np.empty((0, PDQ_BYTES), dtype=np.uint8), _EMPTY_ROWS, set())
