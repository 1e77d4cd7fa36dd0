"""Giving a node back the records it signed (protocol.md §13.8).

A node restored from an older backup has lost what it did since; its peers still hold the
records it sent them, as the exact bytes it signed. A receiver keeps, for each record it accepts,
the header, the signature and the payload (`SignedRecord`), and gives an author its own records
when it asks (`RecoveryPage`). The author checks each against its own signing keys
(`check_own_record`): a holder cannot give back a record its author did not sign.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Annotated, Literal

from cryptography.exceptions import InvalidSignature
from pydantic import BaseModel, ConfigDict, Field

from keys import KeyUnavailableError, NodeKeys
from keys.document import from_unix
from keys.thumbprint import b64url, b64url_decode
from protocol.envelope import (
    MAX_ENVELOPE_BYTES,
    MAX_HEADER_BYTES,
    SIGNATURE_BYTES,
    Header,
    parse_header,
    signed_bytes,
)
from protocol.errors import OpenError, ProtocolError, RecordError
from protocol.federation import Frame
from protocol.records import Action, Report, Withdrawal, parse_record, record_author

# What an author can ask back: its cases' records (a hash list is republished, not recovered).
RECOVERABLE_TYPES = ("report", "action", "withdrawal")
MAX_RECOVERY_PAGE = 200
# The holder stops adding records to a page past this many bytes of them (base64 included).
RECOVERY_PAGE_BYTES = 4 * 1024 * 1024
_LENGTH = struct.Struct(">H")
_B64 = r"^[A-Za-z0-9_-]*$"


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class RecoveredRecord(_Body):
    """One record as its author signed it, and the holder's number for it."""

    n: Annotated[int, Field(ge=1)]
    header: Annotated[
        str, Field(min_length=1, max_length=MAX_HEADER_BYTES * 4 // 3 + 4, pattern=_B64)
    ]
    signature: Annotated[str, Field(min_length=86, max_length=86, pattern=_B64)]
    payload: Annotated[
        str, Field(min_length=1, max_length=MAX_ENVELOPE_BYTES * 4 // 3 + 4, pattern=_B64)
    ]


class RecoveryPage(_Body):
    """A holder's answer: the asker's records after `after`, and the holder's own actions on
    the cases they are about, sealed to the asker like any envelope."""

    v: Literal[1] = 1
    records: list[RecoveredRecord] = Field(max_length=MAX_RECOVERY_PAGE)
    actions: list[Frame] = Field(default_factory=list, max_length=MAX_RECOVERY_PAGE * 16)
    next_after: Annotated[int, Field(ge=0)]
    more: bool


@dataclass(frozen=True)
class SignedRecord:
    """A record's header, its author's signature and its payload: the bytes §6.1 signs, kept."""

    header: bytes
    signature: bytes
    payload: bytes

    def to_bytes(self) -> bytes:
        """How a holder stores it: uint16 header length, header, signature, payload."""
        return b"".join((_LENGTH.pack(len(self.header)), self.header, self.signature, self.payload))

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedRecord:
        (length,) = _LENGTH.unpack_from(data)
        start = _LENGTH.size
        middle = start + length
        return cls(
            data[start:middle],
            data[middle : middle + SIGNATURE_BYTES],
            data[middle + SIGNATURE_BYTES :],
        )

    def to_wire(self, n: int) -> RecoveredRecord:
        return RecoveredRecord(
            n=n,
            header=b64url(self.header),
            signature=b64url(self.signature),
            payload=b64url(self.payload),
        )

    @classmethod
    def from_wire(cls, item: RecoveredRecord) -> SignedRecord:
        """Strict base64url (one spelling per value); ValueError otherwise."""
        return cls(
            b64url_decode(item.header), b64url_decode(item.signature), b64url_decode(item.payload)
        )


class RecoveryRefused(ProtocolError):
    """A record given back that its author does not take. `forged` when it is not what the
    author signed (the holder changed it, or never had it from us): worth the operator's eyes.
    Otherwise it is ours but cannot be checked (a key we no longer hold) or is not recoverable."""

    def __init__(self, reason: str, *, forged: bool) -> None:
        super().__init__(reason)
        self.forged = forged


OwnCaseRecord = Report | Action | Withdrawal


@dataclass(frozen=True)
class OwnRecord:
    """One of our records, given back and checked."""

    header: Header
    record: OwnCaseRecord
    signed: SignedRecord


def check_own_record(
    signed: SignedRecord, *, node_id: str, holder: str, keys: NodeKeys
) -> OwnRecord:
    """Check a record `holder` gives back as one we (`node_id`) signed and sent it."""
    try:
        header = parse_header(signed.header)
    except OpenError as exc:
        raise RecoveryRefused(f"header refused: {exc.detail}", forged=True) from exc
    if header.from_ != node_id:
        raise RecoveryRefused(f"signed by {header.from_}, not by us", forged=True)
    if header.to != holder:
        raise RecoveryRefused(f"sent to {header.to}, not to {holder}", forged=True)
    if header.type not in RECOVERABLE_TYPES:
        raise RecoveryRefused(f"a {header.type} record is not recovered", forged=True)
    if len(signed.signature) != SIGNATURE_BYTES:
        raise RecoveryRefused("the signature is not 64 bytes", forged=True)
    try:
        key = keys.signing_key(header.from_kid, from_unix(header.created_at))
    except KeyUnavailableError as exc:
        raise RecoveryRefused(f"cannot be checked: {exc}", forged=False) from exc
    try:
        key.private.public_key().verify(
            signed.signature, signed_bytes(signed.header, signed.payload)
        )
    except InvalidSignature as exc:
        raise RecoveryRefused("the signature does not verify", forged=True) from exc
    try:
        record = parse_record(signed.payload, expected_type=header.type)
    except RecordError as exc:
        raise RecoveryRefused(f"payload refused: {exc}", forged=True) from exc
    if record_author(record) != node_id or not isinstance(record, Report | Action | Withdrawal):
        raise RecoveryRefused("we are not the author of this record", forged=True)
    return OwnRecord(header, record, signed)
