"""What the console's handlers are given by the composition root."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from node.api.clients import Network, client_address
from node.cases import CaseService
from node.channels.dispatcher import Dispatcher
from node.clock import Clock
from node.config import NodeConfig
from node.federation.admin import PeerAdmin
from node.federation.registry import PeerRegistry
from node.review import ReviewService
from node.store.console import ConsoleStore
from node.store.db import Database
from node.tokens import TokenService
from node.users import UserService


@dataclass
class ConsoleContext:
    config: NodeConfig
    clock: Clock
    db: Database
    users: UserService
    cases: CaseService
    reviews: ReviewService
    reads: ConsoleStore
    registry: PeerRegistry
    admin: PeerAdmin
    dispatcher: Dispatcher
    tokens: TokenService
    schedule_trace: Callable[[], None]
    deliver_now: Callable[[list[str]], None]
    stats: Callable[[], Awaitable[dict[str, Any]]]
    # Reverse proxies in front of the node ([intake] trusted_proxies): the sign-in limits are
    # keyed on the client they forward for, as public intake's are, never on the proxy.
    trusted_proxies: tuple[Network, ...] = ()

    def client(self, request: web.Request) -> str:
        return client_address(request.remote, request.headers, self.trusted_proxies)


CONSOLE = web.AppKey("console", ConsoleContext)


def console(request: web.Request) -> ConsoleContext:
    return request.app[CONSOLE]
