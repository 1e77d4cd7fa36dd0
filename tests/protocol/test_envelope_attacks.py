"""Attacks on the sealed envelope: every tampering or misuse is refused, with one opaque message."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from keys import NodeKeys, PublicKeySet, SigningKey, Validity, canonical_json
from keys.material import EncryptionKey
from protocol import (
    MAX_ENVELOPE_BYTES,
    Action,
    ActionCode,
    MemoryReplayGuard,
    Opened,
    OpenError,
    OpenFailure,
    OpenPolicy,
    PeerDirectory,
    ReadFrame,
    Receipt,
    ReplayGuard,
    Report,
    SealError,
    Withdrawal,
    open_envelope,
    read_header,
    record_bytes,
    seal,
)
from protocol.envelope import MAGIC, hpke_info, signed_bytes
from tests.factories import NOW, Directory, make_node, sample_report
from tests.factories import TestNode as HotlineNode  # aliased: pytest would collect Test*

AnyRecord = Report | Action | Withdrawal | Receipt

PUBLIC_MESSAGE = "envelope could not be opened"
KEYS_FROM = NOW - timedelta(days=30)  # keys valid from here for 90 days: NOW ± a week is safe
SIGNATURE_BYTES = 64
ENC_BYTES = 32
TAG_BYTES = 16
# The wire prefix (DESIGN §3, protocol/envelope.py): magic, then the header length, big-endian.
PREFIX = struct.Struct(">4sH")
# The one suite of the protocol; the tests build their own so forged frames use only public math.
SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
# Points of small order on Curve25519: X25519 with them yields an all-zero shared secret.
LOW_ORDER_POINTS = {
    "zero": bytes(32),
    "order-8": bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
}
FIXED_MSG_ID = UUID("12345678-1234-4234-8234-123456789abc")


@dataclass
class Net:
    """Three hotlines: A sends, B receives, C is a third peer (and sometimes the attacker)."""

    a: HotlineNode
    b: HotlineNode
    c: HotlineNode

    @property
    def peers(self) -> Directory:
        return Directory(self.a, self.b, self.c)


@pytest.fixture
def net() -> Net:
    return Net(
        a=make_node("fr-pdc", "FR", KEYS_FROM),
        b=make_node("de-eco", "DE", KEYS_FROM),
        c=make_node("uk-iwf", "GB", KEYS_FROM),
    )


class ExplodingDirectory:
    """A PeerDirectory that fails the test if the opener ever asks it for keys."""

    def keys_for(self, node_id: str) -> PublicKeySet | None:
        raise AssertionError(f"keys_for({node_id!r}) ran: the frame should be refused first")


class ExplodingReplayGuard:
    """A ReplayGuard that fails the test if the opener consults it."""

    def seen(self, sender: str, msg_id: str) -> bool:
        raise AssertionError("replay guard consulted: the frame should be refused first")

    def remember(self, sender: str, msg_id: str, created_at: datetime) -> None:
        raise AssertionError("replay guard written: the frame should be refused first")


# --- building and opening frames -------------------------------------------------------------


def seal_from(
    sender: HotlineNode,
    recipient: HotlineNode,
    record: AnyRecord | None = None,
    *,
    at: datetime = NOW,
    msg_id: UUID | None = None,
    signing_key: SigningKey | None = None,
    encryption_key: EncryptionKey | None = None,
) -> bytes:
    """Seal `record` (a fresh report by default) from `sender` to `recipient`'s current key."""
    key = signing_key or sender.keys.current_signing(at)
    to = encryption_key or recipient.keys.current_encryption(at)
    return seal(
        record or sample_report(origin=sender.node_id),
        sender=sender.node_id,
        signing_key=key,
        recipient=recipient.node_id,
        recipient_kid=to.kid,
        recipient_key=to.private.public_key(),
        msg_id=msg_id or uuid4(),
        now=at,
    )


def open_as(
    recipient: HotlineNode,
    frame: bytes,
    *,
    peers: PeerDirectory,
    replay: ReplayGuard | None = None,
    at: datetime = NOW,
    keys: NodeKeys | None = None,
    policy: OpenPolicy | None = None,
    read: ReadFrame | None = None,
) -> Opened:
    return open_envelope(
        frame,
        recipient=recipient.node_id,
        keys=keys or recipient.keys,
        peers=peers,
        replay=replay if replay is not None else MemoryReplayGuard(),
        now=at,
        policy=policy or OpenPolicy(),
        read=read,
    )


