"""The control socket on its own: output routed per command, statuses, malformed requests."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from keys import load_keys
from node import control
from node.cli import _runner_for
from node.clock import ManualClock
from node.datadir import DataDir
from tests.support.federation import live_node, node_dir
from tests.support.nodes import START


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[DataDir]:
    data_dir = DataDir(tmp_path)
    gate = asyncio.Event()

    async def run(argv: list[str], cwd: str) -> int:
        if argv[0] == "slow":
            print("slow starts")
            await gate.wait()
            print("slow ends", file=sys.stderr)
            return 4
        if argv[0] == "boom":
            raise RuntimeError("a bug")
        gate.set()
        print(f"fast in {cwd}")
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
    status = await control.send(data_dir, argv, out, err)
    return status, out.getvalue(), err.getvalue()


async def test_each_command_gets_its_own_output_and_status(served: DataDir) -> None:
    assert control.socket_path(served).stat().st_mode & 0o777 == 0o600
    slow = asyncio.create_task(capture(served, ["slow"]))
    await asyncio.sleep(0.1)
    status, out, err = await capture(served, ["fast"])
    assert (status, err) == (0, "")
    assert out == f"fast in {Path.cwd()}\n"
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
    [b"not json", b"[]", b'{"argv": "reports list", "cwd": "/"}', b'{"argv": [1], "cwd": "/"}'],
)
async def test_a_malformed_request_is_refused(served: DataDir, body: bytes) -> None:
    connector = aiohttp.UnixConnector(path=str(control.socket_path(served)))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(f"http://node{control.RUN_PATH}", data=body) as response,
    ):
        assert response.status == 400
        assert await response.json() == {"err": "malformed control request\n"}


async def test_no_server_means_the_command_is_not_taken(tmp_path: Path) -> None:
    with pytest.raises(control.ServerGone):
        await control.send(DataDir(tmp_path), ["fast"])


async def test_keys_changed_through_the_socket_survive_the_scheduled_rotation(
    tmp_path: Path,
) -> None:
    clock = ManualClock(START)
    data_dir, url = node_dir(tmp_path, "fr-pdc", "FR", clock, "127.0.0.1:9")
    async with live_node(data_dir, url, clock) as live:
        node = live.node
        server = control.ControlServer(control.socket_path(data_dir), _runner_for(node))
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
        server = control.ControlServer(control.socket_path(data_dir), _runner_for(live.node))
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
        server = control.ControlServer(control.socket_path(data_dir), _runner_for(live.node))
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
