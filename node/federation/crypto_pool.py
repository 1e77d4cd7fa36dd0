"""Worker threads that seal and open batches on every core.

`cryptography` releases the GIL while Ed25519 signs and verifies, which is most of the work of
opening; X25519 and HPKE keep it (`bench/threads.py` measures both). Threads therefore spread
signatures over the cores without shipping keys and frames to other processes, and let the
writer store one chunk while the next is opened.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Below this, handing a chunk to another thread costs more than it saves.
MIN_CHUNK = 32


def worker_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def split(items: list[T], size: int) -> list[list[T]]:
    return [items[start : start + size] for start in range(0, len(items), max(1, size))]


class CryptoPool:
    """One thread per core, shared by delivery (sealing) and the inbox (opening)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or worker_count()
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="crypto")

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def submit(
        self, work: Callable[[list[T]], list[R]], items: list[T], chunk: int
    ) -> list[Future[list[R]]]:
        """Start `work` over consecutive chunks of `items`; the futures are in item order, so
        a consumer can use the first chunks while the later ones are still being worked on."""
        return [self._executor.submit(work, part) for part in split(items, chunk)]

    async def map(self, work: Callable[[list[T]], list[R]], items: list[T]) -> list[R]:
        """`work` over `items`, one chunk per worker; results in item order."""
        if not items:
            return []
        chunks = max(1, min(self.workers, len(items) // MIN_CHUNK))
        futures = self.submit(work, items, -(-len(items) // chunks))
        parts = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        return [result for part in parts for result in part]
