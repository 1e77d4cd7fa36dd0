"""RFC 7638 JWK thumbprints: the key ids used everywhere in the federation."""

from __future__ import annotations

import base64
import hashlib

from keys.canonical import canonical_json

# RFC 8037 names the OKP curves; the thumbprint covers only the required members crv, kty, x.
CURVE_ED25519 = "Ed25519"
CURVE_X25519 = "X25519"


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url without padding; raises ValueError on anything else."""
    if not isinstance(text, str) or "=" in text:
        raise ValueError("expected unpadded base64url text")
    padded = text + "=" * (-len(text) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError("invalid base64url text") from exc
    if b64url(raw) != text:
        raise ValueError("non-canonical base64url text")
    return raw


def okp_thumbprint(curve: str, public_raw: bytes) -> str:
    """The RFC 7638 SHA-256 thumbprint of an OKP public key, base64url encoded."""
    jwk = {"crv": curve, "kty": "OKP", "x": b64url(public_raw)}
    return b64url(hashlib.sha256(canonical_json(jwk)).digest())
