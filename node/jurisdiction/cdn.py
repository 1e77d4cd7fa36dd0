"""Recognise CDN-fronted hosts by published address ranges, CNAME suffixes and configured ASNs."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from node.contacts import abuse_contact
from node.jurisdiction.errors import JurisdictionConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DATA_PACKAGE = "node.jurisdiction"
DATA_FILE = "data/cdn.json"


@dataclass(frozen=True)
class CdnProvider:
    """A CDN: its edge addresses locate nothing; its abuse desk knows the origin."""

    name: str
    abuse_contact: str | None
    ranges: tuple[IPNetwork, ...] = ()
    cname_suffixes: tuple[str, ...] = ()
    asns: frozenset[int] = field(default_factory=frozenset)


def _suffix(value: str) -> str:
    return value.strip().strip(".").lower()


def _provider(entry: Mapping[str, Any], where: str) -> CdnProvider:
    try:
        name = str(entry["name"])
        contact = entry.get("abuse_contact")
        ranges = tuple(ipaddress.ip_network(str(r), strict=False) for r in entry.get("ranges", ()))
        suffixes = tuple(_suffix(str(s)) for s in entry.get("cname_suffixes", ()))
        asns = frozenset(int(a) for a in entry.get("asns", ()))
    except (KeyError, TypeError, ValueError) as exc:
        raise JurisdictionConfigError(f"{where}: invalid CDN entry: {exc}") from None
    address = abuse_contact(contact) if contact else None
    if contact and address is None:
        raise JurisdictionConfigError(f"{where}: {name}: abuse_contact is not one e-mail address")
    return CdnProvider(
        name=name,
        abuse_contact=address,
        ranges=ranges,
        cname_suffixes=suffixes,
        asns=asns,
    )


def parse_asn_list(items: Iterable[str | int]) -> dict[int, str]:
    """Config ASN list: `13335`, `AS13335` or `13335=Cloudflare` → {asn: provider name}."""
    result: dict[int, str] = {}
    for item in items:
        text = str(item).strip()
        number, _, name = text.partition("=")
        digits = number.strip().upper().removeprefix("AS")
        if not digits.isdigit() or not 0 <= int(digits) < 2**32:
            raise JurisdictionConfigError(f"CDN ASN list: {text!r} is not an AS number")
        result[int(digits)] = name.strip() or f"AS{int(digits)}"
    return result


class CdnDetector:
    """Answers "is this a CDN?" for an address, a CNAME target or an ASN."""

    def __init__(
        self,
        providers: Iterable[CdnProvider],
        *,
        extra_asns: Mapping[int, str] | None = None,
        source_date: str | None = None,
    ) -> None:
        self.providers = tuple(providers)
        self.source_date = source_date
        by_name = {p.name.lower(): p for p in self.providers}
        self._asns: dict[int, CdnProvider] = {}
        for provider in self.providers:
            for asn in provider.asns:
                self._asns[asn] = provider
        for asn, name in (extra_asns or {}).items():
            # A configured ASN naming a known CDN inherits its abuse desk.
            self._asns[asn] = by_name.get(name.lower()) or CdnProvider(name, None)
        self._ranges = sorted(
            ((net, p) for p in self.providers for net in p.ranges),
            key=lambda item: item[0].prefixlen,
            reverse=True,
        )

    @classmethod
    def from_data(
        cls,
        data: Mapping[str, Any],
        *,
        extra_asns: Mapping[int, str] | None = None,
        where: str = "CDN data",
    ) -> CdnDetector:
        entries = data.get("providers")
        if not isinstance(entries, list):
            raise JurisdictionConfigError(f"{where}: no 'providers' list")
        providers = [_provider(entry, where) for entry in entries]
        compiled = data.get("compiled")
        return cls(
            providers, extra_asns=extra_asns, source_date=str(compiled) if compiled else None
        )

    @classmethod
    def default(cls, *, extra_asns: Mapping[int, str] | None = None) -> CdnDetector:
        """The ranges and suffixes shipped with the node: works with no configuration."""
        text = resources.files(DATA_PACKAGE).joinpath(DATA_FILE).read_text(encoding="utf-8")
        return cls.from_data(json.loads(text), extra_asns=extra_asns, where=DATA_FILE)

    @classmethod
    def from_file(
        cls, path: str | Path, *, extra_asns: Mapping[int, str] | None = None
    ) -> CdnDetector:
        """An operator's own CDN list, same JSON layout as the shipped one."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise JurisdictionConfigError(f"cannot read CDN data {path}: {exc}") from None
        if not isinstance(data, dict):
            raise JurisdictionConfigError(f"{path}: CDN data must be a JSON object")
        return cls.from_data(data, extra_asns=extra_asns, where=str(path))

    def by_address(self, ip: IPAddress) -> CdnProvider | None:
        for network, provider in self._ranges:
            if network.version == ip.version and ip in network:
                return provider
        return None

    def by_name(self, name: str) -> CdnProvider | None:
        """A host or CNAME target equal to, or under, a CDN suffix (label-wise: "xfastly.net"
        is not Fastly)."""
        host = _suffix(name)
        for provider in self.providers:
            for suffix in provider.cname_suffixes:
                if host == suffix or host.endswith("." + suffix):
                    return provider
        return None

    def by_asn(self, asn: int | None) -> CdnProvider | None:
        return None if asn is None else self._asns.get(asn)
