"""Known content: `hashes compute` (here, in the caller's process), and hash lists."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from node.cli import hashlists
from node.cli.base import Context, Declare
from node.hashes.compute import FileHashes, hash_file
from node.hashes.values import PDQ_MIN_QUALITY

# The commands of this group that run in the caller's process, never in a serving node: the
# server may run as another user and must not open the analyst's files (main.LOCAL_COMMANDS).
LOCAL = frozenset({"compute"})


def _as_json(found: FileHashes) -> dict[str, Any]:
    return {
        "file": found.file,
        "md5": found.md5.hex,
        "sha1": found.sha1.hex,
        "sha256": found.sha256.hex,
        "pdq": found.pdq.hex if found.pdq else None,
        "pdq_quality": found.pdq.quality if found.pdq else None,
        "pdq_reason": found.pdq_reason,
        # The same values as `reports submit --hash` and the import's `hashes` take them.
        "hashes": [value.text for value in found.values],
    }


def _as_text(found: FileHashes) -> str:
    lines = [found.file]
    lines.extend(f"  {value.text}" for value in (found.md5, found.sha1, found.sha256))
    if found.pdq is None:
        lines.append(f"  pdq: none ({found.pdq_reason})")
    elif not found.pdq.matchable:
        lines.append(
            f"  {found.pdq.text}  (quality below {PDQ_MIN_QUALITY}: kept on a case, never matched)"
        )
    else:
        lines.append(f"  {found.pdq.text}")
    return "\n".join(lines)


async def cmd_hashes_compute(args: argparse.Namespace, ctx: Context) -> int:
    # Every file first: one that cannot be read stops the command before anything is printed,
    # so --json is one whole document or nothing.
    found = [hash_file(Path(name)) for name in args.files]
    ctx.show(
        args,
        [_as_json(item) for item in found],
        "\n".join(_as_text(item) for item in found),
    )
    return 0


def register(cli: Declare) -> None:
    hashes = cli.group("hashes", "known content: hashes of files, hash lists and what they match")
    p = cli.command(
        hashes,
        "compute",
        cmd_hashes_compute,
        "MD5, SHA-1, SHA-256 and PDQ (with its quality) of files you hold; runs here, reads"
        " the files and keeps nothing",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="the files (only read)")
    hashlists.register(cli, hashes)
