"""Private keys on disk: encrypted PKCS8 files, 0600 in a 0700 directory, written atomically."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    load_pem_private_key,
)

from keys.document import from_unix, to_unix
from keys.errors import InsecureKeyFileError, KeySecretError, KeyStoreError
from keys.material import EncryptionKey, HybridKey, NodeKeys, SigningKey, Validity

SECRET_BYTES = 32
_INDEX = "keys.json"
_IDENTITY = "identity.pem"
_LOOSE_BITS = stat.S_IRWXG | stat.S_IRWXO


def generate_secret() -> bytes:
    """A random 32-byte secret for the PKCS8 encryption.

    PKCS8's PBKDF2 uses only 2048 rounds, which is weak for a passphrase but irrelevant for a
    full-entropy secret; the secret must be kept apart from the key directory.
    """
    return secrets.token_bytes(SECRET_BYTES)


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically replace `path` with `data`, readable by the owner only, durable on return."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_directory(path.parent)


def read_private_file(path: Path) -> bytes:
    """Read a secret file, refusing it when group or other users could read it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:
        raise KeyStoreError(f"key file {path} is missing") from exc
    if mode & _LOOSE_BITS:
        raise InsecureKeyFileError(
            f"{path} has mode {stat.S_IMODE(mode):04o}; it must not be accessible to group or "
            f"others (chmod 600 {path})"
        )
    return path.read_bytes()


def ensure_private_directory(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private_directory(directory)


def check_private_directory(directory: Path) -> None:
    if not directory.is_dir():
        raise KeyStoreError(f"key directory {directory} does not exist")
    mode = directory.stat().st_mode
    if mode & _LOOSE_BITS:
        raise InsecureKeyFileError(
            f"key directory {directory} has mode {stat.S_IMODE(mode):04o}; it must be 0700 "
            f"(chmod 700 {directory})"
        )


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pem(key: Ed25519PrivateKey | X25519PrivateKey | MLKEM768PrivateKey, secret: bytes) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(secret))


def _load(path: Path, secret: bytes) -> Any:
    data = read_private_file(path)
    try:
        return load_pem_private_key(data, password=secret)
    except (ValueError, TypeError) as exc:
        raise KeySecretError(
            f"cannot decrypt {path}: the key secret is wrong or the file is damaged"
        ) from exc


def _key_file(purpose: str, kid: str) -> str:
    return f"{purpose}-{kid}.pem"


# A hybrid key is two private keys; each gets its own PKCS8 file, encrypted like the others.
def _hybrid_files(kid: str) -> tuple[str, str]:
    return f"hyb-{kid}.mlkem.pem", f"hyb-{kid}.x25519.pem"


def save_keys(directory: Path, keys: NodeKeys, secret: bytes) -> None:
    """Write every key, then the index last: the index is the commit point of a rotation."""
    ensure_private_directory(directory)
    wanted = {_IDENTITY}
    identity_path = directory / _IDENTITY
    if identity_path.exists():
        # Also proves the secret is the one the existing files use: never mix two secrets.
        existing = _load(identity_path, secret)
        if existing.public_key() != keys.identity.public_key():
            raise KeyStoreError(f"{directory} holds another node's identity; refusing to mix keys")
    else:
        write_private_file(identity_path, _pem(keys.identity, secret))
    index: dict[str, Any] = {"v": 1, "keys": [], "revoked": sorted(keys.revoked)}
    for purpose, entries in (("sig", keys.signing), ("enc", keys.encryption)):
        for entry in entries:
            name = _key_file(purpose, entry.kid)
            wanted.add(name)
            if not (directory / name).exists():
                write_private_file(directory / name, _pem(entry.private, secret))
            index["keys"].append(_index_entry(purpose, entry.kid, entry.validity))
    for hybrid in keys.hybrid:
        names = _hybrid_files(hybrid.kid)
        wanted.update(names)
        if not (directory / names[0]).exists():
            write_private_file(directory / names[0], _pem(hybrid.mlkem, secret))
        if not (directory / names[1]).exists():
            write_private_file(directory / names[1], _pem(hybrid.x25519, secret))
        index["keys"].append(_index_entry("hyb", hybrid.kid, hybrid.validity))
    write_private_file(directory / _INDEX, orjson.dumps(index, option=orjson.OPT_INDENT_2))
    # Pruned keys: remove their files only after the new index no longer names them.
    for path in directory.glob("*.pem"):
        if path.name not in wanted:
            path.unlink()


def _index_entry(purpose: str, kid: str, validity: Validity) -> dict[str, Any]:
    return {
        "purpose": purpose,
        "kid": kid,
        "not_before": to_unix(validity.not_before),
        "not_after": to_unix(validity.not_after),
    }


def _load_hybrid(directory: Path, kid: str, validity: Validity, secret: bytes) -> HybridKey:
    mlkem_name, x25519_name = _hybrid_files(kid)
    mlkem = _load(directory / mlkem_name, secret)
    x25519 = _load(directory / x25519_name, secret)
    if not isinstance(mlkem, MLKEM768PrivateKey) or not isinstance(x25519, X25519PrivateKey):
        raise KeyStoreError(f"key {kid} does not match its purpose")
    return HybridKey.of(mlkem, x25519, validity)


def load_keys(directory: Path, secret: bytes) -> NodeKeys:
    check_private_directory(directory)
    try:
        index = orjson.loads(read_private_file(directory / _INDEX))
        entries = index["keys"]
        revoked = frozenset(index["revoked"])
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise KeyStoreError(f"key index {directory / _INDEX} is damaged") from exc
    identity = _load(directory / _IDENTITY, secret)
    if not isinstance(identity, Ed25519PrivateKey):
        raise KeyStoreError("identity key is not an Ed25519 key")
    signing: list[SigningKey] = []
    encryption: list[EncryptionKey] = []
    hybrid: list[HybridKey] = []
    try:
        for entry in entries:
            validity = Validity(from_unix(entry["not_before"]), from_unix(entry["not_after"]))
            if entry["purpose"] == "hyb":
                hybrid.append(_load_hybrid(directory, entry["kid"], validity, secret))
                continue
            path = directory / _key_file(entry["purpose"], entry["kid"])
            private = _load(path, secret)
            if entry["purpose"] == "sig" and isinstance(private, Ed25519PrivateKey):
                signing.append(SigningKey(entry["kid"], private, validity))
            elif entry["purpose"] == "enc" and isinstance(private, X25519PrivateKey):
                encryption.append(EncryptionKey(entry["kid"], private, validity))
            else:
                raise KeyStoreError(f"key {entry['kid']} does not match its purpose")
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise KeyStoreError(f"key index {directory / _INDEX} is damaged: {exc!r}") from exc
    # A key file swapped under a kid would silently change identity: re-derive each id.
    derived = [(k.kid, SigningKey.kid_of(k.private)) for k in signing] + [
        (k.kid, EncryptionKey.kid_of(k.private)) for k in encryption
    ]
    # HybridKey.of derived each hybrid kid from the files: compare with the index.
    derived += [
        (entry["kid"], key.kid) for entry, key in zip(_hybrid_entries(entries), hybrid, strict=True)
    ]
    for kid, actual in derived:
        if kid != actual:
            raise KeyStoreError(f"key file for {kid} holds a different key")
    return NodeKeys(identity, signing, encryption, revoked, hybrid)


def _hybrid_entries(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in entries if entry["purpose"] == "hyb"]
