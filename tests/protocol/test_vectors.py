"""The published wire vectors (tests/vectors/envelope-v1.json) hold against the code."""

from __future__ import annotations

import hashlib
import json
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keys import (
    EncryptionKey,
    KeyDocumentError,
    NodeKeys,
    PublicKeySet,
    SigningKey,
    Validity,
    build_key_document,
    identity_fingerprint,
    sign_key_document,
    verify_key_document,
)
from keys.document import KEY_DOCUMENT_LABEL
from keys.thumbprint import CURVE_ED25519, CURVE_X25519, b64url, b64url_decode, okp_thumbprint
from protocol import (
    MAX_ENVELOPE_BYTES,
    PROTOCOL_VERSION,
    SUITE_NAME,
    MemoryReplayGuard,
    OpenError,
    Receipt,
    open_envelope,
    parse_record,
    read_header,
    record_bytes,
    seal,
)
from protocol.envelope import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_SKEW,
    ENCRYPTION_LABEL,
    HEADER_ADAPTER,
    MAGIC,
    MAX_HEADER_BYTES,
    SIGNATURE_LABEL,
    signed_bytes,
)
from tests.vectors import generate, rfc9180

VECTORS: dict[str, Any] = json.loads(generate.VECTORS_PATH.read_text(encoding="utf-8"))
NODES: dict[str, dict[str, Any]] = VECTORS["nodes"]
ENVELOPES: list[dict[str, Any]] = VECTORS["envelopes"]
NEGATIVE: list[dict[str, Any]] = VECTORS["negative"]
PUBLIC_MESSAGE = "envelope could not be opened"


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text)


def window(entry: dict[str, Any]) -> Validity:
    return Validity(at(entry["not_before"]), at(entry["not_after"]))


def node_keys(node: dict[str, Any]) -> NodeKeys:
    """The node's NodeKeys, rebuilt from the private keys printed in the vector file."""
    signing = []
    for entry in node["signing"]:
        private = Ed25519PrivateKey.from_private_bytes(hexbytes(entry["private_hex"]))
        signing.append(SigningKey(entry["kid"], private, window(entry)))
    encryption = []
    for entry in node["encryption"]:
        x_private = X25519PrivateKey.from_private_bytes(hexbytes(entry["private_hex"]))
        encryption.append(EncryptionKey(entry["kid"], x_private, window(entry)))
    identity = Ed25519PrivateKey.from_private_bytes(hexbytes(node["identity"]["private_hex"]))
    return NodeKeys(identity, signing, encryption)


def key_document_wire(node: dict[str, Any]) -> bytes:
    return b64url_decode(node["key_document"]["wire_b64url"])


class VectorDirectory:
    """Peers as a receiver would know them: from each key document, verified against its pin."""

    def __init__(self) -> None:
        self.sets = {
            node_id: PublicKeySet.from_document(
                verify_key_document(
                    key_document_wire(node), pinned_fingerprint=node["identity"]["fingerprint"]
                )
            )
            for node_id, node in NODES.items()
        }

    def keys_for(self, node_id: str) -> PublicKeySet | None:
        return self.sets.get(node_id)


def by_name(name: str) -> dict[str, Any]:
    return next(e for e in ENVELOPES if e["name"] == name)


def open_vector(
    envelope: dict[str, Any], frame: bytes | None = None, replay: MemoryReplayGuard | None = None
) -> Any:
    recipient = envelope["to"]
    return open_envelope(
        hexbytes(envelope["frame_hex"]) if frame is None else frame,
        recipient=recipient,
        keys=node_keys(NODES[recipient]),
        peers=VectorDirectory(),
        replay=MemoryReplayGuard() if replay is None else replay,
        now=at(envelope["created_at"]),
    )


def rfc7638(curve: str, public_raw: bytes) -> str:
    """RFC 7638 written out by hand: the members crv, kty, x in that order, no whitespace."""
    jwk = '{"crv":"%s","kty":"OKP","x":"%s"}' % (curve, b64url(public_raw))  # noqa: UP031
    return b64url(hashlib.sha256(jwk.encode("ascii")).digest())