def assert_refused(
    reason: OpenFailure,
    frame: bytes,
    recipient: HotlineNode,
    *,
    peers: PeerDirectory,
    replay: ReplayGuard | None = None,
    at: datetime = NOW,
    keys: NodeKeys | None = None,
    policy: OpenPolicy | None = None,
) -> OpenError:
    """Open must fail for `reason`, and say nothing more than the one public message."""
    with pytest.raises(OpenError) as caught:
        open_as(recipient, frame, peers=peers, replay=replay, at=at, keys=keys, policy=policy)
    error = caught.value
    assert error.reason is reason, f"refused for {error.reason} ({error.detail}), not {reason}"
    assert str(error) == PUBLIC_MESSAGE
    assert error.args == (PUBLIC_MESSAGE,)
    return error


def split(frame: bytes) -> tuple[bytes, bytes]:
    """(header bytes, HPKE output) of a well-formed frame."""
    _, header_bytes, sealed = read_header(frame)
    return header_bytes, sealed


def join(header_bytes: bytes, sealed: bytes) -> bytes:
    return PREFIX.pack(MAGIC, len(header_bytes)) + header_bytes + sealed


def with_header(frame: bytes, changes: dict[str, Any]) -> bytes:
    """The same ciphertext behind a rewritten (canonical) clear header."""
    header_bytes, sealed = split(frame)
    fields = orjson.loads(header_bytes)
    fields.update(changes)
    return join(canonical_json(fields), sealed)


def flip(frame: bytes, index: int, mask: int = 0x01) -> bytes:
    data = bytearray(frame)
    data[index] ^= mask
    return bytes(data)


def body_offset(frame: bytes) -> int:
    """Index of the first byte after the clear header (the HPKE `enc`)."""
    header_bytes, _ = split(frame)
    return PREFIX.size + len(header_bytes)


