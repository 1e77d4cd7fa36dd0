"""Freed memory goes back to the system: RSS follows what is in use, not the last burst."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from node import memory
from node.memory import FreedMemory
from tests.support.cluster import REPO

# A burst: 100 MiB in 2 KiB blocks (above pymalloc's 512 bytes, so glibc's malloc serves them),
# one block in 16 kept, so that the free memory lies between blocks still in use and none of
# it is at the top of the heap, where glibc would trim it by itself.
BURST = textwrap.dedent(
    """
    from node.memory import FreedMemory

    def rss_mib():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

    blocks = [bytearray(2048) for _ in range(50_000)]
    kept = blocks[::16]
    del blocks
    before = rss_mib()
    returned = FreedMemory().release_now()
    print(before, rss_mib(), returned)
    """
)


@pytest.mark.skipif(not FreedMemory().available, reason="malloc_trim is glibc's")
def test_memory_a_burst_freed_leaves_rss_once_released() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BURST], cwd=REPO, capture_output=True, text=True, check=True
    )
    before, after, returned = done.stdout.split()
    assert returned == "True"
    # ~94 MiB were freed between the kept blocks; at least half of it leaves RSS.
    assert float(before) - float(after) > 45, done.stdout


def test_without_glibc_nothing_is_called_and_nothing_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)
    freed = FreedMemory()
    assert not freed.available
    assert freed.release_now() is False


async def test_release_runs_the_trim_off_the_event_loop() -> None:
    seen: list[tuple[int, str]] = []

    def trim(pad: int) -> int:
        seen.append((pad, threading.current_thread().name))
        return 1

    await FreedMemory(trim).release()
    assert len(seen) == 1
    assert seen[0][0] == 0
    assert seen[0][1] != threading.main_thread().name
