"""The signed member directory: a root of k-of-n signer keys, and the member list it signs.

An umbrella body (INHOPE, or any group of hotlines) publishes which hotlines are members and
each one's identity fingerprint; a node trusts the umbrella's root instead of one fingerprint
per peer (docs/protocol.md §14). Modelled on TUF's root metadata (threshold signatures; a new
root signed by a threshold of the old keys and of the new ones) and on eduGAIN's signed
aggregate (short validity, the last good copy kept).

Sans-I/O and clock-free: bytes and `now` are passed in, and every refusal is a DirectoryError
with a `refusal` (what kind, for logs and metrics) and a one-line `reason` (for people).

What a node calls:
- `verify_root(wire)` once, on the root file its operator gives it;
- `verify_rotation(held_root, wire)` for each newer root, one version at a time;
- `verify_list(wire, root, now=…, held_version=…)` for every list it fetches; a refusal leaves
  the list it holds in force;
- `verify_list_signatures(wire, root)` to read back a list it verified and stored earlier
  (everything but freshness: a held list stays usable once expired).
The umbrella's tools build and sign with `root_document`, `list_document`, `sign` and
`wire_form`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Any, Literal

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keys.canonical import MAX_SAFE_INTEGER, NotCanonicalError, canonical_json
from keys.document import (
    NODE_ID_PATTERN,
    CountryCode,
    KeyId,
    NodeId,
    RawKey,
    SuiteName,
    UnixTime,
    Version,
    to_unix,
)
from keys.thumbprint import CURVE_ED25519, b64url, b64url_decode, okp_thumbprint
from protocol.errors import ProtocolError

# One label per kind of document: a root's signature can never pass for a list's, nor either
# for a key document's (whose label is "hotline-node/v1 key-document\0").
ROOT_LABEL = b"hotline-node/v1 directory-root\x00"
LIST_LABEL = b"hotline-node/v1 directory\x00"
ROOT_TYPE = "hotline-directory-root"
LIST_TYPE = "hotline-directory"

MAX_ROOT_BYTES = 64 * 1024
# INHOPE has 55 members; a list of 1 024 members with long endpoints still fits.
MAX_LIST_BYTES = 2 * 1024 * 1024
MAX_MEMBERS = 1024
MAX_ROOT_KEYS = 32
# Enough for every key of an old root and of a new one during a rotation; more is refused
# unread, so that a forged list cannot make a node verify thousands of signatures.
MAX_SIGNATURES = 2 * MAX_ROOT_KEYS
# A list issued this far in the future is refused: a signer's clock a little ahead is tolerated.
MAX_CLOCK_SKEW = timedelta(minutes=5)
# What the umbrella's tools sign by default (eduGAIN's aggregates are valid about a week).
DEFAULT_VALIDITY = timedelta(days=7)

# A directory's name: the same shape as a node id (e.g. "inhope").
DirectoryName = Annotated[str, Field(pattern=NODE_ID_PATTERN)]
DocumentVersion = Annotated[int, Field(ge=1, le=MAX_SAFE_INTEGER, strict=True)]
# A category a member accepts: the record categories of §9.2 today; a reader ignores names it
# does not know, so that a new category does not make older nodes refuse the whole list.
CategoryName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
Endpoint = Annotated[str, Field(max_length=2048, pattern=r"^https?://[^\s\x00-\x1f\x7f]+$")]
_KID = re.compile(r"^[A-Za-z0-9_-]{43}$")
_SIGNATURE = re.compile(r"^[A-Za-z0-9_-]{86}$")


class Refusal(StrEnum):
    """Why a root or a list was refused: a word for logs and metrics (`reason` says more)."""

    OVERSIZED = "oversized"
    MALFORMED = "malformed"
    NOT_CANONICAL = "not_canonical"
    WRONG_TYPE = "wrong_type"
    WRONG_NAME = "wrong_name"
    SIGNATURES = "signatures"
    ROTATION = "rotation"
    STALE = "stale"
    FUTURE = "future"
    EXPIRED = "expired"


class DirectoryError(ProtocolError):
    """A root, a rotation or a member list that must not be used; str() is `reason`."""

    def __init__(self, refusal: Refusal, reason: str) -> None:
        super().__init__(reason)
        self.refusal = refusal
        self.reason = reason


class _Body(BaseModel):
    # Unknown members are ignored, as in the key document (protocol.md §11): the signature
    # covers the bytes, whatever they hold, and a newer umbrella may add optional members.
    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)


class RootKey(_Body):
    kid: KeyId
    key: RawKey


class _RootBody(_Body):
    type: Literal["hotline-directory-root"]
    v: Version
    name: DirectoryName
    version: DocumentVersion
    threshold: Annotated[int, Field(ge=1, le=MAX_ROOT_KEYS)]
    keys: list[RootKey] = Field(min_length=1, max_length=MAX_ROOT_KEYS)


class Member(_Body):
    """One member hotline, as the umbrella vouches for it."""

    node_id: NodeId
    country: CountryCode
    endpoint: Endpoint
    # The RFC 7638 thumbprint of the member's identity key: what its key document must match.
    fingerprint: KeyId
    # Absent: the member does not say. Informative for categories (a node applies its own
    # policy) and for suites (the member's key document says which suites it takes, §6.3).
    categories: list[CategoryName] | None = Field(default=None, min_length=1, max_length=32)
    suites: list[SuiteName] | None = Field(default=None, min_length=1, max_length=8)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class _ListBody(_Body):
    type: Literal["hotline-directory"]
    v: Version
    name: DirectoryName
    version: DocumentVersion
    issued_at: UnixTime
    expires: UnixTime
    members: list[Member] = Field(max_length=MAX_MEMBERS)


@dataclass(frozen=True)
class DirectorySignature:
    """One signer's signature: `sig` = Ed25519 over the document's label and canonical bytes."""

    kid: str
    sig: str

    def to_json(self) -> dict[str, str]:
        return {"kid": self.kid, "sig": self.sig}


@dataclass(frozen=True)
class Root:
    """A verified root: who may sign, and how many of them must."""

    name: str
    version: int
    threshold: int
    keys: Mapping[str, Ed25519PublicKey]  # kid -> public key
    wire: bytes  # the bytes verified, to keep as they are

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self.keys)


@dataclass(frozen=True)
class DirectoryList:
    """A verified member list."""

    name: str
    version: int
    issued_at: int  # Unix seconds, as signed
    expires: int  # Unix seconds, exclusive: the list is valid while now < expires
    members: tuple[Member, ...]  # sorted by node_id, node ids and fingerprints unique
    signed_by: frozenset[str]  # the root kids whose signatures counted
    wire: bytes  # the bytes verified, to keep as they are

    def member(self, node_id: str) -> Member | None:
        return next((m for m in self.members if m.node_id == node_id), None)

    def is_expired(self, now: datetime) -> bool:
        return to_unix(now) >= self.expires


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    document: dict[str, Any]
    signed: bytes  # canonical bytes of `document`: exactly the bytes received between braces
    signatures: tuple[DirectorySignature, ...]


def _what(kind: str) -> str:
    return "directory root" if kind == ROOT_TYPE else "member list"


def _parse(wire: bytes, kind: str, limit: int) -> _Parsed:
    """Steps 1-5 of §14.4: size, JSON, wrapper, canonical form, type."""
    what = _what(kind)
    if len(wire) > limit:
        raise DirectoryError(
            Refusal.OVERSIZED, f"{what} is {len(wire)} bytes, more than the {limit} allowed"
        )
    try:
        outer = orjson.loads(wire)
    except orjson.JSONDecodeError as exc:
        raise DirectoryError(Refusal.MALFORMED, f"{what} is not JSON: {exc}") from exc
    if not isinstance(outer, dict) or set(outer) != {"signed", "signatures"}:
        raise DirectoryError(
            Refusal.MALFORMED, f"{what} must be an object with exactly 'signed' and 'signatures'"
        )
    document, entries = outer["signed"], outer["signatures"]
    if not isinstance(document, dict):
        raise DirectoryError(Refusal.MALFORMED, f"{what}: 'signed' must be an object")
    if not isinstance(entries, list) or len(entries) > MAX_SIGNATURES:
        raise DirectoryError(
            Refusal.MALFORMED,
            f"{what}: 'signatures' must be an array of at most {MAX_SIGNATURES} entries",
        )
    signatures = tuple(_signature_entry(entry, what) for entry in entries)
    # Canonical form is required, so that the bytes signed are exactly the bytes received:
    # re-serialising the parsed value must give the wire back, byte for byte.
    try:
        canonical = canonical_json(outer) == wire
    except NotCanonicalError as exc:
        raise DirectoryError(Refusal.NOT_CANONICAL, f"{what} is not canonical JSON: {exc}") from exc
    if not canonical:
        raise DirectoryError(
            Refusal.NOT_CANONICAL,
            f"{what} is not in canonical JSON form (sorted members, no spaces, no trailing"
            " newline)",
        )
    found = document.get("type")
    if found != kind:
        raise DirectoryError(
            Refusal.WRONG_TYPE,
            f"expected a {what} (type {kind!r}), got type {str(found)[:64]!r}",
        )
    return _Parsed(document, canonical_json(document), signatures)


def _signature_entry(entry: Any, what: str) -> DirectorySignature:
    if (
        not isinstance(entry, dict)
        or set(entry) != {"kid", "sig"}
        or not isinstance(entry["kid"], str)
        or not isinstance(entry["sig"], str)
        or not _KID.fullmatch(entry["kid"])
        or not _SIGNATURE.fullmatch(entry["sig"])
    ):
        raise DirectoryError(
            Refusal.MALFORMED,
            f"{what}: each signature must be exactly {{'kid': 43 base64url characters,"
            " 'sig': 86 base64url characters}",
        )
    return DirectorySignature(entry["kid"], entry["sig"])


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "document"
    return f"{where}: {error['msg']}"


def _root_body(document: Mapping[str, Any]) -> tuple[_RootBody, dict[str, Ed25519PublicKey]]:
    """Step 6 for a root: its members, and each key against its kid."""
    try:
        body = _RootBody.model_validate(document)
    except ValidationError as exc:
        raise DirectoryError(
            Refusal.MALFORMED, f"malformed directory root: {_first_error(exc)}"
        ) from exc
    keys: dict[str, Ed25519PublicKey] = {}
    for entry in body.keys:
        try:
            raw = b64url_decode(entry.key)
            public = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            raise DirectoryError(
                Refusal.MALFORMED, f"directory root key {entry.kid} is not an Ed25519 key"
            ) from exc
        if okp_thumbprint(CURVE_ED25519, raw) != entry.kid:
            raise DirectoryError(
                Refusal.MALFORMED,
                f"directory root key id {entry.kid} is not the thumbprint of its key",
            )
        if entry.kid in keys:
            raise DirectoryError(Refusal.MALFORMED, f"directory root lists key {entry.kid} twice")
        keys[entry.kid] = public
    if body.threshold > len(keys):
        raise DirectoryError(
            Refusal.MALFORMED,
            f"directory root threshold {body.threshold} is more than its {len(keys)} key(s)",
        )
    return body, keys


def _list_body(document: Mapping[str, Any]) -> _ListBody:
    """Step 6 for a list: its members, their order and uniqueness, its validity window."""
    try:
        body = _ListBody.model_validate(document)
    except ValidationError as exc:
        raise DirectoryError(
            Refusal.MALFORMED, f"malformed member list: {_first_error(exc)}"
        ) from exc
    _check_members(body.members)
    if body.expires <= body.issued_at:
        raise DirectoryError(
            Refusal.MALFORMED,
            f"member list expires ({body.expires}) at or before it is issued ({body.issued_at})",
        )
    return body


def _check_members(members: Sequence[Member]) -> None:
    for before, after in pairwise(members):
        if before.node_id >= after.node_id:
            problem = "twice" if before.node_id == after.node_id else "out of order"
            raise DirectoryError(
                Refusal.MALFORMED,
                f"member list: node id {after.node_id} is listed {problem} (members are sorted"
                " by node_id, each once)",
            )
    holders: dict[str, str] = {}
    for member in members:
        other = holders.setdefault(member.fingerprint, member.node_id)
        if other != member.node_id:
            raise DirectoryError(
                Refusal.MALFORMED,
                f"member list: {other} and {member.node_id} have the same fingerprint"
                f" {member.fingerprint}",
            )
        for name, names in (("categories", member.categories), ("suites", member.suites)):
            if names is not None and len(set(names)) != len(names):
                raise DirectoryError(
                    Refusal.MALFORMED, f"member list: {member.node_id} repeats one of its {name}"
                )


def _label(kind: str) -> bytes:
    return ROOT_LABEL if kind == ROOT_TYPE else LIST_LABEL


def _counted(
    label: bytes,
    signed: bytes,
    signatures: Iterable[DirectorySignature],
    keys: Mapping[str, Ed25519PublicKey],
) -> tuple[frozenset[str], str]:
    """The kids whose signatures count, and what did not count, in words.

    A signature counts only if its kid is one of `keys`, it verifies over label || signed, and
    no earlier signature of the same kid counted: each key counts once, however often it signs.
    """
    counted: set[str] = set()
    unknown = duplicate = failed = 0
    message = label + signed
    for entry in signatures:
        key = keys.get(entry.kid)
        if key is None:
            unknown += 1
            continue
        if entry.kid in counted:
            duplicate += 1
            continue
        try:
            key.verify(b64url_decode(entry.sig), message)
        except (InvalidSignature, ValueError):
            failed += 1
            continue
        counted.add(entry.kid)
    notes = [
        f"{count} {words}"
        for count, words in (
            (failed, "that do not verify"),
            (duplicate, "repeating a key"),
            (unknown, "by keys not in the root"),
        )
        if count
    ]
    return frozenset(counted), ", ".join(notes)


def _require(
    parsed: _Parsed,
    keys: Mapping[str, Ed25519PublicKey],
    threshold: int,
    whose: str,
) -> frozenset[str]:
    kind = str(parsed.document["type"])
    counted, notes = _counted(_label(kind), parsed.signed, parsed.signatures, keys)
    if len(counted) < threshold:
        detail = f"; of {len(parsed.signatures)} signature(s), {notes}" if notes else ""
        raise DirectoryError(
            Refusal.SIGNATURES,
            f"{_what(kind)} is signed by {len(counted)} of {whose}, {threshold} needed{detail}",
        )
    return counted


def _read_root(wire: bytes) -> tuple[_Parsed, _RootBody, dict[str, Ed25519PublicKey]]:
    parsed = _parse(wire, ROOT_TYPE, MAX_ROOT_BYTES)
    body, keys = _root_body(parsed.document)
    return parsed, body, keys


def verify_root(wire: bytes) -> Root:
    """A root a node is given to trust: well formed and signed by a threshold of its own keys.

    Whether to trust it at all is the operator's decision (the root's file comes out of band,
    like a fingerprint); this checks that it is whole and that its signers agreed to it."""
    parsed, body, keys = _read_root(wire)
    _require(parsed, keys, body.threshold, f"its own {len(keys)} keys")
    return Root(body.name, body.version, body.threshold, keys, wire)


def verify_rotation(held: Root, wire: bytes) -> Root:
    """The root that replaces `held`: version held+1, the same name, and signed by a threshold
    of `held`'s keys AND a threshold of its own keys (TUF's rule). A node more than one
    version behind verifies each intermediate root in turn."""
    parsed, body, keys = _read_root(wire)
    if body.name != held.name:
        raise DirectoryError(
            Refusal.WRONG_NAME,
            f"directory root is for {body.name!r}, not {held.name!r}",
        )
    if body.version <= held.version:
        raise DirectoryError(
            Refusal.STALE,
            f"directory root version {body.version} is not newer than the held version"
            f" {held.version}",
        )
    if body.version != held.version + 1:
        raise DirectoryError(
            Refusal.ROTATION,
            f"directory root version {body.version} skips from the held version {held.version};"
            f" verify version {held.version + 1} first",
        )
    _require(
        parsed, held.keys, held.threshold, f"the {len(held.keys)} keys of root v{held.version}"
    )
    _require(parsed, keys, body.threshold, f"its own {len(keys)} keys")
    return Root(body.name, body.version, body.threshold, keys, wire)


def verify_list_signatures(wire: bytes, root: Root) -> DirectoryList:
    """A list's form, name and signatures against `root`, without its freshness (version, time).

    For a list this node verified with `verify_list` and stored: reading it back after a
    restart, or checking it still holds under a rotated root. Never for a list just fetched."""
    parsed = _parse(wire, LIST_TYPE, MAX_LIST_BYTES)
    body = _list_body(parsed.document)
    if body.name != root.name:
        raise DirectoryError(
            Refusal.WRONG_NAME,
            f"member list is for directory {body.name!r}, not {root.name!r}",
        )
    counted = _require(
        parsed, root.keys, root.threshold, f"the {len(root.keys)} keys of root v{root.version}"
    )
    return DirectoryList(
        body.name,
        body.version,
        body.issued_at,
        body.expires,
        tuple(body.members),
        counted,
        wire,
    )


def verify_list(
    wire: bytes, root: Root, *, now: datetime, held_version: int | None = None
) -> DirectoryList:
    """A list just fetched: well formed, for this root's directory, signed by a threshold of the
    root's keys, newer than the list held (`held_version`, None when none is held), issued no
    later than `now` + MAX_CLOCK_SKEW, and not expired at `now`.

    On any refusal the caller keeps the list it holds. A node that fetches an unchanged list
    gets a STALE refusal: compare the bytes with the held ones first to tell the two apart."""
    directory = verify_list_signatures(wire, root)
    if held_version is not None and directory.version <= held_version:
        raise DirectoryError(
            Refusal.STALE,
            f"member list version {directory.version} is not newer than the held version"
            f" {held_version}",
        )
    at = to_unix(now)
    if directory.issued_at > to_unix(now + MAX_CLOCK_SKEW):
        raise DirectoryError(
            Refusal.FUTURE,
            f"member list is issued at {directory.issued_at}, {directory.issued_at - at} s after"
            f" now ({at})",
        )
    if at >= directory.expires:
        raise DirectoryError(
            Refusal.EXPIRED,
            f"member list version {directory.version} expired at {directory.expires}"
            f" ({at - directory.expires} s ago)",
        )
    return directory


# --- writing (the umbrella's tools, and the test vectors) ------------------------------------


def signer_kid(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """A signer's kid: the RFC 7638 thumbprint of its public key, as every key id (§2)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return okp_thumbprint(CURVE_ED25519, public.public_bytes_raw())


