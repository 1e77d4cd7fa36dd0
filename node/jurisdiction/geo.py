"""IP → country through a provider chain (overrides, mmdb, iptocc); answers carry their basis."""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol

import iptocc
import maxminddb
import maxminddb.errors

from node.jurisdiction.errors import GeoDataError, JurisdictionConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Basis = Literal["geolocation", "registration"]

GEOLOCATION: Basis = "geolocation"
REGISTRATION: Basis = "registration"
_COUNTRY = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True)
class GeoAnswer:
    """A country for an address, and on what it rests: where the server is (geolocation) or
    where the block's holder is registered (registration) — they differ (AWS Frankfurt is US)."""

    country: str
    basis: Basis
    source: str
    source_date: str | None


@dataclass(frozen=True)
class AsnAnswer:
    asn: int | None
    network_name: str | None
    source: str
    source_date: str | None


class GeoProvider(Protocol):
    """One link of the chain: a country for the address, or None to let the next one answer."""

    name: str

    def country(self, ip: IPAddress) -> GeoAnswer | None: ...


class AsnProvider(Protocol):
    def asn(self, ip: IPAddress) -> AsnAnswer | None: ...


# --- operator overrides and RFC 8805 geofeeds ------------------------------------------------


def _country_code(value: str, where: str) -> str:
    code = value.strip().upper()
    if not _COUNTRY.match(code):
        raise JurisdictionConfigError(f"{where}: {value!r} is not an ISO 3166 alpha-2 code")
    return code


