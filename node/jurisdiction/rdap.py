"""A small RDAP client (aiohttp): the abuse contact of the network holding an IP, range-cached."""

from __future__ import annotations

import ipaddress
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from node.contacts import abuse_contact
from node.jurisdiction.errors import (
    RdapError,
    RdapRateLimitedError,
    RdapResponseError,
    RdapTimeoutError,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_RDAP_BASE = "https://rdap.db.ripe.net/"
DEFAULT_RDAP_TIMEOUT = 10.0
MAX_REDIRECTS = 3
MAX_BODY = 1 << 20  # an RDAP ip network object is a few KB; refuse to buffer anything huge
CACHE_ENTRIES = 4096
CACHE_SECONDS = 24 * 3600.0
_ACCEPT = "application/rdap+json, application/json;q=0.9"


@dataclass(frozen=True)
class RdapNetwork:
    """What RDAP says about the network holding an address."""

    abuse_email: str | None
    network_name: str | None = None
    handle: str | None = None
    country: str | None = None  # registration country of the block, not the server's location
    start: str | None = None
    end: str | None = None
    url: str | None = None  # where the answer came from, after redirects
    found: bool = True  # False: the server has no object for this address (404)
    from_cache: bool = False


# --- parsing -----------------------------------------------------------------------------------


def _vcard_emails(entity: Mapping[str, Any]) -> list[str]:
    card = entity.get("vcardArray")
    if not isinstance(card, list) or len(card) < 2 or not isinstance(card[1], list):
        return []
    emails = []
    for prop in card[1]:
        if (
            isinstance(prop, list)
            and len(prop) >= 4
            and isinstance(prop[0], str)
            and prop[0].lower() == "email"
            and isinstance(prop[3], str)
            and "@" in prop[3]
        ):
            emails.append(prop[3])
    return emails


def _entities(node: Mapping[str, Any], depth: int = 0) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """Every entity with its nesting depth (ARIN puts the abuse POC inside the registrant)."""
    if depth > 8:
        return
    children = node.get("entities")
    if not isinstance(children, list):
        return
    for child in children:
        if isinstance(child, dict):
            yield depth, child
            yield from _entities(child, depth + 1)


def abuse_email(network: Mapping[str, Any]) -> str | None:
    """The first valid e-mail of the shallowest entity whose roles include "abuse".

    An answer is input like any other: an address with a line break, a display name or two
    addresses in one is dropped here, so it never reaches a mail header.
    """
    candidates = [
        (depth, valid[0])
        for depth, entity in _entities(network)
        if isinstance(entity.get("roles"), list)
        and "abuse" in [str(role).lower() for role in entity["roles"]]
        and (valid := [a for a in map(abuse_contact, _vcard_emails(entity)) if a is not None])
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda c: c[0])[1]


def network_range(
    network: Mapping[str, Any],
) -> list[tuple[IPAddress, IPAddress]]:
    """The address ranges an ip network object covers (start/end, else cidr0_cidrs)."""
    ranges: list[tuple[IPAddress, IPAddress]] = []
    try:
        start, end = network.get("startAddress"), network.get("endAddress")
        if isinstance(start, str) and isinstance(end, str):
            first, last = ipaddress.ip_address(start), ipaddress.ip_address(end)
            if first.version == last.version and first <= last:  # type: ignore[operator]
                ranges.append((first, last))
        if not ranges:
            for cidr in network.get("cidr0_cidrs") or ():
                if not isinstance(cidr, dict):
                    continue
                prefix = cidr.get("v4prefix") or cidr.get("v6prefix")
                net = ipaddress.ip_network(f"{prefix}/{cidr.get('length')}", strict=False)
                ranges.append((net[0], net[-1]))
    except ValueError:
        return []
    return ranges


def parse_network(data: object, url: str | None = None) -> RdapNetwork:
    if not isinstance(data, dict):
        raise RdapResponseError("RDAP answer is not a JSON object")
    first_last = network_range(data)

    def text(key: str) -> str | None:
        value = data.get(key)
        return value.strip() if isinstance(value, str) and value.strip() else None

    return RdapNetwork(
        abuse_email=abuse_email(data),
        network_name=text("name"),
        handle=text("handle"),
        country=(text("country") or "").upper() or None,
        start=str(first_last[0][0]) if first_last else None,
        end=str(first_last[0][1]) if first_last else None,
        url=url,
    )


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After is delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# --- the client --------------------------------------------------------------------------------


@dataclass
class _CacheEntry:
    ranges: list[tuple[IPAddress, IPAddress]]
    network: RdapNetwork
    expires: float


class RdapClient:
    """`GET {base}/ip/{ip}` following up to three redirects (a RIR sends out-of-region addresses on
    to the right one). The aiohttp session belongs to the caller.

    Answers are cached by the network range they cover, so a second address in the same block
    costs no request. After a 429 the client stays quiet until the server's Retry-After has passed
    (failing fast with the same typed error) rather than hammering a registry that asked it to wait.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str = DEFAULT_RDAP_BASE,
        *,
        timeout: float = DEFAULT_RDAP_TIMEOUT,
        max_redirects: int = MAX_REDIRECTS,
        cache_entries: int = CACHE_ENTRIES,
        cache_seconds: float = CACHE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_redirects = max_redirects
        self._cache: OrderedDict[int, _CacheEntry] = OrderedDict()
        self._cache_entries = cache_entries
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._next_key = 0
        self._quiet_until = 0.0
        self.requests = 0  # requests actually sent (cache hits and fail-fast 429s excluded)

    async def lookup(self, ip: str | IPAddress) -> RdapNetwork:
        address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        cached = self._cached(address)
        if cached is not None:
            return cached
        now = self._monotonic()
        if now < self._quiet_until:
            raise RdapRateLimitedError(str(address), round(self._quiet_until - now, 3))
        network, ranges = await self._fetch(address)
        if network.found:
            self._remember(address, network, ranges)
        return network

    def _cached(self, address: IPAddress) -> RdapNetwork | None:
        now = self._monotonic()
        for key, entry in list(self._cache.items()):
            if entry.expires <= now:
                del self._cache[key]
                continue
            for first, last in entry.ranges:
                if first.version == address.version and first <= address <= last:  # type: ignore[operator]
                    self._cache.move_to_end(key)
                    return replace(entry.network, from_cache=True)
        return None

    def _remember(
        self,
        address: IPAddress,
        network: RdapNetwork,
        ranges: list[tuple[IPAddress, IPAddress]],
    ) -> None:
        if not any(
            first.version == address.version and first <= address <= last  # type: ignore[operator]
            for first, last in ranges
        ):
            # A range that does not contain the address asked is not trusted as a cache key;
            # the answer is cached for this one address only.
            ranges = [(address, address)]
        self._cache[self._next_key] = _CacheEntry(
            ranges, network, self._monotonic() + self._cache_seconds
        )
        self._next_key += 1
        while len(self._cache) > self._cache_entries:
            self._cache.popitem(last=False)

    async def _fetch(
        self, address: IPAddress
    ) -> tuple[RdapNetwork, list[tuple[IPAddress, IPAddress]]]:
        url = f"{self.base_url}/ip/{address}"
        self.requests += 1
        try:
            async with self._session.get(
                url,
                headers={"Accept": _ACCEPT},
                allow_redirects=True,
                # aiohttp gives up when the redirect count reaches its limit: allow one more
                # so that exactly `max_redirects` hops are followed.
                max_redirects=self.max_redirects + 1,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                final_url = str(response.url)
                if response.status == 404:
                    return RdapNetwork(abuse_email=None, url=final_url, found=False), []
                if response.status == 429:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    if retry_after is not None:
                        self._quiet_until = self._monotonic() + retry_after
                    raise RdapRateLimitedError(str(address), retry_after)
                if response.status != 200:
                    raise RdapResponseError(
                        f"RDAP server answered HTTP {response.status} for {address}"
                    )
                body = await _read_limited(response)
        except aiohttp.TooManyRedirects:
            raise RdapResponseError(
                f"RDAP lookup for {address}: more than {self.max_redirects} redirects"
            ) from None
        except TimeoutError:
            raise RdapTimeoutError(str(address), self.timeout) from None
        except aiohttp.ClientError as exc:
            detail = (str(exc).splitlines() or [""])[0][:200] or type(exc).__name__
            raise RdapError(f"RDAP request for {address} failed: {detail}") from None
        try:
            data = json.loads(body)
        except ValueError:
            raise RdapResponseError(f"RDAP answer for {address} is not valid JSON") from None
        return parse_network(data, final_url), network_range(data) if isinstance(data, dict) else []


async def _read_limited(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_BODY:
            raise RdapResponseError(f"RDAP answer larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
