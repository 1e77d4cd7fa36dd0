"""The vectors for protocol.md v1's transport and hybrid suite: transport-v1.json, hybrid-v1.json.

transport-v1.json: request signatures (an empty-body GET, a POST to an endpoint with a path),
the stored answer to a push (a retry gets these bytes again), a recovery page (a restored node
given its own record back), and the derived action ids.
hybrid-v1.json: hybrid keys, a key document advertising the suite, a hybrid frame with every
deterministic intermediate value, and frames that must be refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keys import NodeKeys, PublicKeySet, Validity, build_key_document, sign_key_document
from keys.document import CLASSIC_SUITE, HYBRID_SUITE, KEY_DOCUMENT_LABEL
from keys.material import HybridKey
from keys.thumbprint import b64url, b64url_decode
from protocol import MemoryReplayGuard, OpenError, open_envelope, read_header, record_bytes, seal
from protocol.derived import (
    FORWARDED_NAMESPACE,
    RECEIVED_NAMESPACE,
    derived_action_id,
    derived_name,
)
from protocol.envelope import ENCRYPTION_LABEL, MAGIC, signed_bytes, unseal_kept
from protocol.federation import ItemResult, ItemStatus, TransactionResponse, encode_frame
from protocol.httpsig import SignedRequest, sign_request
from protocol.records import ActionCode
from protocol.recovery import RecoveryPage, SignedRecord, check_own_record
from tests.vectors import generate as g
from tests.vectors import xwing

TRANSPORT_PATH = g.ROOT / "tests" / "vectors" / "transport-v1.json"
HYBRID_PATH = g.ROOT / "tests" / "vectors" / "hybrid-v1.json"
TXN_ID = "txn-20261129-0001"  # the txn_id of the receipt in envelope-v1.json
RECEIPT_CREATED = datetime(2026, 11, 29, 12, 0, 5, tzinfo=UTC)


def _envelopes() -> tuple[dict[str, NodeKeys], bytes, bytes]:
    """The keys, the `report` frame and the `receipt` frame of envelope-v1.json."""
    keys = g.all_node_keys()
    report_frame, _ = g.envelope_vector(
        "report", g.report_record(), recipient=g.DE, created=g.REPORT_CREATED, keys=keys
    )
    receipt_frame, _ = g.envelope_vector(
        "receipt",
        g.receipt_record(report_frame),
        recipient=g.FR,
        created=RECEIPT_CREATED,
        keys=keys,
    )
    return keys, report_frame, receipt_frame


def _digest(frame: bytes) -> str:
    return hashlib.sha256(frame).hexdigest()


# --- transport ------------------------------------------------------------------------------


def _signed_request(
    keys: NodeKeys, method: str, authority: str, path: str, query: str, body: bytes, nonce: str
) -> dict[str, Any]:
    request = SignedRequest(method, authority, path, query, body)
    key = keys.signing[0]
    headers = sign_request(request, node_id=g.FR, key=key, nonce=nonce, now=g.REPORT_CREATED)
    params = headers["Signature-Input"].removeprefix("hln=")
    base = "\n".join(
        [
            f'"@method": {method}',
            f'"@authority": {authority}',
            f'"@path": {path}',
            f'"@query": {query}',
            f'"content-digest": {headers["Content-Digest"]}',
            f'"@signature-params": {params}',
        ]
    )
    key.private.public_key().verify(
        base64.b64decode(headers["Signature"].removeprefix("hln=:").removesuffix(":")),
        base.encode(),
    )
    return {
        "signer": g.FR,
        "signer_kid": key.kid,
        "created": g.unix(g.REPORT_CREATED),
        "method": method,
        "url": f"https://{authority}{path}{'' if query == '?' else query}",
        "authority": authority,
        "path": path,
        "query": query,
        "body_hex": body.hex(),
        "nonce": nonce,
        "signature_base": base,
        "headers": headers,
    }


def transport_vectors() -> dict[str, Any]:
    keys, report_frame, receipt_frame = _envelopes()
    push_body = orjson.dumps({"envelopes": [encode_frame(report_frame)]})
    answer = orjson.dumps(
        TransactionResponse(
            txn_id=TXN_ID,
            results=[
                ItemResult(
                    digest=hashlib.sha256(report_frame).hexdigest(), status=ItemStatus.ACCEPTED
                )
            ],
            receipt=encode_frame(receipt_frame),
        ).model_dump(mode="json", exclude_none=True)
    )
    report_id = g.REPORT_ID
    derived = [
        {
            "report_id": str(report_id),
            "peer": peer,
            "name_hex": derived_name(report_id, peer).hex(),
            "forwarded_id": str(derived_action_id(ActionCode.FORWARDED, report_id, peer)),
            "received_id": str(derived_action_id(ActionCode.RECEIVED, report_id, peer)),
        }
        for peer in (g.DE, g.IT)
    ]
    return {
        "description": (
            "hotline-node protocol v1 transport vectors (docs/protocol.md §9.8, §13). Keys are "
            "those of envelope-v1.json (published test keys). Ed25519 is deterministic: a "
            "signer with the same key, time and nonce writes exactly these header values."
        ),
        "request_signatures": [
            _signed_request(
                keys[g.FR],
                "GET",
                "node.eco.example",
                "/federation/v1/outbox",
                "?after=0&limit=100",
                b"",
                "vector-nonce-get-0001",
            ),
            _signed_request(
                keys[g.FR],
                "POST",
                "node.eco.example:8443",
                f"/hln/federation/v1/transactions/{TXN_ID}",
                "?",
                push_body,
                "vector-nonce-post-0001",
            ),
        ],
        "stored_answer": {
            "description": (
                "de-eco's answer to fr-pointdecontact's push of the `report` frame (the POST "
                "above). The same txn_id from the same sender gets these bytes again, receipt "
                "frame included; the sender recognises that receipt by its digest."
            ),
            "sender": g.FR,
            "receiver": g.DE,
            "txn_id": TXN_ID,
            "answer_hex": answer.hex(),
            "answer": json.loads(answer),
            "receipt_digest": hashlib.sha256(receipt_frame).hexdigest(),
            "receipt_opens_at": g.unix(RECEIPT_CREATED),
        },
        "recovery": _recovery_vector(keys, report_frame),
        "derived_action_ids": {
            "forwarded_namespace": str(FORWARDED_NAMESPACE),
            "received_namespace": str(RECEIVED_NAMESPACE),
            "name": "UTF-8 of '<report id, lowercase hyphenated>/<node id of the peer>'",
            "ids": derived,
        },
    }


def _recovery_vector(keys: dict[str, NodeKeys], report_frame: bytes) -> dict[str, Any]:
    """de-eco gives fr-pointdecontact back the `report` it received from it (§13.8)."""
    header, signature, payload = unseal_kept(report_frame, keys[g.DE])
    kept = SignedRecord(header, signature, payload)
    page = RecoveryPage(records=[kept.to_wire(1)], actions=[], next_after=1, more=False)
    # The vector must be what the asker accepts: checked here, with its own keys.
    check_own_record(kept, node_id=g.FR, holder=g.DE, keys=keys[g.FR])
    return {
        "description": (
            "fr-pointdecontact, restored from an older backup, asks de-eco for its records back "
            "(GET below). de-eco kept, for the `report` frame of envelope-v1.json, the header, "
            "signature and payload fr-pointdecontact signed (stored_hex: uint16 header length, "
            "header, signature, payload), and answers this page (no action of its own on the "
            "report yet). fr-pointdecontact checks the signature with its own signing key: "
            "signed_bytes is exactly what the report frame's signature covers."
        ),
        "asker": g.FR,
        "holder": g.DE,
        "request": _signed_request(
            keys[g.FR],
            "GET",
            "node.eco.example",
            "/federation/v1/recover",
            "?after=0&limit=200",
            b"",
            "vector-nonce-recover-01",
        ),
        "report_frame_digest": _digest(report_frame),
        "stored_hex": kept.to_bytes().hex(),
        "signed_bytes_hex": signed_bytes(header, payload).hex(),
        "signer_kid": read_header(report_frame).header.from_kid,
        "page": page.model_dump(mode="json"),
    }


# --- hybrid ---------------------------------------------------------------------------------


def _hybrid_seed(node_id: str) -> bytes:
    """The 32-byte X-Wing private key (seed) of a node's test hybrid key (protocol.md §6.3)."""
    return hashlib.sha256(f"hotline-node/v1 test vector hybrid {node_id} seed".encode()).digest()


