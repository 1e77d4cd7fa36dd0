"""The control socket: while `serve` runs, every command of the command line runs inside it.

The server owns the live state (peers, keys, tokens, channels, the schedule), so a command that
changed the files beside it would leave it working from stale copies. Instead the command line
sends its command over a Unix socket in the data directory, and the server runs the very same
command code on its own services; what the command prints streams back.

Both ends check the other before trusting it:
- the server answers only a caller of its own user (or root), by SO_PEERCRED;
- the caller sends nothing until it has checked, by SO_PEERCRED on the connected socket, that the
  process answering runs as the user who owns the data directory: whoever could replace
  `control.sock` (a data directory writable by others) must not read the command or answer it.
The server makes the socket in a private directory, sets its mode there and moves it into place,
so nothing on the way follows a link someone else planted.

Wire format (private to this program), newline-delimited JSON both ways: one request
{"argv": [...], "caller": NAME, "cwd", "tty", "colour"}; the answer is {"out": text} /
{"err": text} chunks, then {"exit": status}. The caller's identity is a field of its own: it is
never written into argv, where a value could be taken for an option or an option for a value.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import socket
import struct
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, cast

import orjson

from node.datadir import DataDir
from node.errors import NodeError

log = logging.getLogger("hotline.control")
SOCKET_NAME = "control.sock"
MAX_REQUEST_BYTES = 64 * 1024
# One answer line at most: text is sent in chunks well below it.
MAX_ANSWER_LINE_BYTES = 1024 * 1024
_CHUNK_CHARS = 16 * 1024
# How long a command waits for a server that holds the directory but has not opened its socket
# yet (it may be migrating a large store).
STARTING_SERVER_WAIT_SECONDS = 120.0


def socket_path(data_dir: DataDir) -> Path:
    return data_dir.root / SOCKET_NAME


@dataclass
class Call:
    """A command sent by a command line: what the server's runner needs to run it for the caller."""

    argv: list[str]
    caller: str  # who runs it: the OS user or --as, as the command line determined it
    cwd: str
    out: TextIO
    err: TextIO
    tty: bool
    colour: bool
    gone: Callable[[], bool]  # the caller has closed the connection (killed, or Ctrl-C)


# Runs a command sent over the socket on the serving node; its exit status.
CommandRunner = Callable[[Call], Awaitable[int]]


class SocketRefused(NodeError):
    """The control socket is not what this node made: a server does not start on it."""


class UntrustedServer(NodeError):
    """The process answering on the control socket is not the data directory's owner."""


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a connected Unix socket (None: unknown)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


# Server side ---------------------------------------------------------------------------------
class _CallerStream(io.TextIOBase):
    """A command's stdout or stderr: text goes to the caller as answer lines."""

    def __init__(self, send: Callable[[str, str], None], name: str, tty: bool) -> None:
        super().__init__()
        self._send = send
        self._name = name
        self._tty = tty

    def write(self, text: str) -> int:
        for start in range(0, len(text), _CHUNK_CHARS):
            self._send(self._name, text[start : start + _CHUNK_CHARS])
        return len(text)

    def isatty(self) -> bool:
        return self._tty


def _request_fields(line: bytes) -> dict[str, Any] | None:
    try:
        body = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    argv, caller, cwd = body.get("argv"), body.get("caller"), body.get("cwd")
    tty, colour = body.get("tty", False), body.get("colour", False)
    if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv)):
        return None
    if not isinstance(caller, str) or not isinstance(cwd, str):
        return None
    if not isinstance(tty, bool) or not isinstance(colour, bool):
        return None
    return {"argv": argv, "caller": caller, "cwd": cwd, "tty": tty, "colour": colour}


def _bind_private(path: Path) -> socket.socket:
    """A listening socket at `path`, mode 0600, made without following any link on the way.

    bind() and chmod() happen in a fresh 0700 directory nobody else can enter, so no one can
    swap the socket for a link between the two; rename() then replaces whatever is at `path`
    (a link included) with it, atomically.
    """
    private = Path(tempfile.mkdtemp(prefix=".c", dir=path.parent))  # 0700, short: sun_path
    made = private / "s"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(made))
        os.chmod(made, 0o600)
        sock.listen(64)
        os.rename(made, path)
    except BaseException:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            made.unlink()
        raise
    finally:
        with contextlib.suppress(OSError):
            private.rmdir()
    return sock


