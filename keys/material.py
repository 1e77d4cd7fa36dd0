"""A node's key material in memory: identity, signing and encryption keys, rotation, revocation."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.hpke import MLKEM768X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from keys.errors import KeyUnavailableError
from keys.thumbprint import CURVE_ED25519, CURVE_X25519, hybrid_thumbprint, okp_thumbprint

DEFAULT_VALIDITY = timedelta(days=90)
DEFAULT_OVERLAP = timedelta(days=7)


K = TypeVar("K", "SigningKey", "EncryptionKey", "HybridKey")


class KeyPurpose(StrEnum):
    SIGNING = "sig"
    ENCRYPTION = "enc"
    HYBRID = "hyb"


def ed25519_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def x25519_raw(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def identity_fingerprint(identity: Ed25519PrivateKey) -> str:
    """What an operator pins for a peer: the thumbprint of its identity public key."""
    return okp_thumbprint(CURVE_ED25519, ed25519_raw(identity))


@dataclass(frozen=True)
class Validity:
    not_before: datetime
    not_after: datetime

    def covers(self, at: datetime) -> bool:
        return self.not_before <= at < self.not_after


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: Ed25519PrivateKey
    validity: Validity

    @staticmethod
    def kid_of(private: Ed25519PrivateKey) -> str:
        return okp_thumbprint(CURVE_ED25519, ed25519_raw(private))

    @classmethod
    def generate(cls, validity: Validity) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        return cls(cls.kid_of(private), private, validity)

    @property
    def public_raw(self) -> bytes:
        return ed25519_raw(self.private)


@dataclass(frozen=True)
class EncryptionKey:
    kid: str
    private: X25519PrivateKey
    validity: Validity

    @staticmethod
    def kid_of(private: X25519PrivateKey) -> str:
        return okp_thumbprint(CURVE_X25519, x25519_raw(private))

    @classmethod
    def generate(cls, validity: Validity) -> EncryptionKey:
        private = X25519PrivateKey.generate()
        return cls(cls.kid_of(private), private, validity)

    @property
    def public_raw(self) -> bytes:
        return x25519_raw(self.private)


@dataclass(frozen=True)
class HybridKey:
    """An encryption key of the hybrid post-quantum suite: ML-KEM-768 and X25519 together.

    Its own X25519 half, not the classic key's: one key, one KEM. Rotated with the other
    encryption keys and kept encrypted at rest like them (two PKCS8 files).
    """

    kid: str
    mlkem: MLKEM768PrivateKey
    x25519: X25519PrivateKey
    validity: Validity

    @staticmethod
    def raw_of(mlkem: MLKEM768PrivateKey, x25519: X25519PrivateKey) -> bytes:
        # The KEM's public key serialisation: the 1184-byte ML-KEM key, then the X25519 key.
        return mlkem.public_key().public_bytes_raw() + x25519_raw(x25519)

    @classmethod
    def of(
        cls, mlkem: MLKEM768PrivateKey, x25519: X25519PrivateKey, validity: Validity
    ) -> HybridKey:
        return cls(hybrid_thumbprint(cls.raw_of(mlkem, x25519)), mlkem, x25519, validity)

    @classmethod
    def generate(cls, validity: Validity) -> HybridKey:
        return cls.of(MLKEM768PrivateKey.generate(), X25519PrivateKey.generate(), validity)

    @property
    def private(self) -> MLKEM768X25519PrivateKey:
        return MLKEM768X25519PrivateKey(self.mlkem, self.x25519)

    @property
    def public_raw(self) -> bytes:
        return self.raw_of(self.mlkem, self.x25519)


def _usable(keys: list[K], kid: str, at: datetime, revoked: frozenset[str]) -> K:
    if kid in revoked:
        raise KeyUnavailableError(f"key {kid} is revoked")
    for key in keys:
        if key.kid == kid:
            if not key.validity.covers(at):
                raise KeyUnavailableError(f"key {kid} is not valid at {at.isoformat()}")
            return key
    raise KeyUnavailableError(f"unknown key {kid}")


def _newest_valid(keys: list[K], at: datetime, revoked: frozenset[str], purpose: KeyPurpose) -> K:
    valid = [k for k in keys if k.kid not in revoked and k.validity.covers(at)]
    if not valid:
        raise KeyUnavailableError(f"no {purpose.value} key is valid at {at.isoformat()}")
    return max(valid, key=lambda k: k.validity.not_before)


@dataclass(frozen=True)
class NodeKeys:
    """Everything secret a node holds. Immutable: rotation and revocation return a new value."""

    identity: Ed25519PrivateKey
    signing: list[SigningKey] = field(default_factory=list)
    encryption: list[EncryptionKey] = field(default_factory=list)
    revoked: frozenset[str] = frozenset()
    # Empty for a node created before the hybrid suite: it gains one at its next rotation.
    hybrid: list[HybridKey] = field(default_factory=list)

    @classmethod
    def generate(cls, now: datetime, validity: timedelta = DEFAULT_VALIDITY) -> NodeKeys:
        window = Validity(now, now + validity)
        return cls(
            identity=Ed25519PrivateKey.generate(),
            signing=[SigningKey.generate(window)],
            encryption=[EncryptionKey.generate(window)],
            hybrid=[HybridKey.generate(window)],
        )

    @property
    def fingerprint(self) -> str:
        return identity_fingerprint(self.identity)

    def current_signing(self, at: datetime) -> SigningKey:
        """The key to sign with now: the newest unrevoked key valid at `at`."""
        return _newest_valid(self.signing, at, self.revoked, KeyPurpose.SIGNING)

    def current_encryption(self, at: datetime) -> EncryptionKey:
        """The key peers should encrypt to now."""
        return _newest_valid(self.encryption, at, self.revoked, KeyPurpose.ENCRYPTION)

    def signing_key(self, kid: str, at: datetime) -> SigningKey:
        """Our signing key `kid`, if it is unrevoked and valid at `at` (to check a signature of
        ours that a peer gives back)."""
        return _usable(self.signing, kid, at, self.revoked)

    def decryption_key(self, kid: str, at: datetime) -> EncryptionKey:
        """Our encryption key `kid`, if it is unrevoked and valid at `at`."""
        return _usable(self.encryption, kid, at, self.revoked)

    def hybrid_decryption_key(self, kid: str, at: datetime) -> HybridKey:
        """Our hybrid key `kid`, if it is unrevoked and valid at `at`."""
        return _usable(self.hybrid, kid, at, self.revoked)

    def offers_hybrid(self, at: datetime) -> bool:
        """Whether we hold a hybrid key valid at `at` (and so advertise the hybrid suite)."""
        return any(k.kid not in self.revoked and k.validity.covers(at) for k in self.hybrid)

    def requires_hybrid(self, classic_kid: str) -> bool:
        """Whether a sender that knows our classic key `classic_kid` also knew a hybrid key of
        ours: an unrevoked one whose window holds the classic key's (rotation makes both
        together), so every document that listed the classic key listed it too
        (protocol.md §6.3 rule 2(c)). A revoked hybrid key does not count: documents issued
        after its revocation list the classic key without it."""
        for key in self.encryption:
            if key.kid == classic_kid:
                window = key.validity
                return any(
                    h.kid not in self.revoked
                    and h.validity.not_before <= window.not_before
                    and h.validity.not_after >= window.not_after
                    for h in self.hybrid
                )
        return False

    def rotate(
        self,
        now: datetime,
        validity: timedelta = DEFAULT_VALIDITY,
        overlap: timedelta = DEFAULT_OVERLAP,
    ) -> NodeKeys:
        """New signing and encryption keys from `now`; older keys stay valid for `overlap` more.

        The overlap lets records sealed to the old keys (in flight, or queued at peers that have
        not yet refreshed our key document) still open.
        """
        window = Validity(now, now + validity)
        sunset = now + overlap

        def shorten(key: K) -> K:
            if key.validity.not_after <= sunset:
                return key
            return replace(key, validity=Validity(key.validity.not_before, sunset))

        return replace(
            self,
            signing=[*map(shorten, self.signing), SigningKey.generate(window)],
            encryption=[*map(shorten, self.encryption), EncryptionKey.generate(window)],
            hybrid=[*map(shorten, self.hybrid), HybridKey.generate(window)],
        )

    def revoke(self, kid: str) -> NodeKeys:
        known = (
            {k.kid for k in self.signing}
            | {k.kid for k in self.encryption}
            | {k.kid for k in self.hybrid}
        )
        if kid not in known:
            raise KeyUnavailableError(f"unknown key {kid}")
        return replace(self, revoked=self.revoked | {kid})

    def prune(self, now: datetime, keep_expired_for: timedelta = DEFAULT_OVERLAP) -> NodeKeys:
        """Forget keys expired longer than `keep_expired_for` ago (revoked ids are kept)."""
        horizon = now - keep_expired_for
        return replace(
            self,
            signing=[k for k in self.signing if k.validity.not_after > horizon],
            encryption=[k for k in self.encryption if k.validity.not_after > horizon],
            hybrid=[k for k in self.hybrid if k.validity.not_after > horizon],
        )
