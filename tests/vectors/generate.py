"""Build the wire test vectors (tests/vectors/*-v1.json) and the JSON Schemas (docs/schemas).

Run from the repository root:

    .venv/bin/python -m tests.vectors.generate           # write the files
    .venv/bin/python -m tests.vectors.generate --check   # exit 1 if a file is out of date

Everything is deterministic: keys come from fixed seeds, Ed25519 signatures are deterministic, and
the HPKE ephemeral keys are fixed too (the frames are sealed with tests/vectors/rfc9180.py, then
checked to open with the project's `open_envelope`). Running it twice gives the same bytes, so a
diff in the output means the wire format changed. The one exception is the hybrid frame of
hybrid-v1.json (tests/vectors/more.py): ML-KEM encapsulation takes randomness the library does
not let us fix, so the committed frame is kept as long as it still opens to the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import BaseModel, TypeAdapter

from keys import (
    EncryptionKey,
    KeyDocument,
    NodeKeys,
    PublicKeySet,
    SigningKey,
    Validity,
    build_key_document,
    canonical_json,
    sign_key_document,
    verify_key_document,
)
from keys.document import KEY_DOCUMENT_LABEL
from keys.thumbprint import b64url, b64url_decode
from protocol import (
    Action,
    HashSet,
    MemoryReplayGuard,
    OpenError,
    Receipt,
    Report,
    Withdrawal,
    open_envelope,
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
    MAX_ENVELOPE_BYTES,
    MAX_HEADER_BYTES,
    PROTOCOL_VERSION,
    SIGNATURE_LABEL,
    SUITE_NAME,
)
from protocol.features import ACCEPTED
from protocol.records import (
    Assessment,
    ContentHash,
    HashAddition,
    HashRemoval,
    Hosting,
    HostingAddress,
)
from tests.vectors import rfc9180

ROOT = Path(__file__).resolve().parents[2]
VECTORS_PATH = ROOT / "tests" / "vectors" / "envelope-v1.json"
SCHEMAS_DIR = ROOT / "docs" / "schemas"

NOT_BEFORE = datetime(2026, 11, 1, tzinfo=UTC)
NOT_AFTER = NOT_BEFORE + timedelta(days=90)
DOCUMENT_ISSUED_AT = datetime(2026, 11, 29, 11, 0, tzinfo=UTC)
REPORT_CREATED = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

FR = "fr-pointdecontact"
DE = "de-eco"
IT = "it-hotline"

REPORT_ID = UUID("3f2a1b4c-5d6e-4f70-8a91-b2c3d4e5f607")
ACTION_ID = UUID("8c0d5e2f-3a41-4b6c-9d7e-0f1a2b3c4d5e")
RECEIPT_ID = UUID("c4d5e6f7-0819-4a2b-8c3d-4e5f60718293")
WITHDRAWAL_ID = UUID("e7f8a9b0-c1d2-4e3f-9a4b-5c6d7e8f9a0b")
AUTHOR_MISMATCH_ID = UUID("d1e2f3a4-b5c6-4d7e-8f90-a1b2c3d4e5f6")
HASHSET_ID = UUID("0f1e2d3c-4b5a-4697-8a8b-9c0d1e2f3a4b")
MSG_IDS = {
    "report": UUID("7b1c1d1e-4a58-4f6e-9a0b-5c1d2e3f4a5b"),
    "action": UUID("2e4f6a8c-0b1d-4e3f-a5b7-c9d1e3f5a7b9"),
    "receipt": UUID("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"),
    "withdrawal": UUID("b3c4d5e6-f708-4192-a3b4-c5d6e7f80912"),
    "author-mismatch": UUID("5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f"),
    "hashset": UUID("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"),
}


def seed(index: int) -> bytes:
    """Private key seed number `index`: the 32 bytes 32*index .. 32*index+31."""
    return bytes(range(32 * index, 32 * index + 32))


# (node id, country, endpoint, identity seed, signing seed or None, encryption seed).
# it-hotline only ever receives (in a negative vector), so it has no signing key.
NODES: list[tuple[str, str, str, int, int | None, int]] = [
    (FR, "FR", "https://node.pointdecontact.example/", 0, 1, 2),
    (DE, "DE", "https://node.eco.example/", 3, 4, 5),
    (IT, "IT", "https://node.hotline-it.example/", 6, None, 7),
]


def ephemeral_for(name: str) -> X25519PrivateKey:
    """The HPKE ephemeral key of frame `name`: SHA-256 of a fixed label and the name."""
    digest = hashlib.sha256(b"hotline-node/v1 test vector ephemeral " + name.encode()).digest()
    return X25519PrivateKey.from_private_bytes(digest)


def unix(at: datetime) -> int:
    return int(at.timestamp())


# --- nodes and key documents --------------------------------------------------------------------


def node_keys(identity_seed: int, signing_seed: int | None, encryption_seed: int) -> NodeKeys:
    window = Validity(NOT_BEFORE, NOT_AFTER)
    signing: list[SigningKey] = []
    if signing_seed is not None:
        private = Ed25519PrivateKey.from_private_bytes(seed(signing_seed))
        signing.append(SigningKey(SigningKey.kid_of(private), private, window))
    encryption_private = X25519PrivateKey.from_private_bytes(seed(encryption_seed))
    return NodeKeys(
        identity=Ed25519PrivateKey.from_private_bytes(seed(identity_seed)),
        signing=signing,
        encryption=[
            EncryptionKey(EncryptionKey.kid_of(encryption_private), encryption_private, window)
        ],
    )


def all_node_keys() -> dict[str, NodeKeys]:
    return {node_id: node_keys(i, s, e) for node_id, _, _, i, s, e in NODES}


def _key_entry(private_raw: bytes, public_raw: bytes, kid: str) -> dict[str, Any]:
    return {
        "private_hex": private_raw.hex(),
        "public_hex": public_raw.hex(),
        "public_b64url": b64url(public_raw),
        "kid": kid,
        "not_before": unix(NOT_BEFORE),
        "not_after": unix(NOT_AFTER),
    }


def node_vector(node_id: str, country: str, endpoint: str, keys: NodeKeys) -> dict[str, Any]:
    document = build_key_document(
        keys, node_id=node_id, country=country, endpoint=endpoint, now=DOCUMENT_ISSUED_AT
    )
    wire = sign_key_document(document, keys)
    body = json.loads(wire)["document"]
    document_bytes = b64url_decode(body)
    signed = KEY_DOCUMENT_LABEL + document_bytes
    verify_key_document(wire, pinned_fingerprint=keys.fingerprint)
    identity_public = keys.identity.public_key().public_bytes_raw()
    return {
        "node_id": node_id,
        "country": country,
        "endpoint": endpoint,
        "identity": {
            "private_hex": keys.identity.private_bytes_raw().hex(),
            "public_hex": identity_public.hex(),
            "public_b64url": b64url(identity_public),
            "fingerprint": keys.fingerprint,
        },
        "signing": [
            _key_entry(k.private.private_bytes_raw(), k.public_raw, k.kid) for k in keys.signing
        ],
        "encryption": [
            _key_entry(k.private.private_bytes_raw(), k.public_raw, k.kid) for k in keys.encryption
        ],
        "key_document": {
            "issued_at": unix(DOCUMENT_ISSUED_AT),
            "document": json.loads(document_bytes),
            "document_bytes_hex": document_bytes.hex(),
            "signed_bytes_hex": signed.hex(),
            "signature_hex": keys.identity.sign(signed).hex(),
            "wire_b64url": b64url(wire),
        },
    }


class _Directory:
    def __init__(self, keys: dict[str, NodeKeys]) -> None:
        self._sets: dict[str, PublicKeySet] = {}
        for node_id, country, endpoint, *_ in NODES:
            document = build_key_document(
                keys[node_id],
                node_id=node_id,
                country=country,
                endpoint=endpoint,
                now=DOCUMENT_ISSUED_AT,
            )
            self._sets[node_id] = PublicKeySet.from_document(document)

    def keys_for(self, node_id: str) -> PublicKeySet | None:
        return self._sets.get(node_id)


# --- records ------------------------------------------------------------------------------------


def report_record() -> Report:
    return Report(
        id=REPORT_ID,
        origin=FR,
        seq=1,
        local_ref="PDC-2026-0042137",
        received_at=datetime(2026, 11, 28, 9, 15, 0, tzinfo=UTC),
        assessed_at=datetime(2026, 11, 29, 10, 30, 0, tzinfo=UTC),
        url="https://files.example-host.de/gallery/a81f3c9e/index.html",
        item_urls=[
            "https://files.example-host.de/gallery/a81f3c9e/img_0001.jpg",
            "https://files.example-host.de/gallery/a81f3c9e/img_0002.jpg",
        ],
        content_type="image",
        site_type="image_host",
        assessment=Assessment(
            verdict="baseline",
            category="csam",
            legal_basis="Code pénal art. 227-23",
            victim_age_group="prepubescent",
            flags=["commercial"],
        ),
        hosting=Hosting(
            addresses=[
                HostingAddress(
                    ip="192.0.2.34",
                    country="DE",
                    basis="registration",
                    source="iptocc",
                    source_date="2026-11-01",
                    asn=64500,
                    network_name="EXAMPLE-DC",
                )
            ],
            countries=["DE"],
            abuse_contact="abuse@example-host.de",
            traced_at=datetime(2026, 11, 29, 10, 31, 12, tzinfo=UTC),
        ),
        hashes=[
            ContentHash(alg="sha256", value=hashlib.sha256(b"image 1").hexdigest()),
            ContentHash(alg="md5", value=hashlib.md5(b"image 1").hexdigest()),
        ],
        tlp="amber",
        # A quote, a newline and non-ASCII text: their escaping is part of the canonical form.
        notes='Signalé par le public.\nGallery "a81f3c9e": 2 images, confirmed by two analysts.',
    )


def action_record() -> Action:
    return Action(
        id=ACTION_ID,
        report_id=REPORT_ID,
        report_origin=FR,
        code="content_removed",
        at=datetime(2026, 11, 29, 12, 9, 30, tzinfo=UTC),
        by=DE,
        analyst="analyst-07",
        country="DE",
        reason="The host removed the gallery after our notice.",
    )


def receipt_record(report_frame: bytes) -> Receipt:
    return Receipt(
        id=RECEIPT_ID,
        txn_id="txn-20261129-0001",
        by=DE,
        at=datetime(2026, 11, 29, 12, 0, 5, tzinfo=UTC),
        accepted=[hashlib.sha256(report_frame).hexdigest()],
    )


def withdrawal_record() -> Withdrawal:
    return Withdrawal(
        id=WITHDRAWAL_ID,
        report_id=REPORT_ID,
        origin=FR,
        at=datetime(2026, 11, 29, 13, 0, tzinfo=UTC),
        reason="Erasure request from the reporter.",
    )


def hashset_record() -> HashSet:
    """Change 3 of fr-pointdecontact's list `known-fr`: three hashes in, one out."""
    image = b"image 2"
    added = datetime(2026, 11, 29, 13, 45, tzinfo=UTC)
    return HashSet(
        id=HASHSET_ID,
        origin=FR,
        name="known-fr",
        seq=3,
        at=datetime(2026, 11, 29, 14, 0, tzinfo=UTC),
        add=[
            HashAddition(
                alg="sha256",
                value=hashlib.sha256(image).hexdigest(),
                category="csam",
                grade="A",
                use="hotlines",
                added_at=added,
            ),
            HashAddition(
                alg="sha1",
                value=hashlib.sha1(image).hexdigest(),
                category="csam",
                grade="A",
                use="hotlines",
                added_at=added,
            ),
            HashAddition(
                alg="pdq",
                value=hashlib.sha256(b"pdq of image 2").hexdigest(),
                quality=92,
                category="csam",
                use="industry",
                added_at=added,
            ),
        ],
        remove=[HashRemoval(alg="md5", value=hashlib.md5(b"image 1").hexdigest())],
    )