def decrypt_as(recipient: HotlineNode, frame: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    """What a recipient holds after opening: the header, the sender's signature, the payload."""
    header_bytes, sealed = split(frame)
    header = orjson.loads(header_bytes)
    key = recipient.keys.decryption_key(header["to_kid"], NOW)
    plaintext = SUITE.decrypt(sealed, key.private, info=hpke_info(header_bytes))
    return header, plaintext[:SIGNATURE_BYTES], plaintext[SIGNATURE_BYTES:]


def sign_as(sender: HotlineNode, header: dict[str, Any], payload: bytes) -> bytes:
    key = sender.keys.current_signing(NOW)
    return key.private.sign(signed_bytes(canonical_json(header), payload))


def forge(
    header: dict[str, Any], signature: bytes, payload: bytes, recipient: HotlineNode
) -> bytes:
    """A frame built by hand: any header, any signature, encrypted to the recipient's key."""
    header_bytes = canonical_json(header)
    target = recipient.keys.decryption_key(header["to_kid"], NOW)
    sealed = SUITE.encrypt(
        signature + payload, target.private.public_key(), info=hpke_info(header_bytes)
    )
    return join(header_bytes, sealed)


def header_for(
    sender: HotlineNode, recipient: HotlineNode, record_type: str, msg_id: UUID | None = None
) -> dict[str, Any]:
    return {
        "v": 1,
        "suite": "hpke-base-x25519-sha256-aes256gcm",
        "from": sender.node_id,
        "from_kid": sender.keys.current_signing(NOW).kid,
        "to": recipient.node_id,
        "to_kid": recipient.keys.current_encryption(NOW).kid,
        "msg_id": str(msg_id or uuid4()),
        "created_at": int(NOW.timestamp()),
        "type": record_type,
    }


def sample_action(by: str, report: Report) -> Action:
    return Action(
        id=uuid4(),
        report_id=report.id,
        report_origin=report.origin,
        code=ActionCode.CONTENT_REMOVED,
        at=NOW,
        by=by,
        analyst="analyst 7",
        country="DE",
        reason="removed by the host after notice",
    )


# --- the helpers match the real wire format --------------------------------------------------


def test_helpers_rebuild_a_real_frame_byte_for_byte(net: Net) -> None:
    frame = seal_from(net.a, net.b)
    assert join(*split(frame)) == frame
    header_bytes, _ = split(frame)
    assert header_bytes == canonical_json(orjson.loads(header_bytes))


def test_hand_built_frame_with_an_honest_signature_opens(net: Net) -> None:
    """Control for the forgeries below: they fail because of the attack, not the helpers."""
    report = sample_report(origin=net.a.node_id)
    payload = record_bytes(report)
    header = header_for(net.a, net.b, "report")
    frame = forge(header, sign_as(net.a, header, payload), payload, net.b)
    assert open_as(net.b, frame, peers=net.peers).record == report


# --- round trip ------------------------------------------------------------------------------


def test_round_trip_returns_the_record_header_payload_and_digest(net: Net) -> None:
    report = sample_report(origin=net.a.node_id)
    frame = seal_from(net.a, net.b, report, msg_id=FIXED_MSG_ID)
    opened = open_as(net.b, frame, peers=net.peers)
    assert opened.record == report
    assert opened.payload == record_bytes(report)
    assert opened.digest == hashlib.sha256(frame).hexdigest()
    assert opened.header.from_ == net.a.node_id
    assert opened.header.to == net.b.node_id
    assert opened.header.msg_id == str(FIXED_MSG_ID)
    assert opened.header.type == "report"
    assert opened.header.created_at == int(NOW.timestamp())


def test_round_trip_of_action_withdrawal_and_receipt(net: Net) -> None:
    report = sample_report(origin=net.b.node_id)
    records: list[AnyRecord] = [
        sample_action(net.a.node_id, report),
        Withdrawal(
            id=uuid4(), report_id=report.id, origin=net.a.node_id, at=NOW, reason="mistaken"
        ),
        Receipt(
            id=uuid4(),
            txn_id="txn-000042",
            by=net.a.node_id,
            at=NOW,
            accepted=[hashlib.sha256(b"x").hexdigest()],
        ),
    ]
    replay = MemoryReplayGuard()
    for record in records:
        opened = open_as(net.b, seal_from(net.a, net.b, record), peers=net.peers, replay=replay)
        assert opened.record == record
        assert opened.header.type == record.type


def test_a_header_read_beforehand_is_used_only_with_its_own_frame(net: Net) -> None:
    directory = Directory(net.a, net.b)
    frame, other = seal_from(net.a, net.b), seal_from(net.a, net.b)
    read = read_header(frame)
    opened = open_as(net.b, frame, peers=directory, read=read)
    assert opened.header == read.header
    assert opened.frame == frame
    with pytest.raises(ValueError, match="another frame"):
        open_as(net.b, other, peers=directory, read=read)
    # The policy's size cap still applies to a frame read under the default one.
    with pytest.raises(OpenError) as refused:
        open_as(
            net.b, frame, peers=directory, policy=OpenPolicy(max_bytes=len(frame) - 1), read=read
        )
    assert refused.value.reason is OpenFailure.OVERSIZED


def test_on_failure_hook_sees_the_reason_that_is_raised(net: Net) -> None:
    frame = seal_from(net.a, net.b)
    logged: list[OpenError] = []
    with pytest.raises(OpenError) as caught:
        open_envelope(
            frame,
            recipient=net.c.node_id,
            keys=net.c.keys,
            peers=net.peers,
            replay=MemoryReplayGuard(),
            now=NOW,
            on_failure=logged.append,
        )
    assert logged == [caught.value]
    assert logged[0].reason is OpenFailure.WRONG_RECIPIENT
    assert str(logged[0]) == PUBLIC_MESSAGE


# --- flipped bits ----------------------------------------------------------------------------


def test_flipped_bit_in_header_msg_id_fails_decryption(net: Net) -> None:
    frame = seal_from(net.a, net.b, msg_id=FIXED_MSG_ID)
    index = frame.index(str(FIXED_MSG_ID).encode())
    tampered = flip(frame, index)  # "1" -> "0": still a valid UUID, still valid JSON
    header, _, _ = read_header(tampered)
    assert header.msg_id == "02345678-1234-4234-8234-123456789abc"
    assert_refused(OpenFailure.DECRYPT, tampered, net.b, peers=net.peers)


def test_flipped_bit_in_header_created_at_fails_decryption(net: Net) -> None:
    frame = seal_from(net.a, net.b)
    stamp = str(int(NOW.timestamp())).encode()
    index = frame.index(stamp) + len(stamp) - 1  # the last digit: one or two seconds off
    tampered = flip(frame, index)
    assert read_header(tampered)[0].created_at != int(NOW.timestamp())
    assert_refused(OpenFailure.DECRYPT, tampered, net.b, peers=net.peers)


def test_flipped_bit_that_breaks_header_json_is_malformed(net: Net) -> None:
    frame = seal_from(net.a, net.b)
    tampered = flip(frame, PREFIX.size)  # "{" -> "z"
    assert_refused(
        OpenFailure.MALFORMED,
        tampered,
        net.b,
        peers=ExplodingDirectory(),
        replay=ExplodingReplayGuard(),
    )


def test_flipped_bit_in_magic_is_malformed(net: Net) -> None:
    tampered = flip(seal_from(net.a, net.b), 0)
    assert_refused(
        OpenFailure.MALFORMED,
        tampered,
        net.b,
        peers=ExplodingDirectory(),
        replay=ExplodingReplayGuard(),
    )


def test_header_length_field_beyond_the_header_limit_is_malformed(net: Net) -> None:
    frame = seal_from(net.a, net.b)
    tampered = frame[:4] + struct.pack(">H", 0xFFFF) + frame[PREFIX.size :]
    assert_refused(
        OpenFailure.MALFORMED,
        tampered,
        net.b,
        peers=ExplodingDirectory(),
        replay=ExplodingReplayGuard(),
    )


def test_flipped_bit_in_enc_fails_decryption(net: Net) -> None:
    frame = seal_from(net.a, net.b)
    start = body_offset(frame)
    for index in (start, start + ENC_BYTES // 2, start + ENC_BYTES - 1):
        assert_refused(OpenFailure.DECRYPT, flip(frame, index), net.b, peers=net.peers)


def test_flipped_bit_in_ciphertext_body_fails_decryption(net: Net) -> None:
    frame = seal_from(net.a, net.b)
    start = body_offset(frame) + ENC_BYTES
    end = len(frame) - TAG_BYTES
    for index in (start, (start + end) // 2, end - 1):
        assert_refused(OpenFailure.DECRYPT, flip(frame, index, 0x80), net.b, peers=net.peers)


def test_flipped_bit_in_aead_tag_fails_decryption(net: Net) -> None:
    frame = seal_from(net.a, net.b)
    for index in range(len(frame) - TAG_BYTES, len(frame), 5):
        assert_refused(OpenFailure.DECRYPT, flip(frame, index), net.b, peers=net.peers)


# --- truncated and oversized frames ----------------------------------------------------------


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda frame: b"", id="empty"),
        pytest.param(lambda frame: frame[:3], id="inside-prefix"),
        pytest.param(lambda frame: frame[: PREFIX.size], id="prefix-only"),
        pytest.param(lambda frame: frame[: body_offset(frame) - 10], id="header-cut"),
        pytest.param(lambda frame: frame[: body_offset(frame)], id="header-only"),
        pytest.param(lambda frame: frame[: body_offset(frame) + ENC_BYTES], id="enc-only"),
        pytest.param(
            lambda frame: frame[: body_offset(frame) + ENC_BYTES + TAG_BYTES + SIGNATURE_BYTES - 1],
            id="shorter-than-signature-and-tag",
        ),
    ],
)
def test_truncated_frame_is_malformed_before_any_crypto(net: Net, cut: Any) -> None:
    frame = seal_from(net.a, net.b)
    assert_refused(
        OpenFailure.MALFORMED,
        cut(frame),
        net.b,
        peers=ExplodingDirectory(),
        replay=ExplodingReplayGuard(),
    )