def _network(value: str, where: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise JurisdictionConfigError(f"{where}: {value!r} is not an IP prefix") from None


def parse_overrides(lines: Iterable[str], origin: str = "override") -> list[tuple[IPNetwork, str]]:
    """Operator overrides: `CIDR=CC`, `CIDR CC` or RFC 8805 geofeed lines `prefix,CC,region,city,`.

    Blank lines and `#` comments are skipped. A geofeed line with an empty country says the
    prefix must not be geolocated: it is skipped so the next provider answers.
    """
    entries: list[tuple[IPNetwork, str]] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{origin} line {number}"
        if "," in line:
            fields = line.split(",")
            prefix, country = fields[0], fields[1] if len(fields) > 1 else ""
        elif "=" in line:
            prefix, _, country = line.partition("=")
        else:
            prefix, _, country = line.partition(" ")
        network = _network(prefix, where)
        if not country.strip():
            continue
        entries.append((network, _country_code(country, where)))
    return entries


class OverrideProvider:
    """Operator-declared prefixes → country (basis geolocation: the operator knows where it is).

    The longest matching prefix wins, as in routing and in RFC 8805 feeds.
    """

    def __init__(
        self,
        entries: Iterable[tuple[IPNetwork | str, str]],
        *,
        name: str = "operator-override",
        source_date: str | None = None,
    ) -> None:
        self.name = name
        self.source_date = source_date
        parsed = [
            (
                net if not isinstance(net, str) else _network(net, name),
                _country_code(cc, name),
            )
            for net, cc in entries
        ]
        self._entries = sorted(parsed, key=lambda e: e[0].prefixlen, reverse=True)

    @classmethod
    def from_lines(
        cls,
        lines: Iterable[str],
        *,
        name: str = "operator-override",
        source_date: str | None = None,
    ) -> OverrideProvider:
        return cls(parse_overrides(lines, name), name=name, source_date=source_date)

    @classmethod
    def from_geofeed(cls, path: str | Path, *, source_date: str | None = None) -> OverrideProvider:
        """An RFC 8805 CSV file; its date defaults to the file's modification day."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
            stamp = source_date or _day(file.stat().st_mtime)
        except OSError as exc:
            raise JurisdictionConfigError(f"cannot read geofeed {file}: {exc.strerror}") from None
        return cls.from_lines(text.splitlines(), name=f"geofeed:{file.name}", source_date=stamp)

    def __len__(self) -> int:
        return len(self._entries)

    def country(self, ip: IPAddress) -> GeoAnswer | None:
        for network, country in self._entries:
            if network.version == ip.version and ip in network:
                return GeoAnswer(country, GEOLOCATION, self.name, self.source_date)
        return None


# --- MaxMind-format databases ------------------------------------------------------------------


class MmdbMetadata(Protocol):
    @property
    def build_epoch(self) -> int: ...

    @property
    def database_type(self) -> str: ...


class MmdbReader(Protocol):
    """The part of `maxminddb.Reader` used here (lets tests and other readers stand in)."""

    def get(self, ip_address: str) -> object: ...

    def metadata(self) -> MmdbMetadata: ...

    def close(self) -> None: ...


def open_mmdb(path: str | Path) -> MmdbReader:
    try:
        return maxminddb.open_database(str(path))
    except (OSError, ValueError, maxminddb.errors.InvalidDatabaseError) as exc:
        raise JurisdictionConfigError(f"cannot open mmdb {path}: {exc}") from None


def _day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")


class _MmdbBase:
    def __init__(self, reader: MmdbReader, name: str | None = None) -> None:
        self._reader = reader
        meta = reader.metadata()
        self.name = name or meta.database_type or "mmdb"
        self.source_date = _day(meta.build_epoch)

    def _record(self, ip: IPAddress) -> dict[str, object] | None:
        try:
            record = self._reader.get(str(ip))
        except (ValueError, maxminddb.errors.InvalidDatabaseError) as exc:
            raise GeoDataError(f"{self.name}: lookup of {ip} failed: {exc}") from None
        return record if isinstance(record, dict) else None

    def close(self) -> None:
        self._reader.close()


class MmdbCountryProvider(_MmdbBase):
    """GeoIP2/GeoLite2-Country, DB-IP lite and alike: `country.iso_code` (basis geolocation).

    Only the located country is used; `registered_country` is left to the registration provider
    later in the chain, so a geolocation answer is never a registration one in disguise.
    """

    @classmethod
    def open(cls, path: str | Path) -> MmdbCountryProvider:
        return cls(open_mmdb(path))

    def country(self, ip: IPAddress) -> GeoAnswer | None:
        record = self._record(ip)
        if record is None:
            return None
        code: object = None
        country = record.get("country")
        if isinstance(country, dict):
            code = country.get("iso_code")
        elif isinstance(record.get("country_code"), str):
            code = record["country_code"]  # flat layouts (ipinfo-style) carry it at the top
        if not isinstance(code, str) or not _COUNTRY.match(code.upper()):
            return None
        return GeoAnswer(code.upper(), GEOLOCATION, self.name, self.source_date)


class MmdbAsnProvider(_MmdbBase):
    """GeoLite2-ASN layout (also DB-IP's ASN lite): autonomous_system_number/_organization."""

    @classmethod
    def open(cls, path: str | Path) -> MmdbAsnProvider:
        return cls(open_mmdb(path))

    def asn(self, ip: IPAddress) -> AsnAnswer | None:
        record = self._record(ip)
        if record is None:
            return None
        number = record.get("autonomous_system_number")
        org = record.get("autonomous_system_organization")
        asn = number if isinstance(number, int) and 0 <= number < 2**32 else None
        name = org if isinstance(org, str) and org else None
        if asn is None and name is None:
            return None
        return AsnAnswer(asn, name, self.name, self.source_date)


# --- iptocc: embedded RIR registration data -----------------------------------------------------


@functools.cache
def _iptocc_date() -> str:
    """The day iptocc's embedded data was built, else its version.

    iptocc embeds the RIR files at build time and ships no data date; its wheel's CycloneDX SBOM
    carries the build timestamp, which is the closest honest stamp of the data's age.
    """
    try:
        dist = importlib_metadata.distribution("iptocc")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"
    for file in dist.files or ():
        if file.name.endswith(".cyclonedx.json"):
            try:
                stamp = json.loads(file.read_text())["metadata"]["timestamp"]
                return str(stamp)[:10]
            except (OSError, ValueError, KeyError, TypeError):
                break
    return f"iptocc {dist.version}"


class IptoccProvider:
    """RIR registration country from iptocc (offline, embedded): where the block's holder is
    registered, not where the server is — hence basis "registration"."""

    name = "iptocc"

    def __init__(self) -> None:
        self.source_date = _iptocc_date()

    def country(self, ip: IPAddress) -> GeoAnswer | None:
        code = iptocc.country_code(str(ip))
        if code is None or not _COUNTRY.match(code):
            return None
        return GeoAnswer(code, REGISTRATION, self.name, self.source_date)


# --- the chain ---------------------------------------------------------------------------------


class GeoChain:
    """Providers asked in order; the first answer wins. Owns (and closes) mmdb readers."""

    def __init__(
        self,
        providers: Sequence[GeoProvider],
        asn_provider: AsnProvider | None = None,
    ) -> None:
        self.providers = tuple(providers)
        self.asn_provider = asn_provider

    @classmethod
    def from_config(
        cls,
        *,
        overrides: Iterable[str] = (),
        geofeeds: Iterable[str | Path] = (),
        country_mmdb: str | Path | None = None,
        asn_mmdb: str | Path | None = None,
        registration: bool = True,
    ) -> GeoChain:
        """overrides → geofeeds → country mmdb → iptocc; optional ASN mmdb beside the chain."""
        providers: list[GeoProvider] = []
        override_lines = list(overrides)
        if override_lines:
            providers.append(OverrideProvider.from_lines(override_lines))
        providers.extend(OverrideProvider.from_geofeed(path) for path in geofeeds)
        opened: list[_MmdbBase] = []
        try:
            if country_mmdb is not None:
                country = MmdbCountryProvider.open(country_mmdb)
                opened.append(country)
                providers.append(country)
            asn = MmdbAsnProvider.open(asn_mmdb) if asn_mmdb is not None else None
        except JurisdictionConfigError:
            for provider in opened:
                provider.close()
            raise
        if registration:
            providers.append(IptoccProvider())
        return cls(providers, asn)

    def country(self, ip: IPAddress) -> tuple[GeoAnswer | None, list[str]]:
        """The first provider's answer, and the failures of providers asked before it."""
        errors: list[str] = []
        for provider in self.providers:
            try:
                answer = provider.country(ip)
            except GeoDataError as exc:
                errors.append(str(exc))
                continue
            if answer is not None:
                return answer, errors
        return None, errors

    def asn(self, ip: IPAddress) -> tuple[AsnAnswer | None, list[str]]:
        if self.asn_provider is None:
            return None, []
        try:
            return self.asn_provider.asn(ip), []
        except GeoDataError as exc:
            return None, [str(exc)]

    def close(self) -> None:
        for source in (*self.providers, self.asn_provider):
            close = getattr(source, "close", None)
            if callable(close):
                close()

    def __enter__(self) -> GeoChain:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