AnyRecord = Report | Action | Withdrawal | Receipt | HashSet


# --- frames -------------------------------------------------------------------------------------


def header_bytes(
    *,
    sender: str,
    sender_kid: str,
    recipient: str,
    recipient_kid: str,
    msg_id: UUID,
    created: datetime,
    record_type: str,
) -> bytes:
    # Validated strictly against the header's rules, as a receiver would, before it is used.
    header = HEADER_ADAPTER.validate_json(
        canonical_json(
            {
                "v": PROTOCOL_VERSION,
                "suite": SUITE_NAME,
                "from": sender,
                "from_kid": sender_kid,
                "to": recipient,
                "to_kid": recipient_kid,
                "msg_id": str(msg_id),
                "created_at": unix(created),
                "type": record_type,
            }
        )
    )
    return header.to_bytes()


def signed_bytes(header: bytes, payload: bytes) -> bytes:
    return SIGNATURE_LABEL + struct.pack(">I", len(header)) + header + payload


def frame_of(header: bytes, sealed: bytes) -> bytes:
    return MAGIC + struct.pack(">H", len(header)) + header + sealed


def build_frame(
    name: str,
    header: bytes,
    plaintext: bytes,
    recipient: X25519PrivateKey,
) -> tuple[bytes, dict[str, Any]]:
    ephemeral = ephemeral_for(name)
    info = ENCRYPTION_LABEL + header
    context, sealed = rfc9180.seal_base(recipient.public_key(), info, plaintext, ephemeral)
    hpke = {
        "mode": "base",
        "kem_id": rfc9180.KEM_ID,
        "kdf_id": rfc9180.KDF_ID,
        "aead_id": rfc9180.AEAD_ID,
        "recipient_public_hex": recipient.public_key().public_bytes_raw().hex(),
        "ephemeral_private_hex": ephemeral.private_bytes_raw().hex(),
        "enc_hex": context.enc.hex(),
        "info_hex": info.hex(),
        "aad_hex": "",
        "shared_secret_hex": context.shared_secret.hex(),
        "key_schedule_context_hex": context.key_schedule_context.hex(),
        "key_hex": context.key.hex(),
        "base_nonce_hex": context.base_nonce.hex(),
        "plaintext_hex": plaintext.hex(),
        "ciphertext_hex": sealed[len(context.enc) :].hex(),
    }
    return frame_of(header, sealed), hpke


