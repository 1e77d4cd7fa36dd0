"""Operator actions on peers: add (fetch and pin the key document), policy, status, key refresh."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from keys import KeyDocument, KeyDocumentError, verify_key_document
from node.clock import Clock
from node.countries import country_problem
from node.errors import N_, InvalidInput, Sentence, UpstreamError
from node.federation.peer_keys import PeerKeyRefresher
from node.federation.registry import PeerRegistry, check_node_id, parse_policy
from node.urls import endpoint_url
from peers.client import PeerClient, PeerError, PeerProtocolError
from peers.model import PeerMode, PeerStatus

log = logging.getLogger("hotline.peers")
_FINGERPRINT = re.compile(r"^[A-Za-z0-9_-]{43}$")


class PeerAdmin:
    def __init__(
        self,
        registry: PeerRegistry,
        client: PeerClient,
        clock: Clock,
        node_id: str,
        *,
        keys: PeerKeyRefresher,
        deliver_now: Callable[[list[str]], None],
        peer_resumed: Callable[[str, str], Awaitable[int]] | None = None,
    ) -> None:
        self.registry = registry
        self.client = client
        self.clock = clock
        self.node_id = node_id
        self.keys = keys
        # An operator's change to a peer is contact: its queue is tried at once, not after a
        # backoff the change may have made pointless.
        self.deliver_now = deliver_now
        # Called with (country, actor) when a peer is active again: cases that went to the
        # fallback while it was suspended are routed to it.
        self.peer_resumed = peer_resumed

    async def add(
        self,
        *,
        node_id: str,
        country: str,
        endpoint: str,
        fingerprint: str,
        pull_only: bool = False,
        categories: list[str] | None = None,
        max_tlp: str | None = None,
        key_document: bytes | None = None,
        actor: str,
        via_directory: bool = False,
    ) -> dict[str, Any]:
        """Pin a peer. Its key document is fetched from `endpoint`, or given (`key_document`,
        for a pull-only peer we cannot reach); either way it must match `fingerprint`.
        `via_directory`: the fingerprint is the one a verified member list gives."""
        check_node_id(node_id)
        fingerprint = (fingerprint or "").strip()  # pasted from a letter or a chat window
        if node_id == self.node_id:
            raise InvalidInput(N_("a node cannot be its own peer"))
        problem = country_problem(country)
        if problem:
            raise InvalidInput(N_("country {problem}"), problem=problem)
        country = country.upper()
        endpoint = endpoint_url(endpoint)
        # Pasted from a letter or a chat, a fingerprint often comes with spaces or a newline.
        fingerprint = (fingerprint or "").strip()
        if not _FINGERPRINT.match(fingerprint):
            raise InvalidInput(
                N_(
                    "fingerprint must be the 43-character identity fingerprint the peer's"
                    " operator gave you (hotline-node keys show); got {count} character(s),"
                    " some not letters, digits, - or _"
                )
                if len(fingerprint) == 43
                else N_(
                    "fingerprint must be the 43-character identity fingerprint the peer's"
                    " operator gave you (hotline-node keys show); got {count} character(s)"
                ),
                count=len(fingerprint),
            )
        policy = parse_policy(categories, max_tlp)
        endpoint = endpoint.rstrip("/")
        if key_document is not None:
            document, wire = _given_document(key_document, fingerprint, node_id)
        else:
            try:
                document, wire = await self.client.fetch_key_document(endpoint, fingerprint)
            except PeerProtocolError as exc:
                # It answered, with a document that does not verify against the fingerprint.
                raise InvalidInput(
                    N_("cannot add {peer}: {reason}"), peer=node_id, reason=exc
                ) from exc
            except PeerError as exc:
                hint = (
                    Sentence(
                        N_(
                            "; a pull-only peer that cannot be reached is added from its key"
                            " document (its operator runs `hotline-node keys document`; add it"
                            " with --key-document FILE)"
                        )
                    )
                    if pull_only
                    else ""
                )
                raise UpstreamError(
                    N_("cannot add {peer}: {reason}{hint}"), peer=node_id, reason=exc, hint=hint
                ) from exc
        if document.node_id != node_id:
            raise InvalidInput(
                N_("the node at {endpoint} is {found}, not {peer}"),
                endpoint=endpoint,
                found=document.node_id,
                peer=node_id,
            )
        if document.country != country:
            raise InvalidInput(
                N_("{peer} declares country {found}, not {country}"),
                peer=node_id,
                found=document.country,
                country=country,
            )
        await self.registry.add(
            document=document,
            wire=wire,
            fingerprint=fingerprint,
            endpoint=endpoint,
            mode=PeerMode.PULL if pull_only else PeerMode.PUSH,
            policy=policy,
            actor=actor,
            via_directory=via_directory,
        )
        self.deliver_now([node_id])
        return await self.registry.describe(node_id)

    async def set_status(self, node_id: str, status: str, actor: str) -> dict[str, Any]:
        await self.registry.set_status(node_id, PeerStatus(status), actor)
        if status == PeerStatus.REMOVED:
            return {"node_id": node_id, "status": "removed"}
        if status == PeerStatus.ACTIVE:
            if self.peer_resumed is not None:
                peer = await self.registry.get(node_id)
                await self.peer_resumed(peer.country, actor)
            self.deliver_now([node_id])
        return await self.registry.describe(node_id)

    async def directory_status(
        self, node_id: str, status: PeerStatus, reason: str | None, actor: str
    ) -> None:
        """The member directory suspends a peer that left it (`reason` says so) or resumes one
        that is listed again (`reason` None): as the operator's suspend and resume do."""
        await self.registry.set_status(node_id, status, actor, reason=reason, by_directory=True)
        if status == PeerStatus.ACTIVE:
            if self.peer_resumed is not None:
                peer = await self.registry.get(node_id)
                await self.peer_resumed(peer.country, actor)
            self.deliver_now([node_id])

    async def set_policy(
        self,
        node_id: str,
        *,
        categories: list[str] | None,
        max_tlp: str | None,
        pull_only: bool | None,
        share_hashes: bool | None = None,
        actor: str,
    ) -> dict[str, Any]:
        """Change what a peer may receive; what is not given stays as it was. Turning
        `share_hashes` on sends the peer our shared hash lists whole (registry's hook)."""
        peer = await self.registry.get(node_id)
        policy = parse_policy(
            categories or [c.value for c in peer.policy.categories],
            max_tlp or peer.policy.max_tlp.value,
            peer.policy.share_hashes if share_hashes is None else share_hashes,
        )
        mode = None if pull_only is None else (PeerMode.PULL if pull_only else PeerMode.PUSH)
        await self.registry.set_policy(node_id, policy, mode, actor)
        self.deliver_now([node_id])
        return await self.registry.describe(node_id)

    async def refresh_keys(self) -> dict[str, str]:
        """Fetch every peer's key document again: rotated keys come in, revocations stick."""
        return await self.keys.refresh_all()

    async def refresh_peer(self, node_id: str) -> bool:
        """Fetch one peer's key document now (at most once a minute per peer)."""
        return await self.keys.refresh_peer(node_id)


def _given_document(data: bytes, fingerprint: str, node_id: str) -> tuple[KeyDocument, bytes]:
    """A key document handed over as a file: checked exactly as a fetched one is."""
    try:
        return verify_key_document(data.strip(), pinned_fingerprint=fingerprint), data.strip()
    except KeyDocumentError as exc:
        raise InvalidInput(
            N_("key document for {peer} refused: {reason}"), peer=node_id, reason=exc
        ) from exc
