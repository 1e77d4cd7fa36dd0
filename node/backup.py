"""Backups: one archive with a consistent copy of the database, the keys and node.toml; listing
and checking an archive; restoring one into an empty directory.

The archive is a gzip'd tar whose first member is `manifest.json` (who, when, what the database
holds, and the size and SHA-256 of every other member). It never holds the key secret: the keys
in it are the encrypted files of `keys/`, useless without the secret kept elsewhere.

Nothing is ever readable by others, even for a moment: every file is created 0600 with O_EXCL
(in 0700 directories), the archive is written under a temporary name and renamed into place
when complete, and a restore writes only the members it expects, under names it chose.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import orjson

from node.clock import iso, parse_iso
from node.config import CONFIG_FILE
from node.errors import NodeError
from node.store.rejoin import mark_restored
from node.store.snapshot import DatabaseFacts, SnapshotError, copy_database, inspect_database

FORMAT = "hotline-node-backup/1"
MANIFEST = "manifest.json"
DATABASE = "node.sqlite3"
KEYS = "keys"
MAX_MANIFEST_BYTES = 1024 * 1024
CHUNK = 1024 * 1024
# gzip level 1: SQLite pages of text compress about as well as at 6, several times faster.
COMPRESS_LEVEL = 1
# A key file's name as keys/ holds them (never a hidden temporary file, never a path).
_KEY_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
SECRET_NOTE = "not in this backup: keep it apart (a restore needs it)"  # noqa: S105 - words

# (what, done, total): pages of the database, then MiB of the archive.
Progress = Callable[[str, int, int], None]


class BackupRefused(NodeError):
    """A backup that cannot be taken, or an archive that is not a sound backup of a node."""

    status = 422
    kind = "backup-refused"
    title = "Backup refused"


class BackupCancelled(NodeError):
    """The caller went away while the backup was being taken: nothing is left behind."""

    kind = "backup-cancelled"
    title = "Backup cancelled"

    def __init__(self) -> None:
        super().__init__("the backup was stopped before it was complete: nothing was written")


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Manifest:
    node_id: str
    country: str
    taken_at: str
    program: str
    database: DatabaseFacts
    files: list[Member] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "node_id": self.node_id,
            "country": self.country,
            "taken_at": self.taken_at,
            "program": self.program,
            "key_secret": SECRET_NOTE,
            "database": self.database.to_dict(),
            "files": [m.to_dict() for m in self.files],
        }

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        try:
            body = orjson.loads(data)
            if body.get("format") != FORMAT:
                raise BackupRefused(
                    f"unknown backup format {body.get('format')!r} (this program reads {FORMAT})"
                )
            parse_iso(body["taken_at"])
            files = [
                Member(str(m["name"]), int(m["size"]), str(m["sha256"])) for m in body["files"]
            ]
            return cls(
                node_id=str(body["node_id"]),
                country=str(body["country"]),
                taken_at=str(body["taken_at"]),
                program=str(body["program"]),
                database=DatabaseFacts.from_dict(body["database"]),
                files=files,
            )
        except BackupRefused:
            raise
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
            raise BackupRefused(f"its manifest cannot be read ({type(exc).__name__})") from exc

    def member(self, name: str) -> Member | None:
        return next((m for m in self.files if m.name == name), None)


def program_version() -> str:
    try:
        return f"hotline-node {metadata.version('hotline-node')}"
    except metadata.PackageNotFoundError:
        return "hotline-node"


# taking a backup ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """What a backup is taken from: the node's files, and who it is."""

    root: Path
    database: Path
    node_id: str
    country: str


def check_output(output: Path, force: bool) -> None:
    """Refused before any work: a place the archive cannot go, or a file it would replace."""
    if output.is_dir():
        raise BackupRefused(f"{output} is a directory: give the archive's file name")
    if not output.parent.is_dir():
        raise BackupRefused(f"{output.parent} does not exist")
    if output.exists() and not force:
        raise _exists(output)


def _exists(output: Path) -> BackupRefused:
    empty = output.is_file() and output.stat().st_size == 0
    why = " (empty: a backup still being written, or one that was killed)" if empty else ""
    return BackupRefused(f"{output} already exists{why}: give --force to replace it")