def envelope_vector(
    name: str,
    record: AnyRecord,
    *,
    recipient: str,
    created: datetime,
    keys: dict[str, NodeKeys],
) -> tuple[bytes, dict[str, Any]]:
    sender = record.by if isinstance(record, Action | Receipt) else record.origin
    signing_key = keys[sender].signing[0]
    encryption_key = keys[recipient].encryption[0]
    header = header_bytes(
        sender=sender,
        sender_kid=signing_key.kid,
        recipient=recipient,
        recipient_kid=encryption_key.kid,
        msg_id=MSG_IDS[name],
        created=created,
        record_type=record.type,
    )
    payload = record_bytes(record)
    to_sign = signed_bytes(header, payload)
    signature = signing_key.private.sign(to_sign)
    frame, hpke = build_frame(name, header, signature + payload, encryption_key.private)
    _check_against_project(frame, record, recipient=recipient, created=created, keys=keys)
    return frame, {
        "name": name,
        "from": sender,
        "to": recipient,
        "from_kid": signing_key.kid,
        "to_kid": encryption_key.kid,
        "msg_id": str(MSG_IDS[name]),
        "created_at": unix(created),
        "type": record.type,
        "record": json.loads(payload),
        "header_hex": header.hex(),
        "header_text": header.decode("utf-8"),
        "payload_hex": payload.hex(),
        "signed_bytes_hex": to_sign.hex(),
        "signature_hex": signature.hex(),
        "hpke": hpke,
        "frame_hex": frame.hex(),
        "frame_length": len(frame),
        "frame_sha256": hashlib.sha256(frame).hexdigest(),
    }


