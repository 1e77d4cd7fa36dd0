"""Seal and open envelopes: Ed25519 signature, then HPKE (RFC 9180) encryption. No I/O, no clock."""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, Protocol
from uuid import UUID

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import (
    AEAD,
    KDF,
    KEM,
    MLKEM768X25519PrivateKey,
    MLKEM768X25519PublicKey,
    Suite,
)
from pydantic import ConfigDict, Field, TypeAdapter

from keys import KeyUnavailableError, NodeKeys, PublicKeySet, SigningKey, canonical_json
from keys.document import (
    CLASSIC_SUITE,
    HYBRID_SUITE,
    MAX_UNIX_TIME,
    NODE_ID_PATTERN,
    KeyId,
    NodeId,
    from_unix,
    to_unix,
)
from protocol.errors import OpenError, OpenFailure, RecordError, SealError
from protocol.records import RECORD_TYPES, Record, parse_record, record_author, record_bytes

PROTOCOL_VERSION = 1
SUITE_NAME = CLASSIC_SUITE
HYBRID_SUITE_NAME = HYBRID_SUITE
MAGIC = b"HLN1"
MAX_ENVELOPE_BYTES = 256 * 1024
MAX_HEADER_BYTES = 2048
SIGNATURE_LABEL = b"hotline-node/v1 signature\x00"
ENCRYPTION_LABEL = b"hotline-node/v1 encryption\x00"
SIGNATURE_BYTES = 64
ENC_BYTES = 32
TAG_BYTES = 16
DEFAULT_MAX_AGE = timedelta(hours=24)
DEFAULT_MAX_SKEW = timedelta(minutes=5)

_NODE_ID = re.compile(NODE_ID_PATTERN)
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
_UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# The allow-list: suite name -> (HPKE suite, length of its `enc`). Nothing else is accepted.
_SUITES = {
    CLASSIC_SUITE: (Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM), ENC_BYTES),
    HYBRID_SUITE: (
        Suite(KEM.MLKEM768_X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM),
        KEM.MLKEM768_X25519.enc_length(),
    ),
}
RecipientKey = X25519PublicKey | MLKEM768X25519PublicKey
_PREFIX = struct.Struct(">4sH")
_LENGTH = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Header:
    """The clear header, read before any crypto runs; bound into both signature and HPKE info."""

    # A plain dataclass rather than a pydantic model: one is built for every frame received,
    # before any crypto, and the receiver checks the rules by hand (`_checked_header`). The
    # annotations below still state the rules: `HEADER_ADAPTER` validates with them (tests,
    # vectors) and generates docs/schemas/header.schema.json from them.
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid", strict=True)

    v: int
    suite: Literal["hpke-base-x25519-sha256-aes256gcm", "hpke-base-mlkem768x25519-sha256-aes256gcm"]
    from_: Annotated[NodeId, Field(alias="from")]
    from_kid: KeyId
    to: NodeId
    to_kid: KeyId
    msg_id: Annotated[str, Field(pattern=_UUID_PATTERN)]
    created_at: Annotated[int, Field(ge=0, le=MAX_UNIX_TIME)]
    type: Literal["report", "action", "withdrawal", "receipt", "hashset"]

    def to_dict(self) -> dict[str, Any]:
        """The header as its JSON object (member `from`, not `from_`)."""
        return {
            "v": self.v,
            "suite": self.suite,
            "from": self.from_,
            "from_kid": self.from_kid,
            "to": self.to,
            "to_kid": self.to_kid,
            "msg_id": self.msg_id,
            "created_at": self.created_at,
            "type": self.type,
        }

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())


# Strict validation of header JSON against the annotations of `Header`, and its JSON Schema.
HEADER_ADAPTER: TypeAdapter[Header] = TypeAdapter(Header)


class PeerDirectory(Protocol):
    """What the opener needs about senders: their verified public keys, if they are peers."""

    def keys_for(self, node_id: str) -> PublicKeySet | None: ...


class ReplayGuard(Protocol):
    """Remembers (sender, msg_id) pairs; the node backs it with its store."""

    def seen(self, sender: str, msg_id: str) -> bool: ...

    def remember(self, sender: str, msg_id: str, created_at: datetime) -> None: ...


@dataclass(frozen=True)
class OpenPolicy:
    max_age: timedelta = DEFAULT_MAX_AGE
    max_skew: timedelta = DEFAULT_MAX_SKEW
    max_bytes: int = MAX_ENVELOPE_BYTES


@dataclass(frozen=True)
class Opened:
    header: Header
    record: Record
    payload: bytes
    frame: bytes
    # The sender's signature over header and payload (§6.1): with them, what a receiver keeps
    # to give the record back to its author, who can check it without our keys (§13.8).
    signature: bytes = b""

    @property
    def header_bytes(self) -> bytes:
        return self.frame[_PREFIX.size : _PREFIX.size + _PREFIX.unpack_from(self.frame)[1]]

    @property
    def digest(self) -> str:
        """SHA-256 of the frame as received (what receipts list); computed when asked."""
        return envelope_digest(self.frame)


