"""CDN detection from the shipped data (ranges, CNAME suffixes) and from configured ASNs."""

from __future__ import annotations

import json
from ipaddress import ip_address
from pathlib import Path

import pytest

from node.jurisdiction.cdn import CdnDetector, parse_asn_list
from node.jurisdiction.errors import JurisdictionConfigError


@pytest.fixture(scope="module")
def detector() -> CdnDetector:
    return CdnDetector.default(extra_asns=parse_asn_list(["64500=ExampleCDN", "54113=fastly"]))


@pytest.mark.parametrize(
    ("address", "name", "contact"),
    [
        ("104.16.0.1", "Cloudflare", "abuse@cloudflare.com"),
        ("2606:4700::6810:1", "Cloudflare", "abuse@cloudflare.com"),
        ("151.101.1.1", "Fastly", "abuse@fastly.com"),
        ("2a04:4e42::1", "Fastly", "abuse@fastly.com"),
        ("13.32.0.1", "Amazon CloudFront", "abuse@amazonaws.com"),
        ("2600:9000:2000::1", "Amazon CloudFront", "abuse@amazonaws.com"),
        ("23.32.0.1", "Akamai", "abuse@akamai.com"),
    ],
)
def test_shipped_ranges(detector: CdnDetector, address: str, name: str, contact: str) -> None:
    provider = detector.by_address(ip_address(address))
    assert provider is not None
    assert (provider.name, provider.abuse_contact) == (name, contact)


@pytest.mark.parametrize("address", ["88.198.0.1", "52.28.0.1", "3.5.140.2", "2a01:4f8::1"])
def test_hosting_addresses_are_not_cdn(detector: CdnDetector, address: str) -> None:
    # 52.28.0.1 is Amazon EC2, not CloudFront: only CloudFront's own ranges count.
    assert detector.by_address(ip_address(address)) is None


@pytest.mark.parametrize(
    ("name", "provider"),
    [
        ("d1234abcd.cloudfront.net", "Amazon CloudFront"),
        ("D1234ABCD.CloudFront.NET.", "Amazon CloudFront"),
        ("cloudfront.net", "Amazon CloudFront"),
        ("dualstack.j.sni.global.fastly.net", "Fastly"),
        ("www.example.com.cdn.cloudflare.net", "Cloudflare"),
        ("e1234.a.akamaiedge.net", "Akamai"),
        ("www.example.com.edgekey.net", "Akamai"),
        ("example-abc.z01.azurefd.net", "Azure Front Door"),
        ("xcloudfront.net", None),  # a suffix match is label-wise
        ("cloudfront.net.evil.example", None),
        ("files.example.de", None),
    ],
)
def test_cname_suffixes(detector: CdnDetector, name: str, provider: str | None) -> None:
    found = detector.by_name(name)
    assert (found.name if found else None) == provider


def test_configured_asns(detector: CdnDetector) -> None:
    cloudflare = detector.by_asn(13335)  # shipped with the data
    assert cloudflare is not None
    assert cloudflare.name == "Cloudflare"
    fastly = detector.by_asn(54113)  # configured by name: inherits the known abuse desk
    assert fastly is not None
    assert fastly.abuse_contact == "abuse@fastly.com"
    other = detector.by_asn(64500)  # an unknown CDN: flagged, no contact known
    assert other is not None
    assert (other.name, other.abuse_contact) == ("ExampleCDN", None)
    assert detector.by_asn(16509) is None  # Amazon's main ASN also hosts EC2: not a CDN
    assert detector.by_asn(None) is None


def test_parse_asn_list_forms() -> None:
    assert parse_asn_list(["13335", "AS54113", " as64500 = My CDN ", 20940]) == {
        13335: "AS13335",
        54113: "AS54113",
        64500: "My CDN",
        20940: "AS20940",
    }


@pytest.mark.parametrize("item", ["cloudflare", "AS", "-1", str(2**32)])
def test_parse_asn_list_rejects(item: str) -> None:
    with pytest.raises(JurisdictionConfigError, match="is not an AS number"):
        parse_asn_list([item])


def test_shipped_data_is_well_formed() -> None:
    detector = CdnDetector.default()
    names = {p.name for p in detector.providers}
    assert {"Cloudflare", "Fastly", "Amazon CloudFront", "Akamai"} <= names
    assert all(p.abuse_contact and "@" in p.abuse_contact for p in detector.providers)
    assert detector.source_date is not None


def test_operator_file(tmp_path: Path) -> None:
    path = tmp_path / "cdn.json"
    data = {
        "providers": [
            {
                "name": "TinyCDN",
                "abuse_contact": "abuse@tiny.example",
                "ranges": ["192.0.2.0/24"],
                "cname_suffixes": ["tinycdn.example"],
            }
        ]
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    detector = CdnDetector.from_file(path)
    provider = detector.by_address(ip_address("192.0.2.9"))
    assert provider is not None
    assert provider.name == "TinyCDN"
    assert detector.by_address(ip_address("104.16.0.1")) is None  # replaces, not extends


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read CDN data"),
        ("[]", "must be a JSON object"),
        ("{}", "no 'providers' list"),
        ('{"providers": [{"ranges": ["1.2.3.0/24"]}]}', "invalid CDN entry"),
        ('{"providers": [{"name": "x", "ranges": ["1.2.3.0/33"]}]}', "invalid CDN entry"),
    ],
)
def test_bad_operator_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "cdn.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(JurisdictionConfigError, match=message):
        CdnDetector.from_file(path)