def test_ciphertext_missing_its_last_bytes_fails_decryption(net: Net) -> None:
    frame = seal_from(net.a, net.b)
    for missing in (1, TAG_BYTES, 100):
        assert_refused(OpenFailure.DECRYPT, frame[:-missing], net.b, peers=net.peers)


def test_oversized_frame_is_refused_before_any_crypto(net: Net) -> None:
    frame = seal_from(net.a, net.b)
    oversized = frame + bytes(MAX_ENVELOPE_BYTES + 1 - len(frame))
    assert len(oversized) == MAX_ENVELOPE_BYTES + 1
    assert_refused(
        OpenFailure.OVERSIZED,
        oversized,
        net.b,
        peers=ExplodingDirectory(),
        replay=ExplodingReplayGuard(),
    )
    with pytest.raises(OpenError) as caught:
        read_header(oversized)
    assert caught.value.reason is OpenFailure.OVERSIZED


def test_frame_over_the_policy_limit_is_oversized(net: Net) -> None:
    frame = seal_from(net.a, net.b)
    assert_refused(
        OpenFailure.OVERSIZED,
        frame,
        net.b,
        peers=ExplodingDirectory(),
        replay=ExplodingReplayGuard(),
        policy=OpenPolicy(max_bytes=len(frame) - 1),
    )


# --- wrong recipient, re-encryption, signature grafting --------------------------------------


def test_envelope_for_b_opened_by_c_is_wrong_recipient(net: Net) -> None:
    frame = seal_from(net.a, net.b)
    assert_refused(
        OpenFailure.WRONG_RECIPIENT,
        frame,
        net.c,
        peers=ExplodingDirectory(),
        replay=ExplodingReplayGuard(),
    )


def test_envelope_for_b_reencrypted_to_c_under_bs_header_is_wrong_recipient(net: Net) -> None:
    frame = seal_from(net.a, net.b)
    header, signature, payload = decrypt_as(net.b, frame)
    header_bytes = canonical_json(header)
    to_c = net.c.keys.current_encryption(NOW).private.public_key()
    sealed = SUITE.encrypt(signature + payload, to_c, info=hpke_info(header_bytes))
    assert_refused(OpenFailure.WRONG_RECIPIENT, join(header_bytes, sealed), net.c, peers=net.peers)


def test_recipient_reencrypting_a_signed_record_to_a_third_node_is_refused(net: Net) -> None:
    frame = seal_from(net.a, net.b)
    open_as(net.b, frame, peers=net.peers)  # B legitimately holds A's signed record
    header, signature, payload = decrypt_as(net.b, frame)
    relayed = {**header, "to": net.c.node_id, "to_kid": net.c.keys.current_encryption(NOW).kid}
    forged = forge(relayed, signature, payload, net.c)
    assert_refused(OpenFailure.SIGNATURE, forged, net.c, peers=net.peers)


