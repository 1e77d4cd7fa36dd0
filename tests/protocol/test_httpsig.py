"""protocol/httpsig.py on its own (RFC 9421 profile): RFC 9421 Appendix B.2.6, and every refusal."""

from __future__ import annotations

import base64
import re
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from keys import NodeKeys, PublicKeySet
from protocol.httpsig import (
    MemoryNonceGuard,
    RequestSignatureError,
    SignedRequest,
    claimed_sender,
    content_digest,
    sign_request,
    signature_base,
    verify_request,
)
from tests.factories import NOW, Directory, make_node

# RFC 9421 Appendix B.1.4 `test-key-ed25519` (published in the RFC; a test key only).
RFC_KEY_PEM = b"""-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
"""
RFC_PUBLIC_B64 = "JrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs="
# RFC 9421 Appendix B.2.6: the signature base and the Signature field, unwrapped (RFC 8792).
RFC_B26_BASE = (
    b'"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    b'"@method": POST\n'
    b'"@path": /foo\n'
    b'"@authority": example.com\n'
    b'"content-type": application/json\n'
    b'"content-length": 18\n'
    b'"@signature-params": ("date" "@method" "@path" "@authority" "content-type"'
    b' "content-length");created=1618884473;keyid="test-key-ed25519"'
)
RFC_B26_SIGNATURE = (
    "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1"
    "u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:"
)

AUTHORITY = "de.example:8443"
PUSH = SignedRequest("POST", AUTHORITY, "/federation/v1/transactions/abcdefgh", "?", b'{"x":1}')
NONCE = "n" * 22


def test_rfc9421_b26_signature_base_and_signature_byte_for_byte() -> None:
    key = load_pem_private_key(RFC_KEY_PEM, None)
    assert isinstance(key, Ed25519PrivateKey)
    assert base64.b64encode(key.public_key().public_bytes_raw()).decode() == RFC_PUBLIC_B64
    params = (
        '("date" "@method" "@path" "@authority" "content-type" "content-length")'
        ';created=1618884473;keyid="test-key-ed25519"'
    )
    base = signature_base(
        [
            ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
            ("@method", "POST"),
            ("@path", "/foo"),
            ("@authority", "example.com"),
            ("content-type", "application/json"),
            ("content-length", "18"),
        ],
        params,
    )
    assert base == RFC_B26_BASE
    # Ed25519 is deterministic: the same key over the same base gives the RFC's bytes.
    signature = key.sign(base)
    assert f"sig-b26=:{base64.b64encode(signature).decode()}:" == RFC_B26_SIGNATURE


def test_our_profile_writes_the_rfc_component_lines_the_same_way() -> None:
    """The lines B.2.6 shares with our profile (@method, @path, @authority) come out identical,
    and our Signature field has the RFC's `label=:base64:` form."""
    node = make_node("fr-pointdecontact", "FR")
    key = node.keys.current_signing(NOW)
    request = SignedRequest("post", "Example.COM", "/foo", "", b'{"hello": "world"}')
    headers = sign_request(request, node_id=node.node_id, key=key, nonce=NONCE, now=NOW)
    params = headers["Signature-Input"].removeprefix("hln=")
    base = signature_base(
        [
            ("@method", "POST"),
            ("@authority", "example.com"),
            ("@path", "/foo"),
            ("@query", "?"),
            ("content-digest", headers["Content-Digest"]),
        ],
        params,
    )
    assert b'"@method": POST\n"@authority": example.com\n"@path": /foo\n' in base
    signature = base64.b64decode(headers["Signature"].removeprefix("hln=:").removesuffix(":"))
    key.private.public_key().verify(signature, base)
    assert re.fullmatch(r"hln=:[A-Za-z0-9+/]{86}==:", headers["Signature"])


def test_content_digest_of_an_empty_body_is_the_digest_of_zero_bytes() -> None:
    # RFC 9530: SHA-256 of the empty string; a GET has no body and still carries it.
    assert content_digest(b"") == "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"


@pytest.fixture
def sender() -> tuple[str, NodeKeys, Directory]:
    node = make_node("fr-pointdecontact", "FR")
    return node.node_id, node.keys, Directory(node)


def _signed(
    sender: tuple[str, NodeKeys, Directory], request: SignedRequest = PUSH, **kw: object
) -> dict[str, str]:
    node_id, keys, _ = sender
    at = kw.get("now", NOW)
    return sign_request(
        request,
        node_id=node_id,
        key=keys.current_signing(at),  # type: ignore[arg-type]
        nonce=str(kw.get("nonce", NONCE)),
        now=at,  # type: ignore[arg-type]
    )


