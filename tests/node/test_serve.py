"""`python -m node serve` as a real process: HTTP, the background trace worker, clean shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from keys import verify_key_document
from node.app import open_node
from node.cli import main
from node.clock import ManualClock
from node.datadir import DataDir
from tests.support.dns_server import ZoneDnsServer

START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Served:
    process: subprocess.Popen[str]
    base: str
    token: str
    fingerprint: str
    session: aiohttp.ClientSession

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def stop(self, signum: signal.Signals) -> tuple[int, str, str]:
        self.process.send_signal(signum)
        started = time.monotonic()
        out, err = await asyncio.to_thread(self.process.communicate, timeout=STOP_TIMEOUT)
        assert time.monotonic() - started < STOP_TIMEOUT
        return self.process.returncode, out, err


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    return orjson.loads(capsys.readouterr().out)


@contextmanager
def reaped(process: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """Whatever the test does, the server process does not outlive it."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=STOP_TIMEOUT)


async def wait_healthy(session: aiohttp.ClientSession, base: str, process: Any) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            async with session.get(f"{base}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the node did not answer /healthz in time")


@pytest.fixture
async def served(
    tmp_path: Path, dns_server: ZoneDnsServer, capsys: pytest.CaptureFixture[str]
) -> AsyncIterator[Served]:
    data_dir = str(tmp_path / "node")
    port = free_port()
    # `main` runs its own event loop: in a worker thread, not inside this test's loop.
    init = [
        "init",
        "--data-dir",
        data_dir,
        "--node-id",
        "fr-pointdecontact",
        "--country",
        "FR",
        "--listen",
        f"127.0.0.1:{port}",
        "--dns-server",
        dns_server.nameserver,
    ]
    init_out = await asyncio.to_thread(cli_json, capsys, *init)
    token = (
        await asyncio.to_thread(
            cli_json, capsys, "tokens", "create", "--role", "analyst", "--data-dir", data_dir
        )
    )["token"]
    keys = await asyncio.to_thread(cli_json, capsys, "keys", "show", "--data-dir", data_dir)
    assert keys["fingerprint"] == init_out["fingerprint"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_NODE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "node", "serve", "--data-dir", data_dir],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with reaped(process):
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{port}"
            await wait_healthy(session, base, process)
            yield Served(process, base, token, keys["fingerprint"], session)


async def test_serve_traces_in_the_background_and_stops_on_sigterm(served: Served) -> None:
    async with served.session.get(f"{served.base}/healthz") as response:
        assert await response.json() == {"status": "ok", "node_id": "fr-pointdecontact"}

    async with served.session.post(
        f"{served.base}/api/v1/reports",
        json={"url": "http://de.example/served", "category": "csam"},
        headers=served.auth(),
    ) as response:
        assert response.status == 201
        report_id = (await response.json())["id"]

    # Intake answers at once; the trace worker fills the hosting evidence in afterwards.
    deadline = time.monotonic() + 10
    while True:
        async with served.session.get(
            f"{served.base}/api/v1/reports/{report_id}", headers=served.auth()
        ) as response:
            assert response.status == 200
            case = await response.json()
        if case["hosting"]["status"] != "pending" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert case["hosting"]["status"] == "done"
    assert case["hosting"]["countries"] == ["DE"]
    assert {a["ip"] for a in case["hosting"]["addresses"]} == {"88.198.0.1", "2a01:4f8::1"}

    async with served.session.get(f"{served.base}/.well-known/hotline-node") as response:
        assert response.status == 200
        wire = await response.read()
    document = verify_key_document(wire, pinned_fingerprint=served.fingerprint)
    assert document.node_id == "fr-pointdecontact"
    assert document.country == "FR"
    assert document.signing_keys
    assert document.encryption_keys

    code, out, err = await served.stop(signal.SIGTERM)
    assert code == 0, err
    assert f"fr-pointdecontact listening on {served.base}" in out
    assert "Traceback" not in err


async def test_serve_stops_cleanly_on_sigint(served: Served) -> None:
    async with served.session.get(
        f"{served.base}/api/v1/reports", headers=served.auth()
    ) as response:
        assert response.status == 200
        assert (await response.json())["reports"] == []
    code, _, err = await served.stop(signal.SIGINT)
    assert code == 0, err
    assert "Traceback" not in err
    assert "KeyboardInterrupt" not in err


async def test_serve_on_a_port_in_use_fails_with_one_line(
    tmp_path: Path, dns_server: ZoneDnsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = str(tmp_path / "node")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as occupied:
        occupied.bind(("127.0.0.1", 0))
        occupied.listen()
        port = occupied.getsockname()[1]
        await asyncio.to_thread(
            cli_json,
            capsys,
            "init",
            "--data-dir",
            data_dir,
            "--node-id",
            "fr-pointdecontact",
            "--country",
            "FR",
            "--listen",
            f"127.0.0.1:{port}",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_NODE_")}
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "node", "serve", "--data-dir", data_dir],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    # Start-up warnings (a role with no channel) may come first; the error is one last line.
    *before, last = done.stderr.splitlines()
    assert all(" WARNING " in line for line in before), before
    # This node has no channel: serve says so, role by role.
    assert any("no channel serves role host_notice" in line for line in before), before
    assert last.startswith("hotline-node: error: ")
    assert "address already in use" in last


async def test_start_up_warns_about_a_readable_database_or_data_directory(
    data_dir: DataDir, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression (issue 12): a database of mode 0644 or a 0755 data directory went unsaid."""
    async with open_node(data_dir, clock):
        pass
    assert "file modes" not in caplog.text  # as `init` made them
    os.chmod(data_dir.database, 0o644)
    os.chmod(data_dir.root, 0o755)
    caplog.set_level(logging.WARNING)
    async with open_node(data_dir, clock):
        pass
    warnings = [r.getMessage() for r in caplog.records if "file modes" in r.getMessage()]
    assert any("node.sqlite3 is mode 0644" in w and "0600" in w for w in warnings), warnings
    assert any("is mode 0755" in w and "0700" in w for w in warnings), warnings
