"""Receipt rules and suites between two in-memory endpoints (tests/helpers/pair.py): no I/O."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from keys.document import CLASSIC_SUITE, HYBRID_SUITE
from protocol import OpenError, OpenFailure, read_header
from protocol.federation import ItemStatus, TransactionResponse, decode_frame
from protocol.httpsig import RequestSignatureError, SignedRequest, content_digest
from protocol.receipts import ReceiptMismatch, check_receipt
from tests.factories import NOW, sample_report
from tests.helpers.pair import FederationPair


@pytest.fixture
def pair() -> FederationPair:
    return FederationPair.make(NOW)


def _statuses(body: bytes) -> list[str]:
    return [r.status.value for r in TransactionResponse.model_validate_json(body).results]


def test_a_receipt_lists_what_was_accepted_and_matches_the_answer(pair: FederationPair) -> None:
    frames = [pair.fr.seal(sample_report("fr-pdc"), "de-eco", NOW) for _ in range(3)]
    tampered = bytearray(frames[1])
    tampered[-1] ^= 1
    frames[1] = bytes(tampered)
    txn_id, body = pair.push(pair.fr, pair.de, frames, NOW)
    assert _statuses(body) == ["accepted", "rejected", "accepted"]
    receipt = pair.fr.check_answer(body, txn_id, NOW)
    answer = TransactionResponse.model_validate_json(body)
    assert set(receipt.accepted) == {answer.results[0].digest, answer.results[2].digest}
    assert receipt.by == "de-eco"


def test_a_frame_taken_before_is_a_duplicate_and_is_in_the_receipt(pair: FederationPair) -> None:
    frame = pair.fr.seal(sample_report("fr-pdc"), "de-eco", NOW)
    pair.push(pair.fr, pair.de, [frame], NOW)
    txn_id, body = pair.push(pair.fr, pair.de, [frame], NOW)
    assert _statuses(body) == ["duplicate"]
    assert pair.fr.check_answer(body, txn_id, NOW).accepted == (
        TransactionResponse.model_validate_json(body).results[0].digest,
    )


def test_nothing_taken_still_gets_a_receipt_with_an_empty_list(pair: FederationPair) -> None:
    junk = bytearray(pair.fr.seal(sample_report("fr-pdc"), "de-eco", NOW))
    junk[-1] ^= 1
    txn_id, body = pair.push(pair.fr, pair.de, [bytes(junk)], NOW)
    assert _statuses(body) == ["rejected"]
    assert pair.fr.check_answer(body, txn_id, NOW).accepted == ()


def test_a_stored_answer_repeated_is_recognised_by_its_receipt_digest(
    pair: FederationPair,
) -> None:
    frame = pair.fr.seal(sample_report("fr-pdc"), "de-eco", NOW)
    txn_id = "txn-retried-0001"
    first = pair.de.answer("fr-pdc", txn_id, [frame], NOW)
    again = pair.de.answer("fr-pdc", txn_id, [frame], NOW + timedelta(minutes=1))
    assert again == first  # byte for byte, receipt frame included
    receipt = pair.fr.check_answer(first, txn_id, NOW)
    # Opened a second time, the receipt trips the sender's own replay memory ...
    receipt_frame = decode_frame(TransactionResponse.model_validate_json(again).receipt or "")
    with pytest.raises(OpenError) as refused:
        pair.fr.open(receipt_frame, NOW)
    assert refused.value.reason is OpenFailure.REPLAY
    # ... so the sender recognises it by its digest instead.
    assert pair.fr.check_answer(again, txn_id, NOW + timedelta(minutes=1)) == receipt


def _answer_with(body: bytes, **changes: object) -> TransactionResponse:
    data = orjson.loads(body)
    data.update(changes)
    return TransactionResponse.model_validate_json(orjson.dumps(data))


def test_a_receipt_that_does_not_match_its_answer_is_refused(pair: FederationPair) -> None:
    frames = [pair.fr.seal(sample_report("fr-pdc"), "de-eco", NOW) for _ in range(2)]
    txn_id, body = pair.push(pair.fr, pair.de, frames, NOW)
    answer = TransactionResponse.model_validate_json(body)
    receipt = pair.fr.open(decode_frame(answer.receipt or ""), NOW).record
    # The answer claims one item was rejected, but the receipt lists it: refused.
    results = orjson.loads(body)["results"]
    results[1]["status"] = ItemStatus.REJECTED.value
    with pytest.raises(ReceiptMismatch, match="exactly the frames taken"):
        check_receipt(_answer_with(body, results=results), txn_id, receipt)
    # A receipt for another transaction, or none at all: refused.
    with pytest.raises(ReceiptMismatch, match="does not answer"):
        check_receipt(_answer_with(body, txn_id="txn-another-1"), "txn-another-1", receipt)
    with pytest.raises(ReceiptMismatch, match="without a receipt"):
        check_receipt(_answer_with(body, receipt=None), txn_id, receipt)
    # A receipt by another node than the peer pushed to.
    with pytest.raises(ReceiptMismatch, match="not it-hotline"):
        check_receipt(answer, txn_id, receipt, "it-hotline")
    assert check_receipt(answer, txn_id, receipt, "de-eco").by == "de-eco"
    # And a record that is not a receipt.
    with pytest.raises(ReceiptMismatch, match="does not answer"):
        check_receipt(answer, txn_id, sample_report("de-eco"))


def test_hybrid_is_used_when_both_offer_it_and_classic_otherwise() -> None:
    both = FederationPair.make(NOW)
    frame = both.fr.seal(sample_report("fr-pdc"), "de-eco", NOW)
    assert read_header(frame).header.suite == HYBRID_SUITE
    assert both.de.open(frame, NOW).record.type == "report"

    classic_de = FederationPair.make(NOW, de_hybrid=False)
    frame = classic_de.fr.seal(sample_report("fr-pdc"), "de-eco", NOW)
    assert read_header(frame).header.suite == CLASSIC_SUITE
    assert classic_de.de.open(frame, NOW).record.type == "report"
    # The other way FR offers the hybrid suite, and DE (whose code has it) uses it.
    back = classic_de.de.seal(sample_report("de-eco"), "fr-pdc", NOW)
    assert read_header(back).header.suite == HYBRID_SUITE
    assert classic_de.fr.open(back, NOW).header.from_ == "de-eco"


def test_signed_requests_pass_between_the_pair_and_bind_the_destination(
    pair: FederationPair,
) -> None:
    get = SignedRequest("GET", "de-eco.example", "/hln/federation/v1/outbox", "?after=0", b"")
    headers = pair.fr.sign(get, NOW)
    assert headers["Content-Digest"] == content_digest(b"")
    assert pair.de.verify(get, headers, NOW) == "fr-pdc"
    with pytest.raises(RequestSignatureError, match="nonce was already used"):
        pair.de.verify(get, headers, NOW)
    elsewhere = SignedRequest("GET", "it.example", get.path, get.query, b"")
    with pytest.raises(RequestSignatureError, match="another destination"):
        pair.de.verify(elsewhere, pair.fr.sign(get, NOW), NOW)
