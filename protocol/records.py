"""The records that travel between nodes: report, action, withdrawal, receipt, hashset (frozen)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal, Self
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
    model_validator,
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


# Hex digits of each digest (a `hashset` entry must have exactly these; a report's ContentHash
# keeps its v1 rule of 32-256 digits).
HEX_DIGITS: dict[HashAlgorithm, int] = {
    HashAlgorithm.SHA256: 64,
    HashAlgorithm.SHA1: 40,
    HashAlgorithm.MD5: 32,
    HashAlgorithm.PDQ: 64,
}
# PDQ's own measure of how much of the image its hash carries (0-100).
Quality = Annotated[int, Field(ge=0, le=100, strict=True)]


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
    # PDQ only. Sent only to peers that announce `pdq-quality`, as `sha1` only to peers that
    # announce `sha1` (protocol.features): a v1 reader refuses both.
    quality: Quality | None = None

    @model_validator(mode="after")
    def _quality_is_pdq_only(self) -> Self:
        if self.quality is not None and self.alg is not HashAlgorithm.PDQ:
            raise ValueError("only a pdq hash carries a quality")
        return self


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


# A hash set's name at its origin; receivers show it as "<origin>/<name>", so no "/" in it.
HASH_SET_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
# Entries per side of one `hashset` record. With the bounded members below an entry to add is
# at most 230 bytes and one to remove 92, so a full record (under 162 000 bytes) stays well
# inside a frame (protocol.md §9.10); a larger change travels as several records.
MAX_HASH_SET_ENTRIES = 500
# A list's grade of an entry (IWF "A"/"B"/"C", NCMEC "A1"...): short printable ASCII.
Grade = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:/+-]{0,31}$")]


class HashUse(StrEnum):
    """What the origin permits a receiver to do with an entry."""

    HOTLINES = "hotlines"  # hotlines' own work only
    INDUSTRY = "industry"  # hotlines, and industry partners too


class HashRemoval(_Model):
    """An entry that leaves the set: its hash."""

    alg: HashAlgorithm
    value: Annotated[str, Field(pattern=r"^[0-9a-f]{32,64}$")]

    @model_validator(mode="after")
    def _digits_of_alg(self) -> Self:
        if len(self.value) != HEX_DIGITS[self.alg]:
            raise ValueError(f"a {self.alg.value} value has {HEX_DIGITS[self.alg]} hex digits")
        return self


class HashAddition(HashRemoval):
    """An entry added to the set (or changed): its hash and what the set says of it."""

    quality: Quality | None = None  # pdq only
    category: Category
    grade: Grade | None = None
    use: HashUse
    added_at: Timestamp | None = None  # when the origin first added it

    @model_validator(mode="after")
    def _quality_is_pdq_only(self) -> Self:
        if self.quality is not None and self.alg is not HashAlgorithm.PDQ:
            raise ValueError("only a pdq hash carries a quality")
        return self


class HashSet(_Model):
    """Additions to and removals from a named hash set of its origin (single writer: `origin`).

    `seq` numbers the set's changes at the origin; a receiver applies a change only when its
    `seq` is above the last it applied for that set, so a copy changes nothing."""

    type: Literal["hashset"] = "hashset"
    v: Version = 1
    id: UUID
    origin: NodeId
    name: Annotated[str, Field(pattern=HASH_SET_NAME_PATTERN)]
    seq: Sequence
    at: Timestamp
    add: tuple[HashAddition, ...] = Field(default=(), max_length=MAX_HASH_SET_ENTRIES)
    remove: tuple[HashRemoval, ...] = Field(default=(), max_length=MAX_HASH_SET_ENTRIES)

    @model_validator(mode="after")
    def _one_change_per_hash(self) -> Self:
        if not self.add and not self.remove:
            raise ValueError("a hashset record adds or removes at least one entry")
        keys = [(e.alg, e.value) for e in (*self.remove, *self.add)]
        if len(set(keys)) != len(keys):
            raise ValueError("a hash appears at most once in a hashset record")
        return self


AnyRecord = Report | Action | Withdrawal | Receipt | HashSet
Record = Annotated[AnyRecord, Field(discriminator="type")]
RECORD_TYPES = ("report", "action", "withdrawal", "receipt", "hashset")
_RECORD_ADAPTER: TypeAdapter[AnyRecord] = TypeAdapter(Record)


def record_author(record: AnyRecord) -> str:
    """The only node allowed to sign this record (single writer rule)."""
    if isinstance(record, Report | Withdrawal | HashSet):
        return record.origin
    return record.by


_MODELS: dict[str, type[AnyRecord]] = {
    "report": Report,
    "action": Action,
    "withdrawal": Withdrawal,
    "receipt": Receipt,
    "hashset": HashSet,
}


def record_bytes(record: AnyRecord) -> bytes:
    """The payload bytes that are signed: sorted-key JSON equal to RFC 8785.

    The schemas admit no float and bound every integer below 2**53, so the canonical form needs
    no further check here (a test walks the JSON Schemas to keep it so).
    """
    return orjson.dumps(
        record.model_dump(mode="json", exclude_none=True), option=orjson.OPT_SORT_KEYS
    )


def parse_record(payload: bytes, expected_type: str | None = None) -> AnyRecord:
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
