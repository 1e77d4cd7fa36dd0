"""Batches split over worker threads come back whole and in order."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from node.federation.crypto_pool import MIN_CHUNK, CryptoPool


@pytest.fixture
def pool() -> Iterator[CryptoPool]:
    pool = CryptoPool(workers=4)
    yield pool
    pool.close()


async def test_results_keep_the_order_of_the_items(pool: CryptoPool) -> None:
    chunks: list[int] = []
    threads: set[int] = set()

    def double(chunk: list[int]) -> list[int]:
        chunks.append(len(chunk))
        threads.add(threading.get_ident())
        return [n * 2 for n in chunk]

    items = list(range(10 * MIN_CHUNK + 3))
    assert await pool.map(double, items) == [n * 2 for n in items]
    # One contiguous chunk per worker, off the event loop's thread.
    assert sorted(chunks) == [80, 81, 81, 81]
    assert threading.get_ident() not in threads


async def test_small_batches_and_empty_ones_stay_in_one_chunk(pool: CryptoPool) -> None:
    calls: list[int] = []

    def count(chunk: list[int]) -> list[int]:
        calls.append(len(chunk))
        return chunk

    assert await pool.map(count, list(range(MIN_CHUNK + 1))) == list(range(MIN_CHUNK + 1))
    assert await pool.map(count, []) == []
    assert calls == [MIN_CHUNK + 1]


def test_submitted_chunks_can_be_consumed_as_they_finish(pool: CryptoPool) -> None:
    futures = pool.submit(lambda chunk: [n + 1 for n in chunk], list(range(10)), chunk=4)
    assert [f.result() for f in futures] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
