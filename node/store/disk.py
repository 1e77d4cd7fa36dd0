"""The file system holding the data directory: its free space, and whether writes must wait.

A full disk is a temporary condition, not a fault: the store tells this object when a write
found the disk full and when one succeeded again, and the node's background work (delivery,
pull, channels, scheduled jobs) asks `waiting()` before it starts work that writes. So while
the disk is full nothing is sent that could not be recorded afterwards, and nothing is
dead-lettered or marked failed; once space is freed the work resumes by itself.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("hotline.storage")
MIB = 1024 * 1024
# After a write found the disk full, work waits until this much more is free than then ...
RESUME_MARGIN_BYTES = 1 * MIB
# ... or until this long has passed, when it tries again (a quota or a file system that
# reports its free space wrongly must not stop the node for good).
RETRY_SECONDS = 30.0
# While the free space stays under the warning threshold, the warning is repeated this often.
WARN_AGAIN_SECONDS = 3600.0
# statvfs is cheap, but intake may ask on every request: one measure serves this long.
MEASURE_EVERY_SECONDS = 1.0


@dataclass(frozen=True)
class Usage:
    """Bytes free (for this process's user) and the size of the file system."""

    free: int
    size: int


class DiskSpace:
    """The data directory's file system: measured, watched, and full or not."""

    def __init__(
        self,
        path: Path,
        *,
        warn_free_bytes: int = 0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.warn_free_bytes = warn_free_bytes
        self._monotonic = monotonic
        self._measured: tuple[float, Usage | None] | None = None
        # (when, bytes free then) of the last write that found the disk full; None: writes work.
        self._full: tuple[float, int] | None = None
        self._warned_at: float | None = None

    # measuring ----------------------------------------------------------------------------
    def usage(self, fresh: bool = False) -> Usage | None:
        """Free and total bytes; None where the file system cannot be asked."""
        now = self._monotonic()
        if not fresh and self._measured and now - self._measured[0] < MEASURE_EVERY_SECONDS:
            return self._measured[1]
        try:
            stats = os.statvfs(self.path)
        except OSError:
            usage = None
        else:
            usage = Usage(stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize)
        self._measured = (now, usage)
        return usage

    def free_bytes(self, fresh: bool = False) -> int | None:
        usage = self.usage(fresh)
        return usage.free if usage else None

    # full or not ----------------------------------------------------------------------------
    @property
    def full(self) -> bool:
        """The last write found the disk full (and none has succeeded since)."""
        return self._full is not None

    def found_full(self) -> None:
        """A write failed for want of space: said once per episode, and work waits."""
        usage = self.usage(fresh=True)
        free = usage.free if usage else 0
        if self._full is None:
            log.error(
                "the disk holding %s is full (%s free): new work is refused (507) and"
                " deliveries wait; nothing accepted is lost, and the node resumes by itself"
                " once space is freed",
                self.path,
                _size(free),
            )
        self._full = (self._monotonic(), free)

    def wrote(self) -> None:
        """A write succeeded: the disk takes writes again."""
        if self._full is not None:
            self._full = None
            usage = self.usage(fresh=True)
            log.warning(
                "the disk holding %s takes writes again (%s free): work resumes",
                self.path,
                _size(usage.free) if usage else "?",
            )

    def waiting(self) -> bool:
        """Whether work that writes should wait: the disk was found full, and neither has
        space come back since nor has the retry delay passed (then one try is let through)."""
        if self._full is None:
            return False
        at, free_then = self._full
        usage = self.usage(fresh=True)  # asked only while full: a syscall, and the truth
        if usage is not None and usage.free >= free_then + RESUME_MARGIN_BYTES:
            return False
        return self._monotonic() - at < RETRY_SECONDS

    # watching -------------------------------------------------------------------------------
    def check(self) -> Usage | None:
        """The periodic look (`serve`): a warning while less than the threshold is free."""
        usage = self.usage(fresh=True)
        if usage is None or not self.warn_free_bytes:
            return usage
        now = self._monotonic()
        if usage.free < self.warn_free_bytes:
            if self._warned_at is None or now - self._warned_at >= WARN_AGAIN_SECONDS:
                self._warned_at = now
                log.warning(
                    "only %s free on the disk holding %s (warning below %s, [storage]"
                    " warn_free_mb): free space before it runs out; when it is full, new work"
                    " is refused with 507 until space is freed",
                    _size(usage.free),
                    self.path,
                    _size(self.warn_free_bytes),
                )
        elif self._warned_at is not None:
            self._warned_at = None
            log.warning(
                "free space on the disk holding %s is back above %s (%s free)",
                self.path,
                _size(self.warn_free_bytes),
                _size(usage.free),
            )
        return usage


def _size(count: int) -> str:
    if count >= 10 * 1024 * MIB:
        return f"{count / (1024 * MIB):.1f} GiB"
    return f"{count / MIB:.1f} MiB"