def _check_against_project(
    frame: bytes, record: AnyRecord, *, recipient: str, created: datetime, keys: dict[str, NodeKeys]
) -> None:
    """The hand-built frame opens with open_envelope, and `seal` writes the same header bytes."""
    opened = open_envelope(
        frame,
        recipient=recipient,
        keys=keys[recipient],
        peers=_Directory(keys),
        replay=MemoryReplayGuard(),
        now=created,
    )
    if opened.record != record:
        raise AssertionError("the vector frame does not open to its record")
    sender = opened.header.from_
    recipient_key = keys[recipient].encryption[0]
    sealed_by_project = seal(
        record,
        sender=sender,
        signing_key=keys[sender].signing[0],
        recipient=recipient,
        recipient_kid=recipient_key.kid,
        recipient_key=recipient_key.private.public_key(),
        msg_id=UUID(opened.header.msg_id),
        now=created,
    )
    _, project_header, project_sealed = read_header(sealed_by_project)
    _, vector_header, vector_sealed = read_header(frame)
    if project_header != vector_header or len(project_sealed) != len(vector_sealed):
        raise AssertionError("seal() and the vector disagree on the header or the frame length")
    plaintext = rfc9180.open_base(
        project_sealed, recipient_key.private, ENCRYPTION_LABEL + project_header
    )
    if plaintext != rfc9180.open_base(
        vector_sealed, recipient_key.private, ENCRYPTION_LABEL + vector_header
    ):
        raise AssertionError("seal() and the vector disagree on the plaintext")


