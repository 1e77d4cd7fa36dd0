"""Trace where a URL is hosted: DNS → each IP's country, ASN, CDN flag → abuse contact (Tracer)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from node.jurisdiction.cdn import CdnDetector, CdnProvider, parse_asn_list
from node.jurisdiction.dns import (
    DEFAULT_DNS_TIMEOUT,
    DnsResolver,
    Resolution,
    Resolver,
    address_info,
    host_from_url,
)
from node.jurisdiction.errors import RdapError
from node.jurisdiction.geo import Basis, GeoChain
from node.jurisdiction.rdap import DEFAULT_RDAP_BASE, DEFAULT_RDAP_TIMEOUT, RdapClient
from protocol.records import Hosting, HostingAddress, LocationBasis

Clock = Callable[[], datetime]

# Limits of the wire model (protocol.records): a trace keeps everything, the record what fits.
_WIRE_MAX_ADDRESSES = 64
_WIRE_MAX_TEXT = 256


@dataclass(frozen=True)
class TracedAddress:
    """One address of the host and what is known about it.

    A CDN address has no country: an anycast edge says nothing about where the content is.
    A non-global address (private, loopback, reserved…) has none either: it locates nothing
    on the internet, and usually means the name was pointed somewhere to mislead or hide.
    """

    ip: str
    country: str | None = None
    basis: Basis | None = None
    source: str | None = None
    source_date: str | None = None
    asn: int | None = None
    network_name: str | None = None
    cdn: bool = False
    cdn_name: str | None = None
    is_global: bool = True
    ttl: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ip": self.ip,
            "country": self.country,
            "basis": self.basis,
            "source": self.source,
            "source_date": self.source_date,
            "asn": self.asn,
            "network_name": self.network_name,
            "cdn": self.cdn,
            "cdn_name": self.cdn_name,
            "global": self.is_global,
            "ttl": self.ttl,
        }

    def to_hosting_address(self) -> HostingAddress:
        return HostingAddress(
            ip=self.ip,
            country=self.country,
            basis=LocationBasis(self.basis) if self.basis else None,
            source=_short(self.source),
            source_date=_short(self.source_date),
            asn=self.asn,
            network_name=_short(self.network_name),
            cdn=self.cdn,
        )


@dataclass(frozen=True)
class TraceResult:
    """The evidence of one trace, as of `traced_at`."""

    url: str
    host: str
    addresses: tuple[TracedAddress, ...]
    countries: tuple[str, ...]
    cnames: tuple[str, ...]
    ttl: int | None
    abuse_contact: str | None
    abuse_contact_source: str | None  # "rdap" or "cdn"
    cdn: bool
    cdn_name: str | None
    traced_at: datetime
    errors: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (str, int, bool, None, lists and dicts only)."""
        return {
            "url": self.url,
            "host": self.host,
            "addresses": [a.to_dict() for a in self.addresses],
            "countries": list(self.countries),
            "cnames": list(self.cnames),
            "ttl": self.ttl,
            "abuse_contact": self.abuse_contact,
            "abuse_contact_source": self.abuse_contact_source,
            "cdn": self.cdn,
            "cdn_name": self.cdn_name,
            "traced_at": self.traced_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "errors": list(self.errors),
        }

    def to_hosting(self) -> Hosting:
        """The hosting evidence a report carries (protocol.records.Hosting)."""
        return Hosting(
            addresses=[a.to_hosting_address() for a in self.addresses[:_WIRE_MAX_ADDRESSES]],
            countries=list(self.countries[:_WIRE_MAX_ADDRESSES]),
            abuse_contact=_short(self.abuse_contact),
            cdn=self.cdn,
            traced_at=self.traced_at,
        )


def _short(value: str | None) -> str | None:
    return None if value is None else value[:_WIRE_MAX_TEXT]


