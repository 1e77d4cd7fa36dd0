"""Fetching peers' key documents again: all of them on schedule, one at once after its rotation."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from node.clock import Clock
from node.errors import N_, InvalidInput
from node.federation.registry import PeerRegistry
from node.store.peers import PeerRow
from peers.client import PeerClient, PeerError

log = logging.getLogger("hotline.peers")
ON_DEMAND_INTERVAL = timedelta(minutes=1)


class PeerKeyRefresher:
    """Used by the operator's commands, the scheduler, delivery (a receipt signed with a key we
    do not know yet) and the inbound federation service (a request signed with one)."""

    def __init__(self, registry: PeerRegistry, client: PeerClient, clock: Clock) -> None:
        self.registry = registry
        self.client = client
        self.clock = clock
        self._last_on_demand: dict[str, datetime] = {}

    async def refresh_all(self) -> dict[str, str]:
        """Fetch every peer's key document again: rotated keys come in, revocations stick."""
        return {peer.node_id: await self._refresh(peer) for peer in await self.registry.known()}

    async def refresh_peer(self, node_id: str) -> bool:
        """Fetch one peer's key document now (it signed with a key we do not know yet).

        At most once a minute per peer: a forged request naming an unknown key must not make us
        hammer the peer's endpoint.
        """
        now = self.clock.now()
        last = self._last_on_demand.get(node_id)
        if last is not None and now - last < ON_DEMAND_INTERVAL:
            return False
        self._last_on_demand[node_id] = now
        return await self._refresh(await self.registry.peer(node_id)) == "refreshed"

    async def refresh_now(self, node_id: str) -> str:
        """Fetch one peer's key document at once, against its pin: after a member list replaced
        that pin (not rate-limited: a verified list asked for it, not a request from outside)."""
        return await self._refresh(await self.registry.peer(node_id))

    async def _refresh(self, peer: PeerRow) -> str:
        node_id = peer.node_id
        try:
            document, wire = await self.client.fetch_key_document(peer.endpoint, peer.fingerprint)
            if document.node_id != node_id or document.country != peer.country:
                raise InvalidInput(
                    N_("document now names {peer}/{country}"),
                    peer=document.node_id,
                    country=document.country,
                )
            await self.registry.store_document(node_id, wire, document)
        except (PeerError, InvalidInput) as exc:
            log.warning("key refresh for %s failed: %s", node_id, exc)
            return f"failed: {exc}"
        except Exception as exc:
            # A poisoned peer row (an endpoint aiohttp cannot even parse) or a bug fails this
            # peer's refresh alone: the scheduled job goes on with the other peers.
            log.exception("key refresh for %s failed", node_id)
            return f"failed: {type(exc).__name__}: {exc}"
        return "refreshed"