envelope_ids = [e["name"] for e in ENVELOPES]
node_ids = list(NODES)


# --- constants ----------------------------------------------------------------------------------


def test_constants_are_those_of_the_code() -> None:
    constants = VECTORS["constants"]
    assert hexbytes(constants["magic_hex"]) == MAGIC == b"HLN1"
    assert hexbytes(constants["signature_label_hex"]) == SIGNATURE_LABEL
    assert hexbytes(constants["encryption_label_hex"]) == ENCRYPTION_LABEL
    assert hexbytes(constants["key_document_label_hex"]) == KEY_DOCUMENT_LABEL
    assert constants["protocol_version"] == PROTOCOL_VERSION == 1
    assert constants["suite"] == SUITE_NAME
    assert constants["max_envelope_bytes"] == MAX_ENVELOPE_BYTES == 256 * 1024
    assert constants["max_header_bytes"] == MAX_HEADER_BYTES == 2048
    assert constants["default_max_age_seconds"] == DEFAULT_MAX_AGE.total_seconds() == 86400
    assert constants["default_max_skew_seconds"] == DEFAULT_MAX_SKEW.total_seconds() == 300


# --- keys and key documents ---------------------------------------------------------------------


@pytest.mark.parametrize("node_id", node_ids)
def test_key_ids_and_fingerprint_rederive_from_the_private_keys(node_id: str) -> None:
    node = NODES[node_id]
    identity = Ed25519PrivateKey.from_private_bytes(hexbytes(node["identity"]["private_hex"]))
    identity_raw = identity.public_key().public_bytes_raw()
    assert identity_raw.hex() == node["identity"]["public_hex"]
    assert b64url(identity_raw) == node["identity"]["public_b64url"]
    assert identity_fingerprint(identity) == node["identity"]["fingerprint"]
    assert rfc7638("Ed25519", identity_raw) == node["identity"]["fingerprint"]
    for entry in node["signing"]:
        private = Ed25519PrivateKey.from_private_bytes(hexbytes(entry["private_hex"]))
        raw = private.public_key().public_bytes_raw()
        assert raw.hex() == entry["public_hex"]
        assert b64url(raw) == entry["public_b64url"]
        assert SigningKey.kid_of(private) == entry["kid"]
        assert okp_thumbprint(CURVE_ED25519, raw) == rfc7638("Ed25519", raw) == entry["kid"]
    for entry in node["encryption"]:
        x_private = X25519PrivateKey.from_private_bytes(hexbytes(entry["private_hex"]))
        raw = x_private.public_key().public_bytes_raw()
        assert raw.hex() == entry["public_hex"]
        assert b64url(raw) == entry["public_b64url"]
        assert EncryptionKey.kid_of(x_private) == entry["kid"]
        assert okp_thumbprint(CURVE_X25519, raw) == rfc7638("X25519", raw) == entry["kid"]


@pytest.mark.parametrize("node_id", node_ids)
def test_key_document_verifies_against_the_pinned_fingerprint(node_id: str) -> None:
    node = NODES[node_id]
    vector = node["key_document"]
    wire = key_document_wire(node)
    document = verify_key_document(wire, pinned_fingerprint=node["identity"]["fingerprint"])
    assert document.model_dump(mode="json", exclude_none=True) == vector["document"]
    assert document.fingerprint == node["identity"]["fingerprint"]

    wrapper = json.loads(wire)
    assert set(wrapper) == {"document", "signature"}
    body = b64url_decode(wrapper["document"])
    assert body.hex() == vector["document_bytes_hex"]
    assert body == rfc8785.dumps(json.loads(body))
    assert wire == rfc8785.dumps(wrapper)
    signed = hexbytes(vector["signed_bytes_hex"])
    assert signed == KEY_DOCUMENT_LABEL + body
    signature = b64url_decode(wrapper["signature"])
    assert signature.hex() == vector["signature_hex"]
    identity = Ed25519PublicKey.from_public_bytes(hexbytes(node["identity"]["public_hex"]))
    identity.verify(signature, signed)

    other_pin = next(n["identity"]["fingerprint"] for k, n in NODES.items() if k != node_id)
    with pytest.raises(KeyDocumentError):
        verify_key_document(wire, pinned_fingerprint=other_pin)


