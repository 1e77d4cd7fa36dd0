"""PLACEHOLDER brute-force index with the agreed API; replaced by the index branch before merge."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from protocol.records import HashAlgorithm


class KnownHashIndex:
    def __init__(self, *, pdq_max_distance: int = 31) -> None:
        self.pdq_max_distance = pdq_max_distance
        self._entries: dict[int, tuple[HashAlgorithm, bytes]] = {}
        self._lock = threading.Lock()

    def add(self, entry_id: int, alg: HashAlgorithm, digest: bytes) -> None:
        with self._lock:
            self._entries[entry_id] = (alg, digest)

    def add_many(self, entries: Iterable[tuple[int, HashAlgorithm, bytes]]) -> None:
        for entry_id, alg, digest in entries:
            self.add(entry_id, alg, digest)

    def remove(self, entry_id: int, alg: HashAlgorithm, digest: bytes) -> None:
        with self._lock:
            self._entries.pop(entry_id, None)

    def match(
        self, alg: HashAlgorithm, digest: bytes, *, max_distance: int | None = None
    ) -> list[tuple[int, int]]:
        limit = self.pdq_max_distance if max_distance is None else max_distance
        found = []
        with self._lock:
            for entry_id, (a, d) in self._entries.items():
                if a is not alg:
                    continue
                if alg is HashAlgorithm.PDQ:
                    distance = (int.from_bytes(d) ^ int.from_bytes(digest)).bit_count()
                    if distance <= limit:
                        found.append((entry_id, distance))
                elif d == digest:
                    found.append((entry_id, 0))
        return sorted(found, key=lambda f: (f[1], f[0]))

    def __len__(self) -> int:
        return len(self._entries)

    def memory_bytes(self) -> int:
        return 0
