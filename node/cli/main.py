"""The parser assembled from the command groups, and where a command runs: here or in the server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sqlite3
import sys
from pathlib import Path

from keys import KeysError
from node import control, locks
from node.app import Node
from node.cli import backup as backups
from node.cli import (
    channels,
    directory,
    hashes,
    keys,
    operations,
    peers,
    reports,
    setup,
    tokens,
    users,
)
from node.cli.base import Command, Context, Declare, Parser, ParserExit, UsageError
from node.control import Call, CommandRunner
from node.datadir import DataDir
from node.errors import NodeError, StorageFull, is_disk_full
from node.federation.directory_source import is_url
from node.jurisdiction import JurisdictionError
from protocol.directory import DirectoryError

EPILOG = """examples:
  hotline-node init --node-id fr-pointdecontact --country FR --endpoint https://hotline.example.fr
  hotline-node tokens create --role analyst --name alice
  hotline-node reports submit https://files.example.net/a/b.jpg --category csam
  hotline-node reports assess ID --verdict baseline --category csam --legal-basis "Art. 227-23"
  hotline-node reports show ID --json
  hotline-node trace https://files.example.net/a/b.jpg
  hotline-node peers add --node-id de-eco --country DE --endpoint https://node.eco.example \\
      --fingerprint <the fingerprint de-eco's operator gave you>
  hotline-node sync
"""

# In the order `hotline-node --help` lists them.
GROUPS = (
    setup,
    tokens,
    keys,
    reports,
    hashes,
    users,
    channels,
    peers,
    directory,
    operations,
    backups,
)
# Commands that never go through a running server: they create or are the server (`restore`
# makes a new data directory, as `init` does), or they read the caller's own files (`hashes
# compute`: the server may be another user, and must not open an analyst's files; the umbrella
# body's `directory` tools work on a folder of signer keys and need no node). A group's
# sub-command is named "group sub". A command may also say so itself, by its arguments
# (`backup --list FILE` reads only an archive): its `runs_here` default.
LOCAL_COMMANDS = frozenset(
    {
        "init",
        "serve",
        "restore",
        *(f"hashes {sub}" for sub in hashes.LOCAL),
        *(f"directory {sub}" for sub in directory.LOCAL),
    }
)
# Arguments naming files: made absolute, since the server does not share the caller's directory.
PATH_ARGUMENTS = ("file", "csv", "key_document", "output", "root_file")
# Arguments naming a file or a URL (`directory trust --source`): a path is made absolute too.
SOURCE_ARGUMENTS = ("source",)


def build_parser() -> Parser:
    # Both before the command and after it: `hotline-node --data-dir D reports list` and
    # `hotline-node reports list --data-dir D`. SUPPRESS keeps an absent sub-command option from
    # overwriting the value given before the command.
    data_dir_help = "node data directory (default: $HOTLINE_NODE_DATA_DIR or ./hotline-data)"
    json_help = "print one JSON document on stdout (nothing else)"
    common = Parser(add_help=False)
    common.add_argument("--data-dir", default=argparse.SUPPRESS, help=data_dir_help)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=json_help)
    common.add_argument(
        "--as",
        dest="as_name",
        metavar="NAME",
        help="who the audit log names for what this command changes (default: your OS user)",
    )
    parser = Parser(
        prog="hotline-node",
        description="Federated exchange node for internet hotlines.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", help=data_dir_help)
    parser.add_argument("--json", action="store_true", help=json_help)
    cli = Declare(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"), common)
    for group in GROUPS:
        group.register(cli)
    return parser


def parse(argv: list[str], ctx: Context) -> argparse.Namespace | int:
    """The parsed command, or the status the parser ended with (what it said is on ctx)."""
    try:
        return build_parser().parse_args(argv)
    except ParserExit as end:
        ctx.out.write(end.out)
        ctx.err.write(end.err)
        return end.status


def runs_here(args: argparse.Namespace) -> bool:
    """Whether the command runs in the caller's process, never in a serving node."""
    if (
        args.command in LOCAL_COMMANDS
        or f"{args.command} {getattr(args, 'sub', '')}" in LOCAL_COMMANDS
    ):
        return True
    here = getattr(args, "runs_here", None)
    return bool(here is not None and here(args))


