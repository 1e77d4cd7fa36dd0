"""Key material: identity, signing and encryption keys, key ids, rotation and the key document."""

from keys.canonical import NotCanonicalError, canonical_json
from keys.document import (
    KeyDocument,
    PublicKeySet,
    build_key_document,
    sign_key_document,
    verify_key_document,
)
from keys.errors import (
    InsecureKeyFileError,
    KeyDocumentError,
    KeySecretError,
    KeysError,
    KeyStoreError,
    KeyUnavailableError,
)
from keys.material import EncryptionKey, NodeKeys, SigningKey, Validity, identity_fingerprint
from keys.storage import generate_secret, load_keys, save_keys

__all__ = [
    "EncryptionKey",
    "InsecureKeyFileError",
    "KeyDocument",
    "KeyDocumentError",
    "KeySecretError",
    "KeyStoreError",
    "KeyUnavailableError",
    "KeysError",
    "NodeKeys",
    "NotCanonicalError",
    "PublicKeySet",
    "SigningKey",
    "Validity",
    "build_key_document",
    "canonical_json",
    "generate_secret",
    "identity_fingerprint",
    "load_keys",
    "save_keys",
    "sign_key_document",
    "verify_key_document",
]
