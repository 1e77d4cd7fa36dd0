"""Signed requests between nodes: RFC 9421 HTTP Message Signatures with Ed25519 (sans I/O).

One profile only: the covered components are fixed, so nothing about the algorithm or the
coverage is taken from the request. The destination authority is covered so that a request
captured on its way to one node cannot be replayed to another.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from cryptography.exceptions import InvalidSignature

from keys import KeyUnavailableError, SigningKey
from keys.document import from_unix, to_unix
from protocol.envelope import PeerDirectory
from protocol.errors import ProtocolError

LABEL = "hln"
TAG = "hotline-node/v1"
COMPONENTS = ('"@method"', '"@authority"', '"@path"', '"@query"', '"content-digest"')
DEFAULT_WINDOW = timedelta(minutes=5)
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_INPUT = re.compile(
    r'^hln=\("@method" "@authority" "@path" "@query" "content-digest"\)'
    r";created=(?P<created>\d{1,12})"
    r';keyid="(?P<node>[a-z0-9][a-z0-9.-]{0,62})/(?P<kid>[A-Za-z0-9_-]{43})"'
    r';nonce="(?P<nonce>[A-Za-z0-9_-]{16,64})"'
    r';alg="ed25519";tag="hotline-node/v1"$'
)
_SIGNATURE = re.compile(r"^hln=:(?P<sig>[A-Za-z0-9+/]{86}==):$")
_DIGEST = re.compile(r"^sha-256=:(?P<digest>[A-Za-z0-9+/]{43}=):$")


class RequestSignatureError(ProtocolError):
    """A request between nodes is unsigned, badly signed, stale, replayed or misdirected."""

    status = 401

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NonceGuard(Protocol):
    def use(self, sender: str, nonce: str, created: datetime) -> bool:
        """Record the nonce; False when it was seen before."""
        ...


@dataclass(frozen=True)
class SignedRequest:
    method: str
    authority: str
    path: str
    query: str  # "?a=1&b=2" or "?" when empty, as RFC 9421 §2.2.7 writes it
    body: bytes


def content_digest(body: bytes) -> str:
    """RFC 9530 Content-Digest with SHA-256."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def signature_base(components: Sequence[tuple[str, str]], params: str) -> bytes:
    """RFC 9421 §2.5: one `"name": value` line per covered component, then the
    `"@signature-params"` line, joined by LF with no final newline."""
    lines = [f'"{name}": {value}' for name, value in components]
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines).encode("utf-8")


def _base(request: SignedRequest, digest: str, params: str) -> bytes:
    return signature_base(
        [
            ("@method", request.method.upper()),
            ("@authority", request.authority.lower()),
            ("@path", request.path),
            ("@query", request.query or "?"),
            ("content-digest", digest),
        ],
        params,
    )


def _params(created: int, node_id: str, kid: str, nonce: str) -> str:
    return (
        f'({" ".join(COMPONENTS)});created={created};keyid="{node_id}/{kid}"'
        f';nonce="{nonce}";alg="ed25519";tag="{TAG}"'
    )


def sign_request(
    request: SignedRequest, *, node_id: str, key: SigningKey, nonce: str, now: datetime
) -> dict[str, str]:
    """The headers to add: Content-Digest, Signature-Input, Signature."""
    if not _NONCE.match(nonce):
        raise ValueError("nonce must be 16-64 base64url characters")
    digest = content_digest(request.body)
    params = _params(to_unix(now), node_id, key.kid, nonce)
    signature = key.private.sign(_base(request, digest, params))
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{LABEL}={params}",
        "Signature": f"{LABEL}=:{base64.b64encode(signature).decode()}:",
    }


def claimed_sender(
    headers: Mapping[str, str], now: datetime, window: timedelta = DEFAULT_WINDOW
) -> str:
    """Who the request says it is from, if its signature parameters are well formed and fresh.

    Cheap and unauthenticated: lets a server refuse strangers before reading a large body.
    """
    match = _INPUT.match(headers.get("Signature-Input", ""))
    if match is None:
        raise RequestSignatureError("missing or unsupported Signature-Input")
    if abs(now - _created(match["created"])) > window:
        raise RequestSignatureError("signature created outside the accepted time window")
    return match["node"]


def _created(text: str) -> datetime:
    """`created` as a time; one a datetime cannot hold (year 33658) is a refusal, not a crash."""
    try:
        return from_unix(int(text))
    except (ValueError, OverflowError, OSError) as exc:
        raise RequestSignatureError("signature created outside the accepted time window") from exc


def verify_request(
    request: SignedRequest,
    headers: Mapping[str, str],
    *,
    peers: PeerDirectory,
    nonces: NonceGuard,
    now: datetime,
    window: timedelta = DEFAULT_WINDOW,
) -> str:
    """Check a request's signature; returns the sender's node id or raises with a precise reason."""
    signature_input = headers.get("Signature-Input", "")
    match = _INPUT.match(signature_input)
    if match is None:
        raise RequestSignatureError("missing or unsupported Signature-Input")
    signature_match = _SIGNATURE.match(headers.get("Signature", ""))
    if signature_match is None:
        raise RequestSignatureError("missing or malformed Signature")
    digest_header = headers.get("Content-Digest", "")
    if _DIGEST.match(digest_header) is None or digest_header != content_digest(request.body):
        raise RequestSignatureError("Content-Digest does not match the body")
    created = _created(match["created"])
    if abs(now - created) > window:
        raise RequestSignatureError("signature created outside the accepted time window")
    sender = match["node"]
    sender_keys = peers.keys_for(sender)
    if sender_keys is None:
        raise RequestSignatureError(f"{sender} is not a peer of this node")
    try:
        key = sender_keys.signing_key(match["kid"], created)
    except KeyUnavailableError as exc:
        raise RequestSignatureError(exc.reason) from exc
    params = signature_input[len(LABEL) + 1 :]
    try:
        key.verify(base64.b64decode(signature_match["sig"]), _base(request, digest_header, params))
    except InvalidSignature as exc:
        raise RequestSignatureError(
            "signature does not verify (wrong key, or a request meant for another destination)"
        ) from exc
    # Only a valid signature may consume a nonce, or a forger could burn real ones.
    if not nonces.use(sender, match["nonce"], created):
        raise RequestSignatureError("nonce was already used (replayed request)")
    return sender


class MemoryNonceGuard:
    """Nonces seen within the window; older ones are refused by the time check anyway."""

    def __init__(self, window: timedelta = DEFAULT_WINDOW) -> None:
        self.window = window
        self._seen: dict[tuple[str, str], datetime] = {}

    def use(self, sender: str, nonce: str, created: datetime) -> bool:
        key = (sender, nonce)
        if key in self._seen:
            return False
        if len(self._seen) > 100_000:
            horizon = created - 2 * self.window
            self._seen = {k: v for k, v in self._seen.items() if v >= horizon}
        self._seen[key] = created
        return True
