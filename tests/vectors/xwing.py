"""The hybrid suite's KEM written out by hand (protocol.md §6.3): X-Wing over ML-KEM-768 and X25519.

The envelope code takes the whole KEM from `cryptography` (`KEM.MLKEM768_X25519`). Here each
step is written from the text with plain primitives (hashlib's SHAKE256 and SHA3-256, ML-KEM-768
and X25519 alone), so that the vectors can publish every intermediate value and the tests can
show that the formula in protocol.md is the one the library computes: a frame the library sealed
opens with this key schedule, and one sealed with it opens with the library.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.vectors.rfc9180 import AEAD_ID, KDF_ID, Context, key_schedule

KEM_ID = 0x647A  # MLKEM768-X25519 (draft-ietf-hpke-pq): X-Wing
HPKE_SUITE_ID = b"HPKE" + struct.pack(">HHH", KEM_ID, KDF_ID, AEAD_ID)
# X-Wing's domain separator, the 6 ASCII bytes \.//^\ (draft-connolly-cfrg-xwing-kem §5.3).
XWING_LABEL = b"\\.//^\\"
SEED_BYTES = 32
MLKEM_CIPHERTEXT_BYTES = 1088
MLKEM_PUBLIC_BYTES = 1184


def expand_seed(seed: bytes) -> tuple[bytes, bytes]:
    """The 32-byte X-Wing private key (its seed) as the two halves' keys: SHAKE256(seed, 96)
    gives ML-KEM-768's 64-byte seed d ‖ z, then the 32-byte X25519 private key."""
    if len(seed) != SEED_BYTES:
        raise ValueError("an X-Wing seed is 32 bytes")
    expanded = hashlib.shake_256(seed).digest(96)
    return expanded[:64], expanded[64:]


def combiner(ss_mlkem: bytes, ss_x25519: bytes, ct_x25519: bytes, pk_x25519: bytes) -> bytes:
    """X-Wing's shared secret: SHA3-256(ss_M ‖ ss_X ‖ ct_X ‖ pk_X ‖ label)."""
    return hashlib.sha3_256(ss_mlkem + ss_x25519 + ct_x25519 + pk_x25519 + XWING_LABEL).digest()


@dataclass(frozen=True)
class Decapsulated:
    ss_mlkem: bytes
    ss_x25519: bytes
    shared_secret: bytes


def decapsulate(enc: bytes, mlkem: MLKEM768PrivateKey, x25519: X25519PrivateKey) -> Decapsulated:
    """enc = ct_M (1088) ‖ ct_X (32, the sender's ephemeral X25519 public key)."""
    ct_m, ct_x = enc[:MLKEM_CIPHERTEXT_BYTES], enc[MLKEM_CIPHERTEXT_BYTES:]
    ss_m = mlkem.decapsulate(ct_m)
    ss_x = x25519.exchange(X25519PublicKey.from_public_bytes(ct_x))
    pk_x = x25519.public_key().public_bytes_raw()
    return Decapsulated(ss_m, ss_x, combiner(ss_m, ss_x, ct_x, pk_x))


def open_base(
    sealed: bytes, mlkem: MLKEM768PrivateKey, x25519: X25519PrivateKey, info: bytes
) -> tuple[Context, bytes]:
    """Single-shot open of enc ‖ ciphertext in the hybrid suite: the context and plaintext."""
    enc = sealed[: MLKEM_CIPHERTEXT_BYTES + 32]
    secret = decapsulate(enc, mlkem, x25519).shared_secret
    context = key_schedule(enc, secret, info, HPKE_SUITE_ID)
    return context, AESGCM(context.key).decrypt(context.base_nonce, sealed[len(enc) :], b"")


def seal_base(public: bytes, info: bytes, plaintext: bytes, ephemeral: X25519PrivateKey) -> bytes:
    """Single-shot seal to a 1216-byte hybrid public key (pk_M ‖ pk_X): enc ‖ ciphertext.
    ML-KEM encapsulation draws its own randomness (the library does not let it be fixed)."""
    pk_m, pk_x = public[:MLKEM_PUBLIC_BYTES], public[MLKEM_PUBLIC_BYTES:]
    ss_m, ct_m = MLKEM768PublicKey.from_public_bytes(pk_m).encapsulate()
    ct_x = ephemeral.public_key().public_bytes_raw()
    ss_x = ephemeral.exchange(X25519PublicKey.from_public_bytes(pk_x))
    enc = ct_m + ct_x
    context = key_schedule(enc, combiner(ss_m, ss_x, ct_x, pk_x), info, HPKE_SUITE_ID)
    return enc + AESGCM(context.key).encrypt(context.base_nonce, plaintext, b"")