def _hybrid_key(node_id: str) -> HybridKey:
    mlkem_seed, x25519_private = xwing.expand_seed(_hybrid_seed(node_id))
    mlkem = MLKEM768PrivateKey.from_seed_bytes(mlkem_seed)
    x25519 = X25519PrivateKey.from_private_bytes(x25519_private)
    return HybridKey.of(mlkem, x25519, Validity(g.NOT_BEFORE, g.NOT_AFTER))


def hybrid_node_keys() -> dict[str, NodeKeys]:
    keys = g.all_node_keys()
    for node_id in (g.FR, g.DE):
        base = keys[node_id]
        keys[node_id] = NodeKeys(
            base.identity, base.signing, base.encryption, base.revoked, [_hybrid_key(node_id)]
        )
    return keys


class _Directory:
    def __init__(self, keys: dict[str, NodeKeys]) -> None:
        self.sets = {
            node_id: PublicKeySet.from_document(
                build_key_document(
                    keys[node_id],
                    node_id=node_id,
                    country=country,
                    endpoint=endpoint,
                    now=g.DOCUMENT_ISSUED_AT,
                )
            )
            for node_id, country, endpoint, *_ in g.NODES
        }

    def keys_for(self, node_id: str) -> PublicKeySet | None:
        return self.sets.get(node_id)


