"""Batches split over worker threads come back whole and in order."""

from __future__ import annotations

import threading

from node.federation.crypto_pool import MIN_CHUNK, map_chunks


async def test_results_keep_the_order_of_the_items() -> None:
    chunks: list[int] = []
    threads: set[int] = set()

    def double(chunk: list[int]) -> list[int]:
        chunks.append(len(chunk))
        threads.add(threading.get_ident())
        return [n * 2 for n in chunk]

    items = list(range(10 * MIN_CHUNK + 3))
    assert await map_chunks(double, items, workers=4) == [n * 2 for n in items]
    # One contiguous chunk per worker, off the event loop's thread.
    assert sorted(chunks) == [80, 81, 81, 81]
    assert threading.get_ident() not in threads


async def test_small_batches_and_empty_ones_stay_in_one_chunk() -> None:
    calls: list[int] = []

    def count(chunk: list[int]) -> list[int]:
        calls.append(len(chunk))
        return chunk

    assert await map_chunks(count, list(range(MIN_CHUNK + 1)), workers=4) == list(
        range(MIN_CHUNK + 1)
    )
    assert await map_chunks(count, [], workers=4) == []
    assert calls == [MIN_CHUNK + 1, 0]