def take(
    source: Source,
    output: Path,
    *,
    force: bool,
    now: datetime,
    progress: Progress | None = None,
) -> Manifest:
    """Write the archive of `source` to `output` (blocking: run it in a thread)."""
    check_output(output, force)
    reserved = None
    if not force:
        try:
            # The name is ours from now on: a second backup to it is refused, not mixed in.
            reserved = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            raise _exists(output) from exc
        os.close(reserved)
    work: Path | None = None
    partial: Path | None = None
    done = False
    try:
        work = Path(tempfile.mkdtemp(prefix=".hotline-backup-", dir=output.parent))  # 0700
        config = _read_regular(source.root / CONFIG_FILE)
        keys = _read_keys(source.root / KEYS)
        copy = work / DATABASE
        os.close(os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        copy_database(
            source.database,
            copy,
            None if progress is None else lambda d, t: progress("database", d, t),
        )
        facts = inspect_database(copy)
        if facts.integrity != "ok":
            raise BackupRefused(
                f"the copy of the database fails its integrity check ({facts.integrity}):"
                " the live database may be damaged; no backup was written"
            )
        files = [Member(CONFIG_FILE, len(config), _digest(config))]
        files += [Member(f"{KEYS}/{name}", len(data), _digest(data)) for name, data in keys]
        files.append(Member(DATABASE, copy.stat().st_size, _file_digest(copy)))
        manifest = Manifest(
            node_id=source.node_id,
            country=source.country,
            taken_at=iso(now),
            program=program_version(),
            database=facts,
            files=files,
        )
        # Beside FILE (so the rename is atomic), a name of its own (O_EXCL, 0600): two backups
        # at once never write into one file.
        fd, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent)
        partial = Path(name)
        with os.fdopen(fd, "wb") as handle:
            _write_archive(handle, manifest, config, keys, copy, now, progress)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, output)
        _fsync_directory(output.parent)
        done = True
        return manifest
    except SnapshotError as exc:
        raise BackupRefused(str(exc)) from exc
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        if not done and partial is not None:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        if not done and reserved is not None:
            with contextlib.suppress(FileNotFoundError):
                output.unlink()


