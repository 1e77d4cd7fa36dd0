"""Hash lists: import, list, remove entries, and match a hash against every list."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from node.app import Node
from node.cli.base import Context, Declare
from node.cli.imports import refuse_bad_lines
from node.errors import NodeError
from node.hashes.listfile import HASH_LIST_FIELDS, REQUIRED, entry_from_row
from node.hashes.service import ChangeResult, check_list_name
from node.hashes.values import parse_hash
from node.importfile import FORMATS, read_import_file
from node.output import table
from node.store.hashlists import ListEntry

# Entries per writer transaction: large enough to import a million entries in a few minutes,
# small enough that cases submitted meanwhile wait well under a second for the writer.
HASH_BATCH = 5_000


def _checked_entries(args: argparse.Namespace, ctx: Context) -> tuple[Path, list[ListEntry]]:
    """Every line checked before anything is written: a file with a bad line imports nothing."""
    check_list_name(args.list)
    file = read_import_file(
        Path(args.file),
        HASH_LIST_FIELDS,
        encoding=args.encoding,
        fmt=args.format,
        required=REQUIRED,
    )
    entries: list[ListEntry] = []
    errors = list(file.errors)
    for line, data in file.rows:
        try:
            entries.append(entry_from_row(data))
        except NodeError as exc:
            errors.append((line, str(exc)))
    refuse_bad_lines(ctx, file.path, errors)
    return file.path, entries


async def cmd_hashes_import(args: argparse.Namespace, ctx: Context) -> int:
    path, entries = _checked_entries(args, ctx)

    async def run(node: Node) -> int:
        total = ChangeResult()
        progress = ctx.progress(args.json)
        share = True if args.share else (False if args.no_share else None)
        for start in range(0, len(entries), HASH_BATCH):
            if ctx.gone():
                ctx.note(f"stopped after {start} of {len(entries)}: run it again to finish")
                return 1
            batch = entries[start : start + HASH_BATCH]
            done = await node.known.add_entries(
                args.list, batch, share=share, actor=ctx.actor(args)
            )
            total.added += done.added
            total.unchanged += done.unchanged
            total.cases_matched |= done.cases_matched
            if progress is not None:
                progress(path.name, start + len(batch), len(entries))
        if progress is not None:
            ctx.note("")
        listed = next(hl for hl in await node.known.lists() if hl.name == args.list)
        data = {
            "list": args.list,
            "added": total.added,
            "unchanged": total.unchanged,
            "entries": listed.entries,
            "shared": listed.shared,
            "cases_matched": sorted(total.cases_matched),
        }
        shared = "shared with peers" if listed.shared else "not shared"
        ctx.show(
            args,
            data,
            f"{args.list}: added {total.added}, unchanged {total.unchanged}"
            f" ({listed.entries} entries, {shared}); {len(total.cases_matched)} open case(s)"
            " matched",
        )
        return 0

    return await ctx.with_node(args, run)


async def cmd_hashes_lists(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        rows = [
            {
                "name": hl.name,
                "owner": hl.owner,
                "entries": hl.entries,
                "shared": hl.shared,
                "seq": hl.seq,
                "updated_at": hl.updated_at,
            }
            for hl in await node.known.lists()
        ]
        ctx.show(
            args,
            rows,
            table(rows, ["name", "owner", "entries", "shared", "updated_at"], ctx.colour)
            if rows
            else "no hash lists: hotline-node hashes import FILE --list NAME",
        )
        return 0

    return await ctx.with_node(args, run)


async def cmd_hashes_remove(args: argparse.Namespace, ctx: Context) -> int:
    values = [parse_hash(text) for text in args.hashes]

    async def run(node: Node) -> int:
        done = await node.known.remove_entries(args.list, values, actor=ctx.actor(args))
        ctx.show(
            args,
            {"list": args.list, "removed": done.removed, "not_on_list": done.unchanged},
            f"{args.list}: removed {done.removed}"
            + (f", {done.unchanged} not on the list" if done.unchanged else ""),
        )
        return 0

    return await ctx.with_node(args, run)


async def cmd_hashes_match(args: argparse.Namespace, ctx: Context) -> int:
    value = parse_hash(args.hash)

    async def run(node: Node) -> int:
        found = await node.known.match(value, max_distance=args.max_distance)
        rows: list[dict[str, Any]] = [
            {
                "list": f.list_name,
                "owner": f.list_owner,
                "entry": f.value.text,
                "distance": f.distance,
                "category": f.category,
                "grade": f.grade,
                "since": f.since,
            }
            for f in found
        ]
        ctx.show(
            args,
            rows,
            table(rows, ["list", "entry", "distance", "category", "since"], ctx.colour)
            if rows
            else f"{value.text}: on no list",
        )
        return 0

    return await ctx.with_node(args, run)


def _distance(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 256:
        raise argparse.ArgumentTypeError("a Hamming distance from 0 to 256")
    return int(text)


def register(cli: Declare, hashes: Any) -> None:
    p = cli.command(
        hashes,
        "import",
        cmd_hashes_import,
        "add a file's hashes to one of our lists (CSV or JSON lines: type, value, category,"
        " quality, grade, use, note, source); importing it again changes nothing",
    )
    p.add_argument("file", help="the file; CSV (comma, semicolon or tab) or JSON lines")
    p.add_argument("--list", required=True, metavar="NAME", help="the list (created if new)")
    sharing = p.add_mutually_exclusive_group()
    sharing.add_argument(
        "--share", action="store_true", help="share the list with peers whose policy allows it"
    )
    sharing.add_argument("--no-share", action="store_true", help="stop sharing the list")
    p.add_argument("--format", choices=FORMATS, help="csv or jsonl (default: by content)")
    p.add_argument("--encoding", help="the file's text encoding (default: UTF-8)")

    cli.command(hashes, "lists", cmd_hashes_lists, "our lists and those peers share with us")

    p = cli.command(hashes, "remove", cmd_hashes_remove, "take hashes off one of our lists")
    p.add_argument("--list", required=True, metavar="NAME", help="the list")
    p.add_argument("hashes", nargs="+", metavar="TYPE:VALUE", help="e.g. sha256:HEX, pdq:HEX")

    p = cli.command(hashes, "match", cmd_hashes_match, "every list entry a hash matches")
    p.add_argument("hash", metavar="TYPE:VALUE", help="e.g. sha256:HEX, or pdq:HEX")
    p.add_argument(
        "--max-distance",
        type=_distance,
        help="PDQ: the largest Hamming distance that matches (default: [hashes] pdq_max_distance)",
    )
