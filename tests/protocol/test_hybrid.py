"""The hybrid suite (ML-KEM-768 + X25519): advertised, chosen, bound, never downgraded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from uuid import uuid4

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from keys import (
    KeyDocumentError,
    PublicKeySet,
    build_key_document,
    canonical_json,
    sign_key_document,
    verify_key_document,
)
from keys.document import CLASSIC_SUITE, HYBRID_SUITE, KEY_DOCUMENT_LABEL
from keys.material import Validity
from keys.thumbprint import b64url, b64url_decode
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


def _classic_to(kid: str, key: X25519PublicKey, sender: HotlineNode, to: str) -> bytes:
    return seal_record(
        sample_report(sender.node_id),
        sender=sender.node_id,
        signing_key=sender.keys.current_signing(NOW),
        recipient=to,
        recipient_kid=kid,
        recipient_key=key,
        msg_id=uuid4(),
        now=NOW,
    )


def test_a_revoked_hybrid_key_does_not_make_its_classic_key_hybrid_only() -> None:
    """§6.3 2(c): de-eco revoked the hybrid key published with its classic key, then rotated.
    A sender that fetched the document between the two saw that classic key with no hybrid key:
    sealing to it in the classic suite is no downgrade, during the whole overlap."""
    fr = make_node("fr-pdc", "FR", hybrid=True)
    de = make_node("de-eco", "DE", NOW - timedelta(days=10), hybrid=True)
    de.keys = de.keys.revoke(de.keys.hybrid[0].kid)
    between = de.public()
    assert not between.advertises_hybrid  # the document between lists no hybrid key
    de.keys = de.keys.rotate(NOW - timedelta(days=1))
    assert de.keys.offers_hybrid(NOW)  # (a) holds again
    kid, key = between.encryption_key(NOW)
    assert _open(_classic_to(kid, key, fr, "de-eco"), de, fr).header.suite == CLASSIC_SUITE
    # The classic key of the rotation was published with the new hybrid key: downgrade.
    kid, key = de.public().encryption_key(NOW)
    with pytest.raises(OpenError) as refused:
        _open(_classic_to(kid, key, fr, "de-eco"), de, fr)
    assert refused.value.reason is OpenFailure.DOWNGRADE


def test_a_hybrid_key_whose_window_does_not_hold_the_classic_keys_does_not_count() -> None:
    """§6.3 2(c): only a hybrid key listed in every document that listed the classic key
    counts, i.e. unrevoked and valid over the classic key's whole window."""
    de = make_node("de-eco", "DE", hybrid=True)
    classic = de.keys.encryption[0]
    assert de.keys.requires_hybrid(classic.kid)
    hybrid = de.keys.hybrid[0]
    shorter = Validity(hybrid.validity.not_before, classic.validity.not_after - timedelta(days=1))
    assert not replace(de.keys, hybrid=[replace(hybrid, validity=shorter)]).requires_hybrid(
        classic.kid
    )


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


def test_suites_and_hybrid_keys_that_disagree_are_read_by_one_rule() -> None:
    """§3.2: the hybrid suite is used only when `suites` lists it and a usable hybrid key is
    published; the classic suite is always accepted, listed or not; nothing here refuses."""
    node = make_node("de-eco", "DE", hybrid=True)
    fingerprint = node.keys.fingerprint
    classic_kid, hybrid_kid = node.keys.encryption[0].kid, node.keys.hybrid[0].kid

    def read(change: Mapping[str, object]) -> PublicKeySet:
        document = verify_key_document(_wire(node, change), pinned_fingerprint=fingerprint)
        return PublicKeySet.from_document(document)

    # The hybrid suite listed, no hybrid key: classic.
    no_keys = read({"suites": [CLASSIC_SUITE, HYBRID_SUITE], "hybrid_keys": []})
    assert no_keys.sealing_key(NOW)[0] == classic_kid
    # Hybrid keys published, the suite not listed: the keys are not used.
    unlisted = read({"suites": [CLASSIC_SUITE]})
    assert not unlisted.advertises_hybrid
    assert unlisted.sealing_key(NOW)[0] == classic_kid
    # `suites` without the classic suite: read as if it listed it.
    hybrid_only = read({"suites": [HYBRID_SUITE]})
    assert hybrid_only.suites == {CLASSIC_SUITE, HYBRID_SUITE}
    assert hybrid_only.sealing_key(NOW)[0] == hybrid_kid
    assert read({"suites": [HYBRID_SUITE], "hybrid_keys": []}).sealing_key(NOW)[0] == classic_kid


def test_null_optional_members_of_a_key_document_mean_absent() -> None:
    """The schema allows `null` for `suites`, `hybrid_keys` and `accepts`: a reader takes it
    as the member's absence (§3.2); the reference writer never writes it."""
    node = make_node("de-eco", "DE", hybrid=True)
    nulls = {"suites": None, "hybrid_keys": None, "accepts": None}
    wire = _wire(node, nulls)
    document = verify_key_document(wire, pinned_fingerprint=node.keys.fingerprint)
    assert (document.suites, document.hybrid_keys, document.accepts) == (None, None, None)
    public = PublicKeySet.from_document(document)
    assert public.suites == {CLASSIC_SUITE}
    assert public.sealing_key(NOW)[0] == node.keys.encryption[0].kid
    assert document.accepted == frozenset()
    written = orjson.loads(_wire(node))
    body = orjson.loads(b64url_decode(written["document"]))
    assert None not in body.values()


def test_the_suite_comes_from_the_newest_document_and_the_hybrid_key_from_the_merged_set() -> None:
    """§3.4/§6.3 rule 1: `suites` is the newest document's; the hybrid key, like every key, is
    the newest usable one of all documents merged (a key a newer document leaves out stays
    usable until it expires or is revoked)."""
    node = make_node("de-eco", "DE", hybrid=True)
    fingerprint = node.keys.fingerprint
    hybrid_kid = node.keys.hybrid[0].kid

    def read(change: Mapping[str, object]) -> PublicKeySet:
        document = verify_key_document(_wire(node, change), pinned_fingerprint=fingerprint)
        return PublicKeySet.from_document(document)

    earlier = read({})
    newer_without_the_key = read({"hybrid_keys": []})
    assert earlier.merged_with(newer_without_the_key).sealing_key(NOW)[0] == hybrid_kid
    newer_without_the_suite = read({"suites": [CLASSIC_SUITE]})
    merged = earlier.merged_with(newer_without_the_suite)
    assert hybrid_kid in merged.hybrid
    assert merged.sealing_key(NOW)[0] == node.keys.encryption[0].kid