@pytest.mark.parametrize("node_id", node_ids)
def test_key_document_is_reproduced_byte_for_byte(node_id: str) -> None:
    """Ed25519 is deterministic, so the same keys and inputs give the same wire bytes."""
    node = NODES[node_id]
    keys = node_keys(node)
    document = build_key_document(
        keys,
        node_id=node["node_id"],
        country=node["country"],
        endpoint=node["endpoint"],
        now=at(node["key_document"]["issued_at"]),
    )
    assert sign_key_document(document, keys) == key_document_wire(node)


# --- signature ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", envelope_ids)
def test_signed_bytes_are_label_length_header_payload(name: str) -> None:
    envelope = by_name(name)
    header = hexbytes(envelope["header_hex"])
    payload = hexbytes(envelope["payload_hex"])
    expected = SIGNATURE_LABEL + struct.pack(">I", len(header)) + header + payload
    assert hexbytes(envelope["signed_bytes_hex"]) == expected == signed_bytes(header, payload)
    assert expected.startswith(
        bytes.fromhex("686f746c696e652d6e6f64652f7631207369676e617475726500")
    )


@pytest.mark.parametrize("name", envelope_ids)
def test_signature_verifies_and_is_deterministic(name: str) -> None:
    envelope = by_name(name)
    signer = next(k for k in NODES[envelope["from"]]["signing"] if k["kid"] == envelope["from_kid"])
    signed = hexbytes(envelope["signed_bytes_hex"])
    signature = hexbytes(envelope["signature_hex"])
    Ed25519PublicKey.from_public_bytes(hexbytes(signer["public_hex"])).verify(signature, signed)
    private = Ed25519PrivateKey.from_private_bytes(hexbytes(signer["private_hex"]))
    assert private.sign(signed) == signature


# --- header and payload -------------------------------------------------------------------------


@pytest.mark.parametrize("name", envelope_ids)
def test_header_is_canonical_and_carries_the_vector_fields(name: str) -> None:
    envelope = by_name(name)
    header_bytes = hexbytes(envelope["header_hex"])
    assert header_bytes.decode("utf-8") == envelope["header_text"]
    assert header_bytes == rfc8785.dumps(json.loads(header_bytes))
    header = HEADER_ADAPTER.validate_json(header_bytes)
    assert header == read_header(hexbytes(envelope["frame_hex"]))[0]
    assert header.to_bytes() == header_bytes
    assert header.to_dict() == {
        "v": 1,
        "suite": SUITE_NAME,
        "from": envelope["from"],
        "from_kid": envelope["from_kid"],
        "to": envelope["to"],
        "to_kid": envelope["to_kid"],
        "msg_id": envelope["msg_id"],
        "created_at": envelope["created_at"],
        "type": envelope["type"],
    }
    assert str(UUID(envelope["msg_id"])) == envelope["msg_id"]


@pytest.mark.parametrize("name", envelope_ids)
def test_payload_is_record_bytes_of_the_expected_record(name: str) -> None:
    envelope = by_name(name)
    payload = hexbytes(envelope["payload_hex"])
    expected = parse_record(json.dumps(envelope["record"]).encode(), envelope["type"])
    assert record_bytes(expected) == payload
    assert payload == rfc8785.dumps(envelope["record"])


