"""Console fixtures: a node with four-eyes review and mandatory TOTP, served on 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pyotp
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from node.app import Node, open_node
from node.clock import ManualClock
from node.datadir import DataDir
from tests.support.dns_server import ZoneDnsServer
from tests.support.nodes import START, ZONE, init_node

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def dns_server() -> Iterator[ZoneDnsServer]:
    with ZoneDnsServer(ZONE, nxdomain=["gone.example"]) as server:
        yield server


def _data_dir(root: Path, clock: ManualClock, dns: ZoneDnsServer, **console: Any) -> DataDir:
    return init_node(
        root,
        clock=clock,
        extra={
            "jurisdiction": {"dns_server": dns.nameserver, "dns_timeout_seconds": 1.0},
            "console": {"four_eyes": ["csam"], "totp_required": True, **console},
            # Host notices for csam wait a day for the police (shown as held on the case page).
            "notices": {"lea_first_hours": {"csam": 24}},
            # A police webhook and a host mailer nobody listens to (deliveries run in `serve`).
            "channels": {
                "pharos": {
                    "kind": "webhook",
                    "roles": ["law_enforcement"],
                    "url": "http://127.0.0.1:9/referrals",
                },
                "hosts": {
                    "kind": "email",
                    "roles": ["host_notice"],
                    "smtp_port": 9,
                    "from_address": "signalements@hotline.example",
                },
            },
        },
    )


@pytest.fixture
def data_dir(tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer) -> DataDir:
    # English pages for the assertions; an FR node's French default has its own test.
    return _data_dir(tmp_path / "fr", clock, dns_server, language="en")


@dataclass
class Browser:
    """A tiny cookie-keeping client: aiohttp's jar would not send Secure cookies over http."""

    client: TestClient[Any, Any]
    cookies: dict[str, str] = field(default_factory=dict)
    csrf: str = ""

    def _keep(self, response: ClientResponse) -> None:
        for header in response.headers.getall("Set-Cookie", []):
            jar: SimpleCookie = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or morsel.value == "":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    def _header(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}

    async def get(self, path: str) -> tuple[ClientResponse, str]:
        response = await self.client.get(path, headers=self._header(), allow_redirects=False)
        self._keep(response)
        text = await response.text()
        if found := CSRF.search(text):
            self.csrf = found.group(1)
        return response, text

    async def post(
        self, path: str, data: dict[str, Any] | list[tuple[str, str]], csrf: bool = True
    ) -> tuple[ClientResponse, str]:
        items = list(data.items()) if isinstance(data, dict) else list(data)
        if csrf:
            items.append(("csrf", self.csrf))
        response = await self.client.post(
            path, data=items, headers=self._header(), allow_redirects=False
        )
        self._keep(response)
        text = await response.text()
        if found := CSRF.search(text):
            self.csrf = found.group(1)
        return response, text

    async def sign_in(self, name: str, password: str, secret: str | None, at: Any) -> None:
        await self.get("/console/sign-in")
        code = pyotp.TOTP(secret).at(at) if secret else ""
        response, text = await self.post(
            "/console/sign-in", {"name": name, "password": password, "code": code}
        )
        assert response.status == 303, text
        await self.get("/console/queue")  # the session's CSRF token


@dataclass
class Console:
    node: Node
    clock: ManualClock
    client: TestClient[Any, Any]
    secrets: dict[str, tuple[str, str | None]]

    # The TOTP time step each person last signed in with: a code is accepted once.
    steps: dict[str, int] = field(default_factory=dict)

    async def browser(self, name: str) -> Browser:
        browser = Browser(self.client)
        password, secret = self.secrets[name]
        if secret is not None:
            # As a person does, wait for the next code rather than give the same one again.
            while pyotp.TOTP(secret).timecode(self.clock.now()) <= self.steps.get(name, -1):
                self.clock.advance(timedelta(seconds=30))
            self.steps[name] = pyotp.TOTP(secret).timecode(self.clock.now())
        await browser.sign_in(name, password, secret, self.clock.now())
        return browser


@pytest.fixture
async def console(data_dir: DataDir, clock: ManualClock) -> AsyncIterator[Console]:
    async with serving(data_dir, clock) as served:
        yield served


@pytest.fixture
async def french_console(
    tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> AsyncIterator[Console]:
    async with serving(_data_dir(tmp_path / "fr", clock, dns_server), clock) as served:
        yield served


@asynccontextmanager
async def serving(data_dir: DataDir, clock: ManualClock) -> AsyncIterator[Console]:
    async with open_node(data_dir, clock) as node:
        made = {}
        for name, role in (("alice", "analyst"), ("rene", "reviewer"), ("olga", "operator")):
            secret = await node.users.add(name, role, totp=True, actor="test")
            # Each has set their own password already (the first one does nothing else;
            # test_four_eyes signs in with one over HTTP).
            own = f"{name}-own-password"
            await node.users.change_password(
                name, current=secret.password, new=own, repeated=own, client="test"
            )
            made[name] = (own, secret.totp_secret)
        server = TestServer(node.make_app(), host="127.0.0.1")
        async with TestClient(server) as client:
            yield Console(node, clock, client, made)
