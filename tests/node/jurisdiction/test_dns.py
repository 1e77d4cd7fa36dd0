"""DnsResolver against a real DNS server on 127.0.0.1; URL host extraction and IDNA rules."""

from __future__ import annotations

import ipaddress
import time

import pytest

from node.jurisdiction.dns import DnsResolver, host_from_url, normalise_host, parse_nameserver
from node.jurisdiction.errors import (
    DnsServerError,
    DnsTimeoutError,
    InvalidUrlError,
    JurisdictionConfigError,
    NoAddressError,
    NoSuchHostError,
)
from tests.support.dns_server import ZoneDnsServer


def resolver(server: ZoneDnsServer, timeout: float = 2.0) -> DnsResolver:
    return DnsResolver(server.nameserver, timeout=timeout)


async def test_resolves_a_and_aaaa_with_ttls(dns_server: ZoneDnsServer) -> None:
    result = await resolver(dns_server).resolve("files.example.de")
    assert result.host == "files.example.de"
    assert [(a.ip, a.version, a.ttl, a.is_global) for a in result.addresses] == [
        ("88.198.1.2", 4, 300, True),
        ("2a01:4f8::2", 6, 120, True),
    ]
    assert result.cnames == ()
    assert result.ttl == 120
    assert result.warnings == ()
    asked = {(name, qtype) for name, qtype, _ in dns_server.queries}
    assert asked == {("files.example.de", "A"), ("files.example.de", "AAAA")}


@pytest.mark.parametrize(
    ("host", "ips"),
    [("v4only.example", ["88.198.1.3"]), ("v6only.example", ["2a01:4f8::3"])],
)
async def test_either_family_may_be_missing(
    dns_server: ZoneDnsServer, host: str, ips: list[str]
) -> None:
    result = await resolver(dns_server).resolve(host)
    assert [a.ip for a in result.addresses] == ips
    assert result.warnings == ()


async def test_records_the_cname_chain_and_its_ttls(dns_server: ZoneDnsServer) -> None:
    result = await resolver(dns_server).resolve("cdn.example")
    assert [(c.name, c.target, c.ttl) for c in result.cnames] == [
        ("cdn.example", "assets.cdn.example", 600),
        ("assets.cdn.example", "d1234abcd.cloudfront.net", 60),
    ]
    assert [a.ip for a in result.addresses] == ["3.5.140.2", "3.5.140.3"]
    assert result.ttl == 20  # the smallest over the chain and the answers


async def test_nxdomain_is_no_such_host(dns_server: ZoneDnsServer) -> None:
    with pytest.raises(NoSuchHostError, match=r"^no such host: gone\.example$") as caught:
        await resolver(dns_server).resolve("gone.example")
    assert caught.value.host == "gone.example"
    assert caught.value.code == "dns_no_such_host"


async def test_unknown_name_and_dangling_alias_are_no_such_host(
    dns_server: ZoneDnsServer,
) -> None:
    with pytest.raises(NoSuchHostError):
        await resolver(dns_server).resolve("never-registered.example")
    with pytest.raises(NoSuchHostError):
        await resolver(dns_server).resolve("gone-alias.example")


async def test_silent_server_is_a_dns_timeout(dns_server: ZoneDnsServer) -> None:
    started = time.monotonic()
    with pytest.raises(DnsTimeoutError, match=r"^DNS timeout: no answer for slow\.example"):
        await resolver(dns_server, timeout=0.3).resolve("slow.example")
    assert time.monotonic() - started < 3


async def test_one_family_timing_out_keeps_the_other_and_warns(
    dns_server: ZoneDnsServer,
) -> None:
    result = await resolver(dns_server, timeout=0.3).resolve("dual-broken.example")
    assert [a.ip for a in result.addresses] == ["88.198.1.4"]
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("AAAA lookup failed: DNS timeout")


async def test_servfail_is_a_server_error(dns_server: ZoneDnsServer) -> None:
    with pytest.raises(DnsServerError, match="SERVFAIL"):
        await resolver(dns_server).resolve("broken.example")


async def test_name_without_addresses(dns_server: ZoneDnsServer) -> None:
    with pytest.raises(NoAddressError, match=r"^no address: notaddress\.example has no A or AAAA"):
        await resolver(dns_server).resolve("notaddress.example")


async def test_non_global_addresses_are_flagged(dns_server: ZoneDnsServer) -> None:
    result = await resolver(dns_server).resolve("private.example")
    flags = {a.ip: a.is_global for a in result.addresses}
    assert flags == {
        "10.0.0.5": False,
        "127.0.0.1": False,
        "169.254.1.1": False,
        "240.0.0.1": False,
        "fe80::1": False,
        "::1": False,
    }


