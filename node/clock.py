"""Time is passed in: the system clock in production, a controllable one in tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        # Second precision: every stored and signed time has one textual form.
        return datetime.now(UTC).replace(microsecond=0)


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, at: datetime) -> None:
        self._now = at


def iso(at: datetime) -> str:
    """The one text form of times in the store and the APIs: RFC 3339 UTC with Z."""
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    # isoformat is several times cheaper than strftime, and this runs for every stored row.
    return at.isoformat(timespec="seconds")[:19] + "Z"


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
