"""`backup` and `restore` on real data directories: the snapshot, the archive's modes and
checks, progress on a terminal, and every refusal in one line."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from node.cli.base import Context
from node.cli.main import parse, run_args
from node.clock import ManualClock
from node.datadir import SECRET_FILE_ENV, DataDir
from node.store.snapshot import copy_database, inspect_database
from tests.support.cluster import REPO
from tests.support.nodes import init_node


def hotline(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command line, as an operator runs it, with a umask that would let anyone read."""
    return subprocess.run(
        [sys.executable, "-m", "node", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
        umask=0,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def node_dir(tmp_path: Path, clock: ManualClock) -> DataDir:
    data_dir = init_node(tmp_path / "fr", clock=clock)
    for n in range(3):
        result = hotline(
            "reports", "submit", f"http://fr.example/{n}", "--data-dir", str(data_dir.root)
        )
        assert result.returncode == 0, result.stderr
    return data_dir


def pad(database: Path, mib: int) -> None:
    """Make the database bigger than one step of the copy (a table the node ignores)."""
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE padding (blob BLOB)")
        conn.executemany("INSERT INTO padding VALUES (?)", [(os.urandom(64 * 1024),)] * mib * 16)
    conn.close()


def take(data_dir: DataDir, archive: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return hotline("backup", "--output", str(archive), "--data-dir", str(data_dir.root), *extra)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def test_the_copy_is_one_snapshot_however_the_writer_goes_on(tmp_path: Path) -> None:
    source = tmp_path / "live.sqlite3"
    writer = sqlite3.connect(source, isolation_level=None, check_same_thread=False)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, blob BLOB)")
    writer.execute("BEGIN")
    writer.executemany("INSERT INTO t (blob) VALUES (?)", [(os.urandom(8192),)] * 5000)
    writer.execute("COMMIT")
    steps: list[tuple[int, int]] = []

    def between_steps(done: int, total: int) -> None:
        steps.append((done, total))
        # The writer commits between two steps of the copy, as the serving node does.
        writer.execute("INSERT INTO t (blob) VALUES (?)", (b"later",))

    target = tmp_path / "copy.sqlite3"
    copy_database(source, target, between_steps)
    writer.close()
    assert len(steps) > 2  # in steps, each one telling how far it is
    done = [d for d, _ in steps]
    assert done == sorted(done)  # never restarted
    assert steps[-1][0] == steps[-1][1]
    with sqlite3.connect(target) as copy:
        assert copy.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 5000
        assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    copy.close()
    assert not Path(f"{target}-wal").exists()


async def test_a_terminal_sees_the_copy_and_the_archive_progress(
    node_dir: DataDir, tmp_path: Path
) -> None:
    pad(node_dir.database, 40)
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(out, err, tty=True)
    archive = tmp_path / "progress.tar.gz"
    args = parse(["backup", "--output", str(archive), "--data-dir", str(node_dir.root)], ctx)
    assert not isinstance(args, int)
    assert await run_args(args, ctx) == 0
    bars = err.getvalue().split("\r")
    database = [bar for bar in bars if bar.startswith("database")]
    assert len(database) >= 3
    done, total = database[-1].split()[-1].split("/")
    assert done == total
    assert any(bar.startswith("archive (MiB)") for bar in bars)
    assert f"wrote {archive}" in out.getvalue()
    facts = inspect_database(node_dir.database)
    assert facts.cases == 3


async def test_a_caller_that_goes_away_stops_the_backup_and_leaves_nothing(
    node_dir: DataDir, tmp_path: Path
) -> None:
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(out, err, gone=lambda: True)  # as the control socket says of a Ctrl-C
    archive = tmp_path / "out" / "gone.tar.gz"
    archive.parent.mkdir()
    args = parse(["backup", "--output", str(archive), "--data-dir", str(node_dir.root)], ctx)
    assert not isinstance(args, int)
    assert await run_args(args, ctx) == 1
    assert err.getvalue() == (
        "hotline-node: error: the backup was stopped before it was complete: nothing was written\n"
    )
    assert list(archive.parent.iterdir()) == []


def test_the_archive_is_0600_whatever_the_umask_and_never_overwritten(
    node_dir: DataDir, tmp_path: Path
) -> None:
    archive = tmp_path / "fr.tar.gz"
    result = take(node_dir, archive)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert "the key secret is not in it" in result.stdout
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftovers
    first = archive.read_bytes()

    said = one_line(take(node_dir, archive))
    assert "already exists: give --force" in said
    assert archive.read_bytes() == first
    hotline("reports", "submit", "http://fr.example/4", "--data-dir", str(node_dir.root))
    forced = take(node_dir, archive, "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["manifest"]["database"]["cases"] == 4
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600

    assert "is a directory" in one_line(take(node_dir, tmp_path))
    assert "does not exist" in one_line(take(node_dir, tmp_path / "nowhere" / "x.tar.gz"))

    # A backup that fails half-way leaves nothing behind: no FILE, no temporary files.
    broken = DataDir(tmp_path / "broken")
    shutil.copytree(node_dir.root, broken.root)
    shutil.rmtree(broken.keys)
    out = tmp_path / "out"
    out.mkdir()
    assert "keys is missing" in one_line(take(broken, out / "broken.tar.gz"))
    assert list(out.iterdir()) == []


def test_list_shows_names_sizes_who_when_and_what_the_database_holds(
    node_dir: DataDir, tmp_path: Path
) -> None:
    archive = tmp_path / "fr.tar.gz"
    assert take(node_dir, archive).returncode == 0
    listed = hotline("backup", "--list", str(archive), "--json")
    assert listed.returncode == 0, listed.stderr
    body = json.loads(listed.stdout)
    assert body["node_id"] == "fr-pointdecontact"
    assert body["country"] == "FR"
    assert body["taken_at"].endswith("Z")
    assert body["database"]["integrity"] == "ok"
    assert body["database"]["cases"] == 3
    assert body["database"]["audit_entries"] >= 3
    sizes = {m["name"]: m["bytes"] for m in body["members"]}
    assert sizes["node.toml"] == node_dir.config.stat().st_size
    assert sizes["keys/"] is None
    assert sizes["keys/keys.json"] == (node_dir.keys / "keys.json").stat().st_size
    assert "key-secret" not in sizes
    text = hotline("backup", "--list", str(archive)).stdout
    assert text.startswith("backup of fr-pointdecontact (FR), taken ")
    assert "database: integrity ok" in text
    assert "3 cases" in text
    assert "keys/identity.pem" in text
    # Listing needs no node at all, and no data directory.
    assert "not a readable backup archive" in one_line(hotline("backup", "--list", __file__))


def test_restore_makes_the_node_modes_and_says_what_next(node_dir: DataDir, tmp_path: Path) -> None:
    archive = tmp_path / "fr.tar.gz"
    assert take(node_dir, archive).returncode == 0
    target = tmp_path / "restored" / "node"
    restored = hotline("restore", str(archive), "--data-dir", str(target))
    assert restored.returncode == 0, restored.stderr
    assert "put this node's key secret back" in restored.stdout
    assert f"hotline-node serve --data-dir {target}" in restored.stdout
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert stat.S_IMODE((target / "keys").stat().st_mode) == 0o700
    for path in [target / "node.toml", target / "node.sqlite3", *(target / "keys").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert sorted(p.name for p in target.iterdir()) == ["keys", "node.sqlite3", "node.toml"]
    assert inspect_database(target / "node.sqlite3").cases == 3

    # With the secret where the node reads it, restore says the keys open (and runs again).
    secret = {SECRET_FILE_ENV: str(node_dir.secret)}
    second = hotline("restore", str(archive), "--data-dir", str(tmp_path / "two"), env=secret)
    assert "opens the restored keys" in second.stdout
    verify = hotline("audit", "verify", "--data-dir", str(tmp_path / "two"), env=secret)
    assert verify.returncode == 0, verify.stderr


def test_restore_refuses_a_directory_that_is_not_empty(node_dir: DataDir, tmp_path: Path) -> None:
    archive = tmp_path / "fr.tar.gz"
    assert take(node_dir, archive).returncode == 0
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    said = one_line(hotline("restore", str(archive), "--data-dir", str(occupied)))
    assert "is not empty" in said
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]
    # Not even the live node's own directory, served or not.
    assert "is not empty" in one_line(
        hotline("restore", str(archive), "--data-dir", str(node_dir.root))
    )


Change = Callable[[tarfile.TarInfo, bytes], list[tuple[tarfile.TarInfo, bytes]]]


def rebuild(archive: Path, out: Path, change: Change) -> Path:
    """The same members, with `change(member, data)` applied to each."""
    with tarfile.open(archive) as source, tarfile.open(out, "w:gz") as target:
        for member in source.getmembers():
            stream = source.extractfile(member) if member.isfile() else None
            data = stream.read() if stream is not None else b""
            for info, body in change(member, data):
                target.addfile(info, io.BytesIO(body) if info.isfile() else None)
    return out


@pytest.mark.parametrize(
    ("case", "said"),
    [
        ("tampered", "node.sqlite3 does not match its checksum"),
        ("traversal", "unexpected member '../escaped'"),
        ("absolute", "unexpected member"),
        ("symlink", "keys/identity.pem is a link"),
        ("hardlink", "node.toml is a link"),
        ("unlisted", "keys/extra.pem is not in the manifest"),
        ("missing", "incomplete: node.sqlite3 missing"),
        ("no-manifest", "does not begin with manifest.json"),
    ],
)
def test_restore_refuses_an_archive_that_is_not_what_backup_wrote(
    node_dir: DataDir, tmp_path: Path, case: str, said: str
) -> None:
    archive = tmp_path / "fr.tar.gz"
    assert take(node_dir, archive).returncode == 0

    def change(member: tarfile.TarInfo, data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
        if case == "tampered" and member.name == "node.sqlite3":
            return [(member, data[:-1] + bytes([data[-1] ^ 1]))]
        if case == "traversal" and member.name == "node.toml":
            escaped = tarfile.TarInfo("../escaped")
            escaped.size = 4
            return [(member, data), (escaped, b"evil")]
        if case == "absolute" and member.name == "node.toml":
            absolute = tarfile.TarInfo(str(tmp_path / "absolute"))
            absolute.size = 4
            return [(member, data), (absolute, b"evil")]
        if case == "symlink" and member.name == "keys/identity.pem":
            link = tarfile.TarInfo(member.name)
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            return [(link, b"")]
        if case == "hardlink" and member.name == "node.toml":
            link = tarfile.TarInfo(member.name)
            link.type, link.linkname = tarfile.LNKTYPE, "keys/keys.json"
            return [(link, b"")]
        if case == "unlisted" and member.name == "node.toml":
            extra = tarfile.TarInfo("keys/extra.pem")
            extra.size = 4
            return [(member, data), (extra, b"evil")]
        if case == "missing" and member.name == "node.sqlite3":
            return []
        if case == "no-manifest" and member.name == "manifest.json":
            return []
        return [(member, data)]

    bad = rebuild(archive, tmp_path / "bad.tar.gz", change)
    target = tmp_path / "target"
    result = hotline("restore", str(bad), "--data-dir", str(target))
    assert said in one_line(result)
    assert not target.exists()  # made for the restore, removed with what was in it
    assert not (tmp_path / "escaped").exists()
    assert not (tmp_path / "absolute").exists()
    # The listing refuses it just the same.
    assert said in one_line(hotline("backup", "--list", str(bad)))


def test_restore_refuses_what_is_not_an_archive(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"\x1f\x8b" + os.urandom(100))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "not a readable backup archive" in one_line(
        hotline("restore", str(junk), "--data-dir", str(empty))
    )
    assert list(empty.iterdir()) == []
    manifest_only = tmp_path / "manifest.tar.gz"
    with tarfile.open(manifest_only, "w:gz") as tar:
        body = orjson.dumps({"format": "something-else/9"})
        info = tarfile.TarInfo("manifest.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    assert "unknown backup format" in one_line(
        hotline("restore", str(manifest_only), "--data-dir", str(empty))
    )
    assert "is not a file" in one_line(
        hotline("restore", str(tmp_path / "none.tgz"), "--data-dir", str(empty))
    )


def test_restore_refuses_a_database_newer_than_this_program(
    node_dir: DataDir, tmp_path: Path
) -> None:
    archive = tmp_path / "fr.tar.gz"
    assert take(node_dir, archive).returncode == 0
    newer = tmp_path / "newer.sqlite3"
    with tarfile.open(archive) as tar:
        stream = tar.extractfile("node.sqlite3")
        assert stream is not None
        newer.write_bytes(stream.read())
    with sqlite3.connect(newer) as conn:
        conn.execute("PRAGMA user_version = 999")
    conn.close()
    body = newer.read_bytes()

    def change(member: tarfile.TarInfo, data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
        if member.name == "node.sqlite3":
            member.size = len(body)
            return [(member, body)]
        if member.name == "manifest.json":
            manifest = orjson.loads(data)
            for entry in manifest["files"]:
                if entry["name"] == "node.sqlite3":
                    entry["size"], entry["sha256"] = len(body), hashlib.sha256(body).hexdigest()
            text = orjson.dumps(manifest)
            member.size = len(text)
            return [(member, text)]
        return [(member, data)]

    bad = rebuild(archive, tmp_path / "newer.tar.gz", change)
    target = tmp_path / "target"
    said = one_line(hotline("restore", str(bad), "--data-dir", str(target)))
    assert "schema version 999, newer than this program" in said
    assert not target.exists()
