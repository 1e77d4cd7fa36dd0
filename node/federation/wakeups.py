"""Peers to push to now: asked for after a commit by whoever queued records, taken by the delivery
worker. Its own object, so that cases (built before delivery) and delivery share it from birth."""

from __future__ import annotations

import asyncio
from collections.abc import Collection


class PushRequests:
    def __init__(self) -> None:
        self._wanted: set[str] = set()
        self._event = asyncio.Event()

    def kick(self, peer_ids: Collection[str]) -> None:
        """Ask for an immediate push to these peers (called after a commit)."""
        if peer_ids:
            self._wanted.update(peer_ids)
            self._event.set()

    def wake(self) -> None:
        """Look again at what is wanted (a push ended: a commit after its last read needs one)."""
        self._event.set()

    async def wait(self) -> list[str]:
        """The peers wanted, once there are any or a push ended; they stay wanted until taken."""
        await self._event.wait()
        self._event.clear()
        return sorted(self._wanted)

    def take(self, peer_id: str) -> None:
        self._wanted.discard(peer_id)
