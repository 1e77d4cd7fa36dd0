"""End-to-end fixtures: a DNS server for the test host names and real node processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import NodeProcess
from tests.support.dns_server import ZoneDnsServer
from tests.support.nodes import ZONE


@pytest.fixture(scope="module")
def dns() -> Iterator[ZoneDnsServer]:
    with ZoneDnsServer(ZONE) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, dns: ZoneDnsServer
) -> Iterator[dict[str, NodeProcess]]:
    root: Path = tmp_path_factory.mktemp("cluster")
    nodes = {
        cc: NodeProcess(node_id, cc, root / node_id, dns.nameserver)
        for cc, node_id in (("FR", "fr-pdc"), ("DE", "de-eco"), ("US", "us-ncmec"))
    }
    try:
        for node in nodes.values():
            node.init()
            node.start()
        fr = nodes["FR"]
        for other in (nodes["DE"], nodes["US"]):
            fr.add_peer(other)
            other.add_peer(fr)
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()