def root_document(
    *, name: str, version: int, threshold: int, keys: Iterable[Ed25519PublicKey]
) -> dict[str, Any]:
    """The `signed` object of a root, checked as a reader checks it."""
    entries = [{"kid": signer_kid(key), "key": b64url(key.public_bytes_raw())} for key in keys]
    document = {
        "type": ROOT_TYPE,
        "v": 1,
        "name": name,
        "version": version,
        "threshold": threshold,
        "keys": entries,
    }
    _root_body(document)
    return document


def list_document(
    *, name: str, version: int, issued_at: int, expires: int, members: Iterable[Member]
) -> dict[str, Any]:
    """The `signed` object of a member list (members sorted by node_id), checked as a reader
    checks it."""
    document = {
        "type": LIST_TYPE,
        "v": 1,
        "name": name,
        "version": version,
        "issued_at": issued_at,
        "expires": expires,
        "members": [m.to_json() for m in sorted(members, key=lambda m: m.node_id)],
    }
    _list_body(document)
    return document


def sign(document: Mapping[str, Any], key: Ed25519PrivateKey) -> DirectorySignature:
    """One signature over the label of the document's type and its canonical bytes."""
    kind = document.get("type")
    if kind not in (ROOT_TYPE, LIST_TYPE):
        raise ValueError(f"not a directory document (type {kind!r})")
    signature = key.sign(_label(str(kind)) + canonical_json(document))
    return DirectorySignature(signer_kid(key), b64url(signature))


def wire_form(document: Mapping[str, Any], signatures: Iterable[DirectorySignature]) -> bytes:
    """{"signed": document, "signatures": [...]} as canonical JSON, one signature per kid,
    sorted by kid (any order verifies; this one makes the bytes reproducible)."""
    by_kid = {s.kid: s for s in signatures}
    return canonical_json(
        {
            "signed": dict(document),
            "signatures": [by_kid[kid].to_json() for kid in sorted(by_kid)],
        }
    )


def root_signers(document: Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
    """The keys a root's `signed` object names (kid -> key), checked as a reader checks them.

    Not a verification: for the umbrella's tools, counting the signatures of a root still being
    signed. A node uses `verify_root` or `verify_rotation`."""
    return _root_body(document)[1]


def counted_signers(
    document: Mapping[str, Any],
    signatures: Iterable[DirectorySignature],
    keys: Mapping[str, Ed25519PublicKey],
) -> frozenset[str]:
    """The kids among `keys` whose signatures on `document` count (the rule of §14.5)."""
    kind = str(document.get("type"))
    counted, _ = _counted(_label(kind), canonical_json(document), signatures, keys)
    return counted