# --- the frame ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", envelope_ids)
def test_frame_layout(name: str) -> None:
    envelope = by_name(name)
    frame = hexbytes(envelope["frame_hex"])
    header_bytes = hexbytes(envelope["header_hex"])
    hpke = envelope["hpke"]
    magic, header_len = struct.unpack_from(">4sH", frame)
    assert magic == b"HLN1"
    assert header_len == len(header_bytes)
    assert frame[6 : 6 + header_len] == header_bytes
    assert frame[6 + header_len : 6 + header_len + 32] == hexbytes(hpke["enc_hex"])
    ciphertext = frame[6 + header_len + 32 :]
    assert ciphertext == hexbytes(hpke["ciphertext_hex"])
    payload = hexbytes(envelope["payload_hex"])
    assert len(ciphertext) == 64 + len(payload) + 16
    assert len(frame) == envelope["frame_length"] == 6 + header_len + 32 + 64 + len(payload) + 16
    assert hashlib.sha256(frame).hexdigest() == envelope["frame_sha256"]
    _, read_bytes, sealed = read_header(frame)
    assert read_bytes == header_bytes
    assert sealed == frame[6 + header_len :]


@pytest.mark.parametrize("name", envelope_ids)
def test_frame_opens_to_the_expected_record(name: str) -> None:
    envelope = by_name(name)
    replay = MemoryReplayGuard()
    opened = open_vector(envelope, replay=replay)
    expected = parse_record(json.dumps(envelope["record"]).encode(), envelope["type"])
    assert opened.record == expected
    assert opened.record.model_dump(mode="json", exclude_none=True) == envelope["record"]
    assert opened.payload == hexbytes(envelope["payload_hex"]) == record_bytes(expected)
    assert opened.header.to_bytes() == hexbytes(envelope["header_hex"])
    assert opened.digest == envelope["frame_sha256"]
    assert replay.seen(envelope["from"], envelope["msg_id"])


@pytest.mark.parametrize("name", envelope_ids)
def test_hpke_values_reproduce_the_frame(name: str) -> None:
    """RFC 9180 base mode from the published ephemeral key gives the published bytes."""
    envelope = by_name(name)
    hpke = envelope["hpke"]
    header = hexbytes(envelope["header_hex"])
    info = hexbytes(hpke["info_hex"])
    assert info == ENCRYPTION_LABEL + header
    assert (hpke["kem_id"], hpke["kdf_id"], hpke["aead_id"]) == (0x0020, 0x0001, 0x0002)
    assert hpke["aad_hex"] == ""
    plaintext = hexbytes(hpke["plaintext_hex"])
    assert plaintext == hexbytes(envelope["signature_hex"]) + hexbytes(envelope["payload_hex"])
    recipient = next(
        k for k in NODES[envelope["to"]]["encryption"] if k["kid"] == envelope["to_kid"]
    )
    recipient_private = X25519PrivateKey.from_private_bytes(hexbytes(recipient["private_hex"]))
    assert hpke["recipient_public_hex"] == recipient["public_hex"]
    ephemeral = X25519PrivateKey.from_private_bytes(hexbytes(hpke["ephemeral_private_hex"]))
    context, sealed = rfc9180.seal_base(recipient_private.public_key(), info, plaintext, ephemeral)
    assert context.enc.hex() == hpke["enc_hex"]
    assert context.shared_secret.hex() == hpke["shared_secret_hex"]
    assert context.key_schedule_context.hex() == hpke["key_schedule_context_hex"]
    assert context.key.hex() == hpke["key_hex"]
    assert context.base_nonce.hex() == hpke["base_nonce_hex"]
    assert generate.frame_of(header, sealed) == hexbytes(envelope["frame_hex"])
    assert rfc9180.open_base(sealed, recipient_private, info) == plaintext


