"""The control socket on its own: output per command, statuses, malformed requests, trust."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from keys import load_keys
from node import control
from node.cli import runner_for
from node.clock import ManualClock
from node.datadir import DataDir
from tests.support.federation import live_node, node_dir
from tests.support.nodes import START


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[DataDir]:
    data_dir = DataDir(tmp_path)
    gate = asyncio.Event()

    async def run(call: control.Call) -> int:
        if call.argv[0] == "slow":
            print("slow starts", file=call.out)
            await gate.wait()
            print("slow ends", file=call.err)
            return 4
        if call.argv[0] == "boom":
            raise RuntimeError("a bug")
        gate.set()
        print(f"fast in {call.cwd} for {call.caller}", file=call.out)
        return 0

    server = control.ControlServer(control.socket_path(data_dir), run)
    assert await server.start()
    try:
        yield data_dir
    finally:
        await server.close()
    assert not control.socket_path(data_dir).exists()


async def capture(data_dir: DataDir, argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = await control.send(data_dir, argv, "alice", out, err)
    return status, out.getvalue(), err.getvalue()


async def test_each_command_gets_its_own_output_and_status(served: DataDir) -> None:
    assert control.socket_path(served).stat().st_mode & 0o777 == 0o600
    slow = asyncio.create_task(capture(served, ["slow"]))
    await asyncio.sleep(0.1)
    status, out, err = await capture(served, ["fast"])
    assert (status, err) == (0, "")
    assert out == f"fast in {Path.cwd()} for alice\n"
    assert await slow == (4, "slow starts\n", "slow ends\n")


async def test_a_failing_command_answers_with_an_error_not_a_dead_server(
    served: DataDir,
) -> None:
    status, out, err = await capture(served, ["boom"])
    assert (status, out) == (1, "")
    assert err == "hotline-node: error: internal error (see the server log)\n"
    assert (await capture(served, ["fast"]))[0] == 0


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"argv": "reports list", "caller": "a", "cwd": "/"}',
        b'{"argv": [1], "caller": "a", "cwd": "/"}',
        # The caller's identity is a field of its own, never left to argv.
        b'{"argv": ["keys", "show"], "cwd": "/"}',
        b'{"argv": ["keys", "show"], "caller": ["a"], "cwd": "/"}',
    ],
)
async def test_a_malformed_request_is_refused(served: DataDir, body: bytes) -> None:
    reader, writer = await asyncio.open_unix_connection(str(control.socket_path(served)))
    writer.write(body + b"\n")
    answer = await reader.read()
    writer.close()
    assert answer == b'{"err":"malformed control request\\n","exit":2}\n'


async def test_no_server_means_the_command_is_not_taken(tmp_path: Path) -> None:
    with pytest.raises(control.ServerGone):
        await control.send(DataDir(tmp_path), ["fast"], "alice")


async def test_keys_changed_through_the_socket_survive_the_scheduled_rotation(
    tmp_path: Path,
) -> None:
    clock = ManualClock(START)
    data_dir, url = node_dir(tmp_path, "fr-pdc", "FR", clock, "127.0.0.1:9")
    async with live_node(data_dir, url, clock) as live:
        node = live.node
        server = control.ControlServer(control.socket_path(data_dir), runner_for(node))
        assert await server.start()
        try:
            signing = node.keyring.current.current_signing(clock.now()).kid
            status, _, err = await capture(data_dir, ["keys", "revoke", signing])
            assert (status, err) == (0, "")
            # The running node's own keyring changed: nothing stale is left to write back.
            assert signing in node.keyring.current.revoked
            clock.advance(timedelta(days=node.config.keys.rotate_every_days))
            assert await node.jobs.rotate_keys()
        finally:
            await server.close()
        on_disk = load_keys(data_dir.keys, data_dir.read_secret())
        assert signing in on_disk.revoked
        assert on_disk.current_signing(clock.now()).kid == (
            node.keyring.current.current_signing(clock.now()).kid
        )
        assert signing in node.keyring.current.revoked


async def test_a_key_id_beginning_with_a_dash_is_taken_as_a_value_by_the_server(
    tmp_path: Path,
) -> None:
    clock = ManualClock(START)
    data_dir, url = node_dir(tmp_path, "fr-pdc", "FR", clock, "127.0.0.1:9")
    async with live_node(data_dir, url, clock) as live:
        server = control.ControlServer(control.socket_path(data_dir), runner_for(live.node))
        assert await server.start()
        try:
            status, _, err = await capture(data_dir, ["keys", "revoke", "-" + "A" * 42])
        finally:
            await server.close()
    # Parsed as the key id (and refused as unknown), not as an option argparse does not know.
    assert status == 1
    assert "usage:" not in err
    assert "-" + "A" * 42 in err


async def test_the_server_refuses_to_run_init_or_serve_for_a_caller(tmp_path: Path) -> None:
    clock = ManualClock(START)
    data_dir, url = node_dir(tmp_path, "fr-pdc", "FR", clock, "127.0.0.1:9")
    async with live_node(data_dir, url, clock) as live:
        server = control.ControlServer(control.socket_path(data_dir), runner_for(live.node))
        assert await server.start()
        try:
            status, out, err = await capture(data_dir, ["serve"])
            assert (status, out) == (2, "")
            assert err == "hotline-node: error: serve cannot run inside a server\n"
            status, out, err = await capture(data_dir, ["reports", "assess"])
            assert status == 2
            assert "the following arguments are required: id" in err
        finally:
            await server.close()


# who answers, and what the socket is ------------------------------------------------------
async def test_a_link_planted_at_the_socket_is_refused_and_not_followed(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "node")
    data_dir.root.mkdir()
    target = tmp_path / "operator-secrets.txt"
    target.write_text("kept")
    target.chmod(0o644)
    control.socket_path(data_dir).symlink_to(target)

    async def run(call: control.Call) -> int:
        return 0

    with pytest.raises(control.SocketRefused, match="symbolic link this node did not make"):
        await control.ControlServer(control.socket_path(data_dir), run).start()
    # Neither chmod-ed nor replaced through the link: the file it points at is as it was.
    assert target.read_text() == "kept"
    assert target.stat().st_mode & 0o777 == 0o644
    assert control.socket_path(data_dir).is_symlink()


def test_the_client_checks_the_answering_process_owns_the_data_directory(
    tmp_path: Path,
) -> None:
    mine = DataDir(tmp_path / "mine")
    mine.root.mkdir()
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        control.check_server(left, mine)  # this process, the directory's owner: trusted
        other = DataDir(tmp_path / "other")
        other.root.mkdir()
        if os.getuid() == 0:
            os.chown(other.root, 65534, 65534)
        else:
            other = DataDir(Path("/"))  # root's: not ours
        with pytest.raises(control.UntrustedServer, match="nothing was sent"):
            control.check_server(left, other)


IMPOSTOR = """
import socket, sys
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sys.argv[1])
server.listen(1)
print("ready", flush=True)
server.settimeout(20)
conn, _ = server.accept()
conn.settimeout(2)
received = b""
try:
    while chunk := conn.recv(65536):
        received += chunk
