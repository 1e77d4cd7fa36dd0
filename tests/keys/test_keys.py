"""Keys: RFC 7638 key ids, private key files at rest, rotation and revocation, the key document."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keys import (
    EncryptionKey,
    InsecureKeyFileError,
    KeyDocument,
    KeyDocumentError,
    KeySecretError,
    KeysError,
    KeyStoreError,
    KeyUnavailableError,
    NodeKeys,
    PublicKeySet,
    SigningKey,
    Validity,
    build_key_document,
    generate_secret,
    load_keys,
    save_keys,
    sign_key_document,
    verify_key_document,
)
from keys.document import MAX_KEY_DOCUMENT_BYTES
from keys.thumbprint import CURVE_ED25519, CURVE_X25519, b64url, b64url_decode, okp_thumbprint
from tests.factories import NOW

# RFC 8037 Appendix A.1 (the Ed25519 key pair) and A.3 (its RFC 7638 thumbprint).
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture
def keys() -> NodeKeys:
    return NodeKeys.generate(NOW)


@pytest.fixture
def secret() -> bytes:
    return generate_secret()


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def same_keys(left: NodeKeys, right: NodeKeys) -> bool:
    """Equal identities, key ids, windows, public halves and revocations."""

    def shape(keys: NodeKeys) -> Any:
        return (
            keys.fingerprint,
            [(k.kid, k.validity, k.public_raw) for k in keys.signing],
            [(k.kid, k.validity, k.public_raw) for k in keys.encryption],
            [(k.kid, k.validity, k.public_raw) for k in keys.hybrid],
            keys.revoked,
        )

    return bool(shape(left) == shape(right))


# --- RFC 7638 thumbprints --------------------------------------------------------------------


def test_thumbprint_matches_rfc8037_appendix_a3() -> None:
    assert okp_thumbprint(CURVE_ED25519, b64url_decode(RFC8037_X)) == RFC8037_THUMBPRINT


def test_signing_key_id_of_the_rfc8037_private_key_is_its_thumbprint() -> None:
    private = Ed25519PrivateKey.from_private_bytes(b64url_decode(RFC8037_D))
    assert b64url(private.public_key().public_bytes_raw()) == RFC8037_X
    assert SigningKey.kid_of(private) == RFC8037_THUMBPRINT


def test_x25519_thumbprint_hashes_the_required_members_in_order() -> None:
    private = X25519PrivateKey.generate()
    x = b64url(private.public_key().public_bytes_raw())
    jwk = f'{{"crv":"X25519","kty":"OKP","x":"{x}"}}'.encode()
    expected = b64url(hashlib.sha256(jwk).digest())
    assert EncryptionKey.kid_of(private) == expected
    assert okp_thumbprint(CURVE_X25519, b64url_decode(x)) == expected


@pytest.mark.parametrize(
    "text",
    [
        RFC8037_X + "=",
        RFC8037_X[:-1] + "p",
        "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        "é",
        "A",  # a length no byte string encodes to
        "AAAA\n",
        "AA AA",
        "QR",  # "A" is "QQ": "QR" sets bits no byte uses
        "QUJ",  # "AB" is "QUI"
    ],
)
def test_b64url_decode_refuses_padded_non_canonical_and_foreign_text(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the documented contract is ValueError
        b64url_decode(text)


def test_b64url_matches_the_standard_library_and_round_trips() -> None:
    for size in range(70):
        data = os.urandom(size)
        text = b64url(data)
        assert text == base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
        assert b64url_decode(text) == data
    assert b64url_decode("QQ") == b"A"
    assert b64url_decode("QUI") == b"AB"


# --- key files -------------------------------------------------------------------------------


def test_save_then_load_gives_the_same_keys(key_dir: Path, keys: NodeKeys, secret: bytes) -> None:
    keys = keys.rotate(NOW + timedelta(days=1))
    keys = keys.revoke(keys.signing[0].kid)
    save_keys(key_dir, keys, secret)
    loaded = load_keys(key_dir, secret)
    assert same_keys(loaded, keys)
    message = b"signed by the loaded key"
    signer = loaded.current_signing(NOW + timedelta(days=1))
    keys.current_signing(NOW + timedelta(days=1)).private.public_key().verify(
        signer.private.sign(message), message
    )


def test_saved_files_are_0600_in_a_0700_directory(
    key_dir: Path, keys: NodeKeys, secret: bytes
) -> None:
    save_keys(key_dir, keys, secret)
    assert mode_of(key_dir) == 0o700
    names = sorted(path.name for path in key_dir.iterdir())
    assert names == sorted(
        [
            "identity.pem",
            "keys.json",
            f"sig-{keys.signing[0].kid}.pem",
            f"enc-{keys.encryption[0].kid}.pem",
            f"hyb-{keys.hybrid[0].kid}.mlkem.pem",
            f"hyb-{keys.hybrid[0].kid}.x25519.pem",
        ]
    )
    for path in key_dir.iterdir():
        assert mode_of(path) == 0o600, path


def test_private_key_files_are_encrypted_pkcs8(
    key_dir: Path, keys: NodeKeys, secret: bytes
) -> None:
    save_keys(key_dir, keys, secret)
    for path in key_dir.glob("*.pem"):
        assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"), path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
@pytest.mark.parametrize("which", ["identity", "sig", "enc", "index"])
def test_load_refuses_a_key_file_readable_by_others(
    key_dir: Path, keys: NodeKeys, secret: bytes, which: str, mode: int
) -> None:
    save_keys(key_dir, keys, secret)
    target = {
        "identity": key_dir / "identity.pem",
        "sig": key_dir / f"sig-{keys.signing[0].kid}.pem",
        "enc": key_dir / f"enc-{keys.encryption[0].kid}.pem",
        "index": key_dir / "keys.json",
    }[which]
    target.chmod(mode)
    with pytest.raises(InsecureKeyFileError) as caught:
        load_keys(key_dir, secret)
    assert str(target) in str(caught.value)


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701])
def test_load_refuses_a_directory_open_to_others(
    key_dir: Path, keys: NodeKeys, secret: bytes, mode: int
) -> None:
    save_keys(key_dir, keys, secret)
    key_dir.chmod(mode)
    with pytest.raises(InsecureKeyFileError) as caught:
        load_keys(key_dir, secret)
    assert str(key_dir) in str(caught.value)


def test_save_refuses_an_existing_directory_open_to_others(
    key_dir: Path, keys: NodeKeys, secret: bytes
) -> None:
    key_dir.mkdir(mode=0o755)
    key_dir.chmod(0o755)
    with pytest.raises(InsecureKeyFileError) as caught:
        save_keys(key_dir, keys, secret)
    assert str(key_dir) in str(caught.value)
    assert list(key_dir.iterdir()) == []


def test_wrong_secret_is_key_secret_error(key_dir: Path, keys: NodeKeys, secret: bytes) -> None:
    save_keys(key_dir, keys, secret)
    with pytest.raises(KeySecretError) as caught:
        load_keys(key_dir, generate_secret())
    assert str(key_dir) in str(caught.value)


def test_damaged_key_file_is_key_secret_error(key_dir: Path, keys: NodeKeys, secret: bytes) -> None:
    save_keys(key_dir, keys, secret)
    path = key_dir / f"enc-{keys.encryption[0].kid}.pem"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2][:10] + (b"A" if lines[2][10:11] != b"A" else b"B") + lines[2][11:]
    path.write_bytes(b"".join(lines))
    with pytest.raises(KeySecretError):
        load_keys(key_dir, secret)


def test_missing_directory_or_key_file_is_key_store_error(
    key_dir: Path, keys: NodeKeys, secret: bytes
) -> None:
    with pytest.raises(KeyStoreError):
        load_keys(key_dir, secret)
    save_keys(key_dir, keys, secret)
    (key_dir / f"sig-{keys.signing[0].kid}.pem").unlink()
    with pytest.raises(KeyStoreError):
        load_keys(key_dir, secret)


def test_key_file_swapped_under_another_kid_is_key_store_error(
    key_dir: Path, keys: NodeKeys, secret: bytes
) -> None:
    rotated = keys.rotate(NOW + timedelta(days=1))
    save_keys(key_dir, rotated, secret)
    old, new = (key_dir / f"sig-{k.kid}.pem" for k in rotated.signing)
    old.write_bytes(new.read_bytes())
    with pytest.raises(KeyStoreError, match="different key"):
        load_keys(key_dir, secret)


@pytest.mark.parametrize(
    "index",
    [
        pytest.param({"v": 1, "keys": [{"kid": "x"}], "revoked": []}, id="entry-missing-members"),
        pytest.param({"v": 1, "keys": 5, "revoked": []}, id="keys-not-a-list"),
    ],
)
def test_damaged_index_is_key_store_error(
    key_dir: Path, keys: NodeKeys, secret: bytes, index: dict[str, Any]
) -> None:
    save_keys(key_dir, keys, secret)
    (key_dir / "keys.json").write_bytes(orjson.dumps(index))
    with pytest.raises(KeyStoreError):
        load_keys(key_dir, secret)


def test_unparsable_index_is_key_store_error(key_dir: Path, keys: NodeKeys, secret: bytes) -> None:
    save_keys(key_dir, keys, secret)
    (key_dir / "keys.json").write_bytes(b"{not json")
    with pytest.raises(KeyStoreError):
        load_keys(key_dir, secret)


def test_saves_leave_no_temporary_files(key_dir: Path, keys: NodeKeys, secret: bytes) -> None:
    save_keys(key_dir, keys, secret)
    rotated = keys.rotate(NOW + timedelta(days=80))
    save_keys(key_dir, rotated, secret)
    save_keys(key_dir, rotated.prune(NOW + timedelta(days=100)), secret)
    leftovers = [p.name for p in key_dir.iterdir() if p.name.startswith(".") or "tmp" in p.name]
    assert leftovers == []


def test_failed_write_leaves_no_temporary_file_and_the_old_keys(
    key_dir: Path, keys: NodeKeys, secret: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_keys(key_dir, keys, secret)
    before = {p.name: p.read_bytes() for p in key_dir.iterdir()}

    def disk_full(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_keys(key_dir, keys.rotate(NOW + timedelta(days=1)), secret)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in key_dir.iterdir()} == before
    assert same_keys(load_keys(key_dir, secret), keys)


def test_save_after_prune_removes_the_pruned_key_files(
    key_dir: Path, keys: NodeKeys, secret: bytes
) -> None:
    rotated = keys.rotate(NOW + timedelta(days=30))
    save_keys(key_dir, rotated, secret)
    pruned = rotated.prune(NOW + timedelta(days=60))
    assert [k.kid for k in pruned.signing] == [rotated.signing[1].kid]
    save_keys(key_dir, pruned, secret)
    assert not (key_dir / f"sig-{keys.signing[0].kid}.pem").exists()
    assert not (key_dir / f"enc-{keys.encryption[0].kid}.pem").exists()
    assert same_keys(load_keys(key_dir, secret), pruned)


def test_saving_another_identity_is_refused_or_written(
    key_dir: Path, keys: NodeKeys, secret: bytes
) -> None:
    save_keys(key_dir, keys, secret)
    other = NodeKeys.generate(NOW)
    try:
        save_keys(key_dir, other, secret)
    except KeyStoreError:
        return  # refusing is a correct answer
    assert load_keys(key_dir, secret).fingerprint == other.fingerprint


def test_saving_with_a_new_secret_leaves_a_loadable_directory(
    key_dir: Path, keys: NodeKeys, secret: bytes
) -> None:
    save_keys(key_dir, keys, secret)
    new_secret = generate_secret()
    try:
        save_keys(key_dir, keys.rotate(NOW + timedelta(days=1)), new_secret)
    except KeySecretError:
        return  # refusing a secret that does not open the existing files is correct
    assert len(load_keys(key_dir, new_secret).signing) == 2


# --- generation, rotation, revocation, pruning -----------------------------------------------


def test_generated_keys_are_valid_for_the_default_window(keys: NodeKeys) -> None:
    window = Validity(NOW, NOW + timedelta(days=90))
    assert [k.validity for k in keys.signing] == [window]
    assert [k.validity for k in keys.encryption] == [window]
    assert keys.signing[0].kid == SigningKey.kid_of(keys.signing[0].private)
    assert keys.encryption[0].kid == EncryptionKey.kid_of(keys.encryption[0].private)
    assert keys.current_signing(NOW) is keys.signing[0]
    with pytest.raises(KeyUnavailableError):
        keys.current_signing(NOW + timedelta(days=90))
    with pytest.raises(KeyUnavailableError):
        keys.current_encryption(NOW - timedelta(seconds=1))


def test_rotate_adds_new_keys_and_sunsets_the_old_ones_after_the_overlap(
    keys: NodeKeys,
) -> None:
    at = NOW + timedelta(days=30)
    rotated = keys.rotate(at, overlap=timedelta(days=7))
    old_sig, new_sig = rotated.signing
    old_enc, new_enc = rotated.encryption
    assert (old_sig.kid, old_enc.kid) == (keys.signing[0].kid, keys.encryption[0].kid)
    assert old_sig.validity == Validity(NOW, at + timedelta(days=7))
    assert old_enc.validity == Validity(NOW, at + timedelta(days=7))
    assert new_sig.validity == Validity(at, at + timedelta(days=90))
    assert rotated.current_signing(at) == new_sig
    assert rotated.current_encryption(at) == new_enc
    last_moment = at + timedelta(days=7) - timedelta(seconds=1)
    assert rotated.decryption_key(old_enc.kid, last_moment) == old_enc
    with pytest.raises(KeyUnavailableError):
        rotated.decryption_key(old_enc.kid, at + timedelta(days=7))
    assert keys.signing == [keys.signing[0]]  # immutable: the original is unchanged


def test_rotate_keeps_an_old_key_that_expires_before_the_overlap_ends(keys: NodeKeys) -> None:
    at = NOW + timedelta(days=88)
    rotated = keys.rotate(at, overlap=timedelta(days=7))
    assert rotated.signing[0].validity == keys.signing[0].validity


def test_revoke_removes_a_key_from_use(keys: NodeKeys) -> None:
    rotated = keys.rotate(NOW + timedelta(days=1))
    newest_enc = rotated.encryption[1]
    revoked = rotated.revoke(newest_enc.kid).revoke(rotated.signing[1].kid)
    at = NOW + timedelta(days=2)
    assert revoked.current_encryption(at) == rotated.encryption[0]
    assert revoked.current_signing(at) == rotated.signing[0]
    with pytest.raises(KeyUnavailableError, match="revoked"):
        revoked.decryption_key(newest_enc.kid, at)
    assert rotated.revoked == frozenset()


def test_revoking_every_signing_key_leaves_none_current(keys: NodeKeys) -> None:
    revoked = keys.revoke(keys.signing[0].kid)
    with pytest.raises(KeyUnavailableError):
        revoked.current_signing(NOW)


def test_revoking_an_unknown_key_is_refused(keys: NodeKeys) -> None:
    with pytest.raises(KeyUnavailableError):
        keys.revoke(SigningKey.kid_of(Ed25519PrivateKey.generate()))


def test_prune_forgets_long_expired_keys_and_keeps_revocations(keys: NodeKeys) -> None:
    rotated = keys.rotate(NOW + timedelta(days=10), overlap=timedelta(days=1))
    rotated = rotated.revoke(keys.signing[0].kid)
    sunset = NOW + timedelta(days=11)
    kept = rotated.prune(sunset + timedelta(days=6), keep_expired_for=timedelta(days=7))
    assert len(kept.signing) == 2
    pruned = rotated.prune(
        sunset + timedelta(days=7, seconds=1), keep_expired_for=timedelta(days=7)
    )
    assert [k.kid for k in pruned.signing] == [rotated.signing[1].kid]
    assert [k.kid for k in pruned.encryption] == [rotated.encryption[1].kid]
    assert pruned.revoked == frozenset({keys.signing[0].kid})


# --- the key document ------------------------------------------------------------------------


def document_of(keys: NodeKeys, **changes: Any) -> KeyDocument:
    document = build_key_document(
        keys, node_id="fr-pdc", country="FR", endpoint="https://pdc.example/", now=NOW
    )
    return document.model_copy(update=changes) if changes else document


def rewrap(wire: bytes, edit: Any) -> bytes:
    """The wire form with the document body edited and the original signature kept."""
    outer = orjson.loads(wire)
    body = orjson.loads(b64url_decode(outer["document"]))
    edit(body)
    outer["document"] = b64url(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
    return orjson.dumps(outer, option=orjson.OPT_SORT_KEYS)


def test_key_document_sign_verify_round_trip(keys: NodeKeys) -> None:
    document = document_of(keys)
    verified = verify_key_document(
        sign_key_document(document, keys), pinned_fingerprint=keys.fingerprint
    )
    assert verified == document
    assert verified.fingerprint == keys.fingerprint
    public = PublicKeySet.from_document(verified)
    signing = keys.signing[0]
    assert public.signing_key(signing.kid, NOW).public_bytes_raw() == signing.public_raw
    kid, key = public.encryption_key(NOW)
    assert (kid, key.public_bytes_raw()) == (keys.encryption[0].kid, keys.encryption[0].public_raw)


def test_key_document_lists_revocations_and_omits_revoked_and_expired_keys(
    keys: NodeKeys,
) -> None:
    rotated = keys.rotate(NOW - timedelta(days=10), overlap=timedelta(days=1))
    rotated = rotated.rotate(NOW - timedelta(hours=1))
    revoked_kid = rotated.signing[2].kid
    document = document_of(rotated.revoke(revoked_kid))
    listed = [entry.kid for entry in document.signing_keys]
    assert listed == [rotated.signing[1].kid]  # first expired, third revoked
    assert document.revoked == [revoked_kid]


def test_key_document_without_a_pin_is_accepted_on_first_contact(keys: NodeKeys) -> None:
    wire = sign_key_document(document_of(keys), keys)
    assert verify_key_document(wire, pinned_fingerprint=None).fingerprint == keys.fingerprint


def test_key_document_with_another_fingerprint_pinned_is_refused(keys: NodeKeys) -> None:
    wire = sign_key_document(document_of(keys), keys)
    with pytest.raises(KeyDocumentError, match="pinned"):
        verify_key_document(wire, pinned_fingerprint=NodeKeys.generate(NOW).fingerprint)


def test_impostor_document_signed_by_its_own_identity_fails_the_pin(keys: NodeKeys) -> None:
    impostor = NodeKeys.generate(NOW)
    wire = sign_key_document(document_of(impostor), impostor)
    with pytest.raises(KeyDocumentError):
        verify_key_document(wire, pinned_fingerprint=keys.fingerprint)


def _set(member: str, value: Any) -> Any:
    def edit(body: dict[str, Any]) -> None:
        body[member] = value

    return edit


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(_set("endpoint", "https://evil.example/"), id="endpoint"),
        pytest.param(_set("revoked", []), id="revocations-dropped"),
        pytest.param(_set("issued_at", 0), id="issued-at"),
        pytest.param(lambda body: body["signing_keys"].clear(), id="keys-dropped"),
    ],
)
def test_tampered_document_body_is_refused(keys: NodeKeys, edit: Any) -> None:
    keys = keys.revoke(keys.encryption[0].kid)
    wire = rewrap(sign_key_document(document_of(keys), keys), edit)
    with pytest.raises(KeyDocumentError, match="signature"):
        verify_key_document(wire, pinned_fingerprint=keys.fingerprint)


def test_document_with_an_attacker_key_added_is_refused(keys: NodeKeys) -> None:
    attacker = SigningKey.generate(Validity(NOW, NOW + timedelta(days=90)))
    entry = {
        "kid": attacker.kid,
        "key": b64url(attacker.public_raw),
        "not_before": int(NOW.timestamp()),
        "not_after": int(NOW.timestamp()) + 86400,
    }
    wire = rewrap(
        sign_key_document(document_of(keys), keys), lambda b: b["signing_keys"].append(entry)
    )
    with pytest.raises(KeyDocumentError, match="signature"):
        verify_key_document(wire, pinned_fingerprint=keys.fingerprint)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(
            lambda w: orjson.dumps({**orjson.loads(w), "extra": "x"}), id="wrapper-extra-member"
        ),
        pytest.param(lambda w: w[:-5], id="truncated"),
        pytest.param(lambda w: b"[]", id="array"),
        pytest.param(lambda w: b'{"document": 1, "signature": 2}', id="wrong-types"),
        pytest.param(lambda w: w.replace(b'"signature":"', b'"signature":"AAAA'), id="signature"),
        pytest.param(lambda w: b"", id="empty"),
    ],
)
def test_tampered_wire_is_refused(keys: NodeKeys, tamper: Any) -> None:
    wire = sign_key_document(document_of(keys), keys)
    with pytest.raises(KeyDocumentError):
        verify_key_document(tamper(wire), pinned_fingerprint=keys.fingerprint)


def test_flipped_signature_bit_is_refused(keys: NodeKeys) -> None:
    wire = sign_key_document(document_of(keys), keys)
    outer = orjson.loads(wire)
    signature = bytearray(b64url_decode(outer["signature"]))
    signature[0] ^= 1
    outer["signature"] = b64url(bytes(signature))
    with pytest.raises(KeyDocumentError, match="signature"):
        verify_key_document(orjson.dumps(outer), pinned_fingerprint=keys.fingerprint)


def test_kid_that_is_not_the_thumbprint_of_its_key_is_refused(keys: NodeKeys) -> None:
    """Signed by the real identity, so only the key id check can catch it."""
    document = document_of(keys)
    other_kid = SigningKey.kid_of(Ed25519PrivateKey.generate())
    lying = document.model_copy(
        update={"signing_keys": [document.signing_keys[0].model_copy(update={"kid": other_kid})]}
    )
    with pytest.raises(KeyDocumentError, match="thumbprint"):
        verify_key_document(sign_key_document(lying, keys), pinned_fingerprint=keys.fingerprint)


def test_encryption_key_listed_as_a_signing_key_is_refused(keys: NodeKeys) -> None:
    """The X25519 thumbprint names another curve, so the key cannot pass as Ed25519."""
    document = document_of(keys)
    swapped = document.model_copy(update={"signing_keys": document.encryption_keys})
    with pytest.raises(KeyDocumentError, match="thumbprint"):
        verify_key_document(sign_key_document(swapped, keys), pinned_fingerprint=keys.fingerprint)


def test_key_with_an_empty_validity_window_is_refused(keys: NodeKeys) -> None:
    document = document_of(keys)
    entry = document.signing_keys[0]
    empty = document.model_copy(
        update={"signing_keys": [entry.model_copy(update={"not_after": entry.not_before})]}
    )
    with pytest.raises(KeyDocumentError, match="empty validity"):
        verify_key_document(sign_key_document(empty, keys), pinned_fingerprint=keys.fingerprint)


def test_oversized_document_is_refused(keys: NodeKeys) -> None:
    wire = sign_key_document(document_of(keys), keys)
    padded = wire + b" " * (MAX_KEY_DOCUMENT_BYTES + 1 - len(wire))
    assert orjson.loads(padded) == orjson.loads(wire)  # only its size is wrong
    with pytest.raises(KeyDocumentError, match="larger"):
        verify_key_document(padded, pinned_fingerprint=keys.fingerprint)


def test_non_canonical_identity_key_is_key_document_error(keys: NodeKeys) -> None:
    def non_canonical(body: dict[str, Any]) -> None:
        last = body["identity_key"][-1]
        body["identity_key"] = body["identity_key"][:-1] + B64URL[B64URL.index(last) | 1]

    wire = rewrap(sign_key_document(document_of(keys), keys), non_canonical)
    with pytest.raises(KeyDocumentError):
        verify_key_document(wire, pinned_fingerprint=keys.fingerprint)


def test_validity_beyond_the_calendar_is_refused_or_usable(keys: NodeKeys) -> None:
    document = document_of(keys)
    entry = document.signing_keys[0]
    far = document.model_copy(
        update={"signing_keys": [entry.model_copy(update={"not_after": 2**39})]}
    )
    wire = sign_key_document(far, keys)
    try:
        public = PublicKeySet.from_document(
            verify_key_document(wire, pinned_fingerprint=keys.fingerprint)
        )
    except KeyDocumentError:
        return  # refusing the document is a correct answer
    assert public.signing_key(entry.kid, NOW).public_bytes_raw() == keys.signing[0].public_raw


# --- PublicKeySet ----------------------------------------------------------------------------


def public_set(keys: NodeKeys) -> PublicKeySet:
    return PublicKeySet.from_document(document_of(keys))


def test_merged_with_keeps_old_keys_and_adds_new_ones(keys: NodeKeys) -> None:
    rotated = keys.rotate(NOW + timedelta(days=1))
    newer = PublicKeySet.from_document(
        build_key_document(
            rotated.prune(NOW + timedelta(days=20), keep_expired_for=timedelta(0)),
            node_id="fr-pdc",
            country="FR",
            endpoint="https://pdc.example/",
            now=NOW + timedelta(days=20),
        )
    )
    assert keys.signing[0].kid not in newer.signing
    merged = public_set(keys).merged_with(newer)
    assert set(merged.signing) == {k.kid for k in rotated.signing}
    assert set(merged.encryption) == {k.kid for k in rotated.encryption}


def test_merged_with_takes_the_newer_window_of_a_known_key(keys: NodeKeys) -> None:
    rotated = keys.rotate(NOW + timedelta(days=1), overlap=timedelta(days=2))
    merged = public_set(keys).merged_with(public_set(rotated))
    _, window = merged.signing[keys.signing[0].kid]
    assert window.not_after == NOW + timedelta(days=3)


def test_merged_with_keeps_revocations_sticky(keys: NodeKeys) -> None:
    kid = keys.signing[0].kid
    before = public_set(keys)
    revoking = public_set(keys.revoke(kid))
    merged = before.merged_with(revoking)
    assert kid in merged.revoked
    assert kid not in merged.signing
    # An older document (replayed, or served by a stale cache) cannot bring the key back.
    again = merged.merged_with(before)
    assert kid in again.revoked
    assert kid not in again.signing
    with pytest.raises(KeyUnavailableError, match="revoked"):
        again.signing_key(kid, NOW)


def test_revoked_encryption_key_is_never_chosen_to_seal_to(keys: NodeKeys) -> None:
    rotated = keys.rotate(NOW + timedelta(days=1))
    newest = rotated.encryption[1].kid
    merged = public_set(rotated).merged_with(public_set(rotated.revoke(newest)))
    kid, _ = merged.encryption_key(NOW + timedelta(days=2))
    assert kid == rotated.encryption[0].kid
    only_revoked = replace(merged, revoked=merged.revoked | {rotated.encryption[0].kid})
    with pytest.raises(KeyUnavailableError):
        only_revoked.encryption_key(NOW + timedelta(days=2))


def test_signing_key_outside_its_window_or_unknown_is_unavailable(keys: NodeKeys) -> None:
    public = public_set(keys)
    kid = keys.signing[0].kid
    with pytest.raises(KeyUnavailableError):
        public.signing_key(kid, NOW - timedelta(seconds=1))
    with pytest.raises(KeyUnavailableError):
        public.signing_key(kid, NOW + timedelta(days=90))
    with pytest.raises(KeyUnavailableError):
        public.signing_key(keys.encryption[0].kid, NOW)


def test_merged_with_refuses_the_keys_of_another_node(keys: NodeKeys) -> None:
    other = NodeKeys.generate(NOW)
    theirs = PublicKeySet.from_document(
        build_key_document(
            other, node_id="uk-iwf", country="GB", endpoint="https://iwf.example/", now=NOW
        )
    )
    with pytest.raises((KeysError, ValueError)):
        public_set(keys).merged_with(theirs)


# --- the hybrid post-quantum encryption key ---------------------------------------------------


def test_hybrid_keys_are_saved_encrypted_and_load_back(
    key_dir: Path, keys: NodeKeys, secret: bytes
) -> None:
    rotated = keys.rotate(NOW + timedelta(days=30))
    save_keys(key_dir, rotated, secret)
    assert len(rotated.hybrid) == 2
    for hybrid in rotated.hybrid:
        for suffix in ("mlkem", "x25519"):
            data = (key_dir / f"hyb-{hybrid.kid}.{suffix}.pem").read_bytes()
            assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    loaded = load_keys(key_dir, secret)
    assert same_keys(loaded, rotated)
    with pytest.raises(KeySecretError):
        load_keys(key_dir, b"\x00" * 32)


def test_a_key_directory_from_before_the_hybrid_suite_still_loads(
    key_dir: Path, keys: NodeKeys, secret: bytes
) -> None:
    classic = replace(keys, hybrid=[])
    save_keys(key_dir, classic, secret)
    loaded = load_keys(key_dir, secret)
    assert loaded.hybrid == []
    assert not loaded.offers_hybrid(NOW + timedelta(days=1))
    # The next rotation gives it a hybrid key; its older classic key does not require one.
    at = NOW + timedelta(days=30)
    rotated = loaded.rotate(at)
    assert rotated.offers_hybrid(at)
    assert not rotated.requires_hybrid(keys.encryption[0].kid)
    assert rotated.requires_hybrid(rotated.current_encryption(at).kid)


def test_hybrid_keys_rotate_revoke_and_prune_like_the_others(keys: NodeKeys) -> None:
    at = NOW + timedelta(days=30)
    rotated = keys.rotate(at)
    old, new = rotated.hybrid
    assert old.validity.not_after == at + timedelta(days=7)
    assert new.validity.not_before == at
    assert rotated.hybrid_decryption_key(new.kid, at).kid == new.kid
    revoked = rotated.revoke(old.kid)
    with pytest.raises(KeyUnavailableError, match="revoked"):
        revoked.hybrid_decryption_key(old.kid, at)
    assert [k.kid for k in rotated.prune(at + timedelta(days=15)).hybrid] == [new.kid]


def test_a_hybrid_key_file_swapped_under_its_kid_is_refused(
    key_dir: Path, keys: NodeKeys, secret: bytes
) -> None:
    save_keys(key_dir, keys, secret)
    other = NodeKeys.generate(NOW)
    save_keys(key_dir / "other", other, secret)
    kid = keys.hybrid[0].kid
    (key_dir / f"hyb-{kid}.x25519.pem").write_bytes(
        (key_dir / "other" / f"hyb-{other.hybrid[0].kid}.x25519.pem").read_bytes()
    )
    with pytest.raises(KeyStoreError, match="holds a different key"):
        load_keys(key_dir, secret)