def test_signature_grafted_from_another_message_is_refused(net: Net) -> None:
    first = seal_from(net.a, net.b)
    second = seal_from(net.a, net.b)
    _, first_signature, _ = decrypt_as(net.b, first)
    second_header, _, second_payload = decrypt_as(net.b, second)
    grafted = forge(second_header, first_signature, second_payload, net.b)
    assert_refused(OpenFailure.SIGNATURE, grafted, net.b, peers=net.peers)


def test_signed_record_resent_under_a_fresh_msg_id_is_refused(net: Net) -> None:
    frame = seal_from(net.a, net.b)
    replay = MemoryReplayGuard()
    open_as(net.b, frame, peers=net.peers, replay=replay)
    header, signature, payload = decrypt_as(net.b, frame)
    renamed = forge({**header, "msg_id": str(uuid4())}, signature, payload, net.b)
    assert_refused(OpenFailure.SIGNATURE, renamed, net.b, peers=net.peers, replay=replay)


# --- replay ----------------------------------------------------------------------------------


def test_replay_of_the_same_bytes_is_refused(net: Net) -> None:
    frame = seal_from(net.a, net.b)
    replay = MemoryReplayGuard()
    open_as(net.b, frame, peers=net.peers, replay=replay)
    assert_refused(OpenFailure.REPLAY, frame, net.b, peers=net.peers, replay=replay)


def test_new_envelope_reusing_a_msg_id_is_refused(net: Net) -> None:
    replay = MemoryReplayGuard()
    open_as(net.b, seal_from(net.a, net.b, msg_id=FIXED_MSG_ID), peers=net.peers, replay=replay)
    other = seal_from(net.a, net.b, sample_report(origin=net.a.node_id), msg_id=FIXED_MSG_ID)
    assert_refused(OpenFailure.REPLAY, other, net.b, peers=net.peers, replay=replay)


def test_same_msg_id_from_another_sender_is_not_a_replay(net: Net) -> None:
    replay = MemoryReplayGuard()
    open_as(net.b, seal_from(net.a, net.b, msg_id=FIXED_MSG_ID), peers=net.peers, replay=replay)
    opened = open_as(
        net.b, seal_from(net.c, net.b, msg_id=FIXED_MSG_ID), peers=net.peers, replay=replay
    )
    assert opened.header.from_ == net.c.node_id


def test_forgery_with_a_real_msg_id_does_not_burn_it(net: Net) -> None:
    real = seal_from(net.a, net.b, msg_id=FIXED_MSG_ID)
    header, _, payload = decrypt_as(net.b, real)
    replay = MemoryReplayGuard()
    # C saw the clear header in transit and races the real envelope with forgeries of its own.
    unsigned = forge(header, bytes(SIGNATURE_BYTES), payload, net.b)
    assert_refused(OpenFailure.SIGNATURE, unsigned, net.b, peers=net.peers, replay=replay)
    assert_refused(
        OpenFailure.DECRYPT, flip(real, len(real) - 1), net.b, peers=net.peers, replay=replay
    )
    signed_by_c = forge(header, sign_as(net.c, header, payload), payload, net.b)
    assert_refused(OpenFailure.SIGNATURE, signed_by_c, net.b, peers=net.peers, replay=replay)
    assert len(replay) == 0
    opened = open_as(net.b, real, peers=net.peers, replay=replay)
    assert opened.header.msg_id == str(FIXED_MSG_ID)
    assert replay.seen(net.a.node_id, str(FIXED_MSG_ID))


# --- sender keys -----------------------------------------------------------------------------


def _directory_with(net: Net, sender_keys: PublicKeySet) -> Directory:
    peers = net.peers
    peers.entries[sender_keys.node_id] = sender_keys
    return peers


def test_revoked_sender_key_is_refused_from_the_published_document(net: Net) -> None:
    old = net.a.keys.current_signing(NOW)
    frame = seal_from(net.a, net.b, at=NOW - timedelta(hours=1), signing_key=old)
    revoked = replace(net.a, keys=net.a.keys.revoke(old.kid))
    assert_refused(OpenFailure.SENDER_KEY, frame, net.b, peers=Directory(revoked, net.b))


def test_revoked_sender_key_is_refused_even_when_created_at_precedes_revocation(
    net: Net,
) -> None:
    """The key is still listed with a window covering created_at; revocation must win."""
    old = net.a.keys.current_signing(NOW)
    frame = seal_from(net.a, net.b, at=NOW - timedelta(hours=23), signing_key=old)
    known = net.a.public()
    assert known.signing[old.kid][1].covers(NOW - timedelta(hours=23))
    sender_keys = replace(known, revoked=frozenset({old.kid}))
    assert_refused(OpenFailure.SENDER_KEY, frame, net.b, peers=_directory_with(net, sender_keys))


