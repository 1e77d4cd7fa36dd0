"""A peer as the registry knows it: identity pin, endpoint, policy, and its verified keys."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from keys import KeyDocument, PublicKeySet, verify_key_document
from protocol.records import Category, Tlp


class PeerStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REMOVED = "removed"


class PeerMode(StrEnum):
    PUSH = "push"  # we deliver to it
    PULL = "pull"  # it cannot accept connections: it pulls from our outbox


@dataclass(frozen=True)
class PeerPolicy:
    categories: frozenset[Category]
    max_tlp: Tlp
    # Hash lists are exchanged with the peer both ways (ours go to it, its lists are taken
    # from it): off until the operator turns it on.
    share_hashes: bool = False

    @classmethod
    def default(cls) -> PeerPolicy:
        return cls(frozenset(Category), Tlp.AMBER)


@dataclass(frozen=True)
class Peer:
    node_id: str
    country: str
    endpoint: str
    fingerprint: str
    status: PeerStatus
    mode: PeerMode
    policy: PeerPolicy
    key_document: bytes | None
    revoked: frozenset[str]

    def document(self) -> KeyDocument | None:
        if self.key_document is None:
            return None
        return verify_key_document(self.key_document, pinned_fingerprint=self.fingerprint)

    def public_keys(self) -> PublicKeySet | None:
        document = self.document()
        if document is None:
            return None
        keys = PublicKeySet.from_document(document)
        # Revocations seen in any earlier document stay in force.
        earlier = PublicKeySet(keys.node_id, {}, {}, self.revoked)
        return earlier.merged_with(keys)
