"""The IP → country chain: overrides/geofeeds, real mmdb files, iptocc; order and basis tagging."""

from __future__ import annotations

import os
import re
from ipaddress import ip_address
from pathlib import Path

import pytest

from node.jurisdiction.errors import GeoDataError, JurisdictionConfigError
from node.jurisdiction.geo import (
    GeoAnswer,
    GeoChain,
    IPAddress,
    IptoccProvider,
    MmdbAsnProvider,
    MmdbCountryProvider,
    OverrideProvider,
    parse_overrides,
)
from tests.node.jurisdiction.mmdb_files import (
    BUILD_DAY,
    asn_record,
    country_record,
    write_mmdb,
)


@pytest.fixture
def country_mmdb(tmp_path: Path) -> Path:
    return write_mmdb(
        tmp_path / "country.mmdb",
        "GeoLite2-Country",
        {
            # AWS Frankfurt: located in DE, registered in the US.
            "52.28.0.0/15": country_record("DE", registered="US"),
            "2a05:d014::/32": country_record("DE", registered="US"),
            "88.198.0.0/16": country_record("DE", registered="DE"),
            # A record with only a registered country: not a geolocation answer.
            "20.50.0.0/16": {"registered_country": {"iso_code": "US"}},
        },
    )


@pytest.fixture
def asn_mmdb(tmp_path: Path) -> Path:
    return write_mmdb(
        tmp_path / "asn.mmdb",
        "GeoLite2-ASN",
        {
            "88.198.0.0/16": asn_record(24940, "Hetzner Online GmbH"),
            "52.28.0.0/15": asn_record(16509, "AMAZON-02"),
            "104.16.0.0/13": asn_record(13335, "CLOUDFLARENET"),
        },
    )


def ip(text: str) -> IPAddress:
    return ip_address(text)


# --- iptocc ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "country"),
    [
        ("88.198.0.1", "DE"),  # Hetzner
        ("2a01:4f8::1", "DE"),
        ("52.28.0.1", "US"),  # AWS Frankfurt: registration is not location
        ("20.50.0.1", "US"),  # Azure NL, registered US
        ("151.101.1.1", "US"),  # Fastly anycast
        ("104.16.0.1", "US"),  # Cloudflare anycast
    ],
)
def test_iptocc_gives_registration_country(address: str, country: str) -> None:
    answer = IptoccProvider().country(ip(address))
    assert answer is not None
    assert (answer.country, answer.basis, answer.source) == (country, "registration", "iptocc")


def test_iptocc_source_date_is_a_day_or_a_version() -> None:
    date = IptoccProvider().source_date
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}|iptocc \S+", date), date


@pytest.mark.parametrize("address", ["10.0.0.1", "127.0.0.1", "::1", "fe80::1"])
def test_iptocc_has_nothing_for_non_global(address: str) -> None:
    assert IptoccProvider().country(ip(address)) is None


# --- overrides and geofeeds ----------------------------------------------------------------


def test_parse_overrides_accepts_three_forms_and_geofeed_lines() -> None:
    entries = parse_overrides(
        [
            "# operator list",
            "",
            "192.0.2.0/24=fr",
            "198.51.100.0/24 NL   # comment",
            "2001:db8::/32,DE,DE-BE,Berlin,",
            "203.0.113.0/24,,,,",  # RFC 8805: empty country, do not geolocate
        ]
    )
    assert [(str(n), c) for n, c in entries] == [
        ("192.0.2.0/24", "FR"),
        ("198.51.100.0/24", "NL"),
        ("2001:db8::/32", "DE"),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("192.0.2.0/33=FR", r"override line 1: '192.0.2.0/33' is not an IP prefix"),
        ("192.0.2.0/24=FRA", r"override line 1: 'FRA' is not an ISO 3166 alpha-2 code"),
        ("not-a-prefix,DE,,,", r"override line 1: 'not-a-prefix' is not an IP prefix"),
    ],
)
def test_parse_overrides_names_the_bad_line(line: str, message: str) -> None:
    with pytest.raises(JurisdictionConfigError, match=message):
        parse_overrides([line])


def test_override_longest_prefix_wins() -> None:
    provider = OverrideProvider.from_lines(["88.0.0.0/8=US", "88.198.0.0/16=FI", "2a01::/16=SE"])
    assert provider.country(ip("88.198.0.1")) == GeoAnswer(
        "FI", "geolocation", "operator-override", None
    )
    answer = provider.country(ip("88.1.0.1"))
    assert answer is not None
    assert answer.country == "US"
    answer = provider.country(ip("2a01:4f8::1"))
    assert answer is not None
    assert answer.country == "SE"
    assert provider.country(ip("52.28.0.1")) is None
    assert len(provider) == 3