# --- negative vectors ---------------------------------------------------------------------------


def flip(frame: bytes, index: int, mask: int = 0x01) -> bytes:
    return frame[:index] + bytes([frame[index] ^ mask]) + frame[index + 1 :]


def negative_vectors(
    keys: dict[str, NodeKeys], report_frame: bytes, report: dict[str, Any]
) -> list[dict[str, Any]]:
    created = REPORT_CREATED
    header = bytes.fromhex(report["header_hex"])
    payload = bytes.fromhex(report["payload_hex"])
    signature = bytes.fromhex(report["signature_hex"])
    fr_signing = keys[FR].signing[0]
    de_encryption = keys[DE].encryption[0]
    it_encryption = keys[IT].encryption[0]
    body = 6 + len(header)
    negatives: list[dict[str, Any]] = []

    def add(name: str, description: str, frame: bytes, reason: str, **extra: Any) -> None:
        entry: dict[str, Any] = {
            "name": name,
            "description": description,
            "opened_by": extra.pop("opened_by", DE),
            "now": extra.pop("now", unix(created)),
            "expected_reason": reason,
        }
        entry.update(extra)
        entry["frame_hex"] = frame.hex()
        negatives.append(entry)

    add(
        "flipped-ciphertext-bit",
        "The report frame with the lowest bit of the first ciphertext byte flipped.",
        flip(report_frame, body + rfc9180.N_SECRET),
        "decrypt",
    )
    add(
        "flipped-tag-bit",
        "The report frame with the lowest bit of its last byte (the GCM tag) flipped.",
        flip(report_frame, len(report_frame) - 1),
        "decrypt",
    )
    changed = header.replace(b'"created_at":1795953600', b'"created_at":1795953601')
    if len(changed) != len(header) or changed == header:
        raise AssertionError("created_at edit did not apply")
    add(
        "header-changed",
        "The report frame with created_at raised by one second in the clear header (same length)."
        " The HPKE info no longer matches, so decryption fails before the signature is checked.",
        report_frame[:6] + changed + report_frame[body:],
        "decrypt",
    )
    forwarded_header = header_bytes(
        sender=FR,
        sender_kid=fr_signing.kid,
        recipient=IT,
        recipient_kid=it_encryption.kid,
        msg_id=MSG_IDS["report"],
        created=created,
        record_type="report",
    )
    forwarded, _ = build_frame(
        "forwarded-to-third-party", forwarded_header, signature + payload, it_encryption.private
    )
    add(
        "forwarded-to-third-party",
        "de-eco re-encrypts fr-pointdecontact's signed report to it-hotline under a header "
        "naming it-hotline. The signature covers the original header (to = de-eco), so it fails.",
        forwarded,
        "signature",
        opened_by=IT,
    )
    wrong_signer, _ = build_frame(
        "wrong-signer",
        header,
        keys[FR].identity.sign(signed_bytes(header, payload)) + payload,
        de_encryption.private,
    )
    add(
        "wrong-signer",
        "The report signed with fr-pointdecontact's identity key instead of the signing key "
        "named by from_kid, correctly encrypted to de-eco.",
        wrong_signer,
        "signature",
    )
    foreign = Action(
        id=AUTHOR_MISMATCH_ID,
        report_id=REPORT_ID,
        report_origin=FR,
        code="content_removed",
        at=created,
        by=DE,
        country="DE",
    )
    foreign_payload = record_bytes(foreign)
    foreign_header = header_bytes(
        sender=FR,
        sender_kid=fr_signing.kid,
        recipient=DE,
        recipient_kid=de_encryption.kid,
        msg_id=MSG_IDS["author-mismatch"],
        created=created,
        record_type="action",
    )
    author_mismatch, _ = build_frame(
        "author-mismatch",
        foreign_header,
        fr_signing.private.sign(signed_bytes(foreign_header, foreign_payload)) + foreign_payload,
        de_encryption.private,
    )
    add(
        "author-mismatch",
        "fr-pointdecontact validly signs and seals an action whose author (by) is de-eco: "
        "only the author of a record may send it.",
        author_mismatch,
        "payload",
    )
    add(
        "wrong-recipient",
        "The report frame presented to fr-pointdecontact, which is not the header's `to`.",
        report_frame,
        "wrong_recipient",
        opened_by=FR,
    )
    add(
        "stale",
        "The report frame opened 24 h + 1 s after created_at (default max age 24 h).",
        report_frame,
        "stale",
        now=unix(created + DEFAULT_MAX_AGE + timedelta(seconds=1)),
    )
    add(
        "future",
        "The report frame opened 5 min + 1 s before created_at (default max skew 5 min).",
        report_frame,
        "future",
        now=unix(created - DEFAULT_MAX_SKEW - timedelta(seconds=1)),
    )
    add(
        "replay",
        "The report frame a second time, after the `report` envelope opened with the same "
        "replay memory.",
        report_frame,
        "replay",
        after=["report"],
    )
    directory = _Directory(keys)
    for entry in negatives:
        guard = MemoryReplayGuard()
        opener = entry["opened_by"]
        if entry.get("after"):
            open_envelope(
                report_frame,
                recipient=DE,
                keys=keys[DE],
                peers=directory,
                replay=guard,
                now=created,
            )
        try:
            open_envelope(
                bytes.fromhex(entry["frame_hex"]),
                recipient=opener,
                keys=keys[opener],
                peers=directory,
                replay=guard,
                now=datetime.fromtimestamp(entry["now"], tz=UTC),
            )
        except OpenError as exc:
            if exc.reason != entry["expected_reason"]:
                raise AssertionError(f"{entry['name']}: refused for {exc.reason}") from exc
        else:
            raise AssertionError(f"{entry['name']} opened")
    return negatives


