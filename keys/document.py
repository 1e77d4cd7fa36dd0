"""The signed key document a node publishes at /.well-known/hotline-node, and its verification."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.hpke import MLKEM768X25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keys.canonical import canonical_json
from keys.errors import KeyDocumentError, KeyUnavailableError
from keys.material import NodeKeys, Validity
from keys.thumbprint import (
    CURVE_ED25519,
    CURVE_X25519,
    b64url,
    b64url_decode,
    hybrid_thumbprint,
    okp_thumbprint,
)

KEY_DOCUMENT_LABEL = b"hotline-node/v1 key-document\x00"
MAX_KEY_DOCUMENT_BYTES = 64 * 1024
# The envelope suites (docs/protocol.md §6): named here because key documents advertise them.
CLASSIC_SUITE = "hpke-base-x25519-sha256-aes256gcm"
HYBRID_SUITE = "hpke-base-mlkem768x25519-sha256-aes256gcm"
MLKEM768_PUBLIC_BYTES = 1184
HYBRID_PUBLIC_BYTES = MLKEM768_PUBLIC_BYTES + 32

# A node id, wherever one is named (key documents, envelopes, records, config, peers): lower-case
# letters, digits, '.' and '-', beginning with a letter or digit, at most 63 characters.
NODE_ID_PATTERN = r"^[a-z0-9][a-z0-9.-]{0,62}$"
NodeId = Annotated[str, Field(pattern=NODE_ID_PATTERN)]
_NODE_ID = re.compile(NODE_ID_PATTERN)


def node_id_problem(value: str) -> str | None:
    """Why `value` is not a node id, in words; None when it is one."""
    if _NODE_ID.fullmatch(value):
        return None
    return (
        "node id must be 1-63 lower-case letters, digits, '.' or '-', beginning with a letter"
        f" or a digit (got {value!r})"
    )


CountryCode = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
KeyId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43}$")]
RawKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43}$")]
# 9999-12-31T23:59:59Z: the last second every implementation can turn into a date.
MAX_UNIX_TIME = 253_402_300_799
# Strict int between 1 and 1: a Literal would also take true and 1.0 (equal in Python).
Version = Annotated[int, Field(ge=1, le=1, strict=True)]
UnixTime = Annotated[int, Field(ge=0, le=MAX_UNIX_TIME)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class PublishedKey(_Frozen):
    kid: KeyId
    key: RawKey
    not_before: UnixTime
    not_after: UnixTime


class PublishedHybridKey(PublishedKey):
    # b64url of the 1216-byte hybrid public key (ML-KEM-768 encapsulation key, X25519 key).
    key: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1622}$")]


SuiteName = Annotated[str, Field(pattern=r"^[a-z0-9-]{1,64}$")]
# A name in `accepts`: something beyond protocol v1 the node reads (a record type, an enum
# value, an optional member; protocol.md §11). The names are defined by protocol.features.
FeatureName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.:-]{0,63}$")]


class KeyDocument(BaseModel):
    # Unknown members are ignored (protocol.md §11): a newer node may add some, and an older
    # one must still take its keys. The signature covers the bytes, whatever they contain.
    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    v: Version = 1
    node_id: NodeId
    country: CountryCode
    endpoint: str = Field(max_length=2048)
    identity_key: RawKey
    issued_at: UnixTime
    signing_keys: list[PublishedKey] = Field(max_length=64)
    encryption_keys: list[PublishedKey] = Field(max_length=64)
    revoked: list[KeyId] = Field(default_factory=list, max_length=1024)
    # Absent: the classic suite only (documents from before the hybrid suite). Names this node
    # does not know are ignored.
    suites: list[SuiteName] | None = Field(default=None, min_length=1, max_length=8)
    hybrid_keys: list[PublishedHybridKey] | None = Field(default=None, max_length=16)
    # Absent: the records of protocol v1 only. Names this node does not know are ignored.
    accepts: list[FeatureName] | None = Field(default=None, max_length=64)

    @property
    def fingerprint(self) -> str:
        return okp_thumbprint(CURVE_ED25519, b64url_decode(self.identity_key))

    @property
    def advertised_suites(self) -> frozenset[str]:
        # Every node accepts the classic suite (protocol.md §3.2): a `suites` that leaves it
        # out is read as if it listed it, not refused.
        return frozenset(self.suites or ()) | {CLASSIC_SUITE}

    @property
    def accepted(self) -> frozenset[str]:
        """What the node announces it reads beyond protocol v1 (empty: v1 only)."""
        return frozenset(self.accepts or ())


def to_unix(at: datetime) -> int:
    return int(at.timestamp())


def from_unix(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def build_key_document(
    keys: NodeKeys,
    *,
    node_id: str,
    country: str,
    endpoint: str,
    now: datetime,
    accepts: Collection[str] = (),
) -> KeyDocument:
    """The public half of `keys`: every unexpired key (so peers can open in-flight records).

    `accepts` is written (sorted) only when it names something: the document of a node that
    reads protocol v1 only is byte for byte what it was before the member existed."""

    def published(kid: str, raw: bytes, validity: Validity) -> PublishedKey:
        return PublishedKey(
            kid=kid,
            key=b64url(raw),
            not_before=to_unix(validity.not_before),
            not_after=to_unix(validity.not_after),
        )

    return KeyDocument(
        node_id=node_id,
        country=country,
        endpoint=endpoint,
        identity_key=b64url(keys.identity.public_key().public_bytes_raw()),
        issued_at=to_unix(now),
        signing_keys=[
            published(k.kid, k.public_raw, k.validity)
            for k in keys.signing
            if k.kid not in keys.revoked and k.validity.not_after > now
        ],
        encryption_keys=[
            published(k.kid, k.public_raw, k.validity)
            for k in keys.encryption
            if k.kid not in keys.revoked and k.validity.not_after > now
        ],
        revoked=sorted(keys.revoked),
        **_hybrid_members(keys, now),
        accepts=sorted(set(accepts)) or None,
    )


def _hybrid_members(keys: NodeKeys, now: datetime) -> dict[str, Any]:
    """`suites` and `hybrid_keys`, written only when there is a hybrid key to publish: the
    document of a node without one is byte for byte what it was before the hybrid suite."""
    hybrid = [
        PublishedHybridKey(
            kid=k.kid,
            key=b64url(k.public_raw),
            not_before=to_unix(k.validity.not_before),
            not_after=to_unix(k.validity.not_after),
        )
        for k in keys.hybrid
        if k.kid not in keys.revoked and k.validity.not_after > now
    ]
    if not hybrid:
        return {}
    return {"suites": [CLASSIC_SUITE, HYBRID_SUITE], "hybrid_keys": hybrid}


def sign_key_document(document: KeyDocument, keys: NodeKeys) -> bytes:
    """Wire form: {"document": b64url(canonical bytes), "signature": b64url(Ed25519)}."""
    body = canonical_json(document.model_dump(mode="json", exclude_none=True))
    signature = keys.identity.sign(KEY_DOCUMENT_LABEL + body)
    return canonical_json({"document": b64url(body), "signature": b64url(signature)})


def verify_key_document(wire: bytes, *, pinned_fingerprint: str | None) -> KeyDocument:
    """Check the identity signature over the exact bytes, the pin, and each key id.

    `pinned_fingerprint=None` is only for first contact when the operator has not supplied one;
    callers that add a peer always pass the fingerprint exchanged out of band.
    """
    if len(wire) > MAX_KEY_DOCUMENT_BYTES:
        raise KeyDocumentError("key document is larger than 64 KiB")
    try:
        outer = orjson.loads(wire)
        body = b64url_decode(outer["document"])
        signature = b64url_decode(outer["signature"])
        if set(outer) != {"document", "signature"}:
            raise KeyDocumentError("key document wrapper has unexpected members")
        document = KeyDocument.model_validate_json(body, strict=True)
        fingerprint = document.fingerprint
        identity = Ed25519PublicKey.from_public_bytes(b64url_decode(document.identity_key))
    except KeyDocumentError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, ValidationError) as exc:
        raise KeyDocumentError(f"malformed key document: {_first_line(exc)}") from exc

    if pinned_fingerprint is not None and fingerprint != pinned_fingerprint:
        raise KeyDocumentError(
            f"identity fingerprint {fingerprint} does not match the pinned "
            f"fingerprint {pinned_fingerprint}"
        )
    try:
        identity.verify(signature, KEY_DOCUMENT_LABEL + body)
    except InvalidSignature as exc:
        raise KeyDocumentError("key document signature does not verify") from exc
    for curve, entries in (
        (CURVE_ED25519, document.signing_keys),
        (CURVE_X25519, document.encryption_keys),
    ):
        for entry in entries:
            try:
                raw = b64url_decode(entry.key)
            except ValueError as exc:
                raise KeyDocumentError(f"key {entry.kid} is not canonical base64url") from exc
            if okp_thumbprint(curve, raw) != entry.kid:
                raise KeyDocumentError(f"key id {entry.kid} is not the thumbprint of its key")
            if entry.not_after <= entry.not_before:
                raise KeyDocumentError(f"key {entry.kid} has an empty validity window")
    for hybrid in document.hybrid_keys or ():
        raw = b64url_decode(hybrid.key) if len(hybrid.key) == 1622 else b""
        if len(raw) != HYBRID_PUBLIC_BYTES or hybrid_thumbprint(raw) != hybrid.kid:
            raise KeyDocumentError(f"key id {hybrid.kid} is not the thumbprint of its key")
        if hybrid.not_after <= hybrid.not_before:
            raise KeyDocumentError(f"key {hybrid.kid} has an empty validity window")
        try:
            _hybrid_public(raw)
        except ValueError as exc:
            raise KeyDocumentError(f"hybrid key {hybrid.kid} is not a valid key") from exc
    return document


def _hybrid_public(raw: bytes) -> MLKEM768X25519PublicKey:
    return MLKEM768X25519PublicKey(
        MLKEM768PublicKey.from_public_bytes(raw[:MLKEM768_PUBLIC_BYTES]),
        X25519PublicKey.from_public_bytes(raw[MLKEM768_PUBLIC_BYTES:]),
    )


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@dataclass(frozen=True)
class PublicKeySet:
    """A peer's verified public keys, answering "may I use this key at this time?"."""

    node_id: str
    signing: dict[str, tuple[Ed25519PublicKey, Validity]]
    encryption: dict[str, tuple[X25519PublicKey, Validity]]
    revoked: frozenset[str]
    hybrid: dict[str, tuple[MLKEM768X25519PublicKey, Validity]] = field(default_factory=dict)
    suites: frozenset[str] = frozenset((CLASSIC_SUITE,))

    @classmethod
    def from_document(cls, document: KeyDocument) -> PublicKeySet:
        def window(entry: PublishedKey) -> Validity:
            return Validity(from_unix(entry.not_before), from_unix(entry.not_after))

        return cls(
            node_id=document.node_id,
            signing={
                e.kid: (Ed25519PublicKey.from_public_bytes(b64url_decode(e.key)), window(e))
                for e in document.signing_keys
            },
            encryption={
                e.kid: (X25519PublicKey.from_public_bytes(b64url_decode(e.key)), window(e))
                for e in document.encryption_keys
            },
            revoked=frozenset(document.revoked),
            hybrid={
                e.kid: (_hybrid_public(b64url_decode(e.key)), window(e))
                for e in document.hybrid_keys or ()
            },
            suites=document.advertised_suites,
        )

    def merged_with(self, newer: PublicKeySet) -> PublicKeySet:
        """Keep keys we already know (in-flight records), add new ones, and honour revocations.

        Revocation is sticky: a later document cannot un-revoke a key.
        """
        if newer.node_id != self.node_id:
            raise ValueError(f"cannot merge keys of {newer.node_id} into those of {self.node_id}")
        revoked = self.revoked | newer.revoked
        return PublicKeySet(
            node_id=self.node_id,
            signing={
                k: v for k, v in {**self.signing, **newer.signing}.items() if k not in revoked
            },
            encryption={
                k: v for k, v in {**self.encryption, **newer.encryption}.items() if k not in revoked
            },
            revoked=revoked,
            hybrid={k: v for k, v in {**self.hybrid, **newer.hybrid}.items() if k not in revoked},
            # What the peer offers now: a node may stop advertising a suite.
            suites=newer.suites,
        )

    def signing_key(self, kid: str, at: datetime) -> Ed25519PublicKey:
        if kid in self.revoked:
            raise KeyUnavailableError(f"signing key {kid} of {self.node_id} is revoked")
        found = self.signing.get(kid)
        if found is None:
            raise KeyUnavailableError(f"unknown signing key {kid} for {self.node_id}")
        key, validity = found
        if not validity.covers(at):
            raise KeyUnavailableError(
                f"signing key {kid} of {self.node_id} is not valid at {at.isoformat()}"
            )
        return key

    def encryption_key(self, at: datetime) -> tuple[str, X25519PublicKey]:
        """The newest unrevoked encryption key valid at `at`: the one to seal to."""
        valid = [
            (validity.not_before, kid, key)
            for kid, (key, validity) in self.encryption.items()
            if kid not in self.revoked and validity.covers(at)
        ]
        if not valid:
            raise KeyUnavailableError(f"{self.node_id} has no encryption key valid now")
        _, kid, key = max(valid, key=lambda item: (item[0], item[1]))
        return kid, key

    def sealing_key(self, at: datetime) -> tuple[str, X25519PublicKey | MLKEM768X25519PublicKey]:
        """The key to seal to at `at`: the hybrid one when the peer advertises the hybrid suite
        and has a usable hybrid key, else the classic one (protocol.md §6.3)."""
        return self.hybrid_key(at) or self.encryption_key(at)

    @property
    def advertises_hybrid(self) -> bool:
        return HYBRID_SUITE in self.suites

    def hybrid_key(self, at: datetime) -> tuple[str, MLKEM768X25519PublicKey] | None:
        """The newest unrevoked hybrid key valid at `at`, when the peer advertises the suite."""
        if not self.advertises_hybrid:
            return None
        valid = [
            (validity.not_before, kid, key)
            for kid, (key, validity) in self.hybrid.items()
            if kid not in self.revoked and validity.covers(at)
        ]
        if not valid:
            return None
        _, kid, key = max(valid, key=lambda item: (item[0], item[1]))
        return kid, key