def _opens(frame: bytes, keys: dict[str, NodeKeys]) -> bytes | None:
    try:
        opened = open_envelope(
            frame,
            recipient=g.DE,
            keys=keys[g.DE],
            peers=_Directory(keys),
            replay=MemoryReplayGuard(),
            now=g.REPORT_CREATED,
        )
    except OpenError:
        return None
    return opened.payload


def _hybrid_frame(keys: dict[str, NodeKeys], previous: dict[str, Any] | None) -> bytes:
    """The committed frame if it still opens to the same payload, else a new one."""
    payload = record_bytes(g.report_record())
    if previous is not None:
        frame = bytes.fromhex(previous["frame_hex"])
        if _opens(frame, keys) == payload:
            return frame
    hybrid = keys[g.DE].hybrid[0]
    frame = seal(
        g.report_record(),
        sender=g.FR,
        signing_key=keys[g.FR].signing[0],
        recipient=g.DE,
        recipient_kid=hybrid.kid,
        recipient_key=hybrid.private.public_key(),
        msg_id=g.MSG_IDS["report"],
        now=g.REPORT_CREATED,
    )
    if _opens(frame, keys) != payload:
        raise AssertionError("the hybrid frame does not open")
    return frame


def _kem_values(
    recipient: HybridKey, header: bytes, sealed: bytes, plaintext: bytes
) -> dict[str, str]:
    """Every value of the frame's KEM and key schedule, computed by hand (tests/vectors/xwing.py)
    from the recipient's key: the frame was sealed by the library, so its opening here shows
    that the formula of protocol.md §6.3 is the library's."""
    enc = sealed[:1120]
    kem = xwing.decapsulate(enc, recipient.mlkem, recipient.x25519)
    context, opened = xwing.open_base(
        sealed, recipient.mlkem, recipient.x25519, ENCRYPTION_LABEL + header
    )
    if opened != plaintext:
        raise AssertionError("the hand-written X-Wing key schedule does not open the frame")
    return {
        "ct_mlkem_hex": enc[:1088].hex(),
        "ct_x25519_hex": enc[1088:].hex(),
        "ss_mlkem_hex": kem.ss_mlkem.hex(),
        "ss_x25519_hex": kem.ss_x25519.hex(),
        "shared_secret_hex": kem.shared_secret.hex(),
        "key_schedule_context_hex": context.key_schedule_context.hex(),
        "key_hex": context.key.hex(),
        "base_nonce_hex": context.base_nonce.hex(),
    }


def _previous() -> dict[str, Any] | None:
    if not HYBRID_PATH.exists():
        return None
    data: dict[str, Any] = json.loads(HYBRID_PATH.read_text(encoding="utf-8"))
    envelope: dict[str, Any] = data["envelope"]
    return envelope


