"""The records that travel between nodes: report, action, withdrawal, receipt (pydantic, frozen)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
)

from keys.document import CountryCode, NodeId
from protocol.errors import RecordError

# Strict int between 1 and 1: a Literal would also take true and 1.0 (equal in Python).
Version = Annotated[int, Field(ge=1, le=1, strict=True)]
MAX_URL = 4096
MAX_TEXT = 8192


def _utc_text(value: datetime) -> str:
    # Written in UTC so that no offset precision is lost (JSON timestamps carry whole minutes).
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# RFC 3339 with an explicit offset; validated in pydantic's Rust core because parsing is on the
# hot path of every received record; written as UTC ("Z").
Timestamp = Annotated[
    AwareDatetime,
    Field(strict=True),
    PlainSerializer(_utc_text, return_type=str, when_used="json"),
]
Url = Annotated[str, Field(min_length=1, max_length=MAX_URL, pattern=r"^https?://[^\s]+$")]
ShortText = Annotated[str, Field(max_length=256)]
LongText = Annotated[str, Field(max_length=MAX_TEXT)]
Sequence = Annotated[int, Field(ge=1, le=2**53 - 1, strict=True)]
# Strict where it matters on the wire: no float, bool or string where a number or flag belongs.
Flag = Annotated[bool, Field(strict=True)]


class Category(StrEnum):
    CSAM = "csam"
    CSEM = "csem"
    GROOMING = "grooming"
    HATE = "hate"
    TERRORISM = "terrorism"
    OTHER = "other"


class Verdict(StrEnum):
    BASELINE = "baseline"
    NATIONAL = "national"
    NOT_ILLEGAL = "not_illegal"


class Tlp(StrEnum):
    CLEAR = "clear"
    GREEN = "green"
    AMBER = "amber"
    AMBER_STRICT = "amber+strict"
    RED = "red"


class ActionCode(StrEnum):
    FORWARDED = "forwarded"
    RECEIVED = "received"
    LEA_REFERRED = "lea_referred"
    NOTICE_SENT = "notice_sent"
    CONTENT_REMOVED = "content_removed"
    CONTENT_UNAVAILABLE = "content_unavailable"
    MOVED = "moved"
    NOT_ILLEGAL = "not_illegal"
    REMINDER_SENT = "reminder_sent"


class LocationBasis(StrEnum):
    GEOLOCATION = "geolocation"
    REGISTRATION = "registration"


class HashAlgorithm(StrEnum):
    SHA256 = "sha256"
    SHA1 = "sha1"
    MD5 = "md5"
    PDQ = "pdq"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Assessment(_Model):
    verdict: Verdict
    category: Category
    legal_basis: ShortText | None = None
    victim_age_group: Literal["infant_toddler", "prepubescent", "pubescent"] | None = None
    flags: tuple[Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")], ...] = Field(
        default=(), max_length=16
    )


class HostingAddress(_Model):
    ip: Annotated[str, Field(max_length=45)]
    country: CountryCode | None = None
    basis: LocationBasis | None = None
    source: ShortText | None = None
    source_date: ShortText | None = None
    asn: Annotated[int, Field(ge=0, le=2**32 - 1, strict=True)] | None = None
    network_name: ShortText | None = None
    cdn: Flag = False


class Hosting(_Model):
    addresses: tuple[HostingAddress, ...] = Field(default=(), max_length=64)
    countries: tuple[CountryCode, ...] = Field(default=(), max_length=64)
    abuse_contact: ShortText | None = None
    cdn: Flag = False
    traced_at: Timestamp | None = None


class ContentHash(_Model):
    alg: HashAlgorithm
    value: Annotated[str, Field(pattern=r"^[0-9a-f]{32,256}$")]


class Report(_Model):
    """A case as its origin sees it. Single writer: only `origin` issues new versions (`seq`)."""

    type: Literal["report"] = "report"
    v: Version = 1
    id: UUID
    origin: NodeId
    seq: Sequence
    local_ref: ShortText
    received_at: Timestamp
    assessed_at: Timestamp | None = None
    url: Url
    item_urls: tuple[Url, ...] = Field(default=(), max_length=256)
    content_type: ShortText | None = None
    site_type: ShortText | None = None
    assessment: Assessment
    hosting: Hosting = Field(default_factory=Hosting)
    hashes: tuple[ContentHash, ...] = Field(default=(), max_length=256)
    tlp: Tlp = Tlp.AMBER
    notes: LongText | None = None


class Action(_Model):
    """Something a node did about a report. Append-only; written by the node that acted."""

    type: Literal["action"] = "action"
    v: Version = 1
    id: UUID
    report_id: UUID
    report_origin: NodeId
    code: ActionCode
    at: Timestamp
    by: NodeId
    analyst: ShortText | None = None
    country: CountryCode
    reason: LongText | None = None


class Withdrawal(_Model):
    """The origin retracts a report (tombstone): a mistaken report or an erasure request."""

    type: Literal["withdrawal"] = "withdrawal"
    v: Version = 1
    id: UUID
    report_id: UUID
    origin: NodeId
    at: Timestamp
    reason: LongText


Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Receipt(_Model):
    """The receiver's statement over the SHA-256 digests of the envelopes it accepted."""

    type: Literal["receipt"] = "receipt"
    v: Version = 1
    id: UUID
    txn_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
    by: NodeId
    at: Timestamp
    accepted: tuple[Digest, ...] = Field(max_length=10_000)


Record = Annotated[Report | Action | Withdrawal | Receipt, Field(discriminator="type")]
RECORD_TYPES = ("report", "action", "withdrawal", "receipt")
_RECORD_ADAPTER: TypeAdapter[Report | Action | Withdrawal | Receipt] = TypeAdapter(Record)


def record_author(record: Report | Action | Withdrawal | Receipt) -> str:
    """The only node allowed to sign this record (single writer rule)."""
    if isinstance(record, Report | Withdrawal):
        return record.origin
    return record.by


_MODELS: dict[str, type[Report | Action | Withdrawal | Receipt]] = {
    "report": Report,
    "action": Action,
    "withdrawal": Withdrawal,
    "receipt": Receipt,
}


def record_bytes(record: Report | Action | Withdrawal | Receipt) -> bytes:
    """The payload bytes that are signed: sorted-key JSON equal to RFC 8785.

    The schemas admit no float and bound every integer below 2**53, so the canonical form needs
    no further check here (a test walks the JSON Schemas to keep it so).
    """
    return orjson.dumps(
        record.model_dump(mode="json", exclude_none=True), option=orjson.OPT_SORT_KEYS
    )


def parse_record(
    payload: bytes, expected_type: str | None = None
) -> Report | Action | Withdrawal | Receipt:
    """Validate payload bytes as a record; `expected_type` (from a header) skips the union."""
    try:
        # Numbers, flags and times are strict per field (a float, a bool or a string is refused
        # there); whole-model strict mode would double the cost of every received record.
        if expected_type is not None:
            return _MODELS[expected_type].model_validate_json(payload)
        return _RECORD_ADAPTER.validate_json(payload)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise RecordError(f"invalid record: {where}: {error['msg']}") from exc
