"""The known-hash index answers as a brute force over its entries would, whatever was added,
removed or merged meanwhile, and while another thread writes."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.hashes.index import KnownHashIndex
from node.hashes.values import DIGEST_BYTES
from protocol.records import HashAlgorithm

PDQ = HashAlgorithm.PDQ
EXACT = [HashAlgorithm.MD5, HashAlgorithm.SHA1, HashAlgorithm.SHA256]
Entry = tuple[int, HashAlgorithm, bytes]


def flip(digest: bytes, bits: Iterable[int]) -> bytes:
    value = int.from_bytes(digest, "big")
    for bit in bits:
        value ^= 1 << bit
    return value.to_bytes(len(digest), "big")


def hamming(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def brute_force(
    entries: set[Entry], alg: HashAlgorithm, digest: bytes, max_distance: int
) -> list[tuple[int, int]]:
    """What match() must answer, computed with Python integers alone."""
    best: dict[int, int] = {}
    for entry_id, entry_alg, entry_digest in entries:
        if entry_alg is not alg:
            continue
        distance = hamming(entry_digest, digest) if alg is PDQ else (entry_digest != digest) * 999
        if distance <= (max_distance if alg is PDQ else 0):
            best[entry_id] = min(distance, best.get(entry_id, distance))
    return sorted(best.items(), key=lambda item: (item[1], item[0]))


DISTANCES = [0, 1, 15, 16, 31, 32, 33, 47, 48, 64, 100, 128, 129, 255, 256]


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), merge_at=st.sampled_from([1, 3, 10_000]))
def test_match_equals_brute_force(data: st.DataObject, merge_at: int) -> None:
    """Random adds, bulk adds, removals (of present and absent entries), merges started by the
    index itself (merge_at 1: after every addition, running while the next steps go on) and
    queries near the entries at every distance up to a full scan."""
    index = KnownHashIndex(merge_at=merge_at)
    bases = data.draw(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=3))
    pools = {
        alg: data.draw(
            st.lists(
                st.binary(min_size=DIGEST_BYTES[alg], max_size=DIGEST_BYTES[alg]),
                min_size=1,
                max_size=3,
            )
        )
        for alg in EXACT
    }

    def near(draw_bits: int) -> bytes:
        base = data.draw(st.sampled_from(bases))
        return flip(base, data.draw(st.sets(st.integers(0, 255), max_size=draw_bits)))

    def entry() -> Entry:
        alg = data.draw(st.sampled_from([PDQ, PDQ, *EXACT]))
        digest = near(40) if alg is PDQ else data.draw(st.sampled_from(pools[alg]))
        return data.draw(st.integers(1, 12)), alg, digest

    model: set[Entry] = set()
    for _ in range(data.draw(st.integers(1, 30))):
        step = data.draw(st.sampled_from(["add", "add", "add_many", "remove", "match", "settle"]))
        if step == "add":
            new = entry()
            index.add(*new)
            model.add(new)
        elif step == "add_many":
            batch = [entry() for _ in range(data.draw(st.integers(0, 8)))]
            index.add_many(batch)
            model.update(batch)
        elif step == "remove":
            present = sorted(model, key=lambda item: (item[0], item[1].value, item[2]))
            pick_present = data.draw(st.booleans())
            gone = data.draw(st.sampled_from(present)) if present and pick_present else entry()
            index.remove(*gone)
            model.discard(gone)
        elif step == "settle":
            index.settle()
        else:
            alg = data.draw(st.sampled_from([PDQ, *EXACT]))
            if alg is PDQ:
                stored = sorted(digest for _, kind, digest in model if kind is PDQ)
                origin = data.draw(st.sampled_from(["stored", "near", "random"]))
                if origin == "stored" and stored:
                    query = data.draw(st.sampled_from(stored))
                elif origin == "random":
                    query = data.draw(st.binary(min_size=32, max_size=32))
                else:
                    query = near(48)
                distance = data.draw(st.none() | st.sampled_from(DISTANCES))
                expected = brute_force(model, PDQ, query, 31 if distance is None else distance)
                assert index.match(PDQ, query, max_distance=distance) == expected
            else:
                query = data.draw(st.sampled_from(pools[alg]))
                assert index.match(alg, query) == brute_force(model, alg, query, 0)
        assert len(index) == len(model)
    index.settle()
    for _, alg, digest in model:
        assert index.match(alg, digest) == brute_force(model, alg, digest, 31)
        if alg is PDQ:
            for distance in (0, 16, 32):
                expected = brute_force(model, alg, digest, distance)
                assert index.match(alg, digest, max_distance=distance) == expected


@pytest.mark.parametrize("in_segment", [False, True])
def test_pdq_at_distance_31_is_found_and_32_is_not(in_segment: bool) -> None:
    rng = random.Random(31)
    base = rng.randbytes(32)
    at_31 = flip(base, rng.sample(range(256), 31))
    at_32 = flip(base, rng.sample(range(256), 32))
    assert (hamming(base, at_31), hamming(base, at_32)) == (31, 32)
    index = KnownHashIndex(merge_at=100)
    # Unrelated hashes around them, so that the buckets are not empty.
    others = [(100 + n, PDQ, rng.randbytes(32)) for n in range(5000)]
    if in_segment:  # a bulk load: indexed at once
        index.add_many([*others, (1, PDQ, at_31), (2, PDQ, at_32)])
    else:  # single additions: in the delta
        index.add_many(others)
        index.add(1, PDQ, at_31)
        index.add(2, PDQ, at_32)
    index.settle()
    table = index._tables[PDQ]
    assert (table.delta.count, len(table.parts)) == ((0, 1) if in_segment else (2, 1))
    assert index.match(PDQ, base) == [(1, 31)]
    assert index.match(PDQ, base, max_distance=32) == [(1, 31), (2, 32)]
    assert index.match(PDQ, base, max_distance=30) == []


def test_one_digest_on_several_entries_is_returned_for_each() -> None:
    index = KnownHashIndex()
    pdq, sha = bytes(range(32)), bytes(range(1, 33))
    index.add_many([(7, PDQ, pdq), (3, PDQ, pdq), (9, PDQ, flip(pdq, [0])), (5, PDQ, pdq)])
    index.add_many([(4, HashAlgorithm.SHA256, sha), (2, HashAlgorithm.SHA256, sha)])
    assert index.match(PDQ, pdq) == [(3, 0), (5, 0), (7, 0), (9, 1)]
    assert index.match(HashAlgorithm.SHA256, sha) == [(2, 0), (4, 0)]
    index.remove(5, PDQ, pdq)
    index.remove(5, PDQ, pdq)  # idempotent
    index.remove(2, HashAlgorithm.SHA256, sha)
    assert index.match(PDQ, pdq) == [(3, 0), (7, 0), (9, 1)]
    assert index.match(HashAlgorithm.SHA256, sha) == [(4, 0)]
    assert len(index) == 4


@pytest.mark.parametrize("alg", EXACT)
def test_exact_types_match_equal_digests_only(alg: HashAlgorithm) -> None:
    size = DIGEST_BYTES[alg]
    rng = random.Random(size)
    digest = rng.randbytes(size)
    index = KnownHashIndex(merge_at=1)  # each addition starts a merge
    index.add_many((10 + n, alg, rng.randbytes(size)) for n in range(50))
    index.add(1, alg, digest)
    for _ in ("in the delta or a merge under way", "merged"):
        assert index.match(alg, digest) == [(1, 0)]
        assert index.match(alg, flip(digest, [0])) == []
        assert index.match(alg, flip(digest, [8 * size - 1])) == []  # same first 8 bytes
        if size == 32:  # the same bytes as a PDQ hash are another hash
            assert index.match(PDQ, digest) == []
        index.settle()
    assert len(index._tables[alg].parts) == 1
    assert index._tables[alg].delta.count == 0


def test_entries_added_after_a_merge_and_removed_from_a_merged_segment() -> None:
    rng = random.Random(4)
    index = KnownHashIndex(merge_at=16)
    first = [(n, PDQ, rng.randbytes(32)) for n in range(1, 201)]
    index.add_many(first)
    index.settle()
    later = [(n, PDQ, rng.randbytes(32)) for n in range(201, 211)]
    for entry in later:
        index.add(*entry)
    for entry_id, alg, digest in first[:5]:
        index.remove(entry_id, alg, digest)
    for entry_id, alg, digest in first[:8] + later:
        expected = [] if entry_id <= 5 else [(entry_id, 0)]
        assert index.match(alg, digest, max_distance=0) == expected
    # Re-adding a removed entry brings it back, once.
    index.add(*first[0])
    index.add(*first[0])
    assert index.match(PDQ, first[0][2], max_distance=0) == [(1, 0)]
    assert len(index) == 200 - 5 + 10 + 1
    index.settle()
    assert index.match(PDQ, first[0][2], max_distance=0) == [(1, 0)]
    assert index.match(PDQ, first[1][2], max_distance=0) == []


def test_removals_while_a_merge_runs_are_kept_by_the_merged_segment() -> None:
    """Remove (and re-add) entries while the background merge is building: the new segment
    must not bring them back. Repeated until a removal is seen to land during a merge."""
    rng = random.Random(9)
    index = KnownHashIndex(merge_at=2000)
    bulk = [(n, PDQ, rng.randbytes(32)) for n in range(1, 200_001)]
    index.add_many(bulk)
    index.settle()
    table = index._tables[PDQ]
    present = set(bulk)
    touched: list[Entry] = []
    next_id = len(bulk) + 1
    for _ in range(20):
        for _ in range(2000):  # reaches merge_at: a merge starts
            entry = (next_id, PDQ, rng.randbytes(32))
            index.add(*entry)
            present.add(entry)
            next_id += 1
        time.sleep(0.02)  # let the merge take its snapshot and start building
        during = bool(table.merging)
        victims = rng.sample(sorted(present), 3)
        for victim in victims:
            index.remove(*victim)
            present.discard(victim)
        index.add(*victims[0])
        present.add(victims[0])
        touched.extend(victims)
        if during and table.merger is not None:
            break
        index.settle()
    else:
        pytest.fail("no removal landed while a merge was running")
    index.settle()
    for entry in touched:
        expected = [(entry[0], 0)] if entry in present else []
        assert index.match(PDQ, entry[2], max_distance=0) == expected
    assert len(index) == len(present)


def test_adds_on_one_thread_while_matching_on_another() -> None:
    """The writer adds (and removes some); the reader, meanwhile, must find every entry whose
    add has returned and none whose removal has returned."""
    rng = random.Random(11)
    count = 3000
    digests = {n: rng.randbytes(32) for n in range(1, count + 1)}
    hashes = {n: rng.randbytes(32) for n in range(1, count + 1)}
    index = KnownHashIndex(merge_at=64)
    index.add_many((n, PDQ, rng.randbytes(32)) for n in range(count + 1, count + 20_001))
    added: list[int] = []
    removed: set[int] = set()
    done = threading.Event()
    problems: list[str] = []

    def write() -> None:
        for n in range(1, count + 1):
            index.add(n, PDQ, digests[n])
            index.add(n, HashAlgorithm.SHA256, hashes[n])
            added.append(n)
            if n % 10 == 0:
                index.remove(n - 5, PDQ, digests[n - 5])
                removed.add(n - 5)
        done.set()

    def read() -> None:
        checks = 0
        while not done.is_set() or checks < 200:
            if not added:
                continue
            n = added[rng.randrange(len(added))]
            was_removed = n in removed
            found = index.match(PDQ, digests[n], max_distance=3)
            exact = index.match(HashAlgorithm.SHA256, hashes[n])
            if exact != [(n, 0)]:
                problems.append(f"sha256 of {n}: {exact}")
            if was_removed and found:
                problems.append(f"{n} found after its removal: {found}")
            if not was_removed and n not in removed and found != [(n, 0)]:
                problems.append(f"{n} not found after its add: {found}")
            checks += 1

    writer = threading.Thread(target=write)
    reader = threading.Thread(target=read)
    writer.start()
    reader.start()
    writer.join(timeout=60)
    reader.join(timeout=60)
    assert not writer.is_alive()
    assert not reader.is_alive()
    assert problems == []
    index.settle()
    for n in range(1, count + 1):
        expected = [] if n in removed else [(n, 0)]
        assert index.match(PDQ, digests[n], max_distance=0) == expected
    assert len(index) == 20_000 + 2 * count - len(removed)


def test_bad_input_is_refused() -> None:
    index = KnownHashIndex()
    with pytest.raises(ValueError, match="sha256 digest is 32 bytes"):
        index.add(1, HashAlgorithm.SHA256, b"\x00" * 31)
    with pytest.raises(ValueError, match="md5 digest is 16 bytes"):
        index.add_many([(1, HashAlgorithm.MD5, b"\x00" * 20)])
    with pytest.raises(ValueError, match="positive"):
        index.add(0, PDQ, b"\x00" * 32)
    with pytest.raises(ValueError, match="PDQ distance is from 0 to 256"):
        index.match(PDQ, b"\x00" * 32, max_distance=257)
    with pytest.raises(ValueError, match="PDQ distance is from 0 to 256"):
        KnownHashIndex(pdq_max_distance=-1)
    with pytest.raises(TypeError, match="digest is bytes"):
        index.match(PDQ, "00" * 32)  # type: ignore[arg-type]
    assert len(index) == 0


def test_the_constructor_distance_is_the_default() -> None:
    base = bytes(32)
    index = KnownHashIndex(pdq_max_distance=10)
    index.add(1, PDQ, flip(base, range(10)))
    index.add(2, PDQ, flip(base, range(11)))
    assert index.match(PDQ, base) == [(1, 10)]
    assert index.match(PDQ, base, max_distance=11) == [(1, 10), (2, 11)]


def test_memory_counts_the_arrays() -> None:
    rng = random.Random(1)
    index = KnownHashIndex()
    count = 100_000
    index.add_many((n, PDQ, rng.randbytes(32)) for n in range(1, count + 1))
    index.add_many((n, HashAlgorithm.SHA256, rng.randbytes(32)) for n in range(1, count + 1))
    index.settle()
    # PDQ: 32 bytes of digest, a 4-byte id, 16 tables of 4-byte rows, and the 16 x 65,536
    # bucket offsets (4 bytes each, shared by all the hashes); SHA-256: digest and id.
    # Then the four empty deltas (1,024 rows of digest and 8-byte id each).
    pdq = count * (32 + 4 + 16 * 4) + 4 * (16 * 65536 + 1)
    sha256 = count * (32 + 4)
    deltas = sum(1024 * (DIGEST_BYTES[alg] + 8) for alg in HashAlgorithm)
    assert pdq + sha256 + deltas <= index.memory_bytes() < pdq + sha256 + deltas + 10_000