def test_revocation_learnt_later_is_sticky_after_merging(net: Net) -> None:
    old = net.a.keys.current_signing(NOW)
    frame = seal_from(net.a, net.b, at=NOW - timedelta(hours=1), signing_key=old)
    before = net.a.public()
    revoking = replace(net.a, keys=net.a.keys.revoke(old.kid)).public()
    merged = before.merged_with(revoking).merged_with(before)  # a stale document comes back
    assert_refused(OpenFailure.SENDER_KEY, frame, net.b, peers=_directory_with(net, merged))


@pytest.mark.parametrize(
    "window",
    [
        pytest.param(Validity(NOW - timedelta(days=60), NOW - timedelta(days=1)), id="expired"),
        pytest.param(Validity(NOW + timedelta(days=1), NOW + timedelta(days=90)), id="not-yet"),
        pytest.param(Validity(NOW - timedelta(days=60), NOW), id="expired-exactly-now"),
    ],
)
def test_sender_key_outside_its_published_window_is_refused(net: Net, window: Validity) -> None:
    """A still signs with a key its published document says is not valid at created_at."""
    key = net.a.keys.current_signing(NOW)
    frame = seal_from(net.a, net.b, signing_key=key)
    known = net.a.public()
    public, _ = known.signing[key.kid]
    sender_keys = replace(known, signing={key.kid: (public, window)})
    assert_refused(OpenFailure.SENDER_KEY, frame, net.b, peers=_directory_with(net, sender_keys))


def test_rotation_overlap_accepts_old_and_new_signing_keys(net: Net) -> None:
    old = net.a.keys.current_signing(NOW)
    rotated = replace(net.a, keys=net.a.keys.rotate(NOW - timedelta(hours=1)))
    new = rotated.keys.current_signing(NOW)
    assert new.kid != old.kid
    still_old = next(k for k in rotated.keys.signing if k.kid == old.kid)
    peers = Directory(rotated, net.b)
    replay = MemoryReplayGuard()
    for key in (still_old, new):
        opened = open_as(
            net.b, seal_from(rotated, net.b, signing_key=key), peers=peers, replay=replay
        )
        assert opened.header.from_kid == key.kid


def test_rotation_overlap_opens_records_sealed_to_our_old_encryption_key(net: Net) -> None:
    old = net.b.keys.current_encryption(NOW)
    rotated = replace(net.b, keys=net.b.keys.rotate(NOW - timedelta(hours=1)))
    new = rotated.keys.current_encryption(NOW)
    assert new.kid != old.kid
    replay = MemoryReplayGuard()
    for target in (old, new):
        frame = seal_from(net.a, net.b, encryption_key=target)  # A may hold a stale document
        opened = open_as(rotated, frame, peers=net.peers, replay=replay)
        assert opened.header.to_kid == target.kid


def test_old_signing_key_is_refused_after_the_overlap(net: Net) -> None:
    old = net.a.keys.current_signing(NOW)
    rotated = replace(net.a, keys=net.a.keys.rotate(NOW - timedelta(hours=1)))
    later = NOW + timedelta(days=8)
    # A (buggy or compromised) keeps signing with the retired key; its own copy still claims it.
    stubborn = replace(old, validity=Validity(KEYS_FROM, later + timedelta(days=1)))
    frame = seal_from(rotated, net.b, at=later, signing_key=stubborn)
    assert_refused(OpenFailure.SENDER_KEY, frame, net.b, peers=Directory(rotated, net.b), at=later)


def test_our_old_encryption_key_is_refused_after_the_overlap(net: Net) -> None:
    old = net.b.keys.current_encryption(NOW)
    rotated = replace(net.b, keys=net.b.keys.rotate(NOW - timedelta(hours=1)))
    later = NOW + timedelta(days=8)
    frame = seal_from(net.a, net.b, at=later, encryption_key=old)
    assert_refused(OpenFailure.RECIPIENT_KEY, frame, rotated, peers=net.peers, at=later)


def test_our_revoked_encryption_key_is_recipient_key(net: Net) -> None:
    target = net.b.keys.current_encryption(NOW)
    frame = seal_from(net.a, net.b, encryption_key=target)
    assert_refused(
        OpenFailure.RECIPIENT_KEY,
        frame,
        net.b,
        peers=net.peers,
        keys=net.b.keys.revoke(target.kid),
    )