def test_geofeed_file(tmp_path: Path) -> None:
    feed = tmp_path / "geofeed.csv"
    feed.write_text("# RFC 8805\n88.198.0.0/16,FI,FI-18,Helsinki,\n", encoding="utf-8")
    os.utime(feed, (1700000000, 1700000000))
    provider = OverrideProvider.from_geofeed(feed)
    answer = provider.country(ip("88.198.0.1"))
    assert answer == GeoAnswer("FI", "geolocation", "geofeed:geofeed.csv", "2023-11-14")


def test_missing_geofeed_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(JurisdictionConfigError, match="cannot read geofeed"):
        OverrideProvider.from_geofeed(tmp_path / "absent.csv")


# --- mmdb --------------------------------------------------------------------------------------


def test_mmdb_country_is_geolocation_with_build_date(country_mmdb: Path) -> None:
    provider = MmdbCountryProvider.open(country_mmdb)
    try:
        assert provider.country(ip("52.28.0.1")) == GeoAnswer(
            "DE", "geolocation", "GeoLite2-Country", BUILD_DAY
        )
        v6 = provider.country(ip("2a05:d014::1"))
        assert v6 is not None
        assert v6.country == "DE"
        assert provider.country(ip("151.101.1.1")) is None  # not in the file
        assert provider.country(ip("20.50.0.1")) is None  # registered_country only
    finally:
        provider.close()


def test_mmdb_asn(asn_mmdb: Path) -> None:
    provider = MmdbAsnProvider.open(asn_mmdb)
    try:
        answer = provider.asn(ip("88.198.0.1"))
        assert answer is not None
        assert (answer.asn, answer.network_name, answer.source, answer.source_date) == (
            24940,
            "Hetzner Online GmbH",
            "GeoLite2-ASN",
            BUILD_DAY,
        )
        assert provider.asn(ip("151.101.1.1")) is None
    finally:
        provider.close()


def test_unreadable_mmdb_is_a_config_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"this is not a MaxMind database" * 10)
    with pytest.raises(JurisdictionConfigError, match="cannot open mmdb"):
        MmdbCountryProvider.open(junk)
    with pytest.raises(JurisdictionConfigError, match="cannot open mmdb"):
        MmdbAsnProvider.open(tmp_path / "absent.mmdb")


# --- the chain ---------------------------------------------------------------------------------


def test_chain_order_override_then_mmdb_then_iptocc(country_mmdb: Path, asn_mmdb: Path) -> None:
    with GeoChain.from_config(
        overrides=["88.198.0.0/16=FI"], country_mmdb=country_mmdb, asn_mmdb=asn_mmdb
    ) as chain:
        by_override, _ = chain.country(ip("88.198.0.1"))  # in all three sources
        by_mmdb, _ = chain.country(ip("52.28.0.1"))  # in mmdb and iptocc
        by_iptocc, _ = chain.country(ip("151.101.1.1"))  # in iptocc only
        nothing, errors = chain.country(ip("10.0.0.1"))
        asn, _ = chain.asn(ip("104.16.0.1"))
    assert by_override == GeoAnswer("FI", "geolocation", "operator-override", None)
    assert by_mmdb == GeoAnswer("DE", "geolocation", "GeoLite2-Country", BUILD_DAY)
    assert by_iptocc is not None
    assert (by_iptocc.country, by_iptocc.basis, by_iptocc.source) == (
        "US",
        "registration",
        "iptocc",
    )
    assert nothing is None
    assert errors == []
    assert asn is not None
    assert asn.asn == 13335


def test_chain_without_registration_or_asn_source() -> None:
    chain = GeoChain.from_config(registration=False)
    assert chain.country(ip("88.198.0.1")) == (None, [])
    assert chain.asn(ip("88.198.0.1")) == (None, [])


def test_failing_provider_is_reported_and_skipped() -> None:
    class Broken:
        name = "broken"

        def country(self, ip: IPAddress) -> GeoAnswer | None:
            raise GeoDataError(f"broken: lookup of {ip} failed")

    chain = GeoChain([Broken(), IptoccProvider()])
    answer, errors = chain.country(ip("88.198.0.1"))
    assert answer is not None
    assert answer.country == "DE"
    assert errors == ["broken: lookup of 88.198.0.1 failed"]


def test_from_config_closes_what_it_opened_when_a_later_file_fails(
    country_mmdb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []
    original = MmdbCountryProvider.close

    def spy(self: MmdbCountryProvider) -> None:
        closed.append(self.name)
        original(self)

    monkeypatch.setattr(MmdbCountryProvider, "close", spy)
    with pytest.raises(JurisdictionConfigError):
        GeoChain.from_config(country_mmdb=country_mmdb, asn_mmdb=tmp_path / "absent.mmdb")
    assert closed == ["GeoLite2-Country"]