async def test_large_answer_is_truncated_then_fetched_over_tcp(dns_server: ZoneDnsServer) -> None:
    result = await resolver(dns_server).resolve("big.example")
    assert len(result.addresses) == 100
    transports = {t for name, qtype, t in dns_server.queries if name == "big.example"}
    assert transports == {"udp", "tcp"}


async def test_unicode_host_is_resolved_by_its_a_label(dns_server: ZoneDnsServer) -> None:
    host = host_from_url("https://BÜCHER.example/katalog")
    assert isinstance(host, str)
    assert host == "xn--bcher-kva.example"
    result = await resolver(dns_server).resolve(host)
    assert [a.ip for a in result.addresses] == ["88.198.7.7"]


async def test_unreachable_server_is_a_timeout() -> None:
    # A port nobody listens on: UDP gets no answer (or an ICMP refusal); both end the lookup.
    with ZoneDnsServer({}) as server:
        dead = server.nameserver
    with pytest.raises((DnsTimeoutError, DnsServerError)):
        await DnsResolver(dead, timeout=0.3).resolve("files.example.de")


def test_timeout_must_be_positive() -> None:
    with pytest.raises(JurisdictionConfigError, match="positive"):
        DnsResolver("127.0.0.1:53", timeout=0)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("[::1]:5300", ("::1", 5300)),
        ("[::1]", ("::1", 53)),
        ("::1", ("::1", 53)),
    ],
)
def test_parse_nameserver(spec: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(spec) == expected


@pytest.mark.parametrize("spec", ["dns.example:53", "127.0.0.1:0", "127.0.0.1:x", "[::1]x", ""])
def test_parse_nameserver_rejects(spec: str) -> None:
    with pytest.raises(JurisdictionConfigError, match="DNS server"):
        parse_nameserver(spec)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://Files.Example.DE/a/b?c#d", "files.example.de"),
        ("https://user:secret@files.example.de:8443/", "files.example.de"),
        ("files.example.de/path", "files.example.de"),
        ("//files.example.de/path", "files.example.de"),
        ("http://files.example.de./", "files.example.de"),
        ("http://fi%6Ces.example.de/", "files.example.de"),
        ("http://files.exa\tmple.de/", "files.example.de"),
        # Browsers read "\" as "/" in http URLs: the request goes to a.example, not b.example.
        ("http://a.example\\@b.example/", "a.example"),
        ("http://bücher.example/", "xn--bcher-kva.example"),
        ("http://faß.de/", "xn--fa-hia.de"),  # IDNA 2008: ß is kept, not mapped to "ss"
        ("http://例え.テスト/", "xn--r8jz45g.xn--zckzah"),
        ("http://☃.net/", "xn--n3h.net"),  # IDNA 2008 refuses symbols; IDNA 2003 fallback
        ("http://_dmarc.example/", "_dmarc.example"),
        ("http://1.example/", "1.example"),
    ],
)
def test_host_from_url_names(url: str, expected: str) -> None:
    assert host_from_url(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://88.198.0.1/x", "88.198.0.1"),
        ("https://[2a01:4f8::1]:8443/", "2a01:4f8::1"),
        ("http://[2A01:4F8::1]/", "2a01:4f8::1"),
        # WHATWG IPv4 forms: what the browser would connect to.
        ("http://1489371137/", "88.198.0.1"),
        ("http://0x58.0xc6.0.1/", "88.198.0.1"),
        ("http://0130.0306.0.1/", "88.198.0.1"),
        ("http://88.198.1/", "88.198.0.1"),
        ("http://1.2.3.0x/", "1.2.3.0"),  # an empty hex part is 0
        # Full-width digits (UTS 46 maps them to ASCII) still spell an address.
        ("http://\uff18\uff18.\uff11\uff19\uff18.\uff10.\uff11/", "88.198.0.1"),
    ],
)
def test_host_from_url_ip_literals(url: str, expected: str) -> None:
    host = host_from_url(url)
    assert host == ipaddress.ip_address(expected)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "http:///path",
        "http://[::1/",
        "http://a..b/",
        "http://exa mple.com/",
        "http://256.256.256.256/",
        "http://1.2.3.09/",  # ends in a number, so IPv4, and 09 is not octal
        "http://" + "a" * 64 + ".example/",
    ],
)
def test_host_from_url_rejects(url: str) -> None:
    with pytest.raises(InvalidUrlError):
        host_from_url(url)


def test_normalise_host_is_idempotent_on_a_labels() -> None:
    assert normalise_host("xn--bcher-kva.example") == "xn--bcher-kva.example"
