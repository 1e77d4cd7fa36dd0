"""The control socket: while `serve` runs, every command of the command line runs inside it.

The server owns the live state (peers, keys, tokens, channels, the schedule), so a command that
changed the files beside it would leave it working from stale copies. Instead the command line
sends its arguments over a Unix socket in the data directory, and the server runs the very same
command code on its own services; what the command prints streams back. The socket is guarded
by the directory's permissions (0700) and by checking that the caller is the same user.

Wire format (private to this program): `POST /v1/run` with JSON {"argv", "cwd", "tty"}; the
answer is newline-delimited JSON: {"out": text} / {"err": text} chunks, then {"exit": status}.
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
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import orjson
from aiohttp import web

from node.datadir import DataDir
from node.errors import NodeError

log = logging.getLogger("hotline.control")
SOCKET_NAME = "control.sock"
RUN_PATH = "/v1/run"
MAX_REQUEST_BYTES = 64 * 1024
# How long a command waits for a server that holds the directory but has not opened its socket
# yet (it may be migrating a large store).
STARTING_SERVER_WAIT_SECONDS = 120.0

# Runs a command line (argv, the caller's working directory) on the serving node; its status.
CommandRunner = Callable[[list[str], str], Awaitable[int]]


def socket_path(data_dir: DataDir) -> Path:
    return data_dir.root / SOCKET_NAME


# Output of commands run for a caller -----------------------------------------------------------
@dataclass
class _Sink:
    queue: asyncio.Queue[bytes | None]
    tty: bool
    # The caller's stdout is a terminal that takes colour (not a pipe, no NO_COLOR there).
    colour: bool = False

    def write(self, stream: str, text: str) -> None:
        if text:
            self.queue.put_nowait(orjson.dumps({stream: text}) + b"\n")


_SINK: ContextVar[_Sink | None] = ContextVar("hotline_control_sink", default=None)


class _RoutedStream(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr while the server runs.

    Commands print as they do in a terminal; inside a command run for a caller (a context
    variable, so concurrent commands and the server's own tasks never mix) the text goes to
    that caller, and everywhere else to the real stream.
    """

    def __init__(self, real: TextIO, name: str) -> None:
        super().__init__()
        self.real = real
        self._name = name

    def write(self, text: str) -> int:
        sink = _SINK.get()
        if sink is None:
            return self.real.write(text)
        sink.write(self._name, text)
        return len(text)

    def flush(self) -> None:
        if _SINK.get() is None:
            self.real.flush()

    def isatty(self) -> bool:
        sink = _SINK.get()
        if sink is None:
            return self.real.isatty()
        return sink.colour if self._name == "out" else sink.tty

    def fileno(self) -> int:
        return self.real.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.real.encoding


def _route_streams() -> None:
    """Put the routed streams in place (again, if something swapped sys.stdout meanwhile)."""
    if not isinstance(sys.stdout, _RoutedStream):
        sys.stdout = _RoutedStream(sys.stdout, "out")
    if not isinstance(sys.stderr, _RoutedStream):
        sys.stderr = _RoutedStream(sys.stderr, "err")


def _unroute_streams() -> None:
    if isinstance(sys.stdout, _RoutedStream):
        sys.stdout = sys.stdout.real
    if isinstance(sys.stderr, _RoutedStream):
        sys.stderr = sys.stderr.real


# Server side ---------------------------------------------------------------------------------
def _same_user(request: web.Request) -> bool:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return True  # the directory's permissions are the guard where credentials are unknown
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (os.getuid(), 0)


def _request_fields(body: Any) -> tuple[list[str], str, bool, bool] | None:
    if not isinstance(body, dict):
        return None
    argv, cwd, tty = body.get("argv"), body.get("cwd"), body.get("tty", False)
    colour = body.get("colour", False)
    if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv)):
        return None
    if not isinstance(cwd, str) or not isinstance(tty, bool) or not isinstance(colour, bool):
        return None
    return argv, cwd, tty, colour


class ControlServer:
    """The Unix socket on which a running node takes commands from its own command line."""

    def __init__(self, path: Path, run: CommandRunner) -> None:
        self.path = path
        self._run = run
        self._runner: web.AppRunner | None = None

    async def start(self) -> bool:
        """Listen; False (with a warning) where the socket cannot exist, e.g. a path too long."""
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post(RUN_PATH, self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a server that was killed: we hold the directory now
        try:
            await web.UnixSite(runner, str(self.path)).start()
            os.chmod(self.path, 0o600)
        except OSError as exc:
            await runner.cleanup()
            log.warning(
                "no control socket at %s (%s): commands cannot reach this server; "
                "use the admin API or a shorter data directory path",
                self.path,
                exc.strerror or exc,
            )
            return False
        self._runner = runner
        return True

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        _unroute_streams()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if not _same_user(request):
            return web.json_response({"err": "not the node's user\n", "exit": 1}, status=403)
        try:
            fields = _request_fields(await request.json())
        except ValueError:
            fields = None
        if fields is None:
            return web.json_response({"err": "malformed control request\n"}, status=400)
        argv, cwd, tty, colour = fields
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def pump() -> None:
            while (chunk := await queue.get()) is not None:
                with contextlib.suppress(ConnectionError):
                    await response.write(chunk)

        pumping = asyncio.create_task(pump())
        _route_streams()
        sink = _Sink(queue, tty, colour)
        token = _SINK.set(sink)
        try:
            status = await self._run(argv, cwd)
        except Exception:  # a bug in a command must not take the server down
            log.exception("command %s failed", " ".join(argv[:2]))
            sink.write("err", "hotline-node: error: internal error (see the server log)\n")
            status = 1
        finally:
            _SINK.reset(token)
        queue.put_nowait(orjson.dumps({"exit": status}) + b"\n")
        queue.put_nowait(None)
        await pumping
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response


# Client side ---------------------------------------------------------------------------------
class ServerGone(Exception):
    """No server took the command (it stopped meanwhile): it may run directly instead."""


class CommandInterrupted(NodeError):
    """The server stopped while running the command: it may or may not have taken effect."""


async def send(
    data_dir: DataDir, argv: list[str], out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run `argv` on the server holding `data_dir`, printing what it prints; its exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    path = socket_path(data_dir)
    body = {
        "argv": argv,
        "cwd": os.getcwd(),
        "tty": err.isatty(),
        # Colour is the caller's to decide: its stdout and its NO_COLOR, not the server's.
        "colour": out.isatty() and not os.environ.get("NO_COLOR"),
    }
    connector = aiohttp.UnixConnector(path=str(path))
    # No total timeout: an import of a large file through the server legitimately takes long.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        try:
            response = await session.post(f"http://hotline-node{RUN_PATH}", json=body)
        except (aiohttp.ClientConnectorError, FileNotFoundError) as exc:
            raise ServerGone(str(exc)) from exc
        status: int | None = None
        try:
            async with response:
                async for line in response.content:
                    message = orjson.loads(line)
                    if "out" in message:
                        out.write(message["out"])
                        out.flush()
                    if "err" in message:
                        err.write(message["err"])
                        err.flush()
                    if "exit" in message:
                        status = int(message["exit"])
        except aiohttp.ClientError:
            status = None
    if status is None:
        raise CommandInterrupted(
            "the server stopped before the command finished: check whether it took effect"
        )
    return status


async def wait_for_socket(data_dir: DataDir, still_serving: Callable[[], bool]) -> bool:
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
            print("waiting for the starting server to open its control socket…", file=sys.stderr)
            told = True
        await asyncio.sleep(0.1)
    return False