except OSError:
    pass
print(len(received), flush=True)
"""


@pytest.mark.skipif(os.getuid() != 0, reason="answering as another user needs root (CI runs so)")
async def test_an_impostor_on_the_socket_reads_nothing() -> None:
    """Another user who could write to the data directory put their own socket there."""
    # Not under pytest's tmp_path, whose parent only root may enter; the system's Python, as
    # the test environment's may not be readable by that user either.
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    data_dir = DataDir(Path(tempfile.mkdtemp(prefix="hotline-impostor-")))
    data_dir.root.chmod(0o777)  # the mistake that makes it possible; start-up only warns
    impostor = subprocess.Popen(
        [python, "-c", IMPOSTOR, str(control.socket_path(data_dir))],
        user=65534,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert impostor.stdout is not None
        assert impostor.stdout.readline().strip() == "ready"
        with pytest.raises(control.UntrustedServer) as refused:
            await control.send(data_dir, ["tokens", "revoke", "abc"], "alice")
        assert "uid 65534" in str(refused.value)
        received = await asyncio.to_thread(impostor.stdout.readline)
        assert received.strip() == "0"  # not one byte of the command reached it
    finally:
        impostor.kill()
        impostor.communicate(timeout=10)  # closes its pipe too
        shutil.rmtree(data_dir.root)