class Tracer:
    """Orchestrates one trace. Never connects to the reported host: DNS, local IP data and RDAP
    only. DNS failures (no such host, timeout) raise DnsError; every later failure (a geo source,
    RDAP) is recorded in `errors` and the trace still returns."""

    def __init__(
        self,
        resolver: Resolver,
        geo_chain: GeoChain,
        cdn_detector: CdnDetector,
        rdap_client: RdapClient | None,
        clock: Clock,
    ) -> None:
        self.resolver = resolver
        self.geo_chain = geo_chain
        self.cdn_detector = cdn_detector
        self.rdap_client = rdap_client
        self._clock = clock

    def close(self) -> None:
        """Release the geo chain's open databases (the aiohttp session is the caller's)."""
        self.geo_chain.close()

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the trace clock must return an aware datetime")
        return now.astimezone(UTC)

    async def trace(self, url: str) -> TraceResult:
        traced_at = self._now()
        host = host_from_url(url)
        if isinstance(host, str):
            resolution = await self.resolver.resolve(host)
            host_name = host
        else:
            # An IP-literal URL: nothing to resolve, the address is the evidence.
            resolution = Resolution(host=str(host), addresses=(address_info(host),))
            host_name = str(host)
        errors: list[str] = list(resolution.warnings)

        # A CNAME into a CDN (or the host being a CDN name itself) fronts every address.
        names = (host_name, *(link.target for link in resolution.cnames))
        fronting = next((p for p in map(self.cdn_detector.by_name, names) if p is not None), None)

        described = [
            self._describe(resolved.ip, resolved.ttl, resolved.is_global, fronting, errors)
            for resolved in resolution.addresses
        ]
        addresses = [address for address, _ in described]
        cdn_provider = fronting or next((p for _, p in described if p is not None), None)
        abuse_contact, abuse_source = None, None
        origin = next((a for a in addresses if a.is_global and not a.cdn), None)
        if origin is not None and self.rdap_client is not None:
            try:
                network = await self.rdap_client.lookup(origin.ip)
            except RdapError as exc:
                errors.append(str(exc))
            else:
                if network.abuse_email:
                    abuse_contact, abuse_source = network.abuse_email, "rdap"
                if origin.network_name is None and network.network_name:
                    index = addresses.index(origin)
                    addresses[index] = replace(origin, network_name=network.network_name)
        if abuse_contact is None and cdn_provider is not None and cdn_provider.abuse_contact:
            # The CDN's abuse desk is the one who can name (or act on) the origin.
            abuse_contact, abuse_source = cdn_provider.abuse_contact, "cdn"

        countries = sorted(
            {a.country for a in addresses if a.country and a.is_global and not a.cdn}
        )
        return TraceResult(
            url=url,
            host=host_name,
            addresses=tuple(addresses),
            countries=tuple(countries),
            cnames=tuple(link.target for link in resolution.cnames),
            ttl=resolution.ttl,
            abuse_contact=abuse_contact,
            abuse_contact_source=abuse_source,
            cdn=cdn_provider is not None or any(a.cdn for a in addresses),
            cdn_name=cdn_provider.name if cdn_provider else None,
            traced_at=traced_at,
            errors=tuple(errors),
        )

    async def abuse_contact_for(self, ips: list[str]) -> str | None:
        """The abuse desk RDAP names for the first of these addresses that has one.

        For a case received from a peer without a contact: we ask RDAP ourselves, as for our
        own cases, instead of sending no notice. Never contacts the reported host.
        """
        if self.rdap_client is None:
            return None
        for ip in ips:
            try:
                network = await self.rdap_client.lookup(ip)
            except RdapError:
                continue
            if network.abuse_email:
                return network.abuse_email
        return None

    def _describe(
        self,
        ip_text: str,
        ttl: int | None,
        is_global: bool,
        fronting: CdnProvider | None,
        errors: list[str],
    ) -> tuple[TracedAddress, CdnProvider | None]:
        ip = ipaddress.ip_address(ip_text)
        if not is_global:
            return TracedAddress(ip=str(ip), is_global=False, ttl=ttl), None
        asn_answer, asn_errors = self.geo_chain.asn(ip)
        errors.extend(asn_errors)
        asn = asn_answer.asn if asn_answer else None
        network_name = asn_answer.network_name if asn_answer else None
        provider = self.cdn_detector.by_address(ip) or self.cdn_detector.by_asn(asn) or fronting
        if provider is not None:
            cdn_address = TracedAddress(
                ip=str(ip),
                asn=asn,
                network_name=network_name,
                cdn=True,
                cdn_name=provider.name,
                ttl=ttl,
            )
            return cdn_address, provider
        answer, geo_errors = self.geo_chain.country(ip)
        errors.extend(geo_errors)
        if answer is None:
            errors.append(f"no country data for {ip}")
            return TracedAddress(ip=str(ip), asn=asn, network_name=network_name, ttl=ttl), None
        located = TracedAddress(
            ip=str(ip),
            country=answer.country,
            basis=answer.basis,
            source=answer.source,
            source_date=answer.source_date,
            asn=asn,
            network_name=network_name,
            ttl=ttl,
        )
        return located, None


def build_tracer(
    *,
    clock: Clock,
    session: aiohttp.ClientSession | None,
    dns_server: str | None = None,
    dns_timeout: float = DEFAULT_DNS_TIMEOUT,
    geo_overrides: Iterable[str] = (),
    geofeeds: Iterable[str | Path] = (),
    country_mmdb: str | Path | None = None,
    asn_mmdb: str | Path | None = None,
    cdn_asns: Iterable[str | int] = (),
    cdn_data: str | Path | None = None,
    rdap_base: str | None = DEFAULT_RDAP_BASE,
    rdap_timeout: float = DEFAULT_RDAP_TIMEOUT,
) -> Tracer:
    """A Tracer from plain config values. RDAP is off when `session` or `rdap_base` is None.

    Raises JurisdictionConfigError for an unusable value (bad override line, unreadable mmdb,
    malformed `dns_server`). Call `Tracer.close()` at shutdown.
    """
    extra_asns = parse_asn_list(cdn_asns)
    detector = (
        CdnDetector.from_file(cdn_data, extra_asns=extra_asns)
        if cdn_data is not None
        else CdnDetector.default(extra_asns=extra_asns)
    )
    resolver = DnsResolver(dns_server, timeout=dns_timeout)
    geo = GeoChain.from_config(
        overrides=geo_overrides,
        geofeeds=geofeeds,
        country_mmdb=country_mmdb,
        asn_mmdb=asn_mmdb,
    )
    rdap = (
        RdapClient(session, rdap_base, timeout=rdap_timeout)
        if session is not None and rdap_base
        else None
    )
    return Tracer(resolver, geo, detector, rdap, clock)
