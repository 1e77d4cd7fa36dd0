"""transport-v1.json and hybrid-v1.json, checked from the files (and envelope-v1.json's keys)."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import replace
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keys import NodeKeys, PublicKeySet, verify_key_document
from keys.material import HybridKey
from keys.thumbprint import b64url, b64url_decode
from protocol import MemoryReplayGuard, OpenError, Receipt, open_envelope, read_header
from protocol.derived import derived_action_id
from protocol.envelope import MAGIC
from protocol.federation import TransactionResponse, decode_frame
from protocol.httpsig import (
    MemoryNonceGuard,
    SignedRequest,
    sign_request,
    signature_base,
    verify_request,
)
from protocol.receipts import check_receipt
from protocol.records import ActionCode
from protocol.recovery import RecoveryPage, RecoveryRefused, SignedRecord, check_own_record
from tests.protocol.test_vectors import (
    ENVELOPES,
    NODES,
    VectorDirectory,
    at,
    hexbytes,
    node_keys,
    window,
)
from tests.vectors import more, rfc9180, xwing

TRANSPORT: dict[str, Any] = json.loads(more.TRANSPORT_PATH.read_text(encoding="utf-8"))
HYBRID: dict[str, Any] = json.loads(more.HYBRID_PATH.read_text(encoding="utf-8"))


# --- request signatures ----------------------------------------------------------------------


@pytest.mark.parametrize("vector", TRANSPORT["request_signatures"], ids=lambda v: v["method"])
def test_request_signature_vectors_are_reproduced_and_verify(vector: dict[str, Any]) -> None:
    signer = node_keys(NODES[vector["signer"]])
    key = next(k for k in signer.signing if k.kid == vector["signer_kid"])
    request = SignedRequest(
        vector["method"],
        vector["authority"],
        vector["path"],
        vector["query"],
        hexbytes(vector["body_hex"]),
    )
    created = at(vector["created"])
    headers = sign_request(
        request, node_id=vector["signer"], key=key, nonce=vector["nonce"], now=created
    )
    assert headers == vector["headers"]
    params = headers["Signature-Input"].removeprefix("hln=")
    components = [
        ("@method", vector["method"]),
        ("@authority", vector["authority"]),
        ("@path", vector["path"]),
        ("@query", vector["query"]),
        ("content-digest", headers["Content-Digest"]),
    ]
    assert signature_base(components, params).decode() == vector["signature_base"]
    sender = verify_request(
        request, headers, peers=VectorDirectory(), nonces=MemoryNonceGuard(), now=created
    )
    assert sender == vector["signer"]


def test_the_get_vector_signs_the_digest_of_the_empty_body() -> None:
    [get] = [v for v in TRANSPORT["request_signatures"] if v["method"] == "GET"]
    empty = base64.b64encode(hashlib.sha256(b"").digest()).decode()
    assert get["headers"]["Content-Digest"] == f"sha-256=:{empty}:"


# --- the stored answer -------------------------------------------------------------------------


def test_the_stored_answer_carries_a_receipt_that_matches_it() -> None:
    stored = TRANSPORT["stored_answer"]
    answer = TransactionResponse.model_validate_json(hexbytes(stored["answer_hex"]))
    assert json.loads(hexbytes(stored["answer_hex"])) == stored["answer"]
    frame = decode_frame(answer.receipt or "")
    assert hashlib.sha256(frame).hexdigest() == stored["receipt_digest"]
    opened = open_envelope(
        frame,
        recipient=stored["sender"],
        keys=node_keys(NODES[stored["sender"]]),
        peers=VectorDirectory(),
        replay=MemoryReplayGuard(),
        now=at(stored["receipt_opens_at"]),
    )
    receipt = check_receipt(answer, stored["txn_id"], opened.record)
    assert isinstance(receipt, Receipt)
    assert receipt.by == stored["receiver"]


# --- recovery --------------------------------------------------------------------------------


def test_the_recovery_page_gives_back_what_the_report_frame_signed() -> None:
    """From the files alone: the page's record is the header, signature and payload of the
    `report` envelope of envelope-v1.json, stored as §13.8 says, and its author accepts it."""
    vector = TRANSPORT["recovery"]
    report = next(e for e in ENVELOPES if e["name"] == "report")
    assert vector["report_frame_digest"] == report["frame_sha256"]
    page = RecoveryPage.model_validate(vector["page"])
    [item] = page.records
    header, signature, payload = (
        b64url_decode(item.header),
        b64url_decode(item.signature),
        b64url_decode(item.payload),
    )
    assert header.hex() == report["header_hex"]
    assert signature.hex() == report["signature_hex"]
    assert payload.hex() == report["payload_hex"]
    stored = hexbytes(vector["stored_hex"])
    assert stored == len(header).to_bytes(2, "big") + header + signature + payload
    assert SignedRecord.from_bytes(stored) == SignedRecord(header, signature, payload)
    assert vector["signed_bytes_hex"] == report["signed_bytes_hex"]
    own = check_own_record(
        SignedRecord(header, signature, payload),
        node_id=vector["asker"],
        holder=vector["holder"],
        keys=node_keys(NODES[vector["asker"]]),
    )
    assert own.record.type == "report"
    # The holder cannot change a byte of it, nor give it to another asker as its own.
    with pytest.raises(RecoveryRefused) as altered:
        check_own_record(
            SignedRecord(header, signature, payload.replace(b"csam", b"hate")),
            node_id=vector["asker"],
            holder=vector["holder"],
            keys=node_keys(NODES[vector["asker"]]),
        )
    assert altered.value.forged
    with pytest.raises(RecoveryRefused):
        check_own_record(
            SignedRecord(header, signature, payload),
            node_id=vector["holder"],
            holder=vector["holder"],
            keys=node_keys(NODES[vector["holder"]]),
        )


def test_the_recovery_request_is_signed_like_every_federation_request() -> None:
    request = TRANSPORT["recovery"]["request"]
    assert request["path"] == "/federation/v1/recover"
    signed = SignedRequest(
        request["method"], request["authority"], request["path"], request["query"], b""
    )
    sender = verify_request(
        signed,
        request["headers"],
        peers=VectorDirectory(),
        nonces=MemoryNonceGuard(),
        now=at(request["created"]),
    )
    assert sender == TRANSPORT["recovery"]["asker"]


# --- derived action ids ----------------------------------------------------------------------


@pytest.mark.parametrize("entry", TRANSPORT["derived_action_ids"]["ids"], ids=lambda e: e["peer"])
def test_derived_action_ids(entry: dict[str, Any]) -> None:
    spec = TRANSPORT["derived_action_ids"]
    name = hexbytes(entry["name_hex"])
    assert name == f"{entry['report_id']}/{entry['peer']}".encode()
    for code, namespace, key in (
        (ActionCode.FORWARDED, spec["forwarded_namespace"], "forwarded_id"),
        (ActionCode.RECEIVED, spec["received_namespace"], "received_id"),
    ):
        # Written out with SHA-1 as RFC 9562 §5.5 says, not through the uuid module.
        digest = bytearray(hashlib.sha1(uuid.UUID(namespace).bytes + name).digest()[:16])
        digest[6] = (digest[6] & 0x0F) | 0x50
        digest[8] = (digest[8] & 0x3F) | 0x80
        assert str(uuid.UUID(bytes=bytes(digest))) == entry[key]
        assert str(derived_action_id(code, entry["report_id"], entry["peer"])) == entry[key]


# --- hybrid suite ----------------------------------------------------------------------------


def _hybrid(entry: dict[str, Any]) -> HybridKey:
    """From the 32-byte seed, expanded as protocol.md §6.3 says: SHAKE256(seed, 96)."""
    expanded = hashlib.shake_256(hexbytes(entry["seed_hex"])).digest(96)
    mlkem = MLKEM768PrivateKey.from_seed_bytes(expanded[:64])
    x25519 = X25519PrivateKey.from_private_bytes(expanded[64:])
    return HybridKey.of(mlkem, x25519, window(entry))


def _hybrid_keys(node_id: str) -> NodeKeys:
    [node] = [n for n in HYBRID["nodes"] if n["node_id"] == node_id]
    return replace(node_keys(NODES[node_id]), hybrid=[_hybrid(node["hybrid_key"])])


class _HybridDirectory:
    def __init__(self) -> None:
        self.sets: dict[str, PublicKeySet] = {}
        for node in HYBRID["nodes"]:
            wire = b64url_decode(node["key_document"]["wire_b64url"])
            fingerprint = NODES[node["node_id"]]["identity"]["fingerprint"]
            document = verify_key_document(wire, pinned_fingerprint=fingerprint)
            self.sets[node["node_id"]] = PublicKeySet.from_document(document)

    def keys_for(self, node_id: str) -> PublicKeySet | None:
        return self.sets.get(node_id)


@pytest.mark.parametrize("node", HYBRID["nodes"], ids=lambda n: n["node_id"])
def test_hybrid_private_keys_are_given_as_the_seed_and_as_its_two_halves(
    node: dict[str, Any],
) -> None:
    """A library that takes the 32-byte X-Wing seed and one that takes ML-KEM's 64-byte seed
    d ‖ z and an X25519 key get the same key from the file."""
    entry = node["hybrid_key"]
    seed = hexbytes(entry["seed_hex"])
    assert len(seed) == 32
    label = f"hotline-node/v1 test vector hybrid {node['node_id']} seed"
    assert seed == hashlib.sha256(label.encode()).digest()
    assert entry["seed_rule"] == f"SHA-256('{label}')"
    expanded = hashlib.shake_256(seed).digest(96)
    assert expanded.hex() == entry["expanded_hex"]
    assert expanded[:64].hex() == entry["mlkem768_seed_hex"]
    assert expanded[64:].hex() == entry["x25519_private_hex"]
    from_halves = HybridKey.of(
        MLKEM768PrivateKey.from_seed_bytes(hexbytes(entry["mlkem768_seed_hex"])),
        X25519PrivateKey.from_private_bytes(hexbytes(entry["x25519_private_hex"])),
        window(entry),
    )
    assert from_halves.public_raw.hex() == entry["public_hex"]
    assert from_halves.public_raw[1184:].hex() == entry["x25519_public_hex"]


@pytest.mark.parametrize("node", HYBRID["nodes"], ids=lambda n: n["node_id"])
def test_hybrid_keys_and_documents(node: dict[str, Any]) -> None:
    entry = node["hybrid_key"]
    hybrid = _hybrid(entry)
    assert hybrid.public_raw.hex() == entry["public_hex"]
    assert b64url(hybrid.public_raw) == entry["public_b64url"]
    # The kid written out: SHA-256 of {"alg":"MLKEM768-X25519","kty":"AKP","pub":"..."}.
    jwk = '{"alg":"MLKEM768-X25519","kty":"AKP","pub":"%s"}' % entry["public_b64url"]  # noqa: UP031
    assert b64url(hashlib.sha256(jwk.encode()).digest()) == entry["kid"] == hybrid.kid
    document = node["key_document"]["document"]
    assert document["suites"] == HYBRID["constants"]["suites"]
    assert [k["kid"] for k in document["hybrid_keys"]] == [entry["kid"]]
    assert node["node_id"] in _HybridDirectory().sets


def test_the_hybrid_frame_opens_to_its_record() -> None:
    envelope = HYBRID["envelope"]
    frame = hexbytes(envelope["frame_hex"])
    read = read_header(frame)
    assert read.header_bytes.hex() == envelope["header_hex"]
    assert read.header.suite == envelope["suite"]
    assert read.sealed[: envelope["enc_length"]].hex() == envelope["enc_hex"]
    assert hashlib.sha256(frame).hexdigest() == envelope["frame_sha256"]
    opened = open_envelope(
        frame,
        recipient=envelope["to"],
        keys=_hybrid_keys(envelope["to"]),
        peers=_HybridDirectory(),
        replay=MemoryReplayGuard(),
        now=at(envelope["opens_at"]),
    )
    assert opened.payload.hex() == envelope["payload_hex"]
    assert json.loads(opened.payload) == envelope["record"]
    # The signature is deterministic and covers the header naming the hybrid suite.
    signer = node_keys(NODES[envelope["from"]]).signing[0]
    signed = hexbytes(envelope["signed_bytes_hex"])
    assert signer.private.sign(signed).hex() == envelope["signature_hex"]
    assert read.header_bytes in signed


@pytest.mark.parametrize("vector", HYBRID["negative"], ids=lambda v: v["name"])
def test_hybrid_negative_vectors_are_refused(vector: dict[str, Any]) -> None:
    with pytest.raises(OpenError) as refused:
        open_envelope(
            hexbytes(vector["frame_hex"]),
            recipient=vector["opened_by"],
            keys=_hybrid_keys(vector["opened_by"]),
            peers=_HybridDirectory(),
            replay=MemoryReplayGuard(),
            now=at(vector["now"]),
        )
    assert refused.value.reason.value == vector["expected_reason"]


def test_the_xwing_combiner_written_out_is_what_the_library_computes() -> None:
    """protocol.md §6.3, by hand with hashlib, ML-KEM-768 and X25519 alone: the shared secret
    of the library's frame is SHA3-256(ss_M ‖ ss_X ‖ ct_X ‖ pk_X ‖ "\\.//^\\"), and RFC 9180's
    key schedule over it (suite id HPKE 0x647A 0x0001 0x0002) opens the frame."""
    envelope = HYBRID["envelope"]
    recipient = _hybrid_keys(envelope["to"]).hybrid[0]
    read = read_header(hexbytes(envelope["frame_hex"]))
    enc, ciphertext = read.sealed[:1120], read.sealed[1120:]
    ct_m, ct_x = enc[:1088], enc[1088:]
    assert (ct_m.hex(), ct_x.hex()) == (envelope["ct_mlkem_hex"], envelope["ct_x25519_hex"])
    ss_m = recipient.mlkem.decapsulate(ct_m)
    ss_x = recipient.x25519.exchange(X25519PublicKey.from_public_bytes(ct_x))
    pk_x = recipient.public_raw[1184:]
    label = bytes([0x5C, 0x2E, 0x2F, 0x2F, 0x5E, 0x5C])
    assert label == b"\\.//^\\"
    assert label.hex() == HYBRID["constants"]["xwing"]["label_hex"]
    shared_secret = hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + label).digest()
    assert ss_m.hex() == envelope["ss_mlkem_hex"]
    assert ss_x.hex() == envelope["ss_x25519_hex"]
    assert shared_secret.hex() == envelope["shared_secret_hex"]
    suite_id = b"HPKE" + bytes.fromhex("647a00010002")
    context = rfc9180.key_schedule(enc, shared_secret, hexbytes(envelope["info_hex"]), suite_id)
    assert context.key_schedule_context.hex() == envelope["key_schedule_context_hex"]
    assert (context.key.hex(), context.base_nonce.hex()) == (
        envelope["key_hex"],
        envelope["base_nonce_hex"],
    )
    plaintext = AESGCM(context.key).decrypt(context.base_nonce, ciphertext, b"")
    assert plaintext == hexbytes(envelope["signature_hex"]) + hexbytes(envelope["payload_hex"])
    # A wrong combiner (the label first, as early drafts had it) does not open the frame.
    other = hashlib.sha3_256(label + ss_m + ss_x + ct_x + pk_x).digest()
    wrong = rfc9180.key_schedule(enc, other, hexbytes(envelope["info_hex"]), suite_id)
    with pytest.raises(InvalidTag):
        AESGCM(wrong.key).decrypt(wrong.base_nonce, ciphertext, b"")


def test_a_frame_sealed_with_the_xwing_formula_by_hand_opens_with_the_library() -> None:
    """The other way: sealed by tests/vectors/xwing.py, opened by the reference (cryptography)."""
    envelope = HYBRID["envelope"]
    header = hexbytes(envelope["header_hex"])
    plaintext = hexbytes(envelope["signature_hex"]) + hexbytes(envelope["payload_hex"])
    recipient = _hybrid_keys(envelope["to"])
    sealed = xwing.seal_base(
        recipient.hybrid[0].public_raw,
        hexbytes(envelope["info_hex"]),
        plaintext,
        X25519PrivateKey.generate(),
    )
    frame = MAGIC + len(header).to_bytes(2, "big") + header + sealed
    opened = open_envelope(
        frame,
        recipient=envelope["to"],
        keys=recipient,
        peers=_HybridDirectory(),
        replay=MemoryReplayGuard(),
        now=at(envelope["opens_at"]),
    )
    assert opened.payload.hex() == envelope["payload_hex"]
