"""The control socket on its own: output routed per command, statuses, malformed requests."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from node import control
from node.datadir import DataDir


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
