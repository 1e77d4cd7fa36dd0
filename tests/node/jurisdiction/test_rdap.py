"""RdapClient against a real aiohttp RDAP stub on 127.0.0.1: contacts, redirects, errors, cache."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import pytest

from node.jurisdiction.errors import (
    RdapError,
    RdapRateLimitedError,
    RdapResponseError,
    RdapTimeoutError,
)
from node.jurisdiction.rdap import RdapClient, abuse_email, parse_network, parse_retry_after
from tests.support.rdap_server import RdapStub, entity, ip_network


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_abuse_contact_and_network_facts(
    session: aiohttp.ClientSession, rdap_stub: RdapStub
) -> None:
    client = RdapClient(session, rdap_stub.base_url)
    network = await client.lookup("88.198.0.1")
    assert network.abuse_email == "abuse@hetzner.example"
    assert network.network_name == "HETZNER-RZ-FKS-BLK"
    assert network.country == "DE"
    assert (network.start, network.end) == ("88.198.0.0", "88.198.255.255")
    assert network.found
    assert not network.from_cache
    assert rdap_stub.requests == ["/ip/88.198.0.1"]


async def test_nested_abuse_entity(session: aiohttp.ClientSession, rdap_stub: RdapStub) -> None:
    network = await RdapClient(session, rdap_stub.base_url).lookup("52.28.0.1")
    assert network.abuse_email == "abuse@amazonaws.example"  # not the registrant's noc@ address


async def test_cache_by_range_saves_the_second_request(
    session: aiohttp.ClientSession, rdap_stub: RdapStub
) -> None:
    client = RdapClient(session, rdap_stub.base_url)
    first = await client.lookup("88.198.0.1")
    second = await client.lookup("88.198.200.7")  # same /16
    assert second.abuse_email == first.abuse_email
    assert second.from_cache
    assert rdap_stub.requests == ["/ip/88.198.0.1"]
    assert client.requests == 1
    await client.lookup("52.28.0.1")  # another range: asked
    assert client.requests == 2


async def test_cache_by_cidr0_range_for_ipv6(
    session: aiohttp.ClientSession, rdap_stub: RdapStub
) -> None:
    client = RdapClient(session, rdap_stub.base_url)
    first = await client.lookup("2a01:4f8::1")
    assert (first.start, first.end) == ("2a01:4f8::", "2a01:4f8:ffff:ffff:ffff:ffff:ffff:ffff")
    second = await client.lookup("2a01:4f8:c0c:1::2")
    assert second.from_cache
    assert client.requests == 1


async def test_cache_entries_expire(session: aiohttp.ClientSession, rdap_stub: RdapStub) -> None:
    clock = FakeMonotonic()
    client = RdapClient(session, rdap_stub.base_url, cache_seconds=60, monotonic=clock)
    await client.lookup("88.198.0.1")
    clock.now += 61
    again = await client.lookup("88.198.0.2")
    assert not again.from_cache
    assert client.requests == 2


async def test_cache_is_bounded(session: aiohttp.ClientSession, rdap_stub: RdapStub) -> None:
    client = RdapClient(session, rdap_stub.base_url, cache_entries=1)
    await client.lookup("88.198.0.1")
    await client.lookup("52.28.0.1")  # evicts the Hetzner range
    assert not (await client.lookup("88.198.0.1")).from_cache
    assert client.requests == 3


async def test_follows_redirects(session: aiohttp.ClientSession, rdap_stub: RdapStub) -> None:
    rdap_stub.redirect("88.198.0.1", hops=3)
    network = await RdapClient(session, rdap_stub.base_url).lookup("88.198.0.1")
    assert network.abuse_email == "abuse@hetzner.example"
    assert network.url == f"{rdap_stub.base_url}/hop/3/ip/88.198.0.1"
    assert rdap_stub.requests[0] == "/ip/88.198.0.1"
    assert len(rdap_stub.requests) == 4


async def test_more_than_three_redirects_is_an_error(
    session: aiohttp.ClientSession, rdap_stub: RdapStub
) -> None:
    rdap_stub.redirect("88.198.0.1", hops=4)
    with pytest.raises(RdapResponseError, match="more than 3 redirects"):
        await RdapClient(session, rdap_stub.base_url).lookup("88.198.0.1")


async def test_not_found_is_no_contact_not_an_error(
    session: aiohttp.ClientSession, rdap_stub: RdapStub
) -> None:
    client = RdapClient(session, rdap_stub.base_url)
    network = await client.lookup("192.0.2.1")
    assert not network.found
    assert network.abuse_email is None
    await client.lookup("192.0.2.1")  # a miss is not cached: there is no range to key it by
    assert client.requests == 2


async def test_rate_limited_with_retry_after_then_quiet(
    session: aiohttp.ClientSession, rdap_stub: RdapStub
) -> None:
    clock = FakeMonotonic()
    rdap_stub.respond("88.198.0.1", 429, headers={"Retry-After": "30"})
    client = RdapClient(session, rdap_stub.base_url, monotonic=clock)
    with pytest.raises(
        RdapRateLimitedError, match=r"^RDAP rate limited for 88\.198\.0\.1, retry"
    ) as first:
        await client.lookup("88.198.0.1")
    assert first.value.retry_after == 30
    clock.now += 10
    with pytest.raises(RdapRateLimitedError) as second:
        await client.lookup("52.28.0.1")  # fails fast: the registry asked us to wait
    assert second.value.retry_after == 20
    assert len(rdap_stub.requests) == 1
    clock.now += 21
    assert (await client.lookup("52.28.0.1")).abuse_email == "abuse@amazonaws.example"


async def test_rate_limited_without_retry_after(
    session: aiohttp.ClientSession, rdap_stub: RdapStub
) -> None:
    rdap_stub.respond("88.198.0.1", 429)
    client = RdapClient(session, rdap_stub.base_url)
    with pytest.raises(RdapRateLimitedError) as caught:
        await client.lookup("88.198.0.1")
    assert caught.value.retry_after is None
    assert str(caught.value) == "RDAP rate limited for 88.198.0.1"


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, b"", "RDAP server answered HTTP 500 for 88.198.0.1"),
        (200, b"{not json", "not valid JSON"),
        (200, b"[1, 2]", "not a JSON object"),
    ],
)
async def test_bad_answers(
    session: aiohttp.ClientSession, rdap_stub: RdapStub, status: int, body: bytes, message: str
) -> None:
    rdap_stub.respond("88.198.0.1", status, body=body)
    with pytest.raises(RdapResponseError, match=message):
        await RdapClient(session, rdap_stub.base_url).lookup("88.198.0.1")


async def test_timeout(session: aiohttp.ClientSession, rdap_stub: RdapStub) -> None:
    rdap_stub.slow("88.198.0.1")
    with pytest.raises(RdapTimeoutError, match=r"^RDAP timeout for 88\.198\.0\.1 after 0\.2s$"):
        await RdapClient(session, rdap_stub.base_url, timeout=0.2).lookup("88.198.0.1")


async def test_server_down_is_an_rdap_error(session: aiohttp.ClientSession) -> None:
    async with RdapStub() as stub:
        base = stub.base_url
    with pytest.raises(RdapError, match=r"RDAP request for 88\.198\.0\.1 failed"):
        await RdapClient(session, base).lookup("88.198.0.1")


def test_abuse_email_prefers_the_shallowest_abuse_entity() -> None:
    network = {
        "entities": [
            entity(
                "ORG",
                ["registrant"],
                "noc@example.net",
                [entity("DEEP", ["abuse"], "deep@x.example")],
            ),
            entity("TOP", ["technical", "ABUSE"], "top@x.example"),
        ]
    }
    assert abuse_email(network) == "top@x.example"


def test_abuse_entity_without_email_is_skipped() -> None:
    network = {
        "entities": [
            entity("NOMAIL", ["abuse"]),
            entity("ORG", ["registrant"], None, [entity("AB", ["abuse"], "abuse@y.example")]),
        ]
    }
    assert abuse_email(network) == "abuse@y.example"
    assert abuse_email({"entities": [entity("ORG", ["registrant"], "noc@z.example")]}) is None
    assert abuse_email({"entities": "garbage"}) is None


def test_an_abuse_address_that_is_not_one_valid_address_is_dropped() -> None:
    # Regression (issue 12): an RDAP answer's "abuse@x.example\r\nBcc: …" reached the host
    # notice's To header, and building the mail raised in the dispatcher on every sweep.
    for bad in (
        "abuse@x.example\r\nBcc: all@y.example",
        "abuse@x.example\x00",
        "Abuse Desk <abuse@x.example>",
        "abuse@x.example, other@y.example",
        "abuse@x.example\u2028",
        "abuse@localhost",
    ):
        network = {"entities": [entity("AB", ["abuse"], bad)]}
        assert abuse_email(network) is None, bad
    # The first valid address of the entity is taken; the domain comes out IDNA-encoded.
    card = entity("AB", ["abuse"], "bad\nvalue@x.example")
    card["vcardArray"][1].append(["email", {}, "text", "abuse@bücher.example"])
    assert abuse_email({"entities": [card]}) == "abuse@xn--bcher-kva.example"


def test_parse_network_tolerates_odd_ranges() -> None:
    body = ip_network("10.0.0.9", "10.0.0.1", abuse_email="a@b.example")  # start after end
    parsed = parse_network(body)
    assert (parsed.start, parsed.end, parsed.abuse_email) == (None, None, "a@b.example")


def test_parse_retry_after() -> None:
    now = datetime(2025, 3, 14, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("Fri, 14 Mar 2025 12:01:30 GMT", now) == 90
    assert parse_retry_after("Fri, 14 Mar 2025 11:00:00 GMT", now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
