"""RFC 7638 JWK thumbprints: the key ids used everywhere in the federation."""

from __future__ import annotations

import binascii
import hashlib
import re

from keys.canonical import canonical_json

# RFC 8037 names the OKP curves; the thumbprint covers only the required members crv, kty, x.
CURVE_ED25519 = "Ed25519"
CURVE_X25519 = "X25519"


# binascii directly: every received frame is decoded and every sent one encoded (a few KB each),
# and base64's urlsafe helpers cost several times more (they translate in Python).
_URL_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_STANDARD_TO_URL = bytes.maketrans(b"+/", b"-_")
_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    encoded = binascii.b2a_base64(data, newline=False).translate(_STANDARD_TO_URL)
    return encoded.rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url without padding; raises ValueError on anything else."""
    if not isinstance(text, str) or not _ALPHABET.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("expected unpadded base64url text")
    padded = text.encode("ascii").translate(_URL_TO_STANDARD) + b"=" * (-len(text) % 4)
    try:
        raw = binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error as exc:
        raise ValueError("invalid base64url text") from exc
    # Unused low bits of the last character must be zero: one spelling per byte string.
    tail = len(raw) % 3
    if tail and b64url(raw[-tail:]) != text[-(tail + 1) :]:
        raise ValueError("non-canonical base64url text")
    return raw


def okp_thumbprint(curve: str, public_raw: bytes) -> str:
    """The RFC 7638 SHA-256 thumbprint of an OKP public key, base64url encoded."""
    jwk = {"crv": curve, "kty": "OKP", "x": b64url(public_raw)}
    return b64url(hashlib.sha256(canonical_json(jwk)).digest())


# The hybrid ML-KEM-768 + X25519 key (HPKE KEM 0x647A) has no registered JWK form yet: its kid
# is the SHA-256 thumbprint of this fixed member set, in the manner of RFC 7638.
HYBRID_ALG = "MLKEM768-X25519"


def hybrid_thumbprint(public_raw: bytes) -> str:
    """The kid of a hybrid public key (ML-KEM-768 encapsulation key, then X25519 key)."""
    jwk = {"alg": HYBRID_ALG, "kty": "AKP", "pub": b64url(public_raw)}
    return b64url(hashlib.sha256(canonical_json(jwk)).digest())
