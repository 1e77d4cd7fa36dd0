"""The peer registry in SQLite, with a cache of verified public keys for the hot paths."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from keys import KeyDocument, PublicKeySet
from keys.document import node_id_problem
from node.clock import Clock, iso
from node.errors import N_, Conflict, InvalidInput, NotFound
from node.store import audit, dead_letters, peer_outbox, rejoin
from node.store import peers as peer_store
from node.store.db import Database, Tx
from node.store.peers import PeerRow
from peers.model import Peer, PeerMode, PeerPolicy, PeerStatus
from protocol.features import HASHSET
from protocol.records import Category, Tlp

# Called inside the transaction in which a peer starts receiving our hash lists (its policy
# now shares hashes and its key document announces the hashset record): (conn, peer, at).
HashesOpened = Callable[[Tx, str, str], object]


def peer_from_row(row: PeerRow) -> Peer:
    return Peer(
        node_id=row.node_id,
        country=row.country,
        endpoint=row.endpoint,
        fingerprint=row.fingerprint,
        status=PeerStatus(row.status),
        mode=PeerMode(row.mode),
        policy=PeerPolicy(
            frozenset(Category(c) for c in orjson.loads(row.categories)),
            Tlp(row.max_tlp),
            row.share_hashes,
        ),
        key_document=row.key_document,
        revoked=frozenset(orjson.loads(row.revoked_keys)),
    )


def parse_policy(
    categories: list[str] | None, max_tlp: str | None, share_hashes: bool = False
) -> PeerPolicy:
    default = PeerPolicy.default()
    try:
        cats = frozenset(Category(c) for c in categories) if categories else default.categories
    except ValueError:
        allowed = ", ".join(c.value for c in Category)
        raise InvalidInput(
            N_("categories must be among {allowed} (got {value})"),
            allowed=allowed,
            value=categories,
        ) from None
    try:
        tlp = Tlp(max_tlp) if max_tlp else default.max_tlp
    except ValueError:
        allowed = ", ".join(t.value for t in Tlp)
        raise InvalidInput(
            N_("max_tlp must be one of {allowed} (got {value!r})"), allowed=allowed, value=max_tlp
        ) from None
    return PeerPolicy(cats, tlp, share_hashes)


def takes_our_hashes(row: PeerRow) -> bool:
    """Whether our shared hash lists go to this peer: its policy shares hashes and its key
    document announces the hashset record (protocol.md §11)."""
    return row.share_hashes and HASHSET in orjson.loads(row.accepts)


def check_node_id(node_id: str) -> str:
    if node_id_problem(node_id):
        # keys' rule, in its words, marked for the console (keys cannot import node.errors;
        # tests/console/test_error_language.py keeps the two texts the same).
        raise InvalidInput(
            N_(
                "node id must be 1-63 lower-case letters, digits, '.' or '-', beginning with a"
                " letter or a digit (got {value!r})"
            ),
            value=node_id,
        )
    return node_id


class PeerRegistry:
    """Peers and their keys. Implements protocol.PeerDirectory for active peers."""

    def __init__(
        self, db: Database, clock: Clock, *, hashes_opened: HashesOpened | None = None
    ) -> None:
        self.db = db
        self.clock = clock
        # A peer that starts receiving our hash lists is sent them whole, in that transaction.
        self.hashes_opened = hashes_opened
        self._keys: dict[str, PublicKeySet] = {}
        self._active: set[str] = set()

    async def load(self) -> None:
        """Fill the key cache; call at start and after any change to peers."""
        keys: dict[str, PublicKeySet] = {}
        active: set[str] = set()
        for row in await peer_store.known(self.db):
            peer = peer_from_row(row)
            public = peer.public_keys()
            if public is not None:
                keys[peer.node_id] = public
            if peer.status is PeerStatus.ACTIVE:
                active.add(peer.node_id)
        self._keys, self._active = keys, active

    # PeerDirectory: only active peers are known senders.
    def keys_for(self, node_id: str) -> PublicKeySet | None:
        return self._keys.get(node_id) if node_id in self._active else None

    def is_active(self, node_id: str) -> bool:
        return node_id in self._active

    async def get(self, node_id: str) -> Peer:
        return peer_from_row(await self.peer(node_id))

    async def peer(self, node_id: str) -> PeerRow:
        """The stored peer, unless it was removed."""
        row = await peer_store.get(self.db, node_id)
        if row is None or row.status == PeerStatus.REMOVED:
            raise NotFound(N_("no peer {peer!r}"), peer=node_id)
        return row

    async def known(self) -> list[PeerRow]:
        """Every peer not removed, by node id."""
        return await peer_store.known(self.db)

    async def all(self, include_removed: bool = False) -> list[PeerRow]:
        return await peer_store.all_peers(self.db, include_removed=include_removed)

    async def add(
        self,
        *,
        document: KeyDocument,
        wire: bytes,
        fingerprint: str,
        endpoint: str,
        mode: PeerMode,
        policy: PeerPolicy,
        actor: str,
        via_directory: bool = False,
    ) -> None:
        """Pin a peer; `via_directory`: to the fingerprint a member list gave, not one typed."""
        now = iso(self.clock.now())

        def add_peer_txn(conn: Tx) -> None:
            existing = peer_store.get_txn(conn, document.node_id)
            if existing is not None and existing.status != PeerStatus.REMOVED:
                raise Conflict(N_("peer {peer} already exists"), peer=document.node_id)
            peer_store.add_txn(
                conn,
                peer_store.NewPeer(
                    node_id=document.node_id,
                    country=document.country,
                    endpoint=endpoint,
                    fingerprint=fingerprint,
                    mode=mode.value,
                    categories=[c.value for c in policy.categories],
                    max_tlp=policy.max_tlp.value,
                    key_document=wire,
                    revoked_keys=list(document.revoked),
                    accepts=tuple(document.accepted),
                    via_directory=via_directory,
                ),
                now,
            )
            audit.append(
                conn,
                at=self.clock.now(),
                actor=actor,
                event="peer.added",
                subject=document.node_id,
                details={
                    "country": document.country,
                    "endpoint": endpoint,
                    "fingerprint": fingerprint,
                    "mode": mode.value,
                    **({"via": "directory"} if via_directory else {}),
                },
            )

        await self.db.run(add_peer_txn)
        await self.load()

    async def set_status(
        self,
        node_id: str,
        status: PeerStatus,
        actor: str,
        *,
        reason: str | None = None,
        by_directory: bool = False,
    ) -> None:
        """The operator's decision (`reason` None), or the member directory's (`reason` says
        why: "left the directory"). An operator who resumes a peer the directory suspended
        takes it over: its pin and status no longer follow the lists."""
        before = await self.peer(node_id)

        def set_status_txn(conn: Tx) -> None:
            peer_store.set_status_txn(conn, node_id, status.value, reason)
            if (
                not by_directory
                and status is PeerStatus.ACTIVE
                and before.via_directory
                and before.status_reason is not None
            ):
                peer_store.set_via_directory_txn(conn, node_id, False)
            audit.append(
                conn,
                at=self.clock.now(),
                actor=actor,
                event=f"peer.{status.value}",
                subject=node_id,
                details={"reason": reason} if reason else None,
            )

        await self.db.run(set_status_txn)
        await self.load()

    async def set_policy(
        self, node_id: str, policy: PeerPolicy, mode: PeerMode | None, actor: str
    ) -> None:
        peer = await self.peer(node_id)

        def set_policy_txn(conn: Tx) -> None:
            before = peer_store.get_txn(conn, node_id)
            peer_store.set_policy_txn(
                conn,
                node_id,
                categories=[c.value for c in policy.categories],
                max_tlp=policy.max_tlp.value,
                mode=mode.value if mode else peer.mode,
                share_hashes=policy.share_hashes,
            )
            audit.append(
                conn,
                at=self.clock.now(),
                actor=actor,
                event="peer.policy",
                subject=node_id,
                details={
                    "categories": sorted(c.value for c in policy.categories),
                    "max_tlp": policy.max_tlp.value,
                    "share_hashes": policy.share_hashes,
                },
            )
            self._hashes_maybe_opened(conn, before, node_id)

        await self.db.run(set_policy_txn)
        await self.load()

    async def follow_directory(
        self,
        node_id: str,
        *,
        fingerprint: str | None = None,
        endpoint: str | None = None,
        adopt: bool = False,
        actor: str,
        version: int,
    ) -> None:
        """What an accepted member list changes on a peer: its pinned fingerprint (a member's
        identity key replaced), its endpoint, or (`adopt`) that it is now the directory's peer
        (an operator pinned it to the fingerprint the list gives). Nothing else calls this."""
        await self.peer(node_id)

        def follow_directory_txn(conn: Tx) -> None:
            details: dict[str, Any] = {"list_version": version}
            if fingerprint is not None:
                peer_store.repin_txn(conn, node_id, fingerprint)
                details["fingerprint"] = fingerprint
            if endpoint is not None:
                peer_store.set_endpoint_txn(conn, node_id, endpoint)
                details["endpoint"] = endpoint
            if adopt:
                peer_store.set_via_directory_txn(conn, node_id, True)
                details["adopted"] = True
            audit.append(
                conn,
                at=self.clock.now(),
                actor=actor,
                event="peer.directory",
                subject=node_id,
                details=details,
            )

        await self.db.run(follow_directory_txn)
        await self.load()

    async def store_document(self, node_id: str, wire: bytes, document: KeyDocument) -> None:
        """A refreshed key document; revocations accumulate and never come back."""
        peer = await self.peer(node_id)
        revoked = set(orjson.loads(peer.revoked_keys)) | set(document.revoked)

        def store_document_txn(conn: Tx) -> None:
            before = peer_store.get_txn(conn, node_id)
            peer_store.set_document_txn(
                conn,
                node_id,
                wire,
                sorted(revoked),
                sorted(document.accepted),
                iso(self.clock.now()),
            )
            # A peer that now announces the hashset record gets our lists if its policy says so.
            self._hashes_maybe_opened(conn, before, node_id)
            audit.append(
                conn,
                at=self.clock.now(),
                actor="scheduler",
                event="peer.keys_refreshed",
                subject=node_id,
                details={"revoked": sorted(revoked)},
            )

        await self.db.run(store_document_txn)
        await self.load()

    def _hashes_maybe_opened(self, conn: Tx, before: PeerRow | None, node_id: str) -> None:
        """Send our shared lists whole to a peer that has just started to receive them."""
        after = peer_store.get_txn(conn, node_id)
        if self.hashes_opened is None or after is None or after.status == PeerStatus.REMOVED:
            return
        if takes_our_hashes(after) and (before is None or not takes_our_hashes(before)):
            self.hashes_opened(conn, node_id, iso(self.clock.now()))

    async def requeue_dead(self, node_id: str, actor: str) -> int:
        """Queue again, in their order, the records the peer rejected (once the cause is fixed).

        They go to the end of the queue under new sequence numbers: a pulling peer's cursor is
        already past their old ones. The dead rows stay as history, marked `requeued`; a record
        the peer rejects again is dead-lettered again. Returns how many were queued.
        """
        await self.peer(node_id)
        at = self.clock.now()

        def requeue_dead_txn(conn: Tx) -> int:
            requeued = peer_outbox.requeue_dead_txn(conn, node_id, iso(at))
            if not requeued:
                return 0
            audit.append(
                conn,
                at=at,
                actor=actor,
                event="peer.requeued",
                subject=node_id,
                details={"records": len(requeued), "seqs": requeued[:100]},
            )
            return len(requeued)

        return await self.db.run(requeue_dead_txn)

    async def describe(self, node_id: str) -> dict[str, Any]:
        row = await self.peer(node_id)
        peer = peer_from_row(row)
        document = peer.document()
        now = self.clock.now()
        keys = []
        if document is not None:
            for purpose, entries in (
                ("sig", document.signing_keys),
                ("enc", document.encryption_keys),
            ):
                for entry in entries:
                    keys.append(
                        {
                            "purpose": purpose,
                            "kid": entry.kid,
                            "not_before": entry.not_before,
                            "not_after": entry.not_after,
                            "revoked": entry.kid in peer.revoked,
                        }
                    )
        return {
            **summary(row),
            "fingerprint": row.fingerprint,
            "keys": keys,
            "revoked_keys": sorted(peer.revoked),
            "keys_refreshed_at": row.keys_refreshed_at,
            "queue_depth": await peer_outbox.pending_count(self.db, node_id),
            "dead_letters": await dead_letters.count_for(self.db, node_id),
            # Rejected records of ours that `peers requeue` would send again.
            "dead_outbox": await peer_outbox.dead_count(self.db, node_id),
            "backoff_attempts": row.backoff_attempts,
            "backoff_until": row.backoff_until,
            "backing_off": bool(row.backoff_until and row.backoff_until > iso(now)),
            "last_error": row.last_error,
            # Set while the peer refuses our pushes outright: its records are held meanwhile.
            "refused": row.refused,
            # What its key document announces it reads beyond protocol v1.
            "accepts": orjson.loads(row.accepts),
            # Its actions on cases of ours we do not hold, or do not know we sent it (lost
            # with a restore of an older backup): kept, not refused.
            "actions_on_unknown_cases": [
                dict(a) for a in await rejoin.orphans_from(self.db, node_id)
            ],
        }


def summary(peer: PeerRow) -> dict[str, Any]:
    return {
        "node_id": peer.node_id,
        "country": peer.country,
        "endpoint": peer.endpoint,
        "status": peer.status,
        "status_reason": peer.status_reason,
        "pinned_by": "directory" if peer.via_directory else "operator",
        "mode": peer.mode,
        "categories": orjson.loads(peer.categories),
        "max_tlp": peer.max_tlp,
        "share_hashes": peer.share_hashes,
        "last_contact_at": peer.last_contact_at,
        "delivered": peer.delivered,
        "received": peer.received,
    }
