"""Typed errors raised by the key layer."""

from __future__ import annotations


class KeysError(Exception):
    """Base class for every key-layer error."""


class InsecureKeyFileError(KeysError):
    """A key file or directory can be read by group or other users."""


class KeySecretError(KeysError):
    """A private key file could not be decrypted with the secret given."""


class KeyStoreError(KeysError):
    """The key directory is missing, incomplete or inconsistent."""


class KeyUnavailableError(KeysError):
    """No usable key: unknown key id, wrong purpose, revoked, or outside its validity window."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyDocumentError(KeysError):
    """A key document is malformed, not signed by the pinned identity, or inconsistent."""