def _verify(
    sender: tuple[str, NodeKeys, Directory],
    headers: dict[str, str],
    request: SignedRequest = PUSH,
    nonces: MemoryNonceGuard | None = None,
    **kw: object,
) -> str:
    return verify_request(
        request,
        headers,
        peers=kw.get("peers", sender[2]),  # type: ignore[arg-type]
        nonces=nonces or MemoryNonceGuard(),
        now=kw.get("now", NOW),  # type: ignore[arg-type]
    )


def test_a_signed_request_verifies(sender: tuple[str, NodeKeys, Directory]) -> None:
    assert _verify(sender, _signed(sender)) == "fr-pointdecontact"


def test_a_get_without_body_is_signed_over_the_empty_body_digest(
    sender: tuple[str, NodeKeys, Directory],
) -> None:
    get = SignedRequest("GET", AUTHORITY, "/federation/v1/outbox", "?after=0&limit=100", b"")
    headers = _signed(sender, get)
    assert headers["Content-Digest"] == content_digest(b"")
    assert _verify(sender, headers, get) == "fr-pointdecontact"
    without = {k: v for k, v in headers.items() if k != "Content-Digest"}
    with pytest.raises(RequestSignatureError, match="Content-Digest"):
        _verify(sender, without, get)


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (timedelta(minutes=5), True),
        (-timedelta(minutes=5), True),
        (timedelta(minutes=5, seconds=1), False),
        (-timedelta(minutes=5, seconds=1), False),
    ],
)
def test_the_window_is_five_minutes_inclusive_either_way(
    sender: tuple[str, NodeKeys, Directory], offset: timedelta, accepted: bool
) -> None:
    headers = _signed(sender)
    if accepted:
        assert _verify(sender, headers, now=NOW + offset)
        assert claimed_sender(headers, NOW + offset) == "fr-pointdecontact"
    else:
        with pytest.raises(RequestSignatureError, match="time window"):
            _verify(sender, headers, now=NOW + offset)
        with pytest.raises(RequestSignatureError, match="time window"):
            claimed_sender(headers, NOW + offset)


def test_a_nonce_is_refused_the_second_time(sender: tuple[str, NodeKeys, Directory]) -> None:
    nonces = MemoryNonceGuard()
    headers = _signed(sender)
    _verify(sender, headers, nonces=nonces)
    with pytest.raises(RequestSignatureError, match="nonce was already used"):
        _verify(sender, headers, nonces=nonces)


def test_a_bad_signature_does_not_spend_the_nonce(sender: tuple[str, NodeKeys, Directory]) -> None:
    nonces = MemoryNonceGuard()
    headers = _signed(sender)
    forged = {**headers, "Signature": "hln=:" + base64.b64encode(bytes(64)).decode() + ":"}
    with pytest.raises(RequestSignatureError, match="does not verify"):
        _verify(sender, forged, nonces=nonces)
    assert _verify(sender, headers, nonces=nonces) == "fr-pointdecontact"


def test_another_authority_is_refused(sender: tuple[str, NodeKeys, Directory]) -> None:
    """A request captured on its way to one node does not verify at another."""
    headers = _signed(sender)
    elsewhere = SignedRequest(PUSH.method, "it.example", PUSH.path, PUSH.query, PUSH.body)
    with pytest.raises(RequestSignatureError, match="another destination"):
        _verify(sender, headers, elsewhere)


@pytest.mark.parametrize(
    "changed",
    [
        SignedRequest("PUT", AUTHORITY, PUSH.path, "?", PUSH.body),
        SignedRequest("POST", AUTHORITY, "/federation/v1/transactions/zzzzzzzz", "?", PUSH.body),
        SignedRequest("POST", AUTHORITY, PUSH.path, "?a=1", PUSH.body),
    ],
    ids=["method", "path", "query"],
)
def test_each_covered_component_is_bound(
    sender: tuple[str, NodeKeys, Directory], changed: SignedRequest
) -> None:
    with pytest.raises(RequestSignatureError, match="does not verify"):
        _verify(sender, _signed(sender), changed)


def test_a_body_that_does_not_match_the_digest_is_refused(
    sender: tuple[str, NodeKeys, Directory],
) -> None:
    other = SignedRequest(PUSH.method, AUTHORITY, PUSH.path, "?", b'{"x":2}')
    with pytest.raises(RequestSignatureError, match="Content-Digest does not match"):
        _verify(sender, _signed(sender), other)
    # A digest header rewritten to match the new body breaks the signature instead.
    headers = {**_signed(sender), "Content-Digest": content_digest(other.body)}
    with pytest.raises(RequestSignatureError, match="does not verify"):
        _verify(sender, headers, other)