# --- the whole file -----------------------------------------------------------------------------


def build_vectors() -> dict[str, Any]:
    keys = all_node_keys()
    nodes = {
        node_id: node_vector(node_id, country, endpoint, keys[node_id])
        for node_id, country, endpoint, *_ in NODES
    }
    report_frame, report = envelope_vector(
        "report", report_record(), recipient=DE, created=REPORT_CREATED, keys=keys
    )
    _, action = envelope_vector(
        "action",
        action_record(),
        recipient=FR,
        created=datetime(2026, 11, 29, 12, 10, tzinfo=UTC),
        keys=keys,
    )
    _, receipt = envelope_vector(
        "receipt",
        receipt_record(report_frame),
        recipient=FR,
        created=datetime(2026, 11, 29, 12, 0, 5, tzinfo=UTC),
        keys=keys,
    )
    _, withdrawal = envelope_vector(
        "withdrawal",
        withdrawal_record(),
        recipient=DE,
        created=datetime(2026, 11, 29, 13, 0, 1, tzinfo=UTC),
        keys=keys,
    )
    _, hashset = envelope_vector(
        "hashset",
        hashset_record(),
        recipient=DE,
        created=datetime(2026, 11, 29, 14, 0, 1, tzinfo=UTC),
        keys=keys,
    )
    return {
        "description": (
            "hotline-node protocol v1 test vectors (docs/protocol.md). Every private key here is "
            "a published test key: never use it for anything else. Generated by "
            "tests/vectors/generate.py; the HPKE ephemeral keys are fixed so the frames are "
            "reproducible. Times are Unix seconds. expected_reason in a negative vector is the "
            "reference implementation's log reason; on the wire every refusal is the same error."
        ),
        "constants": {
            "magic_hex": MAGIC.hex(),
            "protocol_version": PROTOCOL_VERSION,
            "suite": SUITE_NAME,
            "signature_label_hex": SIGNATURE_LABEL.hex(),
            "encryption_label_hex": ENCRYPTION_LABEL.hex(),
            "key_document_label_hex": KEY_DOCUMENT_LABEL.hex(),
            "max_envelope_bytes": MAX_ENVELOPE_BYTES,
            "max_header_bytes": MAX_HEADER_BYTES,
            "default_max_age_seconds": int(DEFAULT_MAX_AGE.total_seconds()),
            "default_max_skew_seconds": int(DEFAULT_MAX_SKEW.total_seconds()),
        },
        "seeds": (
            "Node key seeds are bytes(range(32*n, 32*n+32)): fr-pointdecontact identity n=0, "
            "signing n=1, encryption n=2; de-eco 3, 4, 5; it-hotline identity 6, encryption 7 "
            "(no signing key). The ephemeral key of frame NAME is "
            "SHA-256('hotline-node/v1 test vector ephemeral ' + NAME)."
        ),
        "nodes": nodes,
        "accepting_key_document": accepting_key_document(keys[DE]),
        "envelopes": [report, action, receipt, withdrawal, hashset],
        "negative": negative_vectors(keys, report_frame, report),
    }


