"""The operator's HTTP administration of peers (the same operations as `hotline-node peers`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from keys.document import MAX_KEY_DOCUMENT_BYTES
from node.api.bodies import json_response, read_json
from node.api.context import context, principal
from node.channels.dispatcher import Dispatcher
from node.federation.admin import PeerAdmin
from node.federation.registry import PeerRegistry, summary
from node.tokens import Role


@dataclass
class AdminContext:
    admin: PeerAdmin
    registry: PeerRegistry
    dispatcher: Dispatcher


ADMIN = web.AppKey("admin", AdminContext)


class AddPeerBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    node_id: Annotated[str, Field(max_length=63)]
    country: Annotated[str, Field(max_length=2)]
    endpoint: Annotated[str, Field(max_length=2048)]
    fingerprint: Annotated[str, Field(max_length=64)]
    pull_only: bool = False
    categories: list[str] | None = None
    max_tlp: str | None = None
    # The peer's signed key document (as `keys document` prints it), for a pull-only peer
    # this node cannot reach; checked against the fingerprint like a fetched one.
    key_document: Annotated[str, Field(max_length=MAX_KEY_DOCUMENT_BYTES)] | None = None


class PolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    categories: list[str] | None = None
    max_tlp: str | None = None
    pull_only: bool | None = None
    # Our shared hash lists go to the peer, and its lists are taken from it.
    share_hashes: bool | None = None


async def list_peers(request: web.Request) -> web.Response:
    await principal(request, Role.OPERATOR)
    rows = await request.app[ADMIN].registry.all()
    return json_response({"peers": [summary(row) for row in rows]})


async def add_peer(request: web.Request) -> web.Response:
    who = await principal(request, Role.OPERATOR)
    body = await read_json(request, AddPeerBody, context(request).max_body_bytes)
    described = await request.app[ADMIN].admin.add(
        node_id=body.node_id,
        country=body.country,
        endpoint=body.endpoint,
        fingerprint=body.fingerprint,
        pull_only=body.pull_only,
        categories=body.categories,
        max_tlp=body.max_tlp,
        key_document=None if body.key_document is None else body.key_document.encode("utf-8"),
        actor=who.actor,
    )
    return json_response(described, status=201)


async def show_peer(request: web.Request) -> web.Response:
    await principal(request, Role.OPERATOR)
    return json_response(await request.app[ADMIN].registry.describe(request.match_info["id"]))


async def update_peer(request: web.Request) -> web.Response:
    who = await principal(request, Role.OPERATOR)
    body = await read_json(request, PolicyBody, context(request).max_body_bytes)
    described = await request.app[ADMIN].admin.set_policy(
        request.match_info["id"],
        categories=body.categories,
        max_tlp=body.max_tlp,
        pull_only=body.pull_only,
        share_hashes=body.share_hashes,
        actor=who.actor,
    )
    return json_response(described)


def _status_handler(status: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        who = await principal(request, Role.OPERATOR)
        described = await request.app[ADMIN].admin.set_status(
            request.match_info["id"], status, who.actor
        )
        return json_response(described)

    return handler


async def requeue_peer(request: web.Request) -> web.Response:
    who = await principal(request, Role.OPERATOR)
    node_id = request.match_info["id"]
    count = await request.app[ADMIN].registry.requeue_dead(node_id, who.actor)
    return json_response({"node_id": node_id, "requeued": count})


class ChannelTestBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    to: Annotated[str, Field(max_length=254)] | None = None


async def list_channels(request: web.Request) -> web.Response:
    await principal(request, Role.OPERATOR)
    return json_response({"channels": await request.app[ADMIN].dispatcher.describe()})


async def test_channel(request: web.Request) -> web.Response:
    await principal(request, Role.OPERATOR)
    body = await read_json(request, ChannelTestBody, context(request).max_body_bytes)
    name = request.match_info["name"]
    outcome = await request.app[ADMIN].dispatcher.test(name, body.to)
    return json_response(
        {"channel": name, "delivered": outcome.delivered, "detail": outcome.detail},
        status=200 if outcome.delivered else 502,
    )


async def requeue_channel(request: web.Request) -> web.Response:
    who = await principal(request, Role.OPERATOR)
    name = request.match_info["name"]
    count = await request.app[ADMIN].dispatcher.requeue_dead(name, who.actor)
    return json_response({"channel": name, "requeued": count})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/v1/channels", list_channels)
    app.router.add_post("/admin/v1/channels/{name}/test", test_channel)
    app.router.add_post("/admin/v1/channels/{name}/requeue", requeue_channel)
    app.router.add_get("/admin/v1/peers", list_peers)
    app.router.add_post("/admin/v1/peers", add_peer)
    app.router.add_get("/admin/v1/peers/{id}", show_peer)
    app.router.add_patch("/admin/v1/peers/{id}", update_peer)
    app.router.add_post("/admin/v1/peers/{id}/suspend", _status_handler("suspended"))
    app.router.add_post("/admin/v1/peers/{id}/resume", _status_handler("active"))
    app.router.add_post("/admin/v1/peers/{id}/requeue", requeue_peer)
    app.router.add_delete("/admin/v1/peers/{id}", _status_handler("removed"))
