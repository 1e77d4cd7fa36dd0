"""Who the client is behind trusted reverse proxies (RFC 7239 Forwarded, X-Forwarded-For)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def networks(entries: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def client_address(
    remote: str | None, headers: Mapping[str, str], trusted: Sequence[Network]
) -> str:
    """The address the public rate limit is keyed on.

    Only a request whose TCP peer is a trusted proxy has its forwarding headers read, and then
    from the right: each hop a trusted proxy appended is skipped, and the first address not
    of a trusted proxy is the client. Anything a client wrote itself sits further left and is
    never reached. Without trusted proxies the TCP peer is the client, whatever the headers say.
    """
    peer = remote or "unknown"
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = _forwarded(headers.get("Forwarded")) if "Forwarded" in headers else None
    if hops is None:
        hops = [hop.strip() for hop in headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed([h for h in hops if h]):
        address = _address(hop)
        if address is None:
            # "unknown", an obfuscated "_id" or garbage: the proxy could not name the client.
            return hop if hop.startswith("_") else peer
        if not any(address in network for network in trusted):
            return str(address)
    return peer  # every hop is one of ours: the request came from inside


def _trusted(peer: str, trusted: Sequence[Network]) -> bool:
    address = _address(peer)
    return address is not None and any(address in network for network in trusted)


def _forwarded(value: str | None) -> list[str] | None:
    """The for= of each element of a Forwarded header, in order; None when it has none."""
    hops = []
    for element in (value or "").split(","):
        for pair in element.split(";"):
            name, _, token = pair.strip().partition("=")
            if name.strip().lower() == "for":
                hops.append(token.strip().strip('"'))
    return hops or None


def _address(token: str) -> Address | None:
    """An address from `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]:80` or `2001:db8::1`."""
    text = token.strip()
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
