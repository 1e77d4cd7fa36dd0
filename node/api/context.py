"""What the HTTP handlers are given by the composition root (no service locator beyond this)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from node.api.ratelimit import RateLimiter
from node.cases import CaseService
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


CONTEXT = web.AppKey("context", ApiContext)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


async def principal(request: web.Request, *roles: Role) -> Principal:
    who = await context(request).tokens.authenticate(request.headers.get("Authorization"))
    who.require(*roles)
    return who