@pytest.mark.parametrize("name", envelope_ids)
def test_seal_makes_the_same_envelope_up_to_the_ephemeral_key(name: str) -> None:
    """`seal` with the vector's keys, msg_id and time: same header, same plaintext under HPKE."""
    envelope = by_name(name)
    sender_keys = node_keys(NODES[envelope["from"]])
    recipient_keys = node_keys(NODES[envelope["to"]])
    record = parse_record(json.dumps(envelope["record"]).encode(), envelope["type"])
    frame = seal(
        record,
        sender=envelope["from"],
        signing_key=sender_keys.signing[0],
        recipient=envelope["to"],
        recipient_kid=recipient_keys.encryption[0].kid,
        recipient_key=recipient_keys.encryption[0].private.public_key(),
        msg_id=UUID(envelope["msg_id"]),
        now=at(envelope["created_at"]),
    )
    assert frame != hexbytes(envelope["frame_hex"])  # a fresh ephemeral key each time
    assert len(frame) == envelope["frame_length"]
    _, header, sealed = read_header(frame)
    assert header == hexbytes(envelope["header_hex"])
    plaintext = rfc9180.open_base(
        sealed, recipient_keys.encryption[0].private, ENCRYPTION_LABEL + header
    )
    assert plaintext == hexbytes(envelope["hpke"]["plaintext_hex"])


def test_receipt_lists_the_digest_of_the_report_frame() -> None:
    receipt = open_vector(by_name("receipt")).record
    assert isinstance(receipt, Receipt)
    report_frame = hexbytes(by_name("report")["frame_hex"])
    assert list(receipt.accepted) == [hashlib.sha256(report_frame).hexdigest()]


# --- negative vectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("vector", NEGATIVE, ids=[n["name"] for n in NEGATIVE])
def test_negative_vector_is_refused(vector: dict[str, Any]) -> None:
    replay = MemoryReplayGuard()
    for name in vector.get("after", []):
        open_vector(by_name(name), replay=replay)
    opener = vector["opened_by"]
    with pytest.raises(OpenError) as refused:
        open_envelope(
            hexbytes(vector["frame_hex"]),
            recipient=opener,
            keys=node_keys(NODES[opener]),
            peers=VectorDirectory(),
            replay=replay,
            now=at(vector["now"]),
        )
    assert refused.value.reason == vector["expected_reason"]
    assert str(refused.value) == PUBLIC_MESSAGE


def test_negative_vectors_differ_from_the_report_frame_where_they_say() -> None:
    report = hexbytes(by_name("report")["frame_hex"])
    frames = {n["name"]: hexbytes(n["frame_hex"]) for n in NEGATIVE}
    for name in ("flipped-ciphertext-bit", "flipped-tag-bit"):
        diff = [i for i, (a, b) in enumerate(zip(report, frames[name], strict=True)) if a != b]
        assert len(diff) == 1
        assert report[diff[0]] ^ frames[name][diff[0]] == 0x01
    for name in ("wrong-recipient", "stale", "future", "replay"):
        assert frames[name] == report


# --- generated files ----------------------------------------------------------------------------


def test_generated_files_are_up_to_date() -> None:
    """A wire or schema change shows here: run `python -m tests.vectors.generate` and review."""
    stale = [
        str(path.relative_to(generate.ROOT))
        for path, text in generate.outputs().items()
        if not path.exists() or Path(path).read_text(encoding="utf-8") != text
    ]
    assert stale == []


def test_vector_file_private_keys_are_the_documented_seeds() -> None:
    seeds = {
        "fr-pointdecontact": (0, [1], [2]),
        "de-eco": (3, [4], [5]),
        "it-hotline": (6, [], [7]),
    }
    for node_id, (identity, signing, encryption) in seeds.items():
        node = NODES[node_id]
        assert (
            node["identity"]["private_hex"] == bytes(range(32 * identity, 32 * identity + 32)).hex()
        )
        assert [k["private_hex"] for k in node["signing"]] == [
            bytes(range(32 * n, 32 * n + 32)).hex() for n in signing
        ]
        assert [k["private_hex"] for k in node["encryption"]] == [
            bytes(range(32 * n, 32 * n + 32)).hex() for n in encryption
        ]
    assert cast(str, VECTORS["description"]).startswith("hotline-node protocol v1")
