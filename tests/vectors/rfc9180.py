"""A from-the-RFC HPKE base mode (X25519, HKDF-SHA256, AES-256-GCM) with a chosen ephemeral key.

The envelope code uses `cryptography`'s HPKE, which draws its ephemeral key at random. The test
vectors are built here instead, from RFC 9180 §4-§5 written out with plain primitives, so that:
the frames are reproducible, the intermediate values can be published for implementers, and
`open_envelope` is checked against an implementation it shares no HPKE code with.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEM_ID = 0x0020  # DHKEM(X25519, HKDF-SHA256)
KDF_ID = 0x0001  # HKDF-SHA256
AEAD_ID = 0x0002  # AES-256-GCM
MODE_BASE = 0x00
N_SECRET = 32  # KEM Nsecret
N_K = 32  # AEAD key length
N_N = 12  # AEAD nonce length
N_H = 32  # KDF output length

KEM_SUITE_ID = b"KEM" + struct.pack(">H", KEM_ID)
HPKE_SUITE_ID = b"HPKE" + struct.pack(">HHH", KEM_ID, KDF_ID, AEAD_ID)


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or bytes(N_H), ikm, hashlib.sha256).digest()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite_id + label + ikm)


def labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled_info = struct.pack(">H", length) + b"HPKE-v1" + suite_id + label + info
    return _expand(prk, labeled_info, length)


@dataclass(frozen=True)
class Context:
    """Every value of a base-mode key schedule, for publication next to the frame."""

    enc: bytes
    shared_secret: bytes
    key_schedule_context: bytes
    key: bytes
    base_nonce: bytes


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes_raw()


def _shared_secret(dh: bytes, enc: bytes, recipient_public: bytes) -> bytes:
    if dh == bytes(32):
        raise ValueError("X25519 output is all zero (low-order point)")
    eae_prk = labeled_extract(KEM_SUITE_ID, b"", b"eae_prk", dh)
    return labeled_expand(KEM_SUITE_ID, eae_prk, b"shared_secret", enc + recipient_public, N_SECRET)


def key_schedule(
    enc: bytes, shared_secret: bytes, info: bytes, suite_id: bytes = HPKE_SUITE_ID
) -> Context:
    """RFC 9180 §5.1 KeySchedule in base mode, for any KEM: `suite_id` names it (the hybrid
    suite's KEM hands its shared secret over as it is, tests/vectors/xwing.py)."""
    psk_id_hash = labeled_extract(suite_id, b"", b"psk_id_hash", b"")
    info_hash = labeled_extract(suite_id, b"", b"info_hash", info)
    context = bytes([MODE_BASE]) + psk_id_hash + info_hash
    secret = labeled_extract(suite_id, shared_secret, b"secret", b"")
    return Context(
        enc=enc,
        shared_secret=shared_secret,
        key_schedule_context=context,
        key=labeled_expand(suite_id, secret, b"key", context, N_K),
        base_nonce=labeled_expand(suite_id, secret, b"base_nonce", context, N_N),
    )


def setup_base_sender(
    recipient: X25519PublicKey, info: bytes, ephemeral: X25519PrivateKey
) -> Context:
    """SetupBaseS with the ephemeral key given (RFC 9180 DeriveKeyPair is not needed)."""
    enc = _raw(ephemeral.public_key())
    dh = ephemeral.exchange(recipient)
    return key_schedule(enc, _shared_secret(dh, enc, _raw(recipient)), info)


def setup_base_recipient(enc: bytes, recipient: X25519PrivateKey, info: bytes) -> Context:
    dh = recipient.exchange(X25519PublicKey.from_public_bytes(enc))
    return key_schedule(enc, _shared_secret(dh, enc, _raw(recipient.public_key())), info)


def seal_base(
    recipient: X25519PublicKey, info: bytes, plaintext: bytes, ephemeral: X25519PrivateKey
) -> tuple[Context, bytes]:
    """Single-shot seal (sequence number 0, empty AAD); returns the context and enc ‖ ciphertext."""
    context = setup_base_sender(recipient, info, ephemeral)
    ciphertext = AESGCM(context.key).encrypt(context.base_nonce, plaintext, b"")
    return context, context.enc + ciphertext


def open_base(sealed: bytes, recipient: X25519PrivateKey, info: bytes) -> bytes:
    """Single-shot open of enc ‖ ciphertext (raises on any failure)."""
    context = setup_base_recipient(sealed[:32], recipient, info)
    return AESGCM(context.key).decrypt(context.base_nonce, sealed[32:], b"")