class ControlServer:
    """The Unix socket on which a running node takes commands from its own command line."""

    def __init__(self, path: Path, run: CommandRunner) -> None:
        self.path = path
        self._run = run
        self._server: asyncio.Server | None = None
        self._made: tuple[int, int] | None = None  # (device, inode) of the socket we made

    async def start(self) -> bool:
        """Listen; False (with a warning) where the socket cannot exist, e.g. a path too long.

        A link at the socket's place is refused (SocketRefused): this server never makes one,
        so someone else did, and commands sent there would go to whoever it points at.
        """
        if self.path.is_symlink():
            raise SocketRefused(
                f"{self.path} is a symbolic link this node did not make: remove it, and check"
                " who can write to the data directory"
            )
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a server that was killed: we hold the directory now
        try:
            sock = _bind_private(self.path)
            self._server = await asyncio.start_unix_server(
                self._handle, sock=sock, limit=MAX_REQUEST_BYTES
            )
        except OSError as exc:
            log.warning(
                "no control socket at %s (%s): commands cannot reach this server; "
                "use the admin API or a shorter data directory path",
                self.path,
                exc.strerror or exc,
            )
            return False
        made = os.lstat(self.path)
        self._made = (made.st_dev, made.st_ino)
        return True

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        # Only our own socket: a file someone put there since is not ours to remove.
        with contextlib.suppress(FileNotFoundError):
            now = os.lstat(self.path)
            if self._made == (now.st_dev, now.st_ino):
                self.path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve_one(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        uid = peer_uid(sock) if sock is not None else None
        if uid is not None and uid not in (os.getuid(), 0):
            writer.write(orjson.dumps({"err": "not the node's user\n", "exit": 1}) + b"\n")
            return
        try:
            fields = _request_fields(await reader.readuntil(b"\n"))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            fields = None
        if fields is None:
            writer.write(orjson.dumps({"err": "malformed control request\n", "exit": 2}) + b"\n")
            return
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        gone = asyncio.Event()

        async def watch() -> None:
            # The caller sends nothing after its request: end of stream means it went away.
            with contextlib.suppress(ConnectionError):
                await reader.read(1)
            gone.set()

        async def pump() -> None:
            while (chunk := await queue.get()) is not None:
                if gone.is_set():
                    continue  # nobody reads any more: drop, the command runs to its end
                try:
                    writer.write(chunk)
                    await writer.drain()
                except ConnectionError:
                    gone.set()

        def send(stream: str, text: str) -> None:
            if text:
                queue.put_nowait(orjson.dumps({stream: text}) + b"\n")

        watching = asyncio.create_task(watch())
        pumping = asyncio.create_task(pump())
        call = Call(
            argv=fields["argv"],
            caller=fields["caller"],
            cwd=fields["cwd"],
            # A text stream in all but typeshed's name (TextIOBase is not typing.TextIO).
            out=cast(TextIO, _CallerStream(send, "out", fields["colour"])),
            err=cast(TextIO, _CallerStream(send, "err", fields["tty"])),
            tty=fields["tty"],
            colour=fields["colour"],
            gone=gone.is_set,
        )
        try:
            status = await self._run(call)
        except Exception:  # a bug in a command must not take the server down
            log.exception("command %s failed", " ".join(call.argv[:2]))
            send("err", "hotline-node: error: internal error (see the server log)\n")
            status = 1
        queue.put_nowait(orjson.dumps({"exit": status}) + b"\n")
        queue.put_nowait(None)
        await pumping
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching


# Client side ---------------------------------------------------------------------------------
class ServerGone(Exception):
    """No server took the command (it stopped meanwhile): it may run directly instead."""


class CommandInterrupted(NodeError):
    """The server stopped while running the command: it may or may not have taken effect."""


def check_server(sock: socket.socket, data_dir: DataDir) -> None:
    """Refuse a socket answered by anyone but the user who owns the data directory."""
    uid = peer_uid(sock)
    if uid is None:
        return  # no SO_PEERCRED here: the directory's permissions are the only guard
    owner = os.stat(data_dir.root).st_uid
    if uid != owner:
        raise UntrustedServer(
            f"{socket_path(data_dir)} is answered by a process of uid {uid}, not by the owner"
            f" of {data_dir.root} (uid {owner}): nothing was sent; check who replaced the socket"
        )


async def send(
    data_dir: DataDir,
    argv: list[str],
    caller: str,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run `argv` on the server holding `data_dir` for `caller`, printing what it prints."""
    out = out or sys.stdout
    err = err or sys.stderr
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, str(socket_path(data_dir))), 10)
    except (OSError, TimeoutError) as exc:  # no socket, or nobody listening on it any more
        sock.close()
        raise ServerGone(str(exc)) from exc
    try:
        check_server(sock, data_dir)
    except BaseException:
        sock.close()
        raise
    body = {
        "argv": argv,
        "caller": caller,
        "cwd": os.getcwd(),
        "tty": err.isatty(),
        # Colour is the caller's to decide: its stdout and its NO_COLOR, not the server's.
        "colour": out.isatty() and not os.environ.get("NO_COLOR"),
    }
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_ANSWER_LINE_BYTES)
    status: int | None = None
    try:
        writer.write(orjson.dumps(body) + b"\n")
        await writer.drain()
        # No overall timeout: an import of a large file through the server legitimately takes long.
        async for line in reader:
            message = orjson.loads(line)
            if "out" in message:
                out.write(message["out"])
                out.flush()
            if "err" in message:
                err.write(message["err"])
                err.flush()
            if "exit" in message:
                status = int(message["exit"])
    except (ConnectionError, ValueError):
        status = None
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    if status is None:
        raise CommandInterrupted(
            "the server stopped before the command finished: check whether it took effect"
        )
    return status


async def wait_for_socket(
    data_dir: DataDir, still_serving: Callable[[], bool], err: TextIO | None = None
) -> bool:
    """Wait while a server that holds the directory opens its socket; False if it stopped."""
    path = socket_path(data_dir)
    deadline = asyncio.get_running_loop().time() + STARTING_SERVER_WAIT_SECONDS
    told = False
    while asyncio.get_running_loop().time() < deadline:
        if path.exists():
            return True
        if not still_serving():
            return False
        if not told:
            print(
                "waiting for the starting server to open its control socket…",
                file=err or sys.stderr,
            )
            told = True
        await asyncio.sleep(0.1)
    return False
