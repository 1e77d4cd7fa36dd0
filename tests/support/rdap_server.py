"""A real RDAP stub (aiohttp) on 127.0.0.1: networks, redirects, 404, 429, slow and bad answers.

    async with RdapStub() as stub:
        stub.add_network("88.198.0.0/16", ip_network("88.198.0.0", "88.198.255.255",
                                                       abuse_email="abuse@hetzner.example"))
        client = RdapClient(session, stub.base_url)

`stub.requests` lists every path asked, so tests can see a cache hit (no new request).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

RDAP_JSON = "application/rdap+json"


def vcard(name: str, email: str | None = None) -> list[Any]:
    props: list[list[Any]] = [["version", {}, "text", "4.0"], ["fn", {}, "text", name]]
    if email is not None:
        props.append(["email", {"type": "work"}, "text", email])
    return ["vcard", props]


def entity(
    handle: str,
    roles: list[str],
    email: str | None = None,
    children: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "objectClassName": "entity",
        "handle": handle,
        "roles": roles,
        "vcardArray": vcard(handle, email),
    }
    if children:
        result["entities"] = children
    return result


def ip_network(
    start: str,
    end: str,
    *,
    name: str = "EXAMPLE-NET",
    handle: str = "NET-1",
    country: str | None = None,
    abuse_email: str | None = None,
    nested: bool = False,
    cidr0: bool = False,
) -> dict[str, Any]:
    """An RDAP ip network object. `nested` hides the abuse entity inside the registrant (ARIN's
    layout); `cidr0` gives the range as cidr0_cidrs instead of start/end addresses."""
    body: dict[str, Any] = {
        "objectClassName": "ip network",
        "rdapConformance": ["rdap_level_0", "cidr0"],
        "handle": handle,
        "name": name,
        "type": "ASSIGNED PA",
    }
    if country:
        body["country"] = country
    if cidr0:
        net = ipaddress.ip_network(f"{start}/{_prefix_length(start, end)}")
        key = "v4prefix" if net.version == 4 else "v6prefix"
        body["cidr0_cidrs"] = [{key: str(net.network_address), "length": net.prefixlen}]
    else:
        body["startAddress"], body["endAddress"] = start, end
    entities: list[dict[str, Any]] = []
    abuse = [entity("ABUSE-1", ["abuse"], abuse_email)] if abuse_email else []
    if nested:
        entities.append(entity("ORG-1", ["registrant"], "noc@example.net", abuse))
    else:
        entities.append(entity("ORG-1", ["registrant"], "noc@example.net"))
        entities.extend(abuse)
    body["entities"] = entities
    return body


def _prefix_length(start: str, end: str) -> int:
    first, last = ipaddress.ip_address(start), ipaddress.ip_address(end)
    size = int(last) - int(first) + 1
    return first.max_prefixlen - (size.bit_length() - 1)


@dataclass
class _Canned:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class RdapStub:
    """`GET /ip/{ip}` answered from the networks added; other behaviours set per address."""

    def __init__(self) -> None:
        self._networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, bytes]] = []
        self._canned: dict[str, _Canned] = {}
        self._redirects: dict[str, int] = {}
        self._slow: set[str] = set()
        self._release = asyncio.Event()
        self.requests: list[str] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- configuration ---------------------------------------------------------------------

    def add_network(self, cidr: str, body: dict[str, Any]) -> None:
        self._networks.append((ipaddress.ip_network(cidr), json.dumps(body).encode()))

    def respond(
        self, ip: str, status: int, *, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> None:
        """A fixed answer for one address (429 with Retry-After, 500, malformed JSON …)."""
        self._canned[str(ipaddress.ip_address(ip))] = _Canned(status, dict(headers or {}), body)

    def redirect(self, ip: str, hops: int = 1) -> None:
        """Send this address through `hops` redirects before it is answered."""
        self._redirects[str(ipaddress.ip_address(ip))] = hops

    def slow(self, ip: str) -> None:
        """Never answer this address (until the stub stops): a client timeout."""
        self._slow.add(str(ipaddress.ip_address(ip)))

    def count(self, ip: str) -> int:
        """Requests that reached the final `/ip/{ip}` answer (redirect hops not counted)."""
        return sum(1 for path in self.requests if path.endswith(f"/ip/{ip}"))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> RdapStub:
        app = web.Application()
        app.router.add_get("/ip/{ip}", self._handle)
        app.router.add_get("/hop/{n}/ip/{ip}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> RdapStub:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- serving ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path)
        try:
            ip = str(ipaddress.ip_address(request.match_info["ip"]))
        except ValueError:
            return _error(400, "bad address")
        hop = int(request.match_info.get("n", "0"))
        if hop < self._redirects.get(ip, 0):
            raise web.HTTPFound(f"/hop/{hop + 1}/ip/{ip}")
        if ip in self._slow:
            await self._release.wait()
            return _error(503, "released")
        canned = self._canned.get(ip)
        if canned is not None:
            return web.Response(status=canned.status, headers=canned.headers, body=canned.body)
        address = ipaddress.ip_address(ip)
        matches = [
            (net, body)
            for net, body in self._networks
            if net.version == address.version and address in net
        ]
        if not matches:
            return _error(404, "not found")
        _, body = max(matches, key=lambda m: m[0].prefixlen)
        return web.Response(status=200, body=body, content_type=RDAP_JSON)


def _error(status: int, title: str) -> web.Response:
    body = {"errorCode": status, "title": title, "rdapConformance": ["rdap_level_0"]}
    return web.Response(status=status, body=json.dumps(body).encode(), content_type=RDAP_JSON)
