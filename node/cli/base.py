"""What every command group shares: the context a handler runs in, and how commands are declared."""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NoReturn, TextIO

from node.app import Node, open_node
from node.clock import SystemClock
from node.datadir import DataDir
from node.output import colour_enabled, emit_json

REF_HELP = (
    "the case: its id, its public 8-character reference, a notice's reference or its local_ref"
)
PEER_HELP = "the peer's node id (see peers list)"


class UsageError(Exception):
    """A command line that cannot work (checked before anything is touched)."""


def values(words: Iterable[StrEnum]) -> list[str]:
    """A vocabulary's words as command-line choices, in the order the vocabulary gives them."""
    return [word.value for word in words]


def os_user() -> str:
    """The operating-system user running the command (the audit log's name without --as)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry: the uid at least
        return f"uid{os.getuid()}"


def checked_name(given: str) -> str:
    """A name the audit log can hold: what --as (or the caller's identity field) must be."""
    name = given.strip()
    if not name or len(name) > 64 or not name.isprintable():
        raise UsageError("--as needs a name of 1-64 printable characters")
    return name


@dataclass
class Context:
    """Where a command runs: the streams it writes to, and the serving node when there is one.

    Handlers write to `out` and `err`, never to the process's sys.stdout: inside a server they are
    the caller's streams over the control socket, and the server's own output stays its own.
    """

    out: TextIO
    err: TextIO
    # The caller's stdout takes colour; the caller's stderr is a terminal (progress bars).
    colour: bool = False
    tty: bool = False
    serving: Node | None = None
    # Who runs the command, as the command line sent it (a field of the request, never argv).
    caller: str | None = None
    # True once the caller has gone away (its connection closed): long work stops between steps.
    gone: Callable[[], bool] = field(default=lambda: False)

    @classmethod
    def here(cls) -> Context:
        """The context of a command run in this process, on its own terminal."""
        return cls(sys.stdout, sys.stderr, colour_enabled(sys.stdout), sys.stderr.isatty())

    def actor(self, args: argparse.Namespace) -> str:
        """Who the audit log names: the caller's identity field, --as NAME, else the OS user."""
        if self.caller is not None:
            return checked_name(self.caller)
        given: str | None = getattr(args, "as_name", None)
        return os_user() if given is None else checked_name(given)

    def show(self, args: argparse.Namespace, data: Any, text: str) -> None:
        """One JSON document with --json, else the text for people."""
        if getattr(args, "json", False):
            emit_json(data, self.out)
        else:
            print(text, file=self.out)

    def note(self, text: str, end: str = "\n") -> None:
        """A line for the person (stderr): never part of what a script reads."""
        print(text, file=self.err, end=end, flush=True)

    async def with_node(
        self, args: argparse.Namespace, work: Callable[[Node], Awaitable[int]]
    ) -> int:
        """Run `work` on the serving node, or on one opened on the data directory for it."""
        if self.serving is not None:
            return await work(self.serving)
        async with open_node(DataDir.resolve(args.data_dir), SystemClock()) as node:
            return await work(node)

    def progress(self, quiet: bool) -> Callable[[str, int, int], None] | None:
        """A progress bar on the caller's terminal; None for scripts and --json."""
        if quiet or not self.tty:
            return None

        def show(peer: str, done: int, total: int) -> None:
            width = 30
            filled = int(width * done / total) if total else width
            self.note(f"\r{peer:<20} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", "")

        return show


Command = Callable[[argparse.Namespace, Context], Coroutine[Any, Any, int]]


# A key id or fingerprint is a base64url RFC 7638 thumbprint (43 characters): one in 64 begins
# with "-". No option of ours has that shape, so such a word is always a value.
THUMBPRINT = re.compile(r"\s*-[A-Za-z0-9_-]{42}\s*")


class ParserExit(Exception):
    """The parser has finished (help shown, or the command line refused): what to print."""

    def __init__(self, status: int, out: str = "", err: str = "") -> None:
        super().__init__(err or out)
        self.status = status
        self.out = out
        self.err = err


class Parser(argparse.ArgumentParser):
    """argparse, with two differences that let the same parser serve a caller over a socket.

    - A thumbprint-shaped word is a value wherever it stands (`keys revoke -AbC…`,
      `--fingerprint -AbC…`): argparse alone takes it for an unknown option.
    - It prints nothing and never exits the process: help and refusals come back as ParserExit,
      and whoever parsed writes them to its caller's streams.
    """

    def _parse_optional(self, arg_string: str) -> Any:
        if THUMBPRINT.fullmatch(arg_string):
            return None  # a positional word, or the value of the option before it
        return super()._parse_optional(arg_string)

    def print_help(self, file: Any = None) -> NoReturn:
        raise ParserExit(0, out=self.format_help())

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise ParserExit(status, err=message or "")

    def error(self, message: str) -> NoReturn:
        raise ParserExit(2, err=f"{self.format_usage()}{self.prog}: error: {message}\n")


@dataclass(frozen=True)
class Declare:
    """How a command group declares its commands: each gets the options every command takes."""

    top: Any  # the sub-commands action of the whole parser
    common: argparse.ArgumentParser

    def group(self, name: str, help_text: str) -> Any:
        """A group of sub-commands (`keys`, `reports`, …)."""
        return self.top.add_parser(name, help=help_text).add_subparsers(dest="sub", required=True)

    def command(
        self, group: Any, name: str, handler: Command, help_text: str
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(
            name, parents=[self.common], help=help_text, description=help_text
        )
        p.set_defaults(handler=handler)
        return p