def test_our_expired_encryption_key_is_recipient_key(net: Net) -> None:
    target = net.b.keys.current_encryption(NOW)
    frame = seal_from(net.a, net.b, encryption_key=target)
    expired = replace(target, validity=Validity(KEYS_FROM, NOW - timedelta(hours=1)))
    assert_refused(
        OpenFailure.RECIPIENT_KEY,
        frame,
        net.b,
        peers=net.peers,
        keys=replace(net.b.keys, encryption=[expired]),
    )


def test_to_kid_of_another_node_is_recipient_key(net: Net) -> None:
    frame = with_header(seal_from(net.a, net.b), {"to_kid": net.c.keys.current_encryption(NOW).kid})
    assert_refused(OpenFailure.RECIPIENT_KEY, frame, net.b, peers=net.peers)


def test_unknown_sender_kid_is_sender_key(net: Net) -> None:
    stranger = SigningKey.kid_of(Ed25519PrivateKey.generate())
    frame = with_header(seal_from(net.a, net.b), {"from_kid": stranger})
    assert_refused(OpenFailure.SENDER_KEY, frame, net.b, peers=net.peers)


def test_kid_of_another_peer_in_an_envelope_from_a_is_sender_key(net: Net) -> None:
    frame = with_header(seal_from(net.a, net.b), {"from_kid": net.c.keys.current_signing(NOW).kid})
    assert_refused(OpenFailure.SENDER_KEY, frame, net.b, peers=net.peers)


def test_sender_not_in_the_directory_is_unknown_sender(net: Net) -> None:
    frame = seal_from(net.a, net.b)
    assert_refused(
        OpenFailure.UNKNOWN_SENDER,
        frame,
        net.b,
        peers=Directory(net.b, net.c),
        replay=ExplodingReplayGuard(),
    )


def test_header_naming_an_unknown_node_is_unknown_sender(net: Net) -> None:
    frame = with_header(seal_from(net.a, net.b), {"from": "xx-stranger"})
    assert_refused(
        OpenFailure.UNKNOWN_SENDER, frame, net.b, peers=net.peers, replay=ExplodingReplayGuard()
    )


# --- version, suite, header shape ------------------------------------------------------------


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_other_protocol_version_is_refused(net: Net, version: object) -> None:
    frame = with_header(seal_from(net.a, net.b), {"v": version})
    assert_refused(
        OpenFailure.VERSION,
        frame,
        net.b,
        peers=ExplodingDirectory(),
        replay=ExplodingReplayGuard(),
    )


@pytest.mark.parametrize(
    "suite",
    [
        "hpke-base-p256-sha256-aes128gcm",
        "hpke-base-x25519-sha256-chacha20poly1305",
        "HPKE-BASE-X25519-SHA256-AES256GCM",
        "none",
    ],
)
def test_other_suite_is_refused(net: Net, suite: str) -> None:
    frame = with_header(seal_from(net.a, net.b), {"suite": suite})
    assert_refused(
        OpenFailure.SUITE,
        frame,
        net.b,
        peers=ExplodingDirectory(),
        replay=ExplodingReplayGuard(),
    )


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"extra": 1}, id="unknown-member"),
        pytest.param({"msg_id": "not-a-uuid"}, id="bad-msg-id"),
        pytest.param({"created_at": -1}, id="negative-time"),
        pytest.param({"created_at": "1795953600"}, id="time-as-string"),
        pytest.param({"type": "invoice"}, id="unknown-type"),
        pytest.param({"to": "DE ECO"}, id="bad-node-id"),
        # `$` in a pattern matches before a final newline; the whole value must match.
        pytest.param({"msg_id": f"{FIXED_MSG_ID}\n"}, id="msg-id-with-trailing-newline"),
        pytest.param({"from": "fr-pointdecontact\n"}, id="node-id-with-trailing-newline"),
    ],
)
def test_header_outside_its_schema_is_malformed(net: Net, changes: dict[str, Any]) -> None:
    frame = with_header(seal_from(net.a, net.b), changes)
    assert_refused(
        OpenFailure.MALFORMED,
        frame,
        net.b,
        peers=ExplodingDirectory(),
        replay=ExplodingReplayGuard(),
    )


# --- time window -----------------------------------------------------------------------------


def test_envelope_older_than_max_age_is_stale(net: Net) -> None:
    frame = seal_from(net.a, net.b, at=NOW - timedelta(hours=24, seconds=1))
    assert_refused(OpenFailure.STALE, frame, net.b, peers=net.peers)


def test_envelope_older_than_a_custom_max_age_is_stale(net: Net) -> None:
    frame = seal_from(net.a, net.b, at=NOW - timedelta(minutes=61))
    policy = OpenPolicy(max_age=timedelta(hours=1))
    assert_refused(OpenFailure.STALE, frame, net.b, peers=net.peers, policy=policy)


