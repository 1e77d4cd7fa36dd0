"""Tracer end to end: a real DNS server and RDAP stub on 127.0.0.1, the shipped CDN data, iptocc."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.jurisdiction import (
    CdnDetector,
    DnsResolver,
    GeoChain,
    JurisdictionConfigError,
    NoSuchHostError,
    RdapClient,
    TracedAddress,
    Tracer,
    build_tracer,
)
from protocol.records import Hosting, LocationBasis
from tests.node.jurisdiction.conftest import NOW, fixed_clock
from tests.node.jurisdiction.mmdb_files import BUILD_DAY, asn_record, country_record, write_mmdb
from tests.support.dns_server import ZoneDnsServer
from tests.support.rdap_server import RdapStub


def make_tracer(
    dns_server: ZoneDnsServer,
    rdap: RdapClient | None,
    geo: GeoChain | None = None,
    *,
    timeout: float = 2.0,
) -> Tracer:
    return Tracer(
        DnsResolver(dns_server.nameserver, timeout=timeout),
        geo or GeoChain.from_config(),
        CdnDetector.default(),
        rdap,
        fixed_clock,
    )


@pytest.fixture
def rdap(session: aiohttp.ClientSession, rdap_stub: RdapStub) -> RdapClient:
    return RdapClient(session, rdap_stub.base_url)


async def test_host_in_one_country(
    dns_server: ZoneDnsServer, rdap: RdapClient, rdap_stub: RdapStub
) -> None:
    result = await make_tracer(dns_server, rdap).trace("https://files.example.de/x/y.jpg")
    assert result.host == "files.example.de"
    assert result.countries == ("DE",)
    assert result.cnames == ()
    assert result.ttl == 120
    assert not result.cdn
    assert result.abuse_contact == "abuse@hetzner.example"
    assert result.abuse_contact_source == "rdap"
    assert result.traced_at == NOW
    assert result.errors == ()
    first, second = result.addresses
    assert first == TracedAddress(
        ip="88.198.1.2",
        country="DE",
        basis="registration",
        source="iptocc",
        source_date=first.source_date,
        network_name="HETZNER-RZ-FKS-BLK",  # from RDAP, as no ASN source is configured
        ttl=300,
    )
    assert (second.ip, second.country, second.is_global) == ("2a01:4f8::2", "DE", True)
    assert rdap_stub.requests == ["/ip/88.198.1.2"]  # RDAP for the first address only


async def test_to_dict_is_json_ready(dns_server: ZoneDnsServer, rdap: RdapClient) -> None:
    result = await make_tracer(dns_server, rdap).trace("http://files.example.de/")
    data = json.loads(json.dumps(result.to_dict()))
    assert data["traced_at"] == "2025-03-14T09:26:53Z"
    assert data["countries"] == ["DE"]
    assert data["addresses"][0]["global"] is True
    assert data["addresses"][0]["basis"] == "registration"
    assert set(data["addresses"][0]) == {
        "ip",
        "country",
        "basis",
        "source",
        "source_date",
        "asn",
        "network_name",
        "cdn",
        "cdn_name",
        "global",
        "ttl",
    }


async def test_to_hosting_is_a_valid_wire_record(
    dns_server: ZoneDnsServer, rdap: RdapClient
) -> None:
    result = await make_tracer(dns_server, rdap).trace("http://files.example.de/")
    hosting = result.to_hosting()
    assert isinstance(hosting, Hosting)
    assert hosting.countries == ("DE",)
    assert hosting.abuse_contact == "abuse@hetzner.example"
    assert hosting.traced_at == NOW
    assert hosting.addresses[0].basis is LocationBasis.REGISTRATION
    assert hosting.addresses[0].source == "iptocc"
    # Round trip through the wire form: what a peer receives is what we traced.
    assert Hosting.model_validate_json(hosting.model_dump_json()) == hosting


async def test_registration_is_not_location(dns_server: ZoneDnsServer, tmp_path: Path) -> None:
    country = write_mmdb(
        tmp_path / "c.mmdb", "GeoLite2-Country", {"52.28.0.0/15": country_record("DE", "US")}
    )
    asn = write_mmdb(
        tmp_path / "a.mmdb", "GeoLite2-ASN", {"52.28.0.0/15": asn_record(16509, "AMAZON-02")}
    )
    geo = GeoChain.from_config(country_mmdb=country, asn_mmdb=asn)
    tracer = make_tracer(dns_server, None, geo)
    try:
        located = await tracer.trace("http://aws.example/")
    finally:
        tracer.close()
    registered = await make_tracer(dns_server, None).trace("http://aws.example/")
    (with_mmdb,) = located.addresses
    assert (with_mmdb.country, with_mmdb.basis, with_mmdb.source, with_mmdb.source_date) == (
        "DE",
        "geolocation",
        "GeoLite2-Country",
        BUILD_DAY,
    )
    assert (with_mmdb.asn, with_mmdb.network_name) == (16509, "AMAZON-02")
    assert not with_mmdb.cdn  # AS16509 is Amazon's hosting too, not a CDN
    (iptocc_only,) = registered.addresses
    assert (iptocc_only.country, iptocc_only.basis) == ("US", "registration")


async def test_several_countries(dns_server: ZoneDnsServer, rdap: RdapClient) -> None:
    result = await make_tracer(dns_server, rdap).trace("http://twocountries.example/")
    assert result.countries == ("DE", "US")
    assert result.ttl == 30


async def test_cdn_by_cname_suffix(
    dns_server: ZoneDnsServer, rdap: RdapClient, rdap_stub: RdapStub
) -> None:
    result = await make_tracer(dns_server, rdap).trace("https://cdn.example/img.png")
    assert result.cnames == ("assets.cdn.example", "d1234abcd.cloudfront.net")
    assert result.cdn
    assert result.cdn_name == "Amazon CloudFront"
    # 3.5.140.x is not in CloudFront's ranges: the alias alone makes these CDN addresses.
    assert all(a.cdn and a.cdn_name == "Amazon CloudFront" for a in result.addresses)
    assert all(a.country is None and a.basis is None for a in result.addresses)
    assert result.countries == ()
    assert result.abuse_contact == "abuse@amazonaws.com"
    assert result.abuse_contact_source == "cdn"
    assert rdap_stub.requests == []  # the CDN's edge registry knows nothing of the origin


async def test_cdn_by_address_range(
    dns_server: ZoneDnsServer, rdap: RdapClient, rdap_stub: RdapStub
) -> None:
    result = await make_tracer(dns_server, rdap).trace("http://cf.example/")
    assert [(a.ip, a.cdn, a.cdn_name, a.country) for a in result.addresses] == [
        ("104.16.0.1", True, "Cloudflare", None),
        ("2606:4700::6810:1", True, "Cloudflare", None),
    ]
    assert result.cdn
    assert result.countries == ()
    assert result.abuse_contact == "abuse@cloudflare.com"
    assert rdap_stub.requests == []
    hosting = result.to_hosting()
    assert hosting.cdn
    assert all(a.cdn and a.country is None for a in hosting.addresses)


async def test_cdn_by_configured_asn(dns_server: ZoneDnsServer, tmp_path: Path) -> None:
    asn = write_mmdb(tmp_path / "a.mmdb", "GeoLite2-ASN", {"88.198.0.0/16": asn_record(64500, "X")})
    tracer = Tracer(
        DnsResolver(dns_server.nameserver),
        GeoChain.from_config(asn_mmdb=asn),
        CdnDetector.default(extra_asns={64500: "ExampleCDN"}),
        None,
        fixed_clock,
    )
    try:
        result = await tracer.trace("http://v4only.example/")
    finally:
        tracer.close()
    (address,) = result.addresses
    assert (address.cdn, address.cdn_name, address.asn, address.country) == (
        True,
        "ExampleCDN",
        64500,
        None,
    )
    assert result.abuse_contact is None  # no abuse desk known for a configured-only CDN


async def test_mixed_cdn_and_origin_asks_rdap_for_the_origin(
    dns_server: ZoneDnsServer, rdap: RdapClient, rdap_stub: RdapStub
) -> None:
    result = await make_tracer(dns_server, rdap).trace("http://mixed.example/")
    assert result.cdn
    assert result.countries == ("DE",)
    assert result.abuse_contact == "abuse@hetzner.example"
    assert rdap_stub.requests == ["/ip/88.198.1.2"]


async def test_non_global_addresses(
    dns_server: ZoneDnsServer, rdap: RdapClient, rdap_stub: RdapStub
) -> None:
    result = await make_tracer(dns_server, rdap).trace("http://private.example/")
    assert len(result.addresses) == 6
    assert all(not a.is_global and a.country is None for a in result.addresses)
    assert result.countries == ()
    assert result.abuse_contact is None
    assert rdap_stub.requests == []
    assert result.to_dict()["addresses"][0]["global"] is False


async def test_idn_host(dns_server: ZoneDnsServer, rdap: RdapClient) -> None:
    result = await make_tracer(dns_server, rdap).trace("http://Bücher.example/")
    assert result.host == "xn--bcher-kva.example"
    assert [a.ip for a in result.addresses] == ["88.198.7.7"]
    assert result.countries == ("DE",)


@pytest.mark.parametrize(
    ("url", "ip"),
    [("http://88.198.0.1/path", "88.198.0.1"), ("https://[2a01:4f8::9]:8443/", "2a01:4f8::9")],
)
async def test_ip_literal_skips_dns(
    dns_server: ZoneDnsServer, rdap: RdapClient, url: str, ip: str
) -> None:
    result = await make_tracer(dns_server, rdap).trace(url)
    assert result.host == ip
    assert [(a.ip, a.country, a.ttl) for a in result.addresses] == [(ip, "DE", None)]
    assert result.ttl is None
    assert result.abuse_contact == "abuse@hetzner.example"
    assert dns_server.queries == []


async def test_dns_failure_fails_the_trace(dns_server: ZoneDnsServer, rdap: RdapClient) -> None:
    with pytest.raises(NoSuchHostError, match=r"^no such host: gone\.example$"):
        await make_tracer(dns_server, rdap).trace("http://gone.example/")


async def test_rdap_failure_is_recorded_not_raised(
    dns_server: ZoneDnsServer, rdap: RdapClient, rdap_stub: RdapStub
) -> None:
    rdap_stub.respond("88.198.1.2", 429, headers={"Retry-After": "60"})
    result = await make_tracer(dns_server, rdap).trace("http://files.example.de/")
    assert result.countries == ("DE",)
    assert result.abuse_contact is None
    assert result.errors == ("RDAP rate limited for 88.198.1.2, retry after 60s",)


async def test_dns_partial_failure_is_recorded(dns_server: ZoneDnsServer) -> None:
    result = await make_tracer(dns_server, None, timeout=0.3).trace("http://dual-broken.example/")
    assert [a.ip for a in result.addresses] == ["88.198.1.4"]
    assert len(result.errors) == 1
    assert result.errors[0].startswith("AAAA lookup failed: DNS timeout")


async def test_without_rdap(dns_server: ZoneDnsServer) -> None:
    result = await make_tracer(dns_server, None).trace("http://files.example.de/")
    assert result.abuse_contact is None
    assert result.abuse_contact_source is None
    assert result.errors == ()


async def test_address_without_country_data_is_reported(dns_server: ZoneDnsServer) -> None:
    tracer = make_tracer(dns_server, None, GeoChain.from_config(registration=False))
    result = await tracer.trace("http://v4only.example/")
    assert result.addresses[0].country is None
    assert result.countries == ()
    assert result.errors == ("no country data for 88.198.1.3",)


async def test_wire_record_keeps_at_most_64_addresses(dns_server: ZoneDnsServer) -> None:
    result = await make_tracer(dns_server, None).trace("http://big.example/")
    assert len(result.addresses) == 100
    assert len(result.to_hosting().addresses) == 64


async def test_clock_must_be_aware(dns_server: ZoneDnsServer) -> None:
    tracer = Tracer(
        DnsResolver(dns_server.nameserver),
        GeoChain.from_config(),
        CdnDetector.default(),
        None,
        lambda: datetime(2025, 1, 1),  # deliberately naive
    )
    with pytest.raises(ValueError, match="aware"):
        await tracer.trace("http://files.example.de/")


async def test_traced_at_is_normalised_to_utc(dns_server: ZoneDnsServer) -> None:
    paris = timezone(timedelta(hours=1))
    tracer = Tracer(
        DnsResolver(dns_server.nameserver),
        GeoChain.from_config(),
        CdnDetector.default(),
        None,
        lambda: datetime(2025, 3, 14, 10, 26, 53, tzinfo=paris),
    )
    result = await tracer.trace("http://files.example.de/")
    assert result.traced_at == NOW
    assert result.traced_at.tzinfo is UTC


async def test_build_tracer_from_config(
    dns_server: ZoneDnsServer,
    session: aiohttp.ClientSession,
    rdap_stub: RdapStub,
    tmp_path: Path,
) -> None:
    feed = tmp_path / "geofeed.csv"
    feed.write_text("2a01:4f8::/32,FI,,,\n", encoding="utf-8")
    tracer = build_tracer(
        clock=fixed_clock,
        session=session,
        dns_server=dns_server.nameserver,
        dns_timeout=2.0,
        geo_overrides=["88.198.1.0/24=NL"],
        geofeeds=[feed],
        cdn_asns=["64500=ExampleCDN"],
        rdap_base=rdap_stub.base_url + "/",
        rdap_timeout=2.0,
    )
    try:
        result = await tracer.trace("http://files.example.de/")
    finally:
        tracer.close()
    assert [(a.country, a.source) for a in result.addresses] == [
        ("NL", "operator-override"),
        ("FI", "geofeed:geofeed.csv"),
    ]
    assert result.countries == ("FI", "NL")
    assert result.abuse_contact == "abuse@hetzner.example"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"geo_overrides": ["nonsense=DE"]}, "not an IP prefix"),
        ({"cdn_asns": ["cloudflare"]}, "not an AS number"),
        ({"dns_server": "resolver.example:53"}, "invalid DNS server"),
        ({"country_mmdb": "/nonexistent/country.mmdb"}, "cannot open mmdb"),
    ],
)
def test_build_tracer_rejects_bad_config(options: dict[str, Any], message: str) -> None:
    # A local DNS server spec by default, so no case depends on the machine's resolv.conf.
    settings: dict[str, Any] = {"dns_server": "127.0.0.1:53", **options}
    with pytest.raises(JurisdictionConfigError, match=message):
        build_tracer(clock=fixed_clock, session=None, **settings)


def test_build_tracer_without_session_has_no_rdap() -> None:
    tracer = build_tracer(clock=fixed_clock, session=None, dns_server="127.0.0.1:53")
    assert tracer.rdap_client is None
    tracer.close()
