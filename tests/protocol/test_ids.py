"""Time-ordered ids (UUID version 7): layout, order and uniqueness."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from protocol.ids import derived_id, new_id, new_ids, uuid7

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


NAMESPACE = uuid.UUID("6f1c7d2e-3a51-4c8e-9a7b-0d4e2f8c1b63")


def test_a_derived_id_is_the_same_everywhere_and_sorts_with_its_parent() -> None:
    parent = uuid7(NOW, bytes(range(10)))
    first = derived_id(NAMESPACE, parent, f"{parent}/de-eco")
    assert first == derived_id(NAMESPACE, parent, f"{parent}/de-eco")
    assert first.version == 8
    assert first.variant == "specified in RFC 4122"
    assert first.int >> 80 == parent.int >> 80  # the parent's millisecond timestamp
    assert derived_id(NAMESPACE, parent, f"{parent}/us-ncmec") != first
    assert derived_id(uuid.uuid4(), parent, f"{parent}/de-eco") != first


def test_a_random_parent_gets_the_version_5_id() -> None:
    parent = uuid.UUID("7b1c1d1e-4a58-4f6e-9a0b-5c1d2e3f4a5b")
    name = f"{parent}/de-eco"
    assert derived_id(NAMESPACE, parent, name) == uuid.uuid5(NAMESPACE, name)
