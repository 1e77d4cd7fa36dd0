"""`[http] public_listen`: a second listener serving only what strangers need, so that the console
and the analysts' API can stay on an internal address (issue 26, item 4)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from node.app import open_node
from node.clock import ManualClock
from node.config import parse_config
from node.errors import ConfigError
from tests.support.cluster import free_port
from tests.support.nodes import START, init_node, rewrite_config


def test_public_listen_is_a_host_and_port() -> None:
    base = {"node_id": "fr-x", "country": "FR", "endpoint": "https://fr.example"}
    assert parse_config(base).http.public_address is None
    config = parse_config({**base, "http": {"public_listen": "[::1]:8443"}})
    assert config.http.public_address == ("::1", 8443)
    with pytest.raises(ConfigError, match="public_listen"):
        parse_config({**base, "http": {"public_listen": "8443"}})


async def test_the_public_listener_serves_only_public_routes(tmp_path: Path) -> None:
    clock = ManualClock(START)
    data_dir = init_node(tmp_path / "fr", clock=clock)
    inside, outside = free_port(), free_port()
    rewrite_config(
        data_dir,
        listen=f"127.0.0.1:{inside}",
        http={"public_listen": f"127.0.0.1:{outside}"},
    )
    ready = asyncio.Event()
    stop = asyncio.Event()
    async with open_node(data_dir, clock) as node:
        serving = asyncio.create_task(node.serve(stop, ready=ready.set))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            async with aiohttp.ClientSession() as http:

                async def status(port: int, method: str, path: str) -> int:
                    async with http.request(
                        method, f"http://127.0.0.1:{port}{path}", allow_redirects=False
                    ) as response:
                        return response.status

                for method, path, public in (
                    ("GET", "/report", True),
                    ("GET", "/.well-known/hotline-node", True),
                    ("GET", "/healthz", True),
                    ("OPTIONS", "/api/v1/public/reports", True),
                    ("GET", "/federation/v1/outbox", True),  # there, and refuses unsigned
                    ("GET", "/console/sign-in", False),
                    ("GET", "/api/v1/reports", False),
                    ("GET", "/api/v1/stats", False),
                    ("GET", "/metrics", False),
                    ("GET", "/admin/v1/peers", False),
                ):
                    outside_status = await status(outside, method, path)
                    inside_status = await status(inside, method, path)
                    assert inside_status != 404, path
                    if public:
                        assert outside_status != 404, path
                    else:
                        assert outside_status == 404, path
                # /metrics (inside only) counts the requests the public listener answered.
                async with http.get(f"http://127.0.0.1:{inside}/metrics") as response:
                    counted = await response.text()
                [line] = [
                    line
                    for line in counted.splitlines()
                    if line.startswith("hotline_http_requests_total")
                    and 'route="/report"' in line
                    and 'method="GET"' in line
                ]
                assert line.endswith(" 2"), line  # one request inside, one outside
        finally:
            stop.set()
            await serving