def test_envelope_from_the_future_beyond_skew_is_future(net: Net) -> None:
    frame = seal_from(net.a, net.b, at=NOW + timedelta(minutes=5, seconds=1))
    assert_refused(OpenFailure.FUTURE, frame, net.b, peers=net.peers)


def test_envelopes_on_the_edges_of_the_window_open(net: Net) -> None:
    replay = MemoryReplayGuard()
    for at in (NOW - timedelta(hours=24), NOW + timedelta(minutes=5)):
        opened = open_as(net.b, seal_from(net.a, net.b, at=at), peers=net.peers, replay=replay)
        assert opened.header.created_at == int(at.timestamp())


def test_created_at_beyond_the_calendar_is_refused_not_a_crash(net: Net) -> None:
    # The header schema bounds created_at to dates every implementation can represent.
    frame = with_header(seal_from(net.a, net.b), {"created_at": 2**39})
    assert_refused(
        OpenFailure.MALFORMED,
        frame,
        net.b,
        peers=ExplodingDirectory(),
        replay=ExplodingReplayGuard(),
    )


# --- low-order points ------------------------------------------------------------------------


@pytest.mark.parametrize("point", LOW_ORDER_POINTS.values(), ids=LOW_ORDER_POINTS.keys())
def test_low_order_point_as_enc_fails_decryption(net: Net, point: bytes) -> None:
    frame = seal_from(net.a, net.b)
    start = body_offset(frame)
    tampered = frame[:start] + point + frame[start + ENC_BYTES :]
    replay = MemoryReplayGuard()
    assert_refused(OpenFailure.DECRYPT, tampered, net.b, peers=net.peers, replay=replay)
    assert len(replay) == 0


# --- payload checks after the signature ------------------------------------------------------


def test_seal_refuses_a_record_written_by_another_node(net: Net) -> None:
    with pytest.raises(SealError):
        seal_from(net.a, net.b, sample_report(origin=net.c.node_id))
    with pytest.raises(SealError):
        seal_from(net.a, net.b, sample_action(net.c.node_id, sample_report()))


@pytest.mark.parametrize(
    ("recipient", "recipient_kid"),
    [
        pytest.param("DE ECO", None, id="bad-recipient-node-id"),
        pytest.param("de-eco", "not-a-key-id", id="bad-recipient-kid"),
    ],
)
def test_seal_refuses_a_header_no_receiver_would_accept(
    net: Net, recipient: str, recipient_kid: str | None
) -> None:
    target = net.b.keys.current_encryption(NOW)
    with pytest.raises(SealError):
        seal(
            sample_report(origin=net.a.node_id),
            sender=net.a.node_id,
            signing_key=net.a.keys.current_signing(NOW),
            recipient=recipient,
            recipient_kid=recipient_kid or target.kid,
            recipient_key=target.private.public_key(),
            msg_id=uuid4(),
            now=NOW,
        )


def test_signed_record_whose_author_is_not_the_sender_is_payload(net: Net) -> None:
    payload = record_bytes(sample_report(origin=net.c.node_id))
    header = header_for(net.a, net.b, "report")
    frame = forge(header, sign_as(net.a, header, payload), payload, net.b)
    replay = MemoryReplayGuard()
    assert_refused(OpenFailure.PAYLOAD, frame, net.b, peers=net.peers, replay=replay)
    assert len(replay) == 0


@pytest.mark.parametrize(
    ("header_type", "record_type"),
    [("action", "report"), ("report", "action"), ("withdrawal", "report"), ("receipt", "action")],
)
def test_header_type_not_matching_the_payload_is_payload(
    net: Net, header_type: str, record_type: str
) -> None:
    report = sample_report(origin=net.a.node_id)
    record: AnyRecord = report if record_type == "report" else sample_action(net.a.node_id, report)
    payload = record_bytes(record)
    header = header_for(net.a, net.b, header_type)
    frame = forge(header, sign_as(net.a, header, payload), payload, net.b)
    assert_refused(OpenFailure.PAYLOAD, frame, net.b, peers=net.peers)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'{"type":"report"}', id="missing-fields"),
    ],
)
def test_signed_payload_that_is_not_a_record_is_payload(net: Net, payload: bytes) -> None:
    header = header_for(net.a, net.b, "report")
    frame = forge(header, sign_as(net.a, header, payload), payload, net.b)
    assert_refused(OpenFailure.PAYLOAD, frame, net.b, peers=net.peers)


def test_signed_payload_with_an_unknown_field_is_payload(net: Net) -> None:
    fields = orjson.loads(record_bytes(sample_report(origin=net.a.node_id)))
    fields["smuggled"] = "x"
    payload = canonical_json(fields)
    header = header_for(net.a, net.b, "report")
    frame = forge(header, sign_as(net.a, header, payload), payload, net.b)
    assert_refused(OpenFailure.PAYLOAD, frame, net.b, peers=net.peers)
