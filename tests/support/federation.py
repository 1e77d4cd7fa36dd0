"""Real nodes on real loopback ports, in this process: for federation tests without processes."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from node.api.server import make_runner
from node.app import Node, open_node
from node.clock import ManualClock
from node.datadir import DataDir
from tests.support.nodes import init_node


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LiveNode:
    node: Node
    url: str
    analyst: str
    operator: str
    runner: web.AppRunner | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def node_id(self) -> str:
        return self.node.config.node_id

    @property
    def fingerprint(self) -> str:
        return self.node.keyring.current.fingerprint

    async def start_http(self) -> None:
        self.runner = make_runner(self.node.make_app(), self.node.config.http)
        await self.runner.setup()
        port = urlsplit(self.url).port  # the endpoint may have a path after the port
        await web.TCPSite(self.runner, "127.0.0.1", port).start()

    async def stop_http(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def settle(self) -> None:
        """Push every pending queue once (what the delivery worker does after a commit)."""
        for peer in await self.node.delivery.pending_peers():
            await self.node.delivery.push(peer, force=True)


def node_dir(
    root: Path, node_id: str, country: str, clock: ManualClock, dns: str, **extra: Any
) -> tuple[DataDir, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = init_node(
        root / node_id,
        node_id=node_id,
        country=country,
        clock=clock,
        extra={
            "endpoint": url,
            "listen": f"127.0.0.1:{port}",
            "jurisdiction": {"dns_server": dns, "dns_timeout_seconds": 1.0},
            **extra,
        },
    )
    return data_dir, url


@asynccontextmanager
async def live_node(
    data_dir: DataDir, url: str, clock: ManualClock, seed: int = 7
) -> AsyncIterator[LiveNode]:
    async with open_node(data_dir, clock, rng=random.Random(seed)) as node:
        live = LiveNode(
            node,
            url,
            await node.tokens.create("analyst", "ana"),
            await node.tokens.create("operator", "op"),
        )
        await live.start_http()
        try:
            yield live
        finally:
            for task in live.tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await live.stop_http()


@dataclass
class Pair:
    """Two live nodes that have added each other: FR (fr-pdc) and DE (de-eco)."""

    fr: LiveNode
    de: LiveNode


@asynccontextmanager
async def live_pair(
    root: Path, clock: ManualClock, dns: str, de_extra: dict[str, Any] | None = None
) -> AsyncIterator[Pair]:
    """`de_extra` adds node.toml settings to DE (its national channels, say)."""
    fr_dir, fr_url = node_dir(root, "fr-pdc", "FR", clock, dns)
    de_dir, de_url = node_dir(root, "de-eco", "DE", clock, dns, **(de_extra or {}))
    async with live_node(fr_dir, fr_url, clock) as fr, live_node(de_dir, de_url, clock) as de:
        await befriend(fr, de)
        yield Pair(fr, de)


@asynccontextmanager
async def live_pull_pair(root: Path, clock: ManualClock, dns: str) -> AsyncIterator[Pair]:
    """FR and DE that added each other, DE pull-only: it cannot be reached and pulls from FR."""
    fr_dir, fr_url = node_dir(root, "fr-pdc", "FR", clock, dns)
    de_dir, de_url = node_dir(
        root, "de-eco", "DE", clock, dns, federation={"pull_from_peers": True}
    )
    async with live_node(fr_dir, fr_url, clock) as fr, live_node(de_dir, de_url, clock) as de:
        await befriend(fr, de, pull_only=True)
        yield Pair(fr, de)


async def befriend(a: LiveNode, b: LiveNode, *, pull_only: bool = False) -> None:
    """Each operator adds the other with the fingerprint exchanged out of band."""
    await a.node.admin.add(
        node_id=b.node_id,
        country=b.node.config.country,
        endpoint=b.url,
        fingerprint=b.fingerprint,
        pull_only=pull_only,
        actor="test",
    )
    await b.node.admin.add(
        node_id=a.node_id,
        country=a.node.config.country,
        endpoint=a.url,
        fingerprint=a.fingerprint,
        actor="test",
    )


async def http_json(method: str, url: str, token: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, url, json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        return response.status, await response.json(content_type=None)
