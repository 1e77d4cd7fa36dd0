"""Backups: take one while the node serves (or not), list and check one, restore one."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from keys import KeysError, load_keys
from node import backup
from node.backup import BackupCancelled, BackupRefused, Manifest, Progress, Source
from node.cli.base import Context, Declare
from node.clock import Clock, SystemClock
from node.config import load_config
from node.datadir import SECRET_FILE_ENV, DataDir
from node.output import table

MIB = 1024 * 1024


def _reporter(ctx: Context, quiet: bool) -> tuple[Progress, list[bool]]:
    """Progress from the backup's thread: a bar on the caller's terminal (drawn by the event
    loop, which owns the caller's stream), and the caller gone stops the backup."""
    show = ctx.progress(quiet)
    loop = asyncio.get_running_loop()
    last: list[tuple[str, int]] = []
    drawn: list[bool] = []

    def report(what: str, done: int, total: int) -> None:
        if ctx.gone():
            raise BackupCancelled
        if show is None or (last and last[-1] == (what, done)):
            return
        if last and last[-1][0] != what:
            loop.call_soon_threadsafe(ctx.note, "")  # the next phase on a line of its own
        last.append((what, done))
        del last[:-1]
        drawn[:] = [True]
        loop.call_soon_threadsafe(show, what, done, total)

    return report, drawn


def _source(args: argparse.Namespace, ctx: Context) -> tuple[Source, Clock]:
    node = ctx.serving
    if node is not None:
        return (
            Source(node.data_dir.root, node.db.path, node.config.node_id, node.config.country),
            node.clock,
        )
    data_dir = DataDir.resolve(args.data_dir)
    config = load_config(data_dir.root)
    if not data_dir.database.is_file():
        raise BackupRefused(f"{data_dir.database} is missing: is this a node's data directory?")
    return Source(data_dir.root, data_dir.database, config.node_id, config.country), SystemClock()


def _database_line(manifest: Manifest) -> str:
    facts = manifest.database
    head = f" (head {facts.audit_head[:12]}…)" if facts.audit_head else ""
    return (
        f"database: integrity {facts.integrity}, schema {facts.schema_version},"
        f" {facts.cases} cases, {facts.actions} actions, {facts.audit_entries} audit entries"
        f"{head}, {facts.peers} peers, {facts.peer_outbox_pending} records waiting for peers,"
        f" {facts.channel_outbox_pending} channel messages waiting"
    )


def _size(count: int) -> str:
    return f"{count / MIB:.1f} MiB" if count >= MIB else f"{count / 1024:.1f} KiB"


async def cmd_backup(args: argparse.Namespace, ctx: Context) -> int:
    if args.list_file is not None:
        return await _list(args, ctx)
    output = Path(args.output)
    backup.check_output(output, args.force)  # before any work
    source, clock = _source(args, ctx)
    now = clock.now()
    report, drawn = _reporter(ctx, args.json)
    try:
        manifest = await asyncio.to_thread(
            backup.take, source, output, force=args.force, now=now, progress=report
        )
    finally:
        if drawn:
            ctx.note("")
    size = output.stat().st_size
    ctx.show(
        args,
        {"output": str(output), "bytes": size, "manifest": manifest.to_dict()},
        f"wrote {output} ({_size(size)}, mode 0600): {manifest.node_id}, taken"
        f" {manifest.taken_at}\n{_database_line(manifest)}\n"
        "the key secret is not in it: keep it apart from the backup; a restore needs it",
    )
    return 0


async def _list(args: argparse.Namespace, ctx: Context) -> int:
    listed = await asyncio.to_thread(backup.list_archive, Path(args.list_file))
    manifest = listed.manifest
    rows = [
        {"name": name, "size": "-" if size is None else _size(size), "bytes": size}
        for name, size in listed.members
    ]
    ctx.show(
        args,
        {**manifest.to_dict(), "members": rows, "checksums": "ok"},
        "\n".join(
            [
                f"backup of {manifest.node_id} ({manifest.country}), taken {manifest.taken_at}"
                f" by {manifest.program}",
                _database_line(manifest) + " (checked when taken)",
                f"key secret: {backup.SECRET_NOTE}",
                table(rows, ["name", "size"], ctx.colour),
                "every member matches its checksum",
            ]
        ),
    )
    return 0


def _secret_state(data_dir: DataDir) -> str:
    """Whether the key secret that opens the restored keys is in place, and what to do."""
    where = data_dir.secret
    if not where.exists():
        return (
            f"put this node's key secret back (the backup does not hold it): install -m 600"
            f" /path/to/saved/key-secret {where}   (or point {SECRET_FILE_ENV} at it)"
        )
    try:
        load_keys(data_dir.keys, data_dir.read_secret())
    except KeysError as exc:
        return (
            f"the key secret at {where} does not open the restored keys ({exc}):"
            " put this node's own there"
        )
    return f"the key secret at {where} opens the restored keys"


async def cmd_restore(args: argparse.Namespace, ctx: Context) -> int:
    data_dir = DataDir.resolve(args.data_dir)
    restored = await asyncio.to_thread(backup.restore, Path(args.file), data_dir.root)
    manifest, facts = restored.manifest, restored.facts
    steps = [_secret_state(data_dir)]
    try:
        config = load_config(data_dir.root)
    except Exception as exc:  # a node.toml this version refuses: the operator edits it
        steps.append(f"fix node.toml before starting: {exc}")
    else:
        if config.node_id != manifest.node_id:
            steps.append(f"node.toml names {config.node_id}, the backup {manifest.node_id}")
        steps.append(
            f"check node.toml for this machine: listen {config.listen}, endpoint"
            f" {config.endpoint}, and any file it names (mmdb, geofeed, password files)"
        )
    where = f"--data-dir {data_dir.root}"
    steps += [f"hotline-node audit verify {where}", f"hotline-node serve {where}"]
    text = [
        f"restored {manifest.node_id} ({manifest.country}), taken {manifest.taken_at}, into"
        f" {data_dir.root}: {facts.cases} cases, {facts.audit_entries} audit entries,"
        f" integrity {facts.integrity}; directories 0700, files 0600",
        "next:",
        *[f"  {n}. {step}" for n, step in enumerate(steps, start=1)],
        "cases this node sent or received after the backup was taken are not in it.",
        f"it rejoins its {restored.peers} peer(s) by itself: numbers continue after theirs, and"
        " their actions on cases it lost are kept (`peers show PEER`).",
    ]
    ctx.show(
        args,
        {
            "data_dir": str(data_dir.root),
            "node_id": manifest.node_id,
            "taken_at": manifest.taken_at,
            "database": facts.to_dict(),
            "next": steps,
            "peers_to_rejoin": restored.peers,
        },
        "\n".join(text),
    )
    return 0


def register(cli: Declare) -> None:
    p = cli.command(
        cli.top,
        "backup",
        cmd_backup,
        "a consistent backup, also while the node serves: database, keys (encrypted) and"
        " node.toml in one file (never the key secret)",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--output", metavar="FILE", help="write the backup to FILE (a .tar.gz, mode 0600)"
    )
    what.add_argument(
        "--list",
        dest="list_file",
        metavar="FILE",
        help="list a backup's contents and check every checksum",
    )
    p.add_argument("--force", action="store_true", help="replace FILE when it exists")
    # Listing reads a file only: it never needs (or waits for) a server.
    p.set_defaults(runs_here=lambda args: args.list_file is not None)

    p = cli.command(
        cli.top,
        "restore",
        cmd_restore,
        "restore a backup into a new or empty data directory (--data-dir)",
    )
    p.add_argument("file", metavar="FILE", help="the archive `backup --output` wrote")
