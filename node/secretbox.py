"""Secrets the database keeps, sealed under the key secret, and names kept only as keyed hashes.

The key secret (`key-secret`, kept apart from the data directory's keys) already decrypts the
node's private keys (keys/storage.py); a stolen `node.sqlite3` or backup without it must not
give away the people's second factors either. Nothing here is new cryptography: HKDF-SHA256
derives one key per purpose from the secret, AES-256-GCM (the `cryptography` package's AEAD)
seals, and HMAC-SHA256 hashes. The associated data binds a sealed value to its row, so a value
copied onto another person's row does not open.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from node.errors import N_, NodeError

SEALED = "sealed1:"  # a sealed value's prefix; a value without it was stored before sealing
_NONCE = 12


class SealedSecretError(NodeError):
    """A sealed value that does not open under this node's key secret."""

    status = 500


def _derive(key_secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(key_secret)


class SecretBox:
    def __init__(self, key_secret: bytes) -> None:
        self._aead = AESGCM(_derive(key_secret, b"hotline-node sealed secrets v1"))
        self._mac = _derive(key_secret, b"hotline-node keyed hashes v1")

    def seal(self, text: str, bound_to: str) -> str:
        nonce = secrets.token_bytes(_NONCE)
        sealed = self._aead.encrypt(nonce, text.encode(), bound_to.encode())
        return SEALED + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, value: str, bound_to: str) -> str:
        if not is_sealed(value):
            return value  # stored before sealing; open_node seals those at start
        try:
            raw = base64.urlsafe_b64decode(value[len(SEALED) :])
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], bound_to.encode()).decode()
        except (InvalidTag, ValueError):
            raise SealedSecretError(
                N_("a sealed secret does not open with this node's key secret")
            ) from None

    def keyed_hash(self, text: str) -> str:
        """Who typed the same thing twice can be told apart; what they typed cannot be read
        back (a typed name may be a password typed in the wrong field)."""
        return hmac.new(self._mac, text.encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:24]


def is_sealed(value: str) -> bool:
    return value.startswith(SEALED)
