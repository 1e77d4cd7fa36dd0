"""What the HTTP handlers are given by the composition root (no service locator beyond this)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from node.api.clients import Network, client_address
from node.api.ratelimit import RateLimiter
from node.cases import CaseService
from node.review import ReviewService
from node.tokens import Principal, Role, TokenService


@dataclass
class ApiContext:
    node_id: str
    cases: CaseService
    tokens: TokenService
    trace: Callable[[str], Awaitable[dict[str, Any]]]
    public_limiter: RateLimiter
    key_document: Callable[[], bytes]
    max_body_bytes: int
    schedule_trace: Callable[[], None]
    reviews: ReviewService
    # Public intake behind a reverse proxy, from the hotline's own pages, and its form.
    trusted_proxies: tuple[Network, ...] = ()
    cors_origins: frozenset[str] = frozenset()
    hotline_name: str = ""
    retention_days: int = 365
    form_language: str = "en"  # of the form when the browser prefers neither French nor English

    def client(self, request: web.Request) -> str:
        """The public client: the TCP peer, or whom a trusted proxy says it forwards."""
        return client_address(request.remote, request.headers, self.trusted_proxies)


CONTEXT = web.AppKey("context", ApiContext)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


async def principal(request: web.Request, *roles: Role) -> Principal:
    who = await context(request).tokens.authenticate(request.headers.get("Authorization"))
    who.require(*roles)
    return who