def hybrid_vectors() -> dict[str, Any]:
    keys = hybrid_node_keys()
    nodes = []
    for node_id in (g.FR, g.DE):
        hybrid = keys[node_id].hybrid[0]
        country, endpoint = next((c, e) for n, c, e, *_ in g.NODES if n == node_id)
        document = build_key_document(
            keys[node_id],
            node_id=node_id,
            country=country,
            endpoint=endpoint,
            now=g.DOCUMENT_ISSUED_AT,
        )
        wire = sign_key_document(document, keys[node_id])
        document_bytes = b64url_decode(json.loads(wire)["document"])
        nodes.append(
            {
                "node_id": node_id,
                "hybrid_key": {
                    "seed_hex": _hybrid_seed(node_id).hex(),
                    "seed_rule": f"SHA-256('hotline-node/v1 test vector hybrid {node_id} seed')",
                    "expanded_hex": hashlib.shake_256(_hybrid_seed(node_id)).digest(96).hex(),
                    "mlkem768_seed_hex": hybrid.mlkem.private_bytes_raw().hex(),
                    "x25519_private_hex": hybrid.x25519.private_bytes_raw().hex(),
                    "x25519_public_hex": hybrid.public_raw[xwing.MLKEM_PUBLIC_BYTES :].hex(),
                    "public_hex": hybrid.public_raw.hex(),
                    "public_b64url": b64url(hybrid.public_raw),
                    "kid": hybrid.kid,
                    "not_before": g.unix(g.NOT_BEFORE),
                    "not_after": g.unix(g.NOT_AFTER),
                },
                "key_document": {
                    "document": json.loads(document_bytes),
                    "document_bytes_hex": document_bytes.hex(),
                    "signed_bytes_hex": (KEY_DOCUMENT_LABEL + document_bytes).hex(),
                    "wire_b64url": b64url(wire),
                },
            }
        )
    frame = _hybrid_frame(keys, _previous())
    read = read_header(frame)
    payload = record_bytes(g.report_record())
    signed = g.signed_bytes(read.header_bytes, payload)
    signature = keys[g.FR].signing[0].private.sign(signed)
    enc_length = 1120
    kem = _kem_values(keys[g.DE].hybrid[0], read.header_bytes, read.sealed, signature + payload)
    envelope = {
        "name": "report-hybrid",
        "from": g.FR,
        "to": g.DE,
        "suite": HYBRID_SUITE,
        "header_text": read.header_bytes.decode(),
        "header_hex": read.header_bytes.hex(),
        "payload_hex": payload.hex(),
        "signed_bytes_hex": signed.hex(),
        "signature_hex": signature.hex(),
        "info_hex": (ENCRYPTION_LABEL + read.header_bytes).hex(),
        "enc_hex": read.sealed[:enc_length].hex(),
        "enc_length": enc_length,
        **kem,
        "frame_hex": frame.hex(),
        "frame_length": len(frame),
        "frame_sha256": hashlib.sha256(frame).hexdigest(),
        "record": json.loads(payload),
        "opens_at": g.unix(g.REPORT_CREATED),
    }
    # Refused: the same frame under a header naming the classic suite; and an honest classic
    # frame between these two nodes, which both advertise the hybrid suite (a downgrade).
    swapped = read.header_bytes.replace(HYBRID_SUITE.encode(), CLASSIC_SUITE.encode())
    swapped_frame = MAGIC + len(swapped).to_bytes(2, "big") + swapped + read.sealed
    classic = keys[g.DE].encryption[0]
    classic_header = read.header_bytes.replace(
        HYBRID_SUITE.encode(), CLASSIC_SUITE.encode()
    ).replace(keys[g.DE].hybrid[0].kid.encode(), classic.kid.encode())
    classic_frame, _ = g.build_frame(
        "report-classic-downgrade",
        classic_header,
        keys[g.FR].signing[0].private.sign(g.signed_bytes(classic_header, payload)) + payload,
        classic.private,
    )
    return {
        "description": (
            "hotline-node protocol v1 hybrid suite vectors (docs/protocol.md §6.3). Keys are "
            "those of envelope-v1.json plus one hybrid key per node (published test keys). "
            "The frame's enc is random (ML-KEM encapsulation); everything else is exact, and "
            "every KEM and key-schedule value of the frame is given (ss_mlkem ... base_nonce). "
            "To check: derive the hybrid keys, kids and documents; open the frame as de-eco "
            "at opens_at with fr-pointdecontact's document; refuse the negative frames."
        ),
        "constants": {
            "suites": [CLASSIC_SUITE, HYBRID_SUITE],
            "hpke": {"kem_id": 0x647A, "kdf_id": 0x0001, "aead_id": 0x0002, "enc_length": 1120},
            "xwing": {
                "private_key": "seed: 32 bytes; SHAKE256(seed, 96) = ML-KEM-768 seed d ‖ z (64) "
                "‖ X25519 private key (32)",
                "public_key": "ML-KEM-768 encapsulation key (1184) ‖ X25519 public key (32)",
                "enc": "ML-KEM-768 ciphertext ct_M (1088) ‖ ephemeral X25519 public key ct_X (32)",
                "shared_secret": "SHA3-256(ss_M ‖ ss_X ‖ ct_X ‖ pk_X ‖ label)",
                "label_hex": xwing.XWING_LABEL.hex(),
                "hpke_suite_id_hex": xwing.HPKE_SUITE_ID.hex(),
            },
            "hybrid_kid": "b64url(SHA-256(canonical JSON of "
            '{"alg":"MLKEM768-X25519","kty":"AKP","pub":"<b64url(public key)>"}))',
        },
        "nodes": nodes,
        "envelope": envelope,
        "negative": [
            {
                "name": "suite-swapped",
                "description": "The hybrid frame with `suite` rewritten to the classic suite.",
                "opened_by": g.DE,
                "now": g.unix(g.REPORT_CREATED),
                "expected_reason": "recipient_key",
                "frame_hex": swapped_frame.hex(),
            },
            {
                "name": "classic-downgrade",
                "description": (
                    "An honest classic frame from fr-pointdecontact to de-eco's classic key, "
                    "published with its hybrid key: both advertise the hybrid suite."
                ),
                "opened_by": g.DE,
                "now": g.unix(g.REPORT_CREATED),
                "expected_reason": "downgrade",
                "frame_hex": classic_frame.hex(),
            },
        ],
    }
