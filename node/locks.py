"""Who works on a data directory: one server at a time, and commands directly only when none runs.

Two lock files, both OS locks (`flock`), so a process killed with SIGKILL releases them at once:
- `serve.lock`, held exclusively by the one `serve` process for its whole life (it writes its
  PID there, so a second `serve` can name it);
- `commands.lock`, held shared by every command that works on the files itself. A starting
  server waits for those to finish before it reads anything, and a command that finds a server
  sends itself to that server instead (node/control.py). So nothing ever changes the directory
  behind a running server's back.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from node.datadir import DataDir
from node.errors import NodeError

SERVE_LOCK = "serve.lock"
COMMANDS_LOCK = "commands.lock"


class DirectoryServed(NodeError):
    """A server already holds the data directory."""


def _open(path: Path) -> int | None:
    """A descriptor on the lock file, or None where no lock can exist (no directory yet)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None


def _holder(path: Path) -> str:
    try:
        pid = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


@contextmanager
def serving(data_dir: DataDir, waiting: Callable[[], None]) -> Iterator[None]:
    """Hold the directory as its one server; `waiting` is called if commands must finish first."""
    path = data_dir.root / SERVE_LOCK
    fd = _open(path)
    if fd is None:
        # No directory (or not ours): opening the node gives the precise reason.
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DirectoryServed(
                f"{data_dir.root} is already served by {_holder(path)}: "
                "one server per data directory"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        _wait_for_commands(data_dir, waiting)
        yield
    finally:
        os.close(fd)  # releases the lock; a stale PID left in the file names nobody


def _wait_for_commands(data_dir: DataDir, waiting: Callable[[], None]) -> None:
    fd = _open(data_dir.root / COMMANDS_LOCK)
    if fd is None:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
    finally:
        os.close(fd)


def server_running(data_dir: DataDir) -> bool:
    fd = _open(data_dir.root / SERVE_LOCK)
    if fd is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextmanager
def working_directly(data_dir: DataDir) -> Iterator[bool]:
    """Yields True while this command may work on the files itself; False when a server runs.

    The shared lock is taken before the server check: a server starting in between waits for
    this command, and one already started is seen.
    """
    fd = _open(data_dir.root / COMMANDS_LOCK)
    if fd is None:
        yield True
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        if server_running(data_dir):
            fcntl.flock(fd, fcntl.LOCK_UN)
            yield False
        else:
            yield True
    finally:
        os.close(fd)


IMPORTS_DIR = "imports"


class ImportClaim:
    """One run's hold on the import of one file (by its digest); released on close or death."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the flock
            self._fd = -1


def claim_import(data_dir: DataDir, digest: str) -> ImportClaim | None:
    """Hold the import of the file with this digest; None while another run holds it.

    An flock is per open file: two runs in one server conflict as two processes do, and a
    killed process releases its hold at once. Two runs of one file at the same time would
    both find the other's fresh cases open and count false duplicates.
    """
    directory = data_dir.root / IMPORTS_DIR
    directory.mkdir(mode=0o700, exist_ok=True)
    fd = _open(directory / f"{digest}.lock")
    if fd is None:
        raise NodeError(f"{directory}: cannot hold the import (not writable)")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return ImportClaim(fd)
