"""Resolve a reported URL's host: every A/AAAA, the CNAME chain and TTLs (injectable resolver)."""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver

from node.jurisdiction.errors import (
    DnsError,
    DnsServerError,
    DnsTimeoutError,
    InvalidUrlError,
    JurisdictionConfigError,
    NoAddressError,
    NoSuchHostError,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_DNS_TIMEOUT = 5.0
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# WHATWG URL parsing drops these anywhere in the input; browsers would resolve the cleaned host.
_STRIPPED = str.maketrans("", "", "\t\n\r")


@dataclass(frozen=True)
class ResolvedAddress:
    """One A or AAAA answer."""

    ip: str
    version: int
    ttl: int | None
    is_global: bool


@dataclass(frozen=True)
class CnameLink:
    """One step of the CNAME chain: `name` is an alias of `target`."""

    name: str
    target: str
    ttl: int


@dataclass(frozen=True)
class Resolution:
    """What DNS said about a host. `warnings` are partial failures (e.g. the AAAA query timed out
    while the A query answered): the addresses are still good, the gap is reported."""

    host: str
    addresses: tuple[ResolvedAddress, ...]
    cnames: tuple[CnameLink, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ttl(self) -> int | None:
        """Smallest TTL over the addresses and the CNAME chain: how long this picture holds."""
        ttls = [a.ttl for a in self.addresses if a.ttl is not None]
        ttls += [c.ttl for c in self.cnames]
        return min(ttls) if ttls else None


class Resolver(Protocol):
    """Anything that turns an IDNA-encoded host name into a Resolution (the Tracer's DNS port)."""

    async def resolve(self, host: str) -> Resolution: ...


def address_info(ip: IPAddress, ttl: int | None = None) -> ResolvedAddress:
    """Describe an address; non-global (private, loopback, link-local, reserved…) is flagged."""
    return ResolvedAddress(ip=str(ip), version=ip.version, ttl=ttl, is_global=ip.is_global)


def _whatwg_ipv4_part(part: str) -> int | None:
    """One dotted part of a WHATWG IPv4 host: decimal, 0x-hex or 0-octal; None if not numeric."""
    if part[:2] in ("0x", "0X"):
        digits, base = part[2:], 16
    elif len(part) > 1 and part[0] == "0":
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    if digits == "":
        return 0 if base == 16 else None
    try:
        return int(digits, base) if digits.isascii() and digits.isalnum() else None
    except ValueError:
        return None


def _whatwg_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Browsers read hosts like `3232235777`, `0x7f.1` or `0300.0250.1.1` as IPv4 addresses.

    A trace must follow the same reading, or a numeric URL would be sent to DNS and reported as
    "no such host" while the browser reaches the address.
    """
    parts = host.split(".")
    if parts and parts[-1] == "":
        parts.pop()
    if not parts or len(parts) > 4:
        return None
    last = parts[-1]
    if not (last.isascii() and last.isdigit()) and _whatwg_ipv4_part(last) is None:
        return None  # the last part decides: a name like "1.example" is a domain
    numbers = [_whatwg_ipv4_part(p) for p in parts]
    if any(n is None for n in numbers):
        raise InvalidUrlError(f"invalid IPv4 host: {host}")
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        raise InvalidUrlError(f"invalid IPv4 host: {host}")
    number = values[-1]
    for index, value in enumerate(values[:-1]):
        number += value * 256 ** (3 - index)
    return ipaddress.IPv4Address(number)


def normalise_host(host: str) -> str | IPAddress:
    """An IP address for an IP literal, else the lower-case IDNA (A-label) form of the name.

    IDNA 2008 with UTS 46 mapping, as browsers do; names IDNA 2008 refuses but IDNA 2003 takes
    (symbols, emoji) fall back to IDNA 2003, because such names exist and resolve in the wild.
    """
    text = unquote(host.strip()).rstrip(".")
    if text.startswith("[") and text.endswith("]"):
        try:
            return ipaddress.IPv6Address(text[1:-1].split("%")[0])
        except ValueError:
            raise InvalidUrlError(f"invalid IPv6 host: {host}") from None
    # Only digits and dots (IPv4) or a colon (IPv6) can make an address literal: skip the
    # costly failed parse for the names nearly every URL carries.
    if ":" in text or not text.strip("0123456789."):
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            pass
    if not text:
        raise InvalidUrlError("URL has no host")
    if text.isascii():
        numeric = _whatwg_ipv4(text)
        if numeric is not None:
            return numeric
        name = text.lower()
    else:
        name = _idna(text, host)
        numeric = _whatwg_ipv4(name)  # full-width digits map to ASCII ones under UTS 46
        if numeric is not None:
            return numeric
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise InvalidUrlError(f"invalid host name: {host}")
    return name


def _idna(text: str, original: str) -> str:
    for codec in (dns.name.IDNA_2008_Practical, dns.name.IDNA_2003_Practical):
        try:
            encoded = dns.name.from_unicode(text, idna_codec=codec)
        except dns.exception.DNSException:
            continue
        return encoded.to_text(omit_final_dot=True).lower()
    raise InvalidUrlError(f"host is not a valid internationalised name: {original}")


def host_from_url(url: str) -> str | IPAddress:
    """The normalised host of a URL (scheme optional); an IP address object for IP literals."""
    text = url.strip().translate(_STRIPPED)
    if not text:
        raise InvalidUrlError("empty URL")
    if not _SCHEME.match(text):
        text = "http://" + text.lstrip("/")
    scheme, _, rest = text.partition("://")
    if scheme.lower() in ("http", "https", "ftp", "ws", "wss"):
        # For special schemes browsers treat "\" as "/": "http://a.example\@b.example" goes to
        # a.example, while urlsplit would report b.example.
        rest = rest.replace("\\", "/")
    try:
        parts = urlsplit(f"{scheme}://{rest}")
    except ValueError as exc:
        raise InvalidUrlError(f"invalid URL: {exc}") from None
    netloc = parts.netloc.rpartition("@")[2]
    if netloc.startswith("["):
        host = netloc[: netloc.find("]") + 1] if "]" in netloc else netloc
    else:
        host = netloc.partition(":")[0]
    return normalise_host(host)


def parse_nameserver(spec: str) -> tuple[str, int]:
    """`HOST:PORT`, `[V6]:PORT` or a bare IP (port 53) → (ip, port). Only IPs: no DNS for DNS."""
    text = spec.strip()
    host, port_text = text, "53"
    if text.startswith("["):
        host, _, tail = text[1:].partition("]")
        if tail:
            if not tail.startswith(":"):
                raise JurisdictionConfigError(f"invalid DNS server: {spec!r}")
            port_text = tail[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    try:
        ip = ipaddress.ip_address(host)
        port = int(port_text)
    except ValueError:
        raise JurisdictionConfigError(
            f"invalid DNS server {spec!r}: expected IP:PORT or [IPv6]:PORT"
        ) from None
    if not 0 < port < 65536:
        raise JurisdictionConfigError(f"invalid DNS server {spec!r}: port out of range")
    return str(ip), port


class DnsResolver:
    """Resolver over dnspython's asyncio resolver.

    `nameserver` is `HOST:PORT` (tests, `--dns-server`); None uses the system configuration.
    No cache: each trace is fresh evidence of what the name pointed to at that time.
    """

    def __init__(
        self,
        nameserver: str | None = None,
        *,
        timeout: float = DEFAULT_DNS_TIMEOUT,
    ) -> None:
        if timeout <= 0:
            raise JurisdictionConfigError("DNS timeout must be positive")
        self.timeout = timeout
        if nameserver is None:
            try:
                self._resolver = dns.asyncresolver.Resolver(configure=True)
            except dns.exception.DNSException as exc:
                raise JurisdictionConfigError(f"no system DNS configuration: {exc}") from None
        else:
            ip, port = parse_nameserver(nameserver)
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [ip]
            self._resolver.port = port
        # `lifetime` bounds the whole lookup; a shorter per-attempt timeout lets dnspython retry
        # a lost UDP datagram or move on to the next configured server within that bound.
        self._resolver.lifetime = timeout
        self._resolver.timeout = min(timeout, 2.0)

    async def resolve(self, host: str) -> Resolution:
        """Every A and AAAA of `host` (already IDNA-encoded), the CNAME chain and TTLs."""
        results = await asyncio.gather(
            self._query(host, dns.rdatatype.A),
            self._query(host, dns.rdatatype.AAAA),
            return_exceptions=True,
        )
        answers: list[dns.resolver.Answer] = []
        failures: list[tuple[str, BaseException]] = []
        for rdtype, result in zip(("A", "AAAA"), results, strict=True):
            if isinstance(result, dns.resolver.Answer):
                answers.append(result)
            else:
                failures.append((rdtype, result))
        addresses: list[ResolvedAddress] = []
        for answer in answers:
            rrset = answer.rrset
            if rrset is None:
                continue
            for rdata in rrset:
                addresses.append(address_info(ipaddress.ip_address(rdata.to_text()), rrset.ttl))
        if not addresses:
            raise self._failure(host, [error for _, error in failures])
        warnings = tuple(
            f"{rdtype} lookup failed: {self._failure(host, [error])}" for rdtype, error in failures
        )
        return Resolution(
            host=host,
            addresses=tuple(addresses),
            cnames=_cname_chain(answers),
            warnings=warnings,
        )

    async def _query(self, host: str, rdtype: dns.rdatatype.RdataType) -> dns.resolver.Answer:
        return await self._resolver.resolve(
            dns.name.from_text(host),
            rdtype,
            raise_on_no_answer=False,
            search=False,
            lifetime=self.timeout,
        )

    def _failure(self, host: str, errors: Sequence[BaseException]) -> DnsError:
        """The one error that best explains why no address came back."""
        for error in errors:
            if not isinstance(error, Exception):
                raise error  # CancelledError and friends are not DNS outcomes
        if any(isinstance(error, dns.resolver.NXDOMAIN) for error in errors):
            return NoSuchHostError(host)
        if any(isinstance(error, dns.exception.Timeout) for error in errors):
            return DnsTimeoutError(host, self.timeout)
        for error in errors:
            if isinstance(error, dns.resolver.NoNameservers):
                return DnsServerError(host, "no server gave a usable answer (SERVFAIL or REFUSED)")
            if isinstance(error, dns.exception.DNSException):
                return DnsServerError(host, type(error).__name__)
            if isinstance(error, OSError):
                return DnsServerError(host, error.strerror or type(error).__name__)
        for error in errors:
            raise error  # a bug, not a DNS answer: let it surface
        return NoAddressError(host)


def _cname_chain(answers: Sequence[dns.resolver.Answer]) -> tuple[CnameLink, ...]:
    """The chain followed by the answer that has one (A and AAAA follow the same aliases)."""
    for answer in answers:
        chain = answer.chaining_result.cnames
        if chain:
            return tuple(
                CnameLink(
                    name=rrset.name.to_text(omit_final_dot=True).lower(),
                    target=rrset[0].target.to_text(omit_final_dot=True).lower(),
                    ttl=rrset.ttl,
                )
                for rrset in chain
            )
    return ()