def runner_for(node: Node) -> CommandRunner:
    """Runs a command sent over the control socket on the serving node's own services."""

    async def run(call: Call) -> int:
        ctx = Context(
            call.out,
            call.err,
            colour=call.colour,
            tty=call.tty,
            serving=node,
            caller=call.caller,
            gone=call.gone,
        )
        args = parse(call.argv, ctx)
        if isinstance(args, int):
            return args
        if runs_here(args):
            name = " ".join(word for word in (args.command, getattr(args, "sub", None)) if word)
            ctx.note(f"hotline-node: error: {name} cannot run inside a server")
            return 2
        for name in PATH_ARGUMENTS:
            value = getattr(args, name, None)
            if value:
                setattr(args, name, str(Path(call.cwd, value)))
        for name in SOURCE_ARGUMENTS:
            value = getattr(args, name, None)
            if value and not is_url(value):
                setattr(args, name, str(Path(call.cwd, value)))
        return await run_args(args, ctx)

    return run


def main(argv: list[str] | None = None) -> int:
    ctx = Context.here()
    words = sys.argv[1:] if argv is None else argv
    args = parse(words, ctx)
    if isinstance(args, int):
        return args
    if getattr(args, "needs_as", False) and args.as_name is None:
        # Checked before a server is asked, which would otherwise be given the OS user.
        ctx.err.write(
            f"hotline-node: error: {args.command} {args.sub} needs --as NAME, the reviewer"
            " deciding (an active reviewer, see users list)\n"
        )
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_dispatch(args, words, ctx))
    except BrokenPipeError:
        # `reports list | head`: the reader has gone, which is no error of ours. Point stdout
        # at /dev/null so that the flush at exit cannot fail again, and end quietly.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a program killed by the signal would end
    except KeyboardInterrupt:
        return 130


async def _dispatch(args: argparse.Namespace, argv: list[str], ctx: Context) -> int:
    """Run the command here, or in the server that holds the data directory when one runs."""
    if runs_here(args):
        return await run_args(args, ctx)
    data_dir = DataDir.resolve(args.data_dir)
    for _ in range(3):  # a server stopping while we look: look again
        with locks.working_directly(data_dir) as direct:
            if direct:
                return await run_args(args, ctx)
        if await control.wait_for_socket(data_dir, lambda: locks.server_running(data_dir), ctx.err):
            try:
                # The server runs as the node's user: the caller's own name travels with the
                # command, as a field of its own, so that the audit log names the person.
                caller = ctx.actor(args)
            except UsageError as exc:
                ctx.note(f"hotline-node: error: {exc}")
                return 1
            try:
                return await control.send(data_dir, argv, caller, ctx.out, ctx.err)
            except control.ServerGone:
                continue
            except NodeError as exc:
                ctx.note(f"hotline-node: error: {exc}")
                return 1
    ctx.note(f"hotline-node: error: {data_dir.root} is held by a server that does not answer")
    return 1


async def run_args(args: argparse.Namespace, ctx: Context) -> int:
    """Run a parsed command; user errors become one line on stderr and a status."""
    try:
        handler: Command = args.handler
        return await handler(args, ctx)
    except (NodeError, KeysError, JurisdictionError, UsageError, DirectoryError) as exc:
        ctx.note(f"hotline-node: error: {exc}")
        return 1
    except BrokenPipeError:
        raise  # not an error to report: main() ends quietly
    except sqlite3.Error as exc:
        # Rolled back; the operator sees SQLite's reason in one line (the HTTP API hides it).
        ctx.note(f"hotline-node: error: database: {exc}")
        return 1
    except OSError as exc:
        if is_disk_full(exc):
            where = f" ({exc.filename})" if exc.filename else ""
            ctx.note(f"hotline-node: error: {StorageFull()}{where}")
            return 1
        # A port in use, a path that cannot be written: the system's own words, one line.
        ctx.note(
            f"hotline-node: error: {exc.strerror or exc}"
            + (f": {exc.filename}" if exc.filename else "")
        )
        return 1
