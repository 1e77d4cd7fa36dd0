"""Two in-memory federation endpoints, in the manner of h11's ConnectionPair: no SQLite, no HTTP.

Each endpoint holds real keys and what protocol/ asks of a node (peer keys learnt from a
verified key document, replay and nonce memories, stored answers, verified receipts). Frames,
request signatures, answers and receipts pass between them as bytes, exactly as on the wire.
The receiver's per-item rules here are the protocol's (protocol.md §13.4), not the node's store.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID, uuid4

import orjson

from keys import (
    NodeKeys,
    PublicKeySet,
    build_key_document,
    sign_key_document,
    verify_key_document,
)
from protocol import (
    MemoryReplayGuard,
    Opened,
    OpenError,
    OpenFailure,
    Receipt,
    Record,
    envelope_digest,
    open_envelope,
    seal,
)
from protocol.federation import (
    ItemResult,
    ItemStatus,
    TransactionResponse,
    decode_frame,
    encode_frame,
)
from protocol.httpsig import MemoryNonceGuard, SignedRequest, sign_request, verify_request
from protocol.receipts import ReceiptLedger, check_receipt


@dataclass
class Endpoint:
    node_id: str
    country: str
    keys: NodeKeys
    endpoint: str
    peers: dict[str, PublicKeySet] = field(default_factory=dict)
    replay: MemoryReplayGuard = field(default_factory=MemoryReplayGuard)
    nonces: MemoryNonceGuard = field(default_factory=MemoryNonceGuard)
    answers: dict[tuple[str, str], bytes] = field(default_factory=dict)
    taken: set[str] = field(default_factory=set)
    receipts: ReceiptLedger = field(default_factory=ReceiptLedger)

    # PeerDirectory
    def keys_for(self, node_id: str) -> PublicKeySet | None:
        return self.peers.get(node_id)

    def key_document(self, now: datetime) -> bytes:
        document = build_key_document(
            self.keys, node_id=self.node_id, country=self.country, endpoint=self.endpoint, now=now
        )
        return sign_key_document(document, self.keys)

    def learn(self, wire: bytes, fingerprint: str) -> None:
        """Take a peer's key document, checked against the fingerprint pinned for it."""
        document = verify_key_document(wire, pinned_fingerprint=fingerprint)
        public = PublicKeySet.from_document(document)
        known = self.peers.get(document.node_id)
        self.peers[document.node_id] = known.merged_with(public) if known else public

    # envelopes ------------------------------------------------------------------------------
    def seal(self, record: Record, to: str, now: datetime, msg_id: UUID | None = None) -> bytes:
        kid, key = self.peers[to].sealing_key(now)
        return seal(
            record,
            sender=self.node_id,
            signing_key=self.keys.current_signing(now),
            recipient=to,
            recipient_kid=kid,
            recipient_key=key,
            msg_id=msg_id or uuid4(),
            now=now,
        )

    def open(self, frame: bytes, now: datetime, replay: MemoryReplayGuard | None = None) -> Opened:
        return open_envelope(
            frame,
            recipient=self.node_id,
            keys=self.keys,
            peers=self,
            replay=replay or self.replay,
            now=now,
        )

    # signed requests --------------------------------------------------------------------------
    def sign(self, request: SignedRequest, now: datetime) -> dict[str, str]:
        return sign_request(
            request,
            node_id=self.node_id,
            key=self.keys.current_signing(now),
            nonce=secrets.token_urlsafe(18),
            now=now,
        )

    def verify(self, request: SignedRequest, headers: dict[str, str], now: datetime) -> str:
        return verify_request(request, headers, peers=self, nonces=self.nonces, now=now)

    # push: the receiver's answer, and the sender's check of it --------------------------------
    def answer(self, sender: str, txn_id: str, frames: list[bytes], now: datetime) -> bytes:
        """The answer to a pushed transaction: per item, and a receipt over what was taken."""
        stored = self.answers.get((sender, txn_id))
        if stored is not None:
            return stored  # the same bytes again, receipt frame included
        results = [self._item(sender, frame, now) for frame in frames]
        taken = [r.digest for r in results if r.status is not ItemStatus.REJECTED]
        receipt = Receipt(id=uuid4(), txn_id=txn_id, by=self.node_id, at=now, accepted=taken)
        answer = orjson.dumps(
            TransactionResponse(
                txn_id=txn_id,
                results=results,
                receipt=encode_frame(self.seal(receipt, sender, now)),
            ).model_dump(mode="json", exclude_none=True)
        )
        self.answers[(sender, txn_id)] = answer
        return answer

    def _item(self, sender: str, frame: bytes, now: datetime) -> ItemResult:
        digest = envelope_digest(frame)
        try:
            opened = self.open(frame, now)
        except OpenError as exc:
            if exc.reason is OpenFailure.REPLAY and digest in self.taken:
                return ItemResult(digest=digest, status=ItemStatus.DUPLICATE)
            return ItemResult(digest=digest, status=ItemStatus.REJECTED, error=str(exc))
        if opened.header.from_ != sender:
            return ItemResult(digest=digest, status=ItemStatus.REJECTED, error="relayed")
        self.taken.add(digest)
        return ItemResult(digest=digest, status=ItemStatus.ACCEPTED)

    def check_answer(self, body: bytes, txn_id: str, now: datetime) -> Receipt:
        """What a pusher does with an answer: open the receipt (unless its digest says it was
        verified already) and check that it lists exactly what was taken."""
        answer = TransactionResponse.model_validate_json(body)
        if answer.receipt is None:
            return check_receipt(answer, txn_id, None)  # raises: a receipt is required
        frame = decode_frame(answer.receipt)
        peer = next(iter(self.peers)) if len(self.peers) == 1 else None
        return self.receipts.accept(frame, answer, txn_id, lambda f: self.open(f, now), peer)


@dataclass
class FederationPair:
    """FR and DE, each having pinned and fetched the other's key document."""

    fr: Endpoint
    de: Endpoint

    @classmethod
    def make(
        cls, now: datetime, *, fr_hybrid: bool = True, de_hybrid: bool = True
    ) -> FederationPair:
        def endpoint(node_id: str, country: str, hybrid: bool) -> Endpoint:
            keys = NodeKeys.generate(now)
            if not hybrid:
                keys = NodeKeys(keys.identity, keys.signing, keys.encryption)
            return Endpoint(node_id, country, keys, f"https://{node_id}.example/hln")

        pair = cls(endpoint("fr-pdc", "FR", fr_hybrid), endpoint("de-eco", "DE", de_hybrid))
        pair.fr.learn(pair.de.key_document(now), pair.de.keys.fingerprint)
        pair.de.learn(pair.fr.key_document(now), pair.fr.keys.fingerprint)
        return pair

    def push(
        self, sender: Endpoint, receiver: Endpoint, frames: list[bytes], now: datetime
    ) -> tuple[str, bytes]:
        """A push transaction over the pair: the txn id and the receiver's answer bytes."""
        txn_id = secrets.token_urlsafe(12)
        return txn_id, receiver.answer(sender.node_id, txn_id, frames, now)
