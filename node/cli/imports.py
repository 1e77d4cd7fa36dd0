"""`reports import`: bulk intake from a file, in batches that a stopped run takes up again."""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from node import locks
from node.app import Node
from node.cases import IMPORT_FIELDS, ImportItem
from node.cli.base import Context, Declare, UsageError
from node.clock import iso
from node.errors import Conflict, NodeError
from node.importfile import FORMATS, ImportFile, read_import_file
from node.store import imports

log = logging.getLogger("hotline.import")
IMPORT_BATCH = 500
IMPORT_SHOWN_ERRORS = 50
# How long a second run of a file waits for a first one whose command line has gone: that one
# stops at its next batch boundary, which takes seconds.
WAIT_FOR_STOPPING_SECONDS = 120.0


@dataclass
class _Running:
    """An import running in this process: what a second run of the same file is told."""

    name: str
    started_at: str
    ctx: Context


# Imports running in this process (the server), by file digest.
_RUNNING: dict[str, _Running] = {}


def _checked_items(args: argparse.Namespace, ctx: Context) -> tuple[ImportFile, list[ImportItem]]:
    """Every line checked before anything is written: a file with a bad line imports nothing."""
    file = read_import_file(Path(args.file), IMPORT_FIELDS, encoding=args.encoding, fmt=args.format)
    items: list[ImportItem] = []
    errors = list(file.errors)
    for line, data in file.rows:
        try:
            items.append(ImportItem.check(data))
        except NodeError as exc:
            errors.append((line, str(exc)))
    refuse_bad_lines(ctx, file.path, errors)
    return file, items


def refuse_bad_lines(ctx: Context, path: Path, errors: list[tuple[int, str]]) -> None:
    """Name each refused line (`FILE:LINE: reason`, the first ones) and refuse the whole file:
    an import writes all of a file or nothing (cases and hash lists alike)."""
    if not errors:
        return
    errors = sorted(errors)
    for line, reason in errors[:IMPORT_SHOWN_ERRORS]:
        ctx.note(f"{path}:{line}: {reason}")
    if len(errors) > IMPORT_SHOWN_ERRORS:
        ctx.note(f"… and {len(errors) - IMPORT_SHOWN_ERRORS} more")
    raise UsageError(
        f"{path}: {len(errors)} line(s) refused, nothing imported: fix them and run"
        " the import again"
    )


async def _claim(node: Node, file: ImportFile, items: int) -> locks.ImportClaim:
    """Hold this file's import, or say which run holds it.

    A run whose command line has gone away stops at its next batch boundary: the new run (the
    docs' advice after an interruption) waits for that, then resumes where it stopped. A run
    whose caller is still there is not ours to wait for: refused, naming it.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_FOR_STOPPING_SECONDS
    while True:
        claim = locks.claim_import(node.data_dir, file.digest)
        if claim is not None:
            return claim
        running = _RUNNING.get(file.digest)
        if running is None or not running.ctx.gone() or loop.time() > deadline:
            progress = await imports.get(node.db, file.digest)
            done = progress.done if progress is not None else 0
            where = f"started {running.started_at}" if running else "in another process"
            raise Conflict(
                f"{file.path.name} is being imported by another run ({where},"
                f" {done} of {items} record(s) committed): let it finish, or stop it and run"
                " this again to resume"
            )
        await asyncio.sleep(0.1)


async def cmd_reports_import(args: argparse.Namespace, ctx: Context) -> int:
    file, items = _checked_items(args, ctx)
    path = file.path

    async def run(node: Node) -> int:
        claim = await _claim(node, file, len(items))
        _RUNNING[file.digest] = _Running(path.name, iso(node.clock.now()), ctx)
        try:
            return await _import(node, args, ctx, file, items)
        finally:
            del _RUNNING[file.digest]
            claim.release()

    return await ctx.with_node(args, run)


async def _import(
    node: Node, args: argparse.Namespace, ctx: Context, file: ImportFile, items: list[ImportItem]
) -> int:
    path = file.path
    # Read under the claim: no other run moves it on from here.
    earlier = await imports.get(node.db, file.digest)
    done = earlier.done if earlier is not None else 0
    summary: dict[str, Any] = {
        "imported": 0,
        "duplicates": 0,
        "errors": 0,
        "already_imported": done,
        "format": file.format,
        "encoding": file.encoding,
        "delimiter": file.delimiter,
    }
    if earlier is not None and done >= len(items):
        ctx.show(
            args,
            summary,
            f"{path.name} was imported already ({done} record(s), {earlier.finished_at}):"
            " nothing to do",
        )
        return 0
    if done:
        ctx.note(
            f"{path.name}: an earlier run stopped after {done} of {len(items)} record(s);"
            " taking up from there"
        )
    progress = ctx.progress(args.json)
    position = done
    while position < len(items):
        if ctx.gone():
            # Nobody waits for the rest: stop between batches. What is committed stays, with
            # its progress; running the file again resumes from there.
            log.warning(
                "import of %s stopped after %d of %d record(s): its command line went away;"
                " run it again to resume",
                path.name,
                position,
                len(items),
            )
            return 1
        batch = items[position : position + IMPORT_BATCH]
        position += len(batch)
        advance = partial(
            imports.advance,
            digest=file.digest,
            name=path.name,
            items=len(items),
            done=position,
            at=iso(node.clock.now()),
        )
        for result in await node.cases.import_batch(batch, actor=ctx.actor(args), also=advance):
            summary["duplicates"] += result.duplicate
            summary["imported"] += not result.duplicate
        if progress is not None:
            progress(path.name, position, len(items))
    if progress is not None:
        ctx.note("")
    ctx.show(
        args,
        {**summary, "failed": []},
        f"imported {summary['imported']}, joined existing cases {summary['duplicates']}"
        + (f", {done} already imported by an earlier run" if done else "")
        + f" ({file.format}, {file.encoding}"
        + (f", delimiter {file.delimiter!r}" if file.delimiter else "")
        + ")",
    )
    return 0


def register(cli: Declare, reports: Any) -> None:
    p = cli.command(
        reports,
        "import",
        cmd_reports_import,
        "bulk intake from JSONL or CSV (url, category, verdict, legal_basis, hosting_country,"
        " note, tlp, hashes)",
    )
    p.add_argument("file", help="the file; CSV (comma, semicolon or tab) or JSON lines")
    p.add_argument(
        "--format",
        choices=FORMATS,
        help="csv or jsonl (default: chosen by content, not by the file name)",
    )
    p.add_argument(
        "--encoding",
        help="the file's text encoding, e.g. cp1252 or latin-1 (default: UTF-8, or UTF-16 and"
        " UTF-8 by their byte-order mark)",
    )
