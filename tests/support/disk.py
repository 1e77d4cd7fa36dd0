"""A small file system of the test's own (a tmpfs), and filling it up: what a full disk does.

Mounting needs root (CI runs the suite as root); elsewhere the tests that need it are skipped
with the reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

MIB = 1024 * 1024


class CannotMount(Exception):
    """No tmpfs here: not root, or mounting is not allowed (a container without the right)."""


@contextlib.contextmanager
def small_disk(mount: Path, size_mb: int = 20) -> Iterator[Path]:
    """A `size_mb` tmpfs mounted at `mount` (made if needed), unmounted on the way out."""
    if os.geteuid() != 0:
        raise CannotMount("mounting a tmpfs needs root (CI runs the suite as root)")
    mount.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        raise CannotMount(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write a file into `directory` until its file system refuses another byte."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for size in (MIB, 4096, 1):
            block = b"\0" * size
            try:
                while True:
                    os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    return filler
