"""The hybrid suite (ML-KEM-768 + X25519): advertised, chosen, bound, never downgraded."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from uuid import uuid4

import orjson
import pytest

from keys import (
    KeyDocumentError,
    PublicKeySet,
    build_key_document,
    canonical_json,
    sign_key_document,
    verify_key_document,
)
from keys.document import CLASSIC_SUITE, HYBRID_SUITE, KEY_DOCUMENT_LABEL
from keys.thumbprint import b64url
from protocol import MemoryReplayGuard, Opened, OpenError, OpenFailure, open_envelope, read_header
from protocol import seal as seal_record
from protocol.envelope import MAGIC
from tests.factories import NOW, Directory, make_node, sample_report
from tests.factories import TestNode as HotlineNode


def _seal(sender: HotlineNode, receiver: HotlineNode, *, classic: bool = False) -> bytes:
    public = receiver.public()
    kid, key = public.encryption_key(NOW) if classic else public.sealing_key(NOW)
    return seal_record(
        sample_report(sender.node_id),
        sender=sender.node_id,
        signing_key=sender.keys.current_signing(NOW),
        recipient=receiver.node_id,
        recipient_kid=kid,
        recipient_key=key,
        msg_id=uuid4(),
        now=NOW,
    )


def _open(frame: bytes, receiver: HotlineNode, sender: HotlineNode) -> Opened:
    return open_envelope(
        frame,
        recipient=receiver.node_id,
        keys=receiver.keys,
        peers=Directory(sender),
        replay=MemoryReplayGuard(),
        now=NOW,
    )


def test_a_hybrid_frame_has_the_hybrid_enc_and_opens() -> None:
    fr, de = make_node("fr-pdc", "FR", hybrid=True), make_node("de-eco", "DE", hybrid=True)
    frame = _seal(fr, de)
    read = read_header(frame)
    assert read.header.suite == HYBRID_SUITE
    assert read.header.to_kid == de.keys.hybrid[0].kid
    # enc is 1120 bytes (ML-KEM-768 ciphertext 1088, X25519 32), then signature+payload+tag.
    payload = len(orjson.dumps(sample_report("fr-pdc").model_dump(mode="json", exclude_none=True)))
    assert len(read.sealed) - 1120 - 64 - 16 == pytest.approx(payload, abs=64)
    assert _open(frame, de, fr).record.type == "report"


def test_a_classic_frame_between_two_hybrid_nodes_is_a_downgrade() -> None:
    fr, de = make_node("fr-pdc", "FR", hybrid=True), make_node("de-eco", "DE", hybrid=True)
    with pytest.raises(OpenError) as refused:
        _open(_seal(fr, de, classic=True), de, fr)
    assert refused.value.reason is OpenFailure.DOWNGRADE


def test_classic_is_accepted_from_a_sender_that_never_advertised_hybrid() -> None:
    fr, de = make_node("fr-pdc", "FR"), make_node("de-eco", "DE", hybrid=True)
    assert _open(_seal(fr, de, classic=True), de, fr).header.suite == CLASSIC_SUITE


def test_classic_to_a_key_older_than_our_first_hybrid_key_is_accepted() -> None:
    """The sender may hold our document from before we had a hybrid key: not a downgrade."""
    fr = make_node("fr-pdc", "FR", hybrid=True)
    de = make_node("de-eco", "DE", NOW - timedelta(days=10))  # classic only
    old_public = de.public()
    de.keys = de.keys.rotate(NOW - timedelta(days=1))  # a hybrid key; the old key overlaps
    kid, key = old_public.encryption_key(NOW)
    frame = seal_record(
        sample_report("fr-pdc"),
        sender="fr-pdc",
        signing_key=fr.keys.current_signing(NOW),
        recipient="de-eco",
        recipient_kid=kid,
        recipient_key=key,
        msg_id=uuid4(),
        now=NOW,
    )
    assert de.keys.offers_hybrid(NOW)
    assert _open(frame, de, fr).header.suite == CLASSIC_SUITE


def test_the_suite_cannot_be_swapped_in_the_header() -> None:
    fr, de = make_node("fr-pdc", "FR", hybrid=True), make_node("de-eco", "DE", hybrid=True)
    frame = _seal(fr, de)
    read = read_header(frame)
    header = read.header_bytes.replace(HYBRID_SUITE.encode(), CLASSIC_SUITE.encode())
    swapped = MAGIC + len(header).to_bytes(2, "big") + header + read.sealed
    with pytest.raises(OpenError) as refused:
        _open(swapped, de, fr)
    # The classic key schedule cannot read a hybrid enc: it never reaches the signature.
    assert refused.value.reason in (OpenFailure.RECIPIENT_KEY, OpenFailure.DOWNGRADE)


# --- the key document ------------------------------------------------------------------------


def _wire(node: HotlineNode, change: Mapping[str, object] | None = None) -> bytes:
    document = build_key_document(
        node.keys, node_id=node.node_id, country=node.country, endpoint="https://x", now=NOW
    )
    if change is None:
        return sign_key_document(document, node.keys)
    body = canonical_json({**document.model_dump(mode="json", exclude_none=True), **change})
    signature = node.keys.identity.sign(KEY_DOCUMENT_LABEL + body)
    return canonical_json({"document": b64url(body), "signature": b64url(signature)})


def test_a_document_without_suites_means_classic_only() -> None:
    node = make_node("de-eco", "DE")
    document = verify_key_document(_wire(node), pinned_fingerprint=node.keys.fingerprint)
    assert "suites" not in orjson.loads(_wire(node))  # the wrapper; and inside:
    assert document.suites is None
    assert document.hybrid_keys is None
    public = PublicKeySet.from_document(document)
    assert public.suites == {CLASSIC_SUITE}
    assert public.sealing_key(NOW)[0] == node.keys.encryption[0].kid


def test_a_hybrid_node_advertises_both_suites_and_its_hybrid_key() -> None:
    node = make_node("de-eco", "DE", hybrid=True)
    document = verify_key_document(_wire(node), pinned_fingerprint=node.keys.fingerprint)
    assert document.suites == [CLASSIC_SUITE, HYBRID_SUITE]
    assert document.hybrid_keys is not None
    assert [k.kid for k in document.hybrid_keys] == [node.keys.hybrid[0].kid]
    assert PublicKeySet.from_document(document).sealing_key(NOW)[0] == node.keys.hybrid[0].kid


def test_unknown_members_and_unknown_suites_are_ignored() -> None:
    node = make_node("de-eco", "DE", hybrid=True)
    wire = _wire(node, {"future_member": {"x": 1}, "suites": [CLASSIC_SUITE, "hpke-future"]})
    document = verify_key_document(wire, pinned_fingerprint=node.keys.fingerprint)
    public = PublicKeySet.from_document(document)
    assert not public.advertises_hybrid  # the hybrid suite is no longer in its list
    assert public.sealing_key(NOW)[0] == node.keys.encryption[0].kid


def test_a_hybrid_key_whose_kid_is_not_its_thumbprint_is_refused() -> None:
    node = make_node("de-eco", "DE", hybrid=True)
    other = make_node("it-hotline", "IT", hybrid=True)
    document = build_key_document(
        node.keys, node_id=node.node_id, country="DE", endpoint="https://x", now=NOW
    )
    entry = document.model_dump(mode="json", exclude_none=True)["hybrid_keys"][0]
    entry["key"] = b64url(other.keys.hybrid[0].public_raw)
    with pytest.raises(KeyDocumentError, match="not the thumbprint"):
        verify_key_document(
            _wire(node, {"hybrid_keys": [entry]}), pinned_fingerprint=node.keys.fingerprint
        )


def test_the_order_of_keys_in_a_document_does_not_matter() -> None:
    """§3.2: arrays are sets; a receiver chooses by validity and kid, never by position."""
    node = make_node("de-eco", "DE", hybrid=True)
    node.keys = node.keys.rotate(NOW)
    plain = build_key_document(node.keys, node_id="de-eco", country="DE", endpoint="x", now=NOW)
    dumped = plain.model_dump(mode="json", exclude_none=True)
    reversed_lists = {
        name: list(reversed(dumped[name]))
        for name in ("signing_keys", "encryption_keys", "hybrid_keys")
    }
    forward = PublicKeySet.from_document(
        verify_key_document(_wire(node), pinned_fingerprint=node.keys.fingerprint)
    )
    backward = PublicKeySet.from_document(
        verify_key_document(_wire(node, reversed_lists), pinned_fingerprint=node.keys.fingerprint)
    )
    assert forward.sealing_key(NOW)[0] == backward.sealing_key(NOW)[0]
    assert forward.encryption_key(NOW)[0] == backward.encryption_key(NOW)[0]
    assert forward.hybrid.keys() == backward.hybrid.keys()