def signed_bytes(header: bytes, payload: bytes) -> bytes:
    """Exactly what the sender's Ed25519 key signs: label, header length, header, payload."""
    return b"".join((SIGNATURE_LABEL, _LENGTH.pack(len(header)), header, payload))


def hpke_info(header: bytes) -> bytes:
    return ENCRYPTION_LABEL + header


def envelope_digest(frame: bytes) -> str:
    return hashlib.sha256(frame).hexdigest()


def seal(
    record: Record,
    *,
    sender: str,
    signing_key: SigningKey,
    recipient: str,
    recipient_kid: str,
    recipient_key: RecipientKey,
    msg_id: UUID,
    now: datetime,
) -> bytes:
    """Sign `record` for `recipient` and encrypt it to their key, whose type picks the suite.
    Time and msg_id are passed in."""
    if record_author(record) != sender:
        raise SealError(f"{sender} may not sign a {record.type} written by {record_author(record)}")
    return seal_payload(
        record_bytes(record),
        record_type=record.type,
        sender=sender,
        signing_key=signing_key,
        recipient=recipient,
        recipient_kid=recipient_kid,
        recipient_key=recipient_key,
        msg_id=msg_id,
        now=now,
    )


def seal_payload(
    payload: bytes,
    *,
    record_type: str,
    sender: str,
    signing_key: SigningKey,
    recipient: str,
    recipient_kid: str,
    recipient_key: RecipientKey,
    msg_id: UUID,
    now: datetime,
) -> bytes:
    """Seal payload bytes already produced by `record_bytes` (the outbox keeps them so)."""
    if not signing_key.validity.covers(now):
        raise SealError(f"signing key {signing_key.kid} is not valid now")
    if record_type not in RECORD_TYPES:
        raise SealError(f"unknown record type {record_type!r}")
    for name, value, pattern in (
        ("sender", sender, _NODE_ID),
        ("recipient", recipient, _NODE_ID),
        ("recipient_kid", recipient_kid, _KEY_ID),
    ):
        if not pattern.fullmatch(value):
            raise SealError(f"{name} {value!r} is not a valid identifier")
    suite_name = HYBRID_SUITE if isinstance(recipient_key, MLKEM768X25519PublicKey) else SUITE_NAME
    # Every value is typed by construction (ids are validated where keys and peers are made),
    # so plain sorted-key orjson is canonical here without the generic checks.
    header = orjson.dumps(
        {
            "v": PROTOCOL_VERSION,
            "suite": suite_name,
            "from": sender,
            "from_kid": signing_key.kid,
            "to": recipient,
            "to_kid": recipient_kid,
            "msg_id": str(msg_id),
            "created_at": to_unix(now),
            "type": record_type,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    if len(header) > MAX_HEADER_BYTES:
        raise SealError("header too long")
    signature = signing_key.private.sign(signed_bytes(header, payload))
    suite = _SUITES[suite_name][0]
    sealed = suite.encrypt(signature + payload, recipient_key, info=hpke_info(header))
    frame = b"".join((_PREFIX.pack(MAGIC, len(header)), header, sealed))
    if len(frame) > MAX_ENVELOPE_BYTES:
        raise SealError(f"record too large: {len(frame)} bytes sealed, limit {MAX_ENVELOPE_BYTES}")
    return frame


class ReadFrame(NamedTuple):
    """A frame split by `read_header`: its checked header, the header bytes, the HPKE output.

    Only `read_header` makes these: the header is the parse of exactly those header bytes.
    """

    header: Header
    header_bytes: bytes
    sealed: bytes


def read_header(frame: bytes, max_bytes: int = MAX_ENVELOPE_BYTES) -> ReadFrame:
    """Split a frame into (header, header bytes, HPKE output) without any crypto."""
    if len(frame) > max_bytes:
        raise OpenError(OpenFailure.OVERSIZED, f"{len(frame)} bytes")
    if len(frame) < _PREFIX.size:
        raise OpenError(OpenFailure.MALFORMED, "shorter than the frame prefix")
    magic, header_len = _PREFIX.unpack_from(frame)
    if magic != MAGIC:
        raise OpenError(OpenFailure.MALFORMED, "bad magic")
    if header_len > MAX_HEADER_BYTES:
        raise OpenError(OpenFailure.MALFORMED, "header too long")
    body_start = _PREFIX.size + header_len
    header_bytes = frame[_PREFIX.size : body_start]
    sealed = frame[body_start:]
    if len(header_bytes) != header_len:
        raise OpenError(OpenFailure.MALFORMED, "truncated")
    header = parse_header(header_bytes)
    if len(sealed) < _SUITES[header.suite][1] + TAG_BYTES + SIGNATURE_BYTES:
        raise OpenError(OpenFailure.MALFORMED, "truncated")
    return ReadFrame(header, header_bytes, sealed)


def parse_header(header_bytes: bytes) -> Header:
    """The header these bytes spell, checked (§5): also how a signed record given back by a peer
    is read (protocol.recovery), with no frame around it."""
    try:
        raw = orjson.loads(header_bytes)
    except orjson.JSONDecodeError as exc:
        raise OpenError(OpenFailure.MALFORMED, "header is not JSON") from exc
    # Version and suite come first so a future version gets a precise reason in our log.
    if not isinstance(raw, dict):
        raise OpenError(OpenFailure.MALFORMED, "header is not an object")
    if raw.get("v") != PROTOCOL_VERSION:
        raise OpenError(OpenFailure.VERSION, f"version {raw.get('v')!r}")
    suite = raw.get("suite")
    if not isinstance(suite, str) or suite not in _SUITES:
        raise OpenError(OpenFailure.SUITE, f"suite {suite!r}")
    header = _checked_header(raw, suite)
    # Only the canonical form is accepted: no duplicate members, no alternative spellings that
    # another parser of the stored evidence could read differently.
    if orjson.dumps(raw, option=orjson.OPT_SORT_KEYS) != header_bytes:
        raise OpenError(OpenFailure.MALFORMED, "header is not canonical JSON")
    return header


_HEADER_FIELDS = frozenset(
    ("v", "suite", "from", "from_kid", "to", "to_kid", "msg_id", "created_at", "type")
)
_UUID = re.compile(_UUID_PATTERN)
# Checked with fullmatch: `$` alone also matches before a trailing newline, which the header's
# annotations (and protocol.md §1) refuse.
_HEADER_PATTERNS = (
    ("from", _NODE_ID),
    ("to", _NODE_ID),
    ("from_kid", _KEY_ID),
    ("to_kid", _KEY_ID),
    ("msg_id", _UUID),
)


def _checked_header(raw: dict[str, Any], suite: Any) -> Header:
    """The rules of `Header`'s annotations, checked by hand: this runs on every frame before any
    crypto, and pydantic's general machinery costs several times more here. `v` and `suite`
    were checked by the caller."""
    if raw.keys() != _HEADER_FIELDS:
        missing = sorted(_HEADER_FIELDS - raw.keys())
        extra = sorted(raw.keys() - _HEADER_FIELDS)
        raise OpenError(OpenFailure.MALFORMED, f"header members: missing {missing}, extra {extra}")
    for name, pattern in _HEADER_PATTERNS:
        value = raw[name]
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise OpenError(OpenFailure.MALFORMED, f"header: bad {name}")
    created = raw["created_at"]
    if type(created) is not int or not 0 <= created <= MAX_UNIX_TIME:
        raise OpenError(OpenFailure.MALFORMED, "header: bad created_at")
    if raw["type"] not in RECORD_TYPES:
        raise OpenError(OpenFailure.MALFORMED, "header: bad type")
    return Header(
        v=PROTOCOL_VERSION,
        suite=suite,
        from_=raw["from"],
        from_kid=raw["from_kid"],
        to=raw["to"],
        to_kid=raw["to_kid"],
        msg_id=raw["msg_id"],
        created_at=created,
        type=raw["type"],
    )


def open_envelope(
    frame: bytes,
    *,
    recipient: str,
    keys: NodeKeys,
    peers: PeerDirectory,
    replay: ReplayGuard,
    now: datetime,
    policy: OpenPolicy = OpenPolicy(),
    on_failure: Callable[[OpenError], None] | None = None,
    read: ReadFrame | None = None,
) -> Opened:
    """Verify and decrypt one envelope addressed to `recipient`.

    Every refusal raises OpenError with the same public message; `reason`/`detail` are for the
    caller's own log. All checks that need no crypto run first, so junk costs almost nothing.
    `read` is what `read_header(frame)` returned, for a caller that already looked at the
    header (a receiver sorting a batch): it is not parsed twice.
    """
    if read is not None and frame != b"".join(
        (_PREFIX.pack(MAGIC, len(read.header_bytes)), read.header_bytes, read.sealed)
    ):
        raise ValueError("`read` was read from another frame")
    try:
        return _open(frame, recipient, keys, peers, replay, now, policy, read)
    except OpenError as exc:
        if on_failure is not None:
            on_failure(exc)
        raise


def _open(
    frame: bytes,
    recipient: str,
    keys: NodeKeys,
    peers: PeerDirectory,
    replay: ReplayGuard,
    now: datetime,
    policy: OpenPolicy,
    read: ReadFrame | None,
) -> Opened:
    if read is None or len(frame) > policy.max_bytes:
        read = read_header(frame, policy.max_bytes)
    header, header_bytes, sealed = read
    if header.to != recipient:
        raise OpenError(OpenFailure.WRONG_RECIPIENT, f"addressed to {header.to}")
    created = from_unix(header.created_at)
    if created < now - policy.max_age:
        raise OpenError(OpenFailure.STALE, f"created {created.isoformat()}")
    if created > now + policy.max_skew:
        raise OpenError(OpenFailure.FUTURE, f"created {created.isoformat()}")
    sender_keys = peers.keys_for(header.from_)
    if sender_keys is None:
        raise OpenError(OpenFailure.UNKNOWN_SENDER, header.from_)
    try:
        verify_key: Ed25519PublicKey = sender_keys.signing_key(header.from_kid, created)
    except KeyUnavailableError as exc:
        raise OpenError(OpenFailure.SENDER_KEY, exc.reason) from exc
    decryption_key: X25519PrivateKey | MLKEM768X25519PrivateKey
    try:
        if header.suite == HYBRID_SUITE:
            decryption_key = keys.hybrid_decryption_key(header.to_kid, now).private
        else:
            decryption_key = keys.decryption_key(header.to_kid, now).private
    except KeyUnavailableError as exc:
        raise OpenError(OpenFailure.RECIPIENT_KEY, exc.reason) from exc
    if header.suite == CLASSIC_SUITE and _must_be_hybrid(header, keys, sender_keys, now):
        raise OpenError(OpenFailure.DOWNGRADE, f"classic frame to {header.to_kid}")
    if replay.seen(header.from_, header.msg_id):
        raise OpenError(OpenFailure.REPLAY, f"{header.from_}/{header.msg_id}")

    try:
        suite = _SUITES[header.suite][0]
        plaintext = suite.decrypt(sealed, decryption_key, info=hpke_info(header_bytes))
    except Exception as exc:  # any failure here (bad tag, low-order point) is opaque
        raise OpenError(OpenFailure.DECRYPT, type(exc).__name__) from exc
    signature, payload = plaintext[:SIGNATURE_BYTES], plaintext[SIGNATURE_BYTES:]
    try:
        verify_key.verify(signature, signed_bytes(header_bytes, payload))
    except InvalidSignature as exc:
        raise OpenError(OpenFailure.SIGNATURE, "signature does not verify") from exc
    try:
        # Validating as the header's type also refuses a payload of another type.
        record = parse_record(payload, expected_type=header.type)
    except RecordError as exc:
        raise OpenError(OpenFailure.PAYLOAD, str(exc)) from exc
    if record_author(record) != header.from_:
        raise OpenError(OpenFailure.PAYLOAD, f"{header.from_} is not the author of this record")
    # Remember only after success: a forger must not be able to burn a real sender's msg_ids.
    replay.remember(header.from_, header.msg_id, created)
    return Opened(header, record, payload, frame, signature)


def unseal_kept(frame: bytes, keys: NodeKeys) -> tuple[bytes, bytes, bytes]:
    """Header bytes, signature and payload of a frame we accepted earlier and kept, decrypted
    with our key that it was sealed to, valid when it was sealed (nothing else is checked: it
    was, when it arrived). OpenError when that key is gone (rotation deletes expired keys)."""
    header, header_bytes, sealed = read_header(frame)
    created = from_unix(header.created_at)
    decryption_key: X25519PrivateKey | MLKEM768X25519PrivateKey
    try:
        if header.suite == HYBRID_SUITE:
            decryption_key = keys.hybrid_decryption_key(header.to_kid, created).private
        else:
            decryption_key = keys.decryption_key(header.to_kid, created).private
        plaintext = _SUITES[header.suite][0].decrypt(
            sealed, decryption_key, info=hpke_info(header_bytes)
        )
    except KeyUnavailableError as exc:
        raise OpenError(OpenFailure.RECIPIENT_KEY, exc.reason) from exc
    except Exception as exc:  # a kept frame that no longer opens: opaque, like any other
        raise OpenError(OpenFailure.DECRYPT, type(exc).__name__) from exc
    return header_bytes, plaintext[:SIGNATURE_BYTES], plaintext[SIGNATURE_BYTES:]


def _must_be_hybrid(header: Header, keys: NodeKeys, sender: PublicKeySet, now: datetime) -> bool:
    """A classic frame is a downgrade when both ends advertise the hybrid suite and the sender
    could not have missed ours: the classic key it sealed to was published with a hybrid key."""
    return (
        sender.advertises_hybrid and keys.offers_hybrid(now) and keys.requires_hybrid(header.to_kid)
    )