def _write_archive(
    handle: IO[bytes],
    manifest: Manifest,
    config: bytes,
    keys: list[tuple[str, bytes]],
    database: Path,
    now: datetime,
    progress: Progress | None,
) -> None:
    stamp = int(now.timestamp())
    with tarfile.open(
        fileobj=handle, mode="w:gz", compresslevel=COMPRESS_LEVEL, format=tarfile.PAX_FORMAT
    ) as tar:
        _add_bytes(tar, MANIFEST, orjson.dumps(manifest.to_dict(), option=orjson.OPT_INDENT_2))
        _add_bytes(tar, CONFIG_FILE, config, stamp)
        directory = _info(KEYS, 0, stamp)
        directory.type, directory.mode = tarfile.DIRTYPE, 0o700
        tar.addfile(directory)
        for name, data in keys:
            _add_bytes(tar, f"{KEYS}/{name}", data, stamp)
        size = database.stat().st_size
        mib = -(-size // CHUNK)  # rounded up: a small database is 1 MiB to copy, not 0
        with database.open("rb") as source:
            reader: IO[bytes] | _Counting = source
            if progress is not None:
                reader = _Counting(
                    source, lambda n: progress("archive (MiB)", min(mib, -(-n // CHUNK)), mib)
                )
            tar.addfile(_info(DATABASE, size, stamp), reader)


def _info(name: str, size: int, stamp: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o600, stamp
    # No owner names or ids from this machine: a restore gives the files to whoever restores.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, stamp: int = 0) -> None:
    tar.addfile(_info(name, len(data), stamp), io.BytesIO(data))


class _Counting(io.RawIOBase):
    """A file read through, telling how many bytes have gone by (for a progress bar)."""

    def __init__(self, inner: IO[bytes], told: Callable[[int], None]) -> None:
        super().__init__()
        self._inner = inner
        self._told = told
        self._count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._count += len(data)
        self._told(self._count)
        return data


def _read_regular(path: Path) -> bytes:
    try:
        status = path.lstat()
    except FileNotFoundError as exc:
        raise BackupRefused(f"{path} is missing: is this a node's data directory?") from exc
    if not stat.S_ISREG(status.st_mode):
        raise BackupRefused(f"{path} is not a regular file")
    return path.read_bytes()


def _read_keys(directory: Path) -> list[tuple[str, bytes]]:
    """The key files as they are (encrypted), without the temporary files of a write."""
    if not directory.is_dir() or directory.is_symlink():
        raise BackupRefused(f"{directory} is missing: is this a node's data directory?")
    files = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not _KEY_FILE.fullmatch(path.name):
            continue
        files.append((path.name, _read_regular(path)))
    if not files:
        raise BackupRefused(f"{directory} holds no key files")
    return files


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# reading an archive ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Listed:
    """An archive's manifest, and each member with its size (None: a directory)."""

    manifest: Manifest
    members: list[tuple[str, int | None]]


def _allowed(member: tarfile.TarInfo) -> str | None:
    """What is wrong with a member, or None. Only the names a backup writes, as regular files
    (and `keys` as a directory): no paths of other shapes, no links, no devices."""
    name = member.name
    if name == KEYS:
        return None if member.isdir() else f"{name} is not a directory"
    if name in (MANIFEST, CONFIG_FILE, DATABASE) or (
        name.startswith(f"{KEYS}/") and _KEY_FILE.fullmatch(name[len(KEYS) + 1 :])
    ):
        if member.issym() or member.islnk():
            return f"{name} is a link"
        return None if member.isfile() else f"{name} is not a regular file"
    return f"unexpected member {name!r}"


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[tarfile.TarFile]:
    if not path.is_file():
        raise BackupRefused(f"{path} is not a file")
    try:
        with tarfile.open(path, mode="r:gz") as tar:  # what `take` writes, nothing else
            yield tar
    # What a damaged, truncated or foreign file raises while it is read (BadGzipFile is an
    # OSError: kept apart from the others, a file that cannot be read at all, say).
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, UnicodeError) as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BackupRefused(f"{path} is not a readable backup archive ({why})") from exc


def _members(
    tar: tarfile.TarFile,
) -> Iterator[tuple[tarfile.TarInfo, Manifest, Member | None]]:
    """Each member after the manifest, checked against it; the manifest comes first."""
    first = tar.next()
    if first is None or first.name != MANIFEST or not first.isfile():
        raise BackupRefused(f"it does not begin with {MANIFEST}: not a hotline-node backup")
    if first.size > MAX_MANIFEST_BYTES:
        raise BackupRefused(f"its {MANIFEST} is too large")
    stream = tar.extractfile(first)
    assert stream is not None  # a regular file
    manifest = Manifest.parse(stream.read())
    seen = {MANIFEST}
    while (member := tar.next()) is not None:
        problem = _allowed(member)
        if problem is None and member.name in seen:
            problem = f"{member.name} appears twice"
        if problem is not None:
            raise BackupRefused(f"refused: {problem}; this is not an archive this program wrote")
        seen.add(member.name)
        expected = manifest.member(member.name)
        if member.isfile():
            if expected is None:
                raise BackupRefused(f"refused: {member.name} is not in the manifest")
            if expected.size != member.size:
                raise BackupRefused(f"{member.name} is not the size its manifest says")
        yield member, manifest, expected
    missing = sorted({m.name for m in manifest.files} - seen)
    if missing:
        raise BackupRefused(f"the archive is incomplete: {', '.join(missing)} missing")


def _copy_checked(
    tar: tarfile.TarFile, member: tarfile.TarInfo, expected: Member, sink: IO[bytes] | None
) -> None:
    """Read a member (into `sink`), refusing it unless its SHA-256 is the manifest's."""
    stream = tar.extractfile(member)
    assert stream is not None
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        if sink is not None:
            sink.write(chunk)
    if digest.hexdigest() != expected.sha256:
        raise BackupRefused(
            f"{member.name} does not match its checksum: the archive is damaged or was altered"
        )


def list_archive(path: Path) -> Listed:
    """The manifest and members of an archive, every checksum checked (blocking)."""
    members: list[tuple[str, int | None]] = []
    with _opened(path) as tar:
        found: Manifest | None = None
        for member, manifest, expected in _members(tar):
            found = manifest
            if member.isdir():
                members.append((member.name + "/", None))
                continue
            assert expected is not None
            _copy_checked(tar, member, expected, None)
            members.append((member.name, member.size))
        if found is None:
            raise BackupRefused(f"{path} holds nothing but its manifest")
    return Listed(found, members)


# restoring ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Restored:
    manifest: Manifest
    facts: DatabaseFacts
    peers: int = 0  # peers marked to be rejoined


def refuse_unless_empty(root: Path) -> None:
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        raise BackupRefused(f"{root} is not a directory")
    if root.exists() and any(root.iterdir()):
        raise BackupRefused(
            f"{root} is not empty: restore only into a new or empty directory (nothing was touched)"
        )


def restore(path: Path, root: Path) -> Restored:
    """Unpack the archive at `path` into the new or empty directory `root` (blocking).

    Every member is written into a private staging directory inside `root` and checked (its
    checksum, then the database's integrity) before anything is moved into place; on any
    refusal `root` is left as it was found.
    """
    refuse_unless_empty(root)
    created = not root.exists()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    staging = Path(tempfile.mkdtemp(prefix=".restoring-", dir=root))
    try:
        manifest = _unpack(path, staging)
        try:
            facts = inspect_database(staging / DATABASE)
        except SnapshotError as exc:
            raise BackupRefused(str(exc)) from exc
        if facts.integrity != "ok":
            raise BackupRefused(f"its database fails the integrity check: {facts.integrity}")
        # Peers saw what this node did after the backup: its first contact with each says
        # where that peer stands (node.store.rejoin), before anything is numbered again.
        peers = mark_restored(staging / DATABASE, manifest.node_id, iso(datetime.now(UTC)))
        for entry in sorted(staging.iterdir()):
            os.rename(entry, root / entry.name)
        staging.rmdir()
        _fsync_directory(root)
        return Restored(manifest, facts, peers)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                root.rmdir()
        raise


def _unpack(path: Path, staging: Path) -> Manifest:
    found: Manifest | None = None
    # Made here (0700), whatever mode the archive gives its `keys` entry.
    (staging / KEYS).mkdir(mode=0o700)
    with _opened(path) as tar:
        for member, manifest, expected in _members(tar):
            found = manifest
            if member.isdir():
                continue
            assert expected is not None
            target = staging / member.name
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(target, flags, 0o600)
            with os.fdopen(fd, "wb") as sink:
                _copy_checked(tar, member, expected, sink)
                sink.flush()
                os.fsync(sink.fileno())
    if found is None:
        raise BackupRefused(f"{path} holds nothing but its manifest")
    return found