def test_an_unknown_sender_or_key_id_is_refused(sender: tuple[str, NodeKeys, Directory]) -> None:
    headers = _signed(sender)
    with pytest.raises(RequestSignatureError, match="is not a peer"):
        _verify(sender, headers, peers=Directory())
    stranger = make_node("fr-pointdecontact", "FR")  # same name, other keys
    with pytest.raises(RequestSignatureError, match="unknown signing key"):
        _verify(sender, headers, peers=Directory(stranger))


def test_a_revoked_or_expired_key_is_refused(sender: tuple[str, NodeKeys, Directory]) -> None:
    node_id, keys, _ = sender
    kid = keys.current_signing(NOW).kid
    revoked = keys.rotate(NOW).revoke(kid)
    document_keys = {node_id: _public(node_id, revoked)}
    with pytest.raises(RequestSignatureError, match="revoked"):
        _verify(sender, _signed(sender), peers=_Peers(document_keys))
    late = NOW + timedelta(days=400)  # the key's 90-day window is over
    expired = sign_request(PUSH, node_id=node_id, key=keys.signing[0], nonce=NONCE, now=late)
    with pytest.raises(RequestSignatureError, match="not valid at"):
        _verify(sender, expired, now=late, peers=_Peers({node_id: _public(node_id, keys)}))


@pytest.mark.parametrize(
    ("name", "edit"),
    [
        (
            "component order",
            lambda v: v.replace('"@method" "@authority"', '"@authority" "@method"'),
        ),
        ("a missing component", lambda v: v.replace(' "content-digest"', "")),
        ("another algorithm", lambda v: v.replace('alg="ed25519"', 'alg="rsa-pss-sha512"')),
        ("another tag", lambda v: v.replace('tag="hotline-node/v1"', 'tag="other"')),
        ("another label", lambda v: v.replace("hln=", "sig=", 1)),
        ("a short nonce", lambda v: v.replace(NONCE, "short")),
        ("no keyid", lambda v: re.sub(r';keyid="[^"]*"', "", v)),
        ("a parameter added", lambda v: v + ';expires=1"'),
    ],
)
def test_any_other_signature_input_is_refused(
    sender: tuple[str, NodeKeys, Directory], name: str, edit: object
) -> None:
    headers = _signed(sender)
    headers["Signature-Input"] = edit(headers["Signature-Input"])  # type: ignore[operator]
    with pytest.raises(RequestSignatureError, match="unsupported Signature-Input"):
        _verify(sender, headers)
    with pytest.raises(RequestSignatureError, match="unsupported Signature-Input"):
        claimed_sender(headers, NOW)


@pytest.mark.parametrize(
    "value",
    ["", "hln=:abc:", "sig=" + "x", "hln=" + base64.b64encode(bytes(64)).decode()],
)
def test_a_malformed_signature_field_is_refused(
    sender: tuple[str, NodeKeys, Directory], value: str
) -> None:
    headers = {**_signed(sender), "Signature": value}
    with pytest.raises(RequestSignatureError, match="missing or malformed Signature"):
        _verify(sender, headers)


@pytest.mark.parametrize(
    "value",
    ["", "sha-512=:AAAA:", "sha-256=:" + "A" * 43 + "=:", "sha-256=47DEQpj8HBSa"],
)
def test_a_malformed_or_wrong_digest_is_refused(
    sender: tuple[str, NodeKeys, Directory], value: str
) -> None:
    headers = {**_signed(sender), "Content-Digest": value}
    with pytest.raises(RequestSignatureError, match="Content-Digest"):
        _verify(sender, headers)


def test_sign_request_refuses_a_bad_nonce(sender: tuple[str, NodeKeys, Directory]) -> None:
    with pytest.raises(ValueError, match="nonce"):
        _signed(sender, nonce="not a nonce!")


class _Peers:
    def __init__(self, entries: dict[str, PublicKeySet]) -> None:
        self.entries = entries

    def keys_for(self, node_id: str) -> PublicKeySet | None:
        return self.entries.get(node_id)


def _public(node_id: str, keys: NodeKeys) -> PublicKeySet:
    from keys import build_key_document

    document = build_key_document(
        keys, node_id=node_id, country="FR", endpoint="http://127.0.0.1", now=NOW
    )
    return PublicKeySet.from_document(document)
