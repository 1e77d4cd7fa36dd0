"""Time-ordered ids (UUID version 7): layout, order and uniqueness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from protocol.ids import new_id, new_ids, short_reference, uuid7

NOW = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)


def test_layout_follows_rfc_9562() -> None:
    value = uuid7(NOW, bytes(range(10)))
    assert value.version == 7
    assert value.variant == "specified in RFC 4122"
    assert value.int >> 80 == int(NOW.timestamp() * 1000)  # the 48-bit millisecond timestamp
    # 0x01a22c53827b ms, version 7, rand_a 0x000, variant 0b10, then the low 62 random bits.
    assert str(value) == "01a22c53-827b-7000-8203-040506070809"


def test_random_bits_fill_rand_a_and_rand_b() -> None:
    all_ones = uuid7(NOW, b"\xff" * 10)
    all_zeros = uuid7(NOW, bytes(10))
    assert (all_ones.int >> 64) & 0xFFF == 0xFFF
    assert (all_zeros.int >> 64) & 0xFFF == 0
    assert all_ones.int & ((1 << 62) - 1) == (1 << 62) - 1
    assert all_zeros.int & ((1 << 62) - 1) == 0


def test_ids_sort_by_time_across_milliseconds() -> None:
    times = [NOW + timedelta(milliseconds=n) for n in range(50)]
    ids = [new_id(t) for t in reversed(times)]
    assert sorted(ids, key=str) == list(reversed(ids))


def test_a_batch_is_unique_and_carries_its_time() -> None:
    ids = new_ids(NOW, 10_000)
    assert len(set(ids)) == 10_000
    assert {value.int >> 80 for value in ids} == {int(NOW.timestamp() * 1000)}


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        uuid7(NOW.replace(tzinfo=None), bytes(10))


def test_wrong_amount_of_randomness_is_refused() -> None:
    with pytest.raises(ValueError, match="10 random bytes"):
        uuid7(NOW, bytes(16))


def test_time_before_the_epoch_is_refused() -> None:
    with pytest.raises(ValueError, match="outside the range"):
        uuid7(datetime(1969, 12, 31, tzinfo=UTC), bytes(10))


def test_short_references_differ_for_ids_minted_together() -> None:
    ids = [str(value) for value in new_ids(NOW, 1_000)]
    assert len({short_reference(value) for value in ids}) == 1_000
    assert len({value[:8] for value in ids}) == 1  # why the reference is not the id's start
