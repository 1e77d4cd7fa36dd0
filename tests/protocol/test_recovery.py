"""Records given back to their author (protocol.md §13.8): the author takes only what it signed
and sent to that holder; what it cannot check is told apart from a forgery."""

from __future__ import annotations

import struct
from dataclasses import replace
from datetime import timedelta
from uuid import uuid4

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from keys import NodeKeys, SigningKey, Validity
from keys.thumbprint import b64url
from protocol import (
    Action,
    ActionCode,
    OpenError,
    OpenFailure,
    Receipt,
    Report,
    Withdrawal,
    record_bytes,
    seal,
)
from protocol.envelope import MAX_HEADER_BYTES, SIGNATURE_BYTES, read_header, unseal_kept
from protocol.records import HashAddition, HashSet
from protocol.recovery import (
    MAX_RECOVERY_PAGE,
    OwnRecord,
    RecoveredRecord,
    RecoveryPage,
    RecoveryRefused,
    SignedRecord,
    check_own_record,
)
from tests.factories import NOW, make_node, sample_report, signed_record
from tests.factories import TestNode as HotlineNode  # aliased: pytest would collect Test*

PROPERTY = settings(max_examples=75, deadline=None)
KEYS_FROM = NOW - timedelta(days=30)
AUTHOR = make_node("fr-pdc", "FR", KEYS_FROM)
HOLDER = make_node("de-eco", "DE", KEYS_FROM)
OTHER = make_node("it-ks", "IT", KEYS_FROM)
HYBRID_HOLDER = make_node("de-eco", "DE", KEYS_FROM, hybrid=True)


def signing(node: HotlineNode) -> SigningKey:
    return node.keys.current_signing(NOW)


def sealed(record: Report | Action | Withdrawal, *, hybrid: bool = False) -> bytes:
    """`record` as AUTHOR seals it to the holder (a hybrid holder when `hybrid`)."""
    holder = HYBRID_HOLDER if hybrid else HOLDER
    kid, key = holder.public().sealing_key(NOW)
    return seal(
        record,
        sender=AUTHOR.node_id,
        signing_key=signing(AUTHOR),
        recipient=holder.node_id,
        recipient_kid=kid,
        recipient_key=key,
        msg_id=uuid4(),
        now=NOW,
    )


def kept(record: Report | Action | Withdrawal) -> SignedRecord:
    """What the holder keeps of `record` sent to it by AUTHOR: the real sealing and opening."""
    return SignedRecord(*unseal_kept(sealed(record), HOLDER.keys))


def check(signed: SignedRecord, keys: NodeKeys = AUTHOR.keys) -> OwnRecord:
    return check_own_record(signed, node_id=AUTHOR.node_id, holder=HOLDER.node_id, keys=keys)


def refused(signed: SignedRecord, keys: NodeKeys = AUTHOR.keys) -> RecoveryRefused:
    with pytest.raises(RecoveryRefused) as caught:
        check(signed, keys)
    return caught.value


def by_author(payload: bytes, record_type: str = "report", **overrides: str) -> SignedRecord:
    """Signed by AUTHOR's real key, with a header of our choosing."""
    args = {"sender": AUTHOR.node_id, "to": HOLDER.node_id} | overrides
    return signed_record(
        payload,
        record_type=record_type,
        sender=args["sender"],
        signing_key=signing(AUTHOR),
        to=args["to"],
    )


def flipped(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


# --- check_own_record ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        sample_report(AUTHOR.node_id),
        Withdrawal(id=uuid4(), report_id=uuid4(), origin=AUTHOR.node_id, at=NOW, reason="mistake"),
        Action(
            id=uuid4(),
            report_id=uuid4(),
            report_origin=HOLDER.node_id,
            code=ActionCode.NOTICE_SENT,
            at=NOW,
            by=AUTHOR.node_id,
            country="FR",
        ),
    ],
    ids=["report", "withdrawal", "action"],
)
def test_a_record_we_signed_and_sent_to_the_holder_is_taken(
    record: Report | Action | Withdrawal,
) -> None:
    signed = kept(record)
    own = check_own_record(signed, node_id=AUTHOR.node_id, holder=HOLDER.node_id, keys=AUTHOR.keys)
    assert own.record == record
    assert own.signed == signed
    assert (own.header.from_, own.header.to, own.header.type) == (
        AUTHOR.node_id,
        HOLDER.node_id,
        record.type,
    )


