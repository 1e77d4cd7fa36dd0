"""The umbrella body's directory folder: signer keys, the root, the list being signed, rotation.

The folder (0700) holds, each file 0600 and written atomically:

    root.json           the root in force (protocol.md §14.2), as published
    root-<V>.json       every root that has been in force, by version: a node that holds an older
                        root verifies each newer one in turn
    signer-<I>.key      one signer's Ed25519 private key, PKCS#8 PEM, unencrypted (kept offline:
                        after `init`, each signer takes their file away)
    pending.json        the list being prepared: version, members, and once a signer has signed,
                        the validity window the signatures cover and the signatures
    published.json      the last list published, as published
    root-pending.json   a rotation under way: the new root, with the signatures it has so far

Nothing here needs a node: these are local commands (`hotline-node directory …`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from pydantic import ValidationError

from keys import KeysError
from keys.document import CLASSIC_SUITE, HYBRID_SUITE, to_unix
from keys.storage import (
    check_private_directory,
    ensure_private_directory,
    read_private_file,
    write_private_file,
)
from keys.thumbprint import b64url
from node.countries import country_problem
from node.errors import InvalidInput
from node.federation.registry import check_node_id, parse_policy
from node.urls import endpoint_url
from protocol.directory import (
    DEFAULT_VALIDITY,
    MAX_ROOT_KEYS,
    DirectoryError,
    DirectorySignature,
    Member,
    Refusal,
    Root,
    counted_signers,
    list_document,
    root_document,
    root_signers,
    sign,
    signer_kid,
    verify_list,
    verify_root,
    verify_rotation,
    wire_form,
)

ROOT_FILE = "root.json"
PENDING_FILE = "pending.json"
PUBLISHED_FILE = "published.json"
ROTATION_FILE = "root-pending.json"
_LOCK_FILE = ".lock"
_SIGNER = re.compile(r"^signer-([0-9]+)\.key$")
_FINGERPRINT = re.compile(r"^[A-Za-z0-9_-]{43}$")
KNOWN_SUITES = (CLASSIC_SUITE, HYBRID_SUITE)
MAX_VALID_DAYS = 90
DAY = timedelta(days=1)


class UmbrellaError(InvalidInput):
    """A directory command that cannot be done, in one line (the CLI prints it, exit 1)."""


def root_file(version: int) -> str:
    return f"root-{version}.json"


def digest(wire: bytes) -> str:
    """What operators compare out of band when a root file is handed over: SHA-256, b64url."""
    return b64url(hashlib.sha256(wire).digest())


@dataclass
class Pending:
    """The list being prepared; a window and signatures once someone has signed it."""

    version: int
    members: list[Member]
    issued_at: int | None = None
    expires: int | None = None
    signatures: list[DirectorySignature] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "v": 1,
            "version": self.version,
            "members": [m.to_json() for m in self.members],
            "issued_at": self.issued_at,
            "expires": self.expires,
            "signatures": [s.to_json() for s in self.signatures],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pending:
        return cls(
            version=int(data["version"]),
            members=[Member.model_validate(m) for m in data["members"]],
            issued_at=data["issued_at"],
            expires=data["expires"],
            signatures=[DirectorySignature(s["kid"], s["sig"]) for s in data["signatures"]],
        )

    def changed(self, published_version: int, members: list[Member]) -> Pending:
        """The list with other members: the next version, unsigned (signatures cover members)."""
        return Pending(version=published_version + 1, members=members)

    @property
    def valid_days(self) -> float | None:
        if self.issued_at is None or self.expires is None:
            return None
        return (self.expires - self.issued_at) / DAY.total_seconds()

    def document(self, name: str) -> dict[str, Any]:
        if self.issued_at is None or self.expires is None:
            raise UmbrellaError(f"list version {self.version} has no signature yet")
        return list_document(
            name=name,
            version=self.version,
            issued_at=self.issued_at,
            expires=self.expires,
            members=self.members,
        )


def generate_signer(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    write_private_file(path, pem)
    return key


def load_signer(path: Path) -> Ed25519PrivateKey:
    """A signer's key file: PKCS#8 PEM, unencrypted, readable by its owner only."""
    try:
        data = read_private_file(path)
    except KeysError as exc:
        raise UmbrellaError(str(exc)) from exc
    except OSError as exc:
        raise UmbrellaError(f"{path}: {exc.strerror or exc}") from exc
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UmbrellaError(
            f"{path} is not an unencrypted PKCS#8 PEM private key (a signer-N.key file)"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise UmbrellaError(f"{path} is not an Ed25519 key")
    return key


def _check_counts(signers: int, threshold: int) -> None:
    if not 1 <= signers <= MAX_ROOT_KEYS:
        raise UmbrellaError(f"--signers must be between 1 and {MAX_ROOT_KEYS} (got {signers})")
    if not 1 <= threshold <= signers:
        raise UmbrellaError(
            f"--threshold must be between 1 and the number of signers, {signers} (got {threshold})"
        )


def valid_days(days: int | None) -> timedelta:
    if days is None:
        return DEFAULT_VALIDITY
    if not 1 <= days <= MAX_VALID_DAYS:
        raise UmbrellaError(f"--valid-days must be between 1 and {MAX_VALID_DAYS} (got {days})")
    return days * DAY


def member_of(
    *,
    node_id: str,
    country: str,
    endpoint: str,
    fingerprint: str,
    categories: list[str] | None,
    suites: list[str] | None,
) -> Member:
    """A member entry, checked as `peers add` checks a peer (node id, country, endpoint,
    fingerprint, categories) and limited to the suites this implementation knows."""
    check_node_id(node_id)
    problem = country_problem(country)
    if problem:
        raise UmbrellaError(f"country {problem}")
    fingerprint = fingerprint.strip()  # pasted from a letter or a chat window
    if not _FINGERPRINT.fullmatch(fingerprint):
        raise UmbrellaError(
            "fingerprint must be the member's 43-character identity fingerprint (its operator"
            f" reads it with hotline-node keys show); got {len(fingerprint)} character(s)"
        )
    if categories is not None:
        categories = sorted(parse_policy(categories, None).categories)
    if suites is not None:
        unknown = sorted(set(suites) - set(KNOWN_SUITES))
        if unknown or not suites:
            raise UmbrellaError(
                f"suites must be among {', '.join(KNOWN_SUITES)} (got {', '.join(unknown)})"
            )
        suites = [s for s in KNOWN_SUITES if s in suites]
    try:
        return Member(
            node_id=node_id,
            country=country.upper(),
            endpoint=endpoint_url(endpoint),
            fingerprint=fingerprint,
            categories=categories,
            suites=suites,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise UmbrellaError(f"{where}: {error['msg']}") from exc


class UmbrellaDir:
    """One directory folder. Every change holds the folder's lock: two signers at one machine
    sign one after the other, never over each other."""

    def __init__(self, path: Path) -> None:
        self.path = path

    # --- files ----------------------------------------------------------------------------------

    def _read(self, name: str) -> bytes:
        try:
            return read_private_file(self.path / name)
        except KeysError as exc:
            raise UmbrellaError(str(exc)) from exc

    def _write(self, name: str, data: bytes) -> None:
        write_private_file(self.path / name, data)

    def _exists(self, name: str) -> bool:
        return (self.path / name).exists()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.check()
        fd = os.open(self.path / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def check(self) -> None:
        if not (self.path / ROOT_FILE).exists():
            raise UmbrellaError(
                f"{self.path} is not a directory folder (no {ROOT_FILE}; create one with"
                " hotline-node directory init)"
            )
        try:
            check_private_directory(self.path)
        except KeysError as exc:
            raise UmbrellaError(str(exc)) from exc

    def root(self) -> Root:
        try:
            return verify_root(self._read(ROOT_FILE))
        except DirectoryError as exc:
            raise UmbrellaError(f"{self.path / ROOT_FILE}: {exc}") from exc

    def pending(self) -> Pending:
        try:
            return Pending.from_json(orjson.loads(self._read(PENDING_FILE)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise UmbrellaError(f"{self.path / PENDING_FILE} is damaged: {exc}") from exc

    def save_pending(self, pending: Pending) -> None:
        self._write(PENDING_FILE, orjson.dumps(pending.to_json(), option=orjson.OPT_INDENT_2))

    def published(self) -> dict[str, Any] | None:
        """The `signed` object of the last list published, or None."""
        if not self._exists(PUBLISHED_FILE):
            return None
        try:
            signed: dict[str, Any] = orjson.loads(self._read(PUBLISHED_FILE))["signed"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise UmbrellaError(f"{self.path / PUBLISHED_FILE} is damaged: {exc}") from exc
        return signed

    def published_version(self) -> int:
        published = self.published()
        return 0 if published is None else int(published["version"])

    def signer_files(self) -> dict[str, Path]:
        """kid -> the signer file in this folder that holds it (those still here)."""
        found: dict[str, Path] = {}
        for path in sorted(self.path.glob("signer-*.key")):
            with contextlib.suppress(UmbrellaError):
                found[signer_kid(load_signer(path))] = path
        return found

    def _next_signer_number(self) -> int:
        numbers = [
            int(match.group(1))
            for path in self.path.iterdir()
            if (match := _SIGNER.fullmatch(path.name))
        ]
        return max(numbers, default=0) + 1

    def _new_signers(self, count: int) -> list[tuple[Path, Ed25519PrivateKey]]:
        first = self._next_signer_number()
        made = []
        for number in range(first, first + count):
            path = self.path / f"signer-{number}.key"
            made.append((path, generate_signer(path)))
        return made

    # --- commands -------------------------------------------------------------------------------

    @classmethod
    def create(
        cls, path: Path, *, name: str, signers: int, threshold: int
    ) -> tuple[UmbrellaDir, Root, list[Path]]:
        """A new folder: N signer keys, root version 1 signed by all of them, an empty list."""
        _check_counts(signers, threshold)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UmbrellaError(f"{path} already exists and is not an empty folder")
        try:
            ensure_private_directory(path)
        except KeysError as exc:
            raise UmbrellaError(str(exc)) from exc
        folder = cls(path)
        made = folder._new_signers(signers)
        try:
            document = root_document(
                name=name, version=1, threshold=threshold, keys=[k.public_key() for _, k in made]
            )
        except DirectoryError as exc:
            raise UmbrellaError(f"cannot make the root: {exc}") from exc
        wire = wire_form(document, [sign(document, key) for _, key in made])
        folder.save_pending(Pending(version=1, members=[]))
        folder._write(root_file(1), wire)
        folder._write(ROOT_FILE, wire)  # last: its presence makes the folder one
        return folder, verify_root(wire), [p for p, _ in made]

    def set_members(self, members: list[Member]) -> Pending:
        """Replace the pending members: the next version, unsigned."""
        pending = self.pending().changed(self.published_version(), members)
        self.root()  # the folder is whole before it changes
        list_document(
            name=self.root().name, version=pending.version, issued_at=0, expires=1, members=members
        )
        self.save_pending(pending)
        return pending

    def add(self, member: Member, *, replace: bool) -> tuple[Pending, Member | None]:
        pending = self.pending()
        previous = next((m for m in pending.members if m.node_id == member.node_id), None)
        if previous is not None and not replace:
            raise UmbrellaError(
                f"{member.node_id} is already a member; --replace changes its entry (a new"
                " endpoint, or an identity key replaced)"
            )
        if previous is None and replace:
            raise UmbrellaError(f"{member.node_id} is not a member: add it without --replace")
        twin = next(
            (
                m
                for m in pending.members
                if m.fingerprint == member.fingerprint and m.node_id != member.node_id
            ),
            None,
        )
        if twin is not None:
            raise UmbrellaError(
                f"fingerprint {member.fingerprint} is already {twin.node_id}'s: one identity key"
                " per member"
            )
        others = [m for m in pending.members if m.node_id != member.node_id]
        return self.set_members(sorted([*others, member], key=lambda m: m.node_id)), previous

    def remove(self, node_id: str) -> Pending:
        pending = self.pending()
        if all(m.node_id != node_id for m in pending.members):
            raise UmbrellaError(f"{node_id} is not a member of the pending list")
        return self.set_members([m for m in pending.members if m.node_id != node_id])

    def renew(self) -> Pending:
        """The same members as the next version, unsigned: fresh validity, signed again."""
        return self.set_members(self.pending().members)

    def sign_list(
        self, key: Ed25519PrivateKey, *, days: int | None, now: datetime
    ) -> tuple[Pending, Root, frozenset[str]]:
        root = self.root()
        pending = self.pending()
        kid = signer_kid(key)
        if kid not in root.keys:
            raise UmbrellaError(
                f"key {kid} is not one of the {len(root.keys)} signer keys of root"
                f" version {root.version}"
            )
        if pending.version <= self.published_version():
            raise UmbrellaError(
                f"list version {pending.version} is already published; change its members"
                " (directory add/remove) or start the next version with the same members"
                f" (directory renew {self.path})"
            )
        validity = valid_days(days)
        if pending.issued_at is None:
            pending.issued_at = to_unix(now)
            pending.expires = to_unix(now + validity)
        elif days is not None and pending.valid_days != days:
            raise UmbrellaError(
                f"list version {pending.version} is already signed as valid for"
                f" {pending.valid_days:g} days: sign without --valid-days, or start over with"
                f" directory renew {self.path} and sign again with --valid-days {days}"
            )
        document = pending.document(root.name)
        signature = sign(document, key)
        pending.signatures = [s for s in pending.signatures if s.kid != kid] + [signature]
        self.save_pending(pending)
        return pending, root, counted_signers(document, pending.signatures, root.keys)

    def publish_list(
        self, output: Path, *, days: int | None, now: datetime
    ) -> tuple[Pending, Root, bytes]:
        root = self.root()
        pending = self.pending()
        if days is not None:
            valid_days(days)
        if pending.issued_at is None:
            raise UmbrellaError(
                f"publish refused: list version {pending.version} has 0 of the"
                f" {root.threshold} signatures needed; {root.threshold} more needed"
                f" (directory sign {self.path} --key SIGNER_KEY)"
            )
        if days is not None and pending.valid_days != days:
            raise UmbrellaError(
                f"publish refused: the signatures cover {pending.valid_days:g} days of validity,"
                f" not {days}: publish without --valid-days, or run directory renew"
                f" {self.path} and sign again with --valid-days {days}"
            )
        document = pending.document(root.name)
        counted = counted_signers(document, pending.signatures, root.keys)
        if len(counted) < root.threshold:
            missing = root.threshold - len(counted)
            raise UmbrellaError(
                f"publish refused: list version {pending.version} has {len(counted)} of the"
                f" {root.threshold} signatures needed; {missing} more needed (directory sign"
                f" {self.path} --key SIGNER_KEY)"
            )
        wire = wire_form(document, pending.signatures)
        published = self.published_version()
        try:
            verify_list(
                wire, root, now=now, held_version=published if published < pending.version else None
            )
        except DirectoryError as exc:
            hint = (
                f"; start the next version with directory renew {self.path} and sign it again"
                if exc.refusal in (Refusal.EXPIRED, Refusal.FUTURE)
                else ""
            )
            raise UmbrellaError(f"publish refused: {exc}{hint}") from exc
        write_private_file(output, wire)
        self._write(PUBLISHED_FILE, wire)
        return pending, root, wire

    # --- rotation -------------------------------------------------------------------------------

    def rotation(self) -> tuple[dict[str, Any], list[DirectorySignature]] | None:
        if not self._exists(ROTATION_FILE):
            return None
        try:
            outer = orjson.loads(self._read(ROTATION_FILE))
            return outer["signed"], [
                DirectorySignature(s["kid"], s["sig"]) for s in outer["signatures"]
            ]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise UmbrellaError(f"{self.path / ROTATION_FILE} is damaged: {exc}") from exc

    def rotate(self, *, signers: int, threshold: int) -> tuple[dict[str, Any], list[Path]]:
        """A new root (version +1) of new signer keys, signed by all of them; the old signers
        sign it next (sign-root), and publish-root puts it in force."""
        _check_counts(signers, threshold)
        root = self.root()
        if self.rotation() is not None:
            raise UmbrellaError(
                f"a rotation is already under way ({self.path / ROTATION_FILE}): finish it with"
                " directory sign-root and publish-root, or delete that file to abandon it"
            )
        made = self._new_signers(signers)
        document = root_document(
            name=root.name,
            version=root.version + 1,
            threshold=threshold,
            keys=[k.public_key() for _, k in made],
        )
        self._write(ROTATION_FILE, wire_form(document, [sign(document, k) for _, k in made]))
        return document, [p for p, _ in made]

    def sign_rotation(self, key: Ed25519PrivateKey) -> tuple[dict[str, Any], Root]:
        root = self.root()
        under_way = self.rotation()
        if under_way is None:
            raise UmbrellaError(f"no rotation under way (directory rotate {self.path} starts one)")
        document, signatures = under_way
        kid = signer_kid(key)
        new_kids = {entry["kid"] for entry in document["keys"]}
        if kid not in root.keys and kid not in new_kids:
            raise UmbrellaError(
                f"key {kid} is neither a signer of root version {root.version} nor of the new"
                f" root version {document['version']}"
            )
        signatures = [s for s in signatures if s.kid != kid] + [sign(document, key)]
        self._write(ROTATION_FILE, wire_form(document, signatures))
        return document, root

    def rotation_counts(self) -> dict[str, Any] | None:
        """How far the rotation is: signatures of the old root's keys and of the new ones."""
        under_way = self.rotation()
        if under_way is None:
            return None
        document, signatures = under_way
        root = self.root()
        old = counted_signers(document, signatures, root.keys)
        new = counted_signers(document, signatures, root_signers(document))
        return {
            "version": document["version"],
            "threshold": document["threshold"],
            "keys": [entry["kid"] for entry in document["keys"]],
            "old_signatures": len(old),
            "old_needed": root.threshold,
            "new_signatures": len(new),
            "new_needed": document["threshold"],
        }

    def publish_rotation(self, output: Path) -> tuple[Root, Root, list[Path]]:
        """Put the new root in force once a threshold of the old keys and of the new keys sign."""
        counts = self.rotation_counts()
        if counts is None:
            raise UmbrellaError(f"no rotation under way (directory rotate {self.path} starts one)")
        old_missing = counts["old_needed"] - counts["old_signatures"]
        new_missing = counts["new_needed"] - counts["new_signatures"]
        if old_missing > 0 or new_missing > 0:
            parts = []
            if old_missing > 0:
                parts.append(
                    f"{counts['old_signatures']} of the {counts['old_needed']} old signer"
                    f" signatures needed ({old_missing} more: directory sign-root {self.path} --key"
                    " OLD_SIGNER_KEY)"
                )
            if new_missing > 0:
                parts.append(
                    f"{counts['new_signatures']} of the {counts['new_needed']} new signer"
                    f" signatures needed ({new_missing} more: directory sign-root {self.path} --key"
                    " NEW_SIGNER_KEY)"
                )
            raise UmbrellaError(
                f"publish-root refused: root version {counts['version']} has " + " and ".join(parts)
            )
        old = self.root()
        wire = self._read(ROTATION_FILE)
        try:
            new = verify_rotation(old, wire)
        except DirectoryError as exc:
            raise UmbrellaError(f"publish-root refused: {exc}") from exc
        files = self.signer_files()
        retired = sorted(files[kid] for kid in old.keys if kid in files and kid not in new.keys)
        write_private_file(output, wire)
        self._write(root_file(new.version), wire)
        self._write(ROOT_FILE, wire)
        (self.path / ROTATION_FILE).unlink()
        # Signatures by the old keys do not count under the new root: the list is signed again.
        self.set_members(self.pending().members)
        return old, new, retired
