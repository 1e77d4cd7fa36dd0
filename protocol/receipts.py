"""The receipt rules a pusher applies to an answer (protocol.md §13.4), with no I/O."""

from __future__ import annotations

from collections.abc import Callable

from protocol.envelope import Opened, envelope_digest
from protocol.errors import ProtocolError
from protocol.federation import ItemStatus, TransactionResponse
from protocol.records import Receipt


class ReceiptMismatch(ProtocolError):
    """The answer's receipt is missing, is not a receipt, or does not cover what was taken."""

    status = 502


def taken(answer: TransactionResponse) -> set[str]:
    """Digests of the frames the receiver took: `accepted` or `duplicate`, not `rejected`."""
    return {r.digest for r in answer.results if r.status is not ItemStatus.REJECTED}


def check_receipt(
    answer: TransactionResponse, txn_id: str, record: object, peer: str | None = None
) -> Receipt:
    """The opened receipt must be the peer's, answer this transaction and list exactly the
    frames taken, even when that is none (`accepted: []`)."""
    if answer.txn_id != txn_id or answer.receipt is None:
        raise ReceiptMismatch(f"answer without a receipt for {txn_id}")
    if not isinstance(record, Receipt) or record.txn_id != txn_id:
        raise ReceiptMismatch(f"the receipt does not answer {txn_id}")
    if peer is not None and record.by != peer:
        raise ReceiptMismatch(f"the receipt is by {record.by}, not {peer}")
    if set(record.accepted) != taken(answer):
        raise ReceiptMismatch("the receipt does not list exactly the frames taken")
    return record


class ReceiptLedger:
    """Receipts already verified, by the digest of their frame.

    A receiver answers a transaction it has seen again with the answer it stored, receipt frame
    included. Opening that frame a second time would trip the sender's own replay memory
    (same `from`, same `msg_id`); its digest says it is the receipt already verified.
    """

    def __init__(self) -> None:
        self._by_digest: dict[str, Receipt] = {}

    def accept(
        self,
        frame: bytes,
        answer: TransactionResponse,
        txn_id: str,
        open_: Callable[[bytes], Opened],
        peer: str | None = None,
    ) -> Receipt:
        digest = envelope_digest(frame)
        known = self._by_digest.get(digest)
        record = known if known is not None else open_(frame).record
        receipt = check_receipt(answer, txn_id, record, peer)
        self._by_digest[digest] = receipt
        return receipt

    def __contains__(self, digest: object) -> bool:
        return digest in self._by_digest
