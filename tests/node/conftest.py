"""Fixtures for node tests: a controlled clock, a local DNS server, an initialised data dir."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from node.clock import ManualClock
from node.datadir import DataDir
from tests.support.dns_server import ZoneDnsServer
from tests.support.federation import Pair, live_pair
from tests.support.nodes import START, ZONE, ApiHarness, api_harness, init_node
from tests.support.rdap_server import RdapStub, ip_network
from tests.support.sinks import SmtpSink, WebhookSink


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def dns_server() -> Iterator[ZoneDnsServer]:
    with ZoneDnsServer(ZONE, nxdomain=["gone.example"], silent=["slow.example"]) as server:
        yield server


@pytest.fixture
def data_dir(tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer) -> DataDir:
    return init_node(
        tmp_path / "fr",
        clock=clock,
        extra={"jurisdiction": {"dns_server": dns_server.nameserver, "dns_timeout_seconds": 1.0}},
    )


@pytest.fixture
async def pair(
    tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> AsyncIterator[Pair]:
    async with live_pair(tmp_path, clock, dns_server.nameserver) as nodes:
        yield nodes


@pytest.fixture
async def api(data_dir: DataDir, clock: ManualClock) -> AsyncIterator[ApiHarness]:
    async with api_harness(data_dir, clock) as harness:
        yield harness


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    """A real SMTP server on 127.0.0.1 recording what it is sent."""
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookSink]:
    """A real HTTP receiver on 127.0.0.1 recording each POST."""
    sink = await WebhookSink().start()
    yield sink
    await sink.stop()


@pytest.fixture
async def rdap() -> AsyncIterator[RdapStub]:
    """A real RDAP server on 127.0.0.1 naming the abuse desks of the test networks."""
    async with RdapStub() as stub:
        stub.add_network(
            "5.39.0.0/16", ip_network("5.39.0.0", "5.39.255.255", abuse_email="abuse@ovh.example")
        )
        stub.add_network(
            "41.0.0.0/8",
            ip_network("41.0.0.0", "41.255.255.255", abuse_email="abuse@host.example.za"),
        )
        yield stub
