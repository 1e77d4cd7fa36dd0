"""Known content: hashes computed from files, and hash lists."""

from __future__ import annotations

from node.cli import hashlists
from node.cli.base import Declare


def register(cli: Declare) -> None:
    hashes = cli.group("hashes", "known content: hash lists and what they match")
    hashlists.register(cli, hashes)
