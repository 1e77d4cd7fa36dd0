"""Fixtures for the jurisdiction tests: a local DNS server, an RDAP stub, a session and a clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import aiohttp
import pytest

from tests.support.dns_server import Zone, ZoneDnsServer
from tests.support.rdap_server import RdapStub, ip_network

NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)

# Real public addresses (no traffic goes to them: DNS and RDAP are local stubs):
# 88.198.0.0/16 and 2a01:4f8::/32 Hetzner (registered DE), 52.28.0.0/15 AWS Frankfurt (registered
# US), 104.16.0.0/13 Cloudflare, 151.101.0.0/16 Fastly, 3.5.140.0/22 AWS S3 Seoul (registered US).
ZONE: Zone = {
    "files.example.de": {"A": [("88.198.1.2", 300)], "AAAA": [("2a01:4f8::2", 120)]},
    "v4only.example": {"A": [("88.198.1.3", 60)]},
    "v6only.example": {"AAAA": [("2a01:4f8::3", 90)]},
    "aws.example": {"A": [("52.28.0.1", 60)]},
    "twocountries.example": {"A": [("88.198.1.2", 300), ("52.28.0.1", 30)]},
    "cdn.example": {"CNAME": [("assets.cdn.example", 600)]},
    "assets.cdn.example": {"CNAME": [("d1234abcd.cloudfront.net", 60)]},
    "d1234abcd.cloudfront.net": {"A": [("3.5.140.2", 20), ("3.5.140.3", 20)]},
    "cf.example": {"A": [("104.16.0.1", 300)], "AAAA": [("2606:4700::6810:1", 300)]},
    "fastly.example": {"A": [("151.101.1.1", 30)]},
    "mixed.example": {"A": [("104.16.0.1", 300), ("88.198.1.2", 300)]},
    "private.example": {
        "A": [("10.0.0.5", 60), ("127.0.0.1", 60), ("169.254.1.1", 60), ("240.0.0.1", 60)],
        "AAAA": [("fe80::1", 60), ("::1", 60)],
    },
    "xn--bcher-kva.example": {"A": [("88.198.7.7", 300)]},
    "dual-broken.example": {"A": [("88.198.1.4", 300)], "AAAA": [("2a01:4f8::4", 300)]},
    "notaddress.example": {"TXT": [("v=spf1 -all", 300)]},
    "big.example": {"A": [(f"88.198.{i // 200}.{i % 200 + 1}", 50) for i in range(100)]},
    "gone-alias.example": {"CNAME": [("gone.example", 60)]},
}
NXDOMAIN = ["gone.example"]
SILENT = ["slow.example", "dual-broken.example:AAAA"]
SERVFAIL = ["broken.example"]


@pytest.fixture
def dns_server() -> Iterator[ZoneDnsServer]:
    with ZoneDnsServer(ZONE, nxdomain=NXDOMAIN, silent=SILENT, servfail=SERVFAIL) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def rdap_stub() -> AsyncIterator[RdapStub]:
    async with RdapStub() as stub:
        stub.add_network(
            "88.198.0.0/16",
            ip_network(
                "88.198.0.0",
                "88.198.255.255",
                name="HETZNER-RZ-FKS-BLK",
                handle="88.198.0.0 - 88.198.255.255",
                country="DE",
                abuse_email="abuse@hetzner.example",
            ),
        )
        stub.add_network(
            "2a01:4f8::/32",
            ip_network(
                "2a01:4f8::",
                "2a01:4f8:ffff:ffff:ffff:ffff:ffff:ffff",
                name="DE-HETZNER-V6",
                abuse_email="abuse@hetzner.example",
                cidr0=True,
            ),
        )
        stub.add_network(
            "52.28.0.0/15",
            ip_network(
                "52.28.0.0",
                "52.29.255.255",
                name="AMAZO-ZFRA",
                handle="NET-52-28-0-0-1",
                country="US",
                abuse_email="abuse@amazonaws.example",
                nested=True,
            ),
        )
        yield stub


def fixed_clock() -> datetime:
    return NOW