def test_our_record_signed_with_an_older_key_still_valid_then_is_taken() -> None:
    """Created under a key since rotated (and still held): checked with that key."""
    signed = kept(sample_report(AUTHOR.node_id))
    rotated = AUTHOR.keys.rotate(NOW + timedelta(days=1))
    assert check(signed, rotated)


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_payload_altered_by_one_byte_is_a_forgery(where: str) -> None:
    signed = kept(sample_report(AUTHOR.node_id))
    index = {"first": 0, "middle": len(signed.payload) // 2, "last": len(signed.payload) - 1}
    forged = replace(signed, payload=flipped(signed.payload, index[where]))
    refusal = refused(forged)
    assert refusal.forged
    assert "does not verify" in str(refusal)


def test_an_altered_header_is_a_forgery() -> None:
    signed = kept(sample_report(AUTHOR.node_id))
    header = orjson.loads(signed.header)
    # Still a valid, canonical header: only the signature tells.
    header["msg_id"] = str(uuid4())
    refusal = refused(replace(signed, header=orjson.dumps(header, option=orjson.OPT_SORT_KEYS)))
    assert refusal.forged
    assert "does not verify" in str(refusal)
    # Not canonical JSON any more: refused before any signature is checked.
    spaced = replace(signed, header=signed.header.replace(b",", b", ", 1))
    refusal = refused(spaced)
    assert refusal.forged
    assert "header refused" in str(refusal)


def test_a_record_we_signed_for_another_holder_is_refused() -> None:
    """Correctly signed by us, but to IT: DE cannot give it back as one we sent DE."""
    signed = by_author(record_bytes(sample_report(AUTHOR.node_id)), to=OTHER.node_id)
    refusal = refused(signed)
    assert refusal.forged
    assert str(refusal) == f"sent to {OTHER.node_id}, not to {HOLDER.node_id}"


def test_a_record_of_another_node_is_refused() -> None:
    """DE's own record, really signed by DE: not ours to take back."""
    payload = record_bytes(sample_report(HOLDER.node_id))
    signed = signed_record(
        payload,
        record_type="report",
        sender=HOLDER.node_id,
        signing_key=signing(HOLDER),
        to=AUTHOR.node_id,
    )
    refusal = refused(signed)
    assert refusal.forged
    assert str(refusal) == f"signed by {HOLDER.node_id}, not by us"


def test_a_record_claiming_to_be_ours_signed_by_another_key_is_refused() -> None:
    """A header naming us and one of our key ids, signed by someone else's key."""
    thief = SigningKey(
        signing(AUTHOR).kid, signing(OTHER).private, Validity(KEYS_FROM, NOW + timedelta(days=1))
    )
    signed = signed_record(
        record_bytes(sample_report(AUTHOR.node_id)),
        record_type="report",
        sender=AUTHOR.node_id,
        signing_key=thief,
        to=HOLDER.node_id,
    )
    refusal = refused(signed)
    assert refusal.forged
    assert "does not verify" in str(refusal)


def test_receipts_and_hash_sets_are_not_recovered() -> None:
    receipt = Receipt(id=uuid4(), txn_id="txn-00000001", by=AUTHOR.node_id, at=NOW, accepted=())
    hashset = HashSet(
        id=uuid4(),
        origin=AUTHOR.node_id,
        name="known",
        seq=1,
        at=NOW,
        add=(HashAddition(alg="sha256", value="0" * 64, category="csam", use="hotlines"),),
    )
    records: list[Receipt | HashSet] = [receipt, hashset]
    for record in records:
        refusal = refused(by_author(record_bytes(record), record.type))
        assert refusal.forged, record.type
        assert str(refusal) == f"a {record.type} record is not recovered"


@pytest.mark.parametrize("length", [0, SIGNATURE_BYTES - 1, SIGNATURE_BYTES + 1])
def test_a_signature_of_the_wrong_length_is_a_forgery(length: int) -> None:
    signed = kept(sample_report(AUTHOR.node_id))
    refusal = refused(replace(signed, signature=(signed.signature * 2)[:length]))
    assert refusal.forged
    assert str(refusal) == "the signature is not 64 bytes"


def test_a_record_under_a_key_we_do_not_hold_cannot_be_checked() -> None:
    """Ours, perhaps, under a key a rotation after our backup took: counted, not trusted."""
    lost = SigningKey.generate(Validity(KEYS_FROM, NOW + timedelta(days=1)))
    signed = signed_record(
        record_bytes(sample_report(AUTHOR.node_id)),
        record_type="report",
        sender=AUTHOR.node_id,
        signing_key=lost,
        to=HOLDER.node_id,
    )
    refusal = refused(signed)
    assert not refusal.forged
    assert str(refusal) == f"cannot be checked: unknown key {lost.kid}"
    # The key pruned away after a rotation: the same, for a record that was really ours.
    ours = kept(sample_report(AUTHOR.node_id))
    later = NOW + timedelta(days=60)
    pruned = AUTHOR.keys.rotate(NOW).prune(later)
    assert signing(AUTHOR).kid not in {k.kid for k in pruned.signing}
    refusal = refused(ours, pruned)
    assert not refusal.forged
    assert "cannot be checked" in str(refusal)


def test_a_record_under_a_revoked_key_cannot_be_checked() -> None:
    signed = kept(sample_report(AUTHOR.node_id))
    kid = signing(AUTHOR).kid
    refusal = refused(signed, AUTHOR.keys.revoke(kid))
    assert not refusal.forged
    assert str(refusal) == f"cannot be checked: key {kid} is revoked"


def test_a_record_we_signed_but_did_not_write_is_refused() -> None:
    """Signed with our key under our name, but the record says DE wrote it."""
    theirs: list[Report | Action | Withdrawal] = [
        Action(
            id=uuid4(),
            report_id=uuid4(),
            report_origin=AUTHOR.node_id,
            code=ActionCode.CONTENT_REMOVED,
            at=NOW,
            by=HOLDER.node_id,
            country="DE",
        ),
        Withdrawal(id=uuid4(), report_id=uuid4(), origin=HOLDER.node_id, at=NOW, reason="x"),
        sample_report(HOLDER.node_id),
    ]
    for record in theirs:
        refusal = refused(by_author(record_bytes(record), record.type))
        assert refusal.forged, record.type
        assert str(refusal) == "we are not the author of this record"


def test_a_signed_payload_that_is_not_a_record_of_its_type_is_a_forgery() -> None:
    withdrawal = Withdrawal(
        id=uuid4(), report_id=uuid4(), origin=AUTHOR.node_id, at=NOW, reason="x"
    )
    for payload in (b"not json", record_bytes(withdrawal)):  # the header says "report"
        refusal = refused(by_author(payload, "report"))
        assert refusal.forged
        assert str(refusal).startswith("payload refused: invalid record")


# --- SignedRecord: stored and on the wire ----------------------------------------------------

HEADERS = st.binary(min_size=1, max_size=MAX_HEADER_BYTES)
SIGNATURES = st.binary(min_size=SIGNATURE_BYTES, max_size=SIGNATURE_BYTES)
PAYLOADS = st.binary(min_size=1, max_size=4096)


@PROPERTY
@given(header=st.binary(max_size=MAX_HEADER_BYTES), signature=SIGNATURES, payload=st.binary())
def test_a_signed_record_is_stored_and_read_back_unchanged(
    header: bytes, signature: bytes, payload: bytes
) -> None:
    signed = SignedRecord(header, signature, payload)
    stored = signed.to_bytes()
    assert struct.unpack_from(">H", stored) == (len(header),)
    assert SignedRecord.from_bytes(stored) == signed


@PROPERTY
@given(
    header=HEADERS,
    signature=SIGNATURES,
    payload=PAYLOADS,
    n=st.integers(min_value=1, max_value=2**62),
)
def test_a_signed_record_crosses_the_wire_unchanged(
    header: bytes, signature: bytes, payload: bytes, n: int
) -> None:
    signed = SignedRecord(header, signature, payload)
    item = signed.to_wire(n)
    assert item.n == n
    # As a holder's page carries it, read back by the author.
    page = RecoveryPage(records=[item], next_after=n, more=False)
    again = RecoveryPage.model_validate_json(page.model_dump_json())
    assert SignedRecord.from_wire(again.records[0]) == signed


def wire(**changes: str) -> dict[str, object]:
    item = SignedRecord(b'{"v":1}', bytes(range(SIGNATURE_BYTES)), b"{}").to_wire(1)
    return item.model_dump() | changes


def non_canonical(text: str) -> str:
    """The same bytes spelled with unused low bits set in the last character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return text[:-1] + alphabet[alphabet.index(text[-1]) | 1]


@pytest.mark.parametrize("member", ["header", "signature", "payload"])
def test_non_canonical_base64url_is_refused(member: str) -> None:
    good = wire()
    text = str(good[member])
    assert len(text) % 4 in (2, 3)  # a last character with unused bits
    item = RecoveredRecord.model_validate(wire(**{member: non_canonical(text)}))
    with pytest.raises(ValueError, match="non-canonical"):
        SignedRecord.from_wire(item)
    if member != "signature":  # its length is fixed by the model
        item = RecoveredRecord.model_validate(wire(**{member: text + "AAAAA"[: 5 - len(text) % 4]}))
        assert len(getattr(item, member)) % 4 == 1
        with pytest.raises(ValueError, match="unpadded base64url"):
            SignedRecord.from_wire(item)


@pytest.mark.parametrize("member", ["header", "signature", "payload"])
def test_padded_or_standard_base64_is_refused(member: str) -> None:
    text = str(wire()[member])
    for spelling in (text + "=" * (-len(text) % 4), text[:-2] + "+/"):
        # The page refuses it when it is read...
        with pytest.raises(ValidationError):
            RecoveredRecord.model_validate(wire(**{member: spelling}))
        # ...and the record refuses it even when it is not.
        fields = {name: str(value) for name, value in wire(**{member: spelling}).items()}
        unchecked = RecoveredRecord.model_construct(
            n=1, header=fields["header"], signature=fields["signature"], payload=fields["payload"]
        )
        with pytest.raises(ValueError, match="base64url"):
            SignedRecord.from_wire(unchecked)


def page_json(**changes: object) -> bytes:
    page: dict[str, object] = {
        "v": 1,
        "records": [wire()],
        "actions": [],
        "next_after": 1,
        "more": False,
    }
    return orjson.dumps(page | changes)


SIGNATURE_TEXT = str(wire()["signature"])
REFUSED_PAGES = {
    "an extra member of the page": page_json(extra=1),
    "an extra member of a record": page_json(records=[wire() | {"frame": "AAAA"}]),
    "a missing member of a record": page_json(
        records=[{k: v for k, v in wire().items() if k != "signature"}]
    ),
    "a short signature": page_json(records=[wire(signature=SIGNATURE_TEXT[:-1])]),
    "a long signature": page_json(records=[wire(signature=SIGNATURE_TEXT + "A")]),
    "record number 0": page_json(records=[wire() | {"n": 0}]),
    "a number as a string": page_json(records=[wire() | {"n": "1"}]),
    "a negative next_after": page_json(next_after=-1),
    "another version": page_json(v=2),
    "an empty header": page_json(records=[wire(header="")]),
    "too many records": page_json(records=[wire()] * (MAX_RECOVERY_PAGE + 1)),
    "more as a string": page_json(more="false"),
}


def test_a_recovery_page_is_read_as_sent() -> None:
    page = RecoveryPage.model_validate_json(page_json())
    assert page.records == [RecoveredRecord.model_validate(wire())]


@pytest.mark.parametrize("data", REFUSED_PAGES.values(), ids=REFUSED_PAGES.keys())
def test_a_recovery_page_is_read_strictly(data: bytes) -> None:
    with pytest.raises(ValidationError):
        RecoveryPage.model_validate_json(data)


# --- unseal_kept -----------------------------------------------------------------------------


@pytest.mark.parametrize("hybrid", [False, True], ids=["classic", "hybrid"])
def test_a_kept_frame_opens_back_to_what_was_signed(hybrid: bool) -> None:
    report = sample_report(AUTHOR.node_id)
    frame = sealed(report, hybrid=hybrid)
    keys = (HYBRID_HOLDER if hybrid else HOLDER).keys
    header, signature, payload = unseal_kept(frame, keys)
    assert header == read_header(frame).header_bytes
    assert payload == record_bytes(report)
    assert len(signature) == SIGNATURE_BYTES
    # The author takes it back: the signature is its own over exactly these bytes.
    own = check(SignedRecord(header, signature, payload))
    assert own.record == report


def test_a_kept_frame_whose_key_is_gone_does_not_open() -> None:
    frame = sealed(sample_report(AUTHOR.node_id))
    kid = HOLDER.keys.current_encryption(NOW).kid
    # Rotation deletes an expired key (after its overlap): the frame sealed to it stays shut.
    pruned = HOLDER.keys.rotate(NOW).prune(NOW + timedelta(days=60))
    assert kid not in {k.kid for k in pruned.encryption}
    for keys in (pruned, HOLDER.keys.revoke(kid), OTHER.keys):
        with pytest.raises(OpenError) as caught:
            unseal_kept(frame, keys)
        assert caught.value.reason is OpenFailure.RECIPIENT_KEY
    # A kept frame damaged since does not open either, and says so the same way.
    with pytest.raises(OpenError) as caught:
        unseal_kept(flipped(frame, len(frame) - 1), HOLDER.keys)
    assert caught.value.reason is OpenFailure.DECRYPT


def test_wire_spelling_is_base64url_of_the_stored_bytes() -> None:
    signed = kept(sample_report(AUTHOR.node_id))
    item = signed.to_wire(7)
    assert (item.header, item.signature, item.payload) == (
        b64url(signed.header),
        b64url(signed.signature),
        b64url(signed.payload),
    )