def accepting_key_document(keys: NodeKeys) -> dict[str, Any]:
    """de-eco's key document announcing what it reads beyond v1 (`accepts`, protocol.md §3.2,
    §11): the same keys and time as its document in `nodes`, which announces nothing."""
    _, country, endpoint, *_ = next(node for node in NODES if node[0] == DE)
    document = build_key_document(
        keys,
        node_id=DE,
        country=country,
        endpoint=endpoint,
        now=DOCUMENT_ISSUED_AT,
        accepts=ACCEPTED,
    )
    wire = sign_key_document(document, keys)
    document_bytes = b64url_decode(json.loads(wire)["document"])
    verify_key_document(wire, pinned_fingerprint=keys.fingerprint)
    return {
        "node_id": DE,
        "issued_at": unix(DOCUMENT_ISSUED_AT),
        "accepts": list(ACCEPTED),
        "document": json.loads(document_bytes),
        "document_bytes_hex": document_bytes.hex(),
        "wire_b64url": b64url(wire),
    }


# --- JSON Schemas -------------------------------------------------------------------------------

_GENERATED = "Generated by tests/vectors/generate.py from the code; do not edit by hand."


def _schema(
    model: type[BaseModel] | TypeAdapter[Any],
    schema_id: str,
    adjust: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    body = model.json_schema() if isinstance(model, TypeAdapter) else model.model_json_schema()
    if adjust is not None:
        adjust(body)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_id,
        "$comment": _GENERATED,
        **body,
    }


def _require_type_and_version(schema: dict[str, Any]) -> None:
    # Writers always emit `type` and `v` (record_bytes drops only None); see protocol.md §8.
    schema["required"] = ["type", "v", *schema.get("required", [])]


def _pin_header(schema: dict[str, Any]) -> None:
    # read_header refuses any other version or suite before the schema runs.
    schema["properties"]["v"]["const"] = PROTOCOL_VERSION
    # `suite` is the allow-list of suites (an enum): classic and hybrid (protocol.md §6.3).


WRAPPER_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "key-document-wrapper.schema.json",
    "$comment": _GENERATED,
    "title": "KeyDocumentWrapper",
    "description": (
        "The body of GET /.well-known/hotline-node: the key document bytes and the identity "
        "key's Ed25519 signature over KEY_DOCUMENT_LABEL || document bytes, both base64url "
        "without padding. At most 65536 bytes in all."
    ),
    "type": "object",
    "additionalProperties": False,
    "required": ["document", "signature"],
    "properties": {
        "document": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
        "signature": {"type": "string", "pattern": "^[A-Za-z0-9_-]{86}$"},
    },
}


def build_schemas() -> dict[str, dict[str, Any]]:
    return {
        "header.schema.json": _schema(HEADER_ADAPTER, "header.schema.json", _pin_header),
        "report.schema.json": _schema(Report, "report.schema.json", _require_type_and_version),
        "action.schema.json": _schema(Action, "action.schema.json", _require_type_and_version),
        "withdrawal.schema.json": _schema(
            Withdrawal, "withdrawal.schema.json", _require_type_and_version
        ),
        "receipt.schema.json": _schema(Receipt, "receipt.schema.json", _require_type_and_version),
        "hashset.schema.json": _schema(HashSet, "hashset.schema.json", _require_type_and_version),
        "key-document.schema.json": _schema(KeyDocument, "key-document.schema.json"),
        "key-document-wrapper.schema.json": WRAPPER_SCHEMA,
    }


def dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def outputs() -> dict[Path, str]:
    from tests.vectors import directory, more  # they build on this module's nodes and frames

    files = {VECTORS_PATH: dump(build_vectors())}
    files[more.TRANSPORT_PATH] = dump(more.transport_vectors())
    files[more.HYBRID_PATH] = dump(more.hybrid_vectors())
    files[directory.DIRECTORY_PATH] = dump(directory.directory_vectors())
    for name, schema in build_schemas().items():
        files[SCHEMAS_DIR / name] = dump(schema)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        verb = "out of date" if args.check else "written"
        print(f"{path.relative_to(ROOT)}: {verb}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
