"""Time-ordered identifiers: UUID version 7 (RFC 9562 §5.7) for the records and frames we mint.

Every id we create becomes a key in several SQLite indexes, here and at each peer that stores
the record (the case, its versions, actions, routing, audit subjects, the replay cache). With
random (version 4) ids each insert lands on a random B-tree page, so once a store holds a
million records every commit rewrites a page per index per record. An id that starts with its
creation time lands at the right-hand edge of the index, where the pages are already cached.
After the 48-bit millisecond timestamp come 74 random bits, so ids stay unique and unguessable
(the time they reveal is already in the record and the header).
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MILLISECOND = timedelta(milliseconds=1)
_MAX_MILLIS = (1 << 48) - 1
_RANDOM_BYTES = 10  # 80 bits drawn, of which 74 are kept beside the version and variant


def uuid7(now: datetime, random: bytes) -> uuid.UUID:
    """The version 7 UUID for `now` (an aware datetime) from 10 bytes of randomness."""
    if now.tzinfo is None:
        raise ValueError("uuid7 needs an aware datetime")
    if len(random) != _RANDOM_BYTES:
        raise ValueError(f"uuid7 needs {_RANDOM_BYTES} random bytes, got {len(random)}")
    millis = (now - _EPOCH) // _ONE_MILLISECOND
    if not 0 <= millis <= _MAX_MILLIS:
        raise ValueError(f"{now.isoformat()} is outside the range of a version 7 UUID")
    bits = int.from_bytes(random, "big")
    rand_a = bits >> 68  # the top 12 bits
    rand_b = bits & ((1 << 62) - 1)  # the low 62 bits
    return uuid.UUID(int=millis << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b)


def new_ids(now: datetime, count: int) -> list[uuid.UUID]:
    """`count` fresh version 7 UUIDs for `now`, from one read of the OS generator (one GIL
    release instead of one per id, which matters in the sealing threads)."""
    random = os.urandom(_RANDOM_BYTES * count)
    return [uuid7(now, random[_RANDOM_BYTES * n : _RANDOM_BYTES * (n + 1)]) for n in range(count)]


def new_id(now: datetime) -> uuid.UUID:
    """One fresh version 7 UUID for `now`."""
    return uuid7(now, os.urandom(_RANDOM_BYTES))


def short_reference(report_id: str) -> str:
    """The 8-character reference shown to the public and in notice subjects: the last 8 hex
    digits, which are random in every id version. The first 8 of a version 7 id are its
    timestamp, the same for every case created within about a minute."""
    return report_id[-8:]
