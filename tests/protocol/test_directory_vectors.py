"""directory-v1.json (protocol.md §14), checked from the file: what another implementation
would check, with the reference library."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keys.canonical import canonical_json
from keys.thumbprint import CURVE_ED25519, b64url, okp_thumbprint
from protocol.directory import (
    LIST_LABEL,
    ROOT_LABEL,
    DirectoryError,
    Root,
    verify_list,
    verify_root,
    verify_rotation,
)
from tests.protocol.test_vectors import at
from tests.vectors import directory, generate

VECTORS: dict[str, Any] = json.loads(directory.DIRECTORY_PATH.read_text(encoding="utf-8"))
SIGNERS = {entry["name"]: entry for entry in VECTORS["signers"]}


def private(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(SIGNERS[name]["seed_hex"]))


def roots() -> dict[str, Root]:
    held = {"root-v1": verify_root(VECTORS["roots"]["root-v1"]["wire"].encode())}
    held["root-v2"] = verify_rotation(held["root-v1"], VECTORS["roots"]["root-v2"]["wire"].encode())
    return held


def test_constants_are_the_libraries() -> None:
    constants = VECTORS["constants"]
    assert bytes.fromhex(constants["root_label_hex"]) == b"hotline-node/v1 directory-root\x00"
    assert bytes.fromhex(constants["list_label_hex"]) == b"hotline-node/v1 directory\x00"
    assert (ROOT_LABEL.hex(), LIST_LABEL.hex()) == (
        constants["root_label_hex"],
        constants["list_label_hex"],
    )


@pytest.mark.parametrize("name", sorted(SIGNERS))
def test_signer_keys_follow_the_seed_rule(name: str) -> None:
    entry = SIGNERS[name]
    number = name.removeprefix("signer-")
    rule = f"hotline-node/v1 test vector directory signer {number}".encode()
    assert entry["seed_hex"] == hashlib.sha256(rule).hexdigest()
    public = private(name).public_key().public_bytes_raw()
    assert entry["public_b64url"] == b64url(public)
    assert entry["kid"] == okp_thumbprint(CURVE_ED25519, public)


def _check_signed(entry: dict[str, Any], label: bytes) -> None:
    """The signed bytes, the message, and each signature, re-derived (Ed25519 is deterministic)."""
    signed = entry["signed_bytes"].encode()
    assert canonical_json(entry["signed"]) == signed
    assert bytes.fromhex(entry["message_hex"]) == label + signed
    wire = json.loads(entry["wire"])
    assert wire["signed"] == entry["signed"]
    expected = {
        SIGNERS[name]["kid"]: b64url(private(name).sign(label + signed))
        for name in entry["signers"]
    }
    assert {s["kid"]: s["sig"] for s in wire["signatures"]} == expected
    assert canonical_json(wire) == entry["wire"].encode()


@pytest.mark.parametrize("name", ["root-v1", "root-v2"])
def test_roots_are_reproduced(name: str) -> None:
    _check_signed(VECTORS["roots"][name], ROOT_LABEL)


def test_root_v1_is_two_of_three_and_root_v2_rotates_it() -> None:
    held = roots()
    assert (held["root-v1"].threshold, len(held["root-v1"].keys)) == (2, 3)
    assert held["root-v1"].kids == {SIGNERS[f"signer-{n}"]["kid"] for n in (1, 2, 3)}
    assert held["root-v2"].version == 2
    assert held["root-v2"].kids == {SIGNERS[f"signer-{n}"]["kid"] for n in (4, 5, 6)}


@pytest.mark.parametrize("entry", VECTORS["lists"], ids=lambda entry: entry["name"])
def test_lists_are_reproduced_and_verify(entry: dict[str, Any]) -> None:
    _check_signed(entry, LIST_LABEL)
    verified = verify_list(
        entry["wire"].encode(),
        roots()[entry["root"]],
        now=at(entry["now"]),
        held_version=entry["held_version"],
    )
    assert verified.version == entry["signed"]["version"]
    assert [m.to_json() for m in verified.members] == entry["signed"]["members"]
    assert verified.signed_by == {SIGNERS[name]["kid"] for name in entry["signers"]}


def test_listed_fingerprints_are_the_envelope_vectors_nodes() -> None:
    nodes = json.loads(generate.VECTORS_PATH.read_text(encoding="utf-8"))["nodes"]
    for member in VECTORS["lists"][-1]["signed"]["members"]:
        assert member["fingerprint"] == nodes[member["node_id"]]["identity"]["fingerprint"]


def _verify(vector: dict[str, Any]) -> object:
    wire = vector["wire"].encode()
    held = roots()
    if vector["kind"] == "root":
        return verify_root(wire)
    if vector["kind"] == "rotation":
        return verify_rotation(held[vector["root"]], wire)
    return verify_list(
        wire, held[vector["root"]], now=at(vector["now"]), held_version=vector["held_version"]
    )


@pytest.mark.parametrize("vector", VECTORS["negative"], ids=lambda vector: vector["name"])
def test_negative_vectors_are_refused_for_the_reason_given(vector: dict[str, Any]) -> None:
    with pytest.raises(DirectoryError) as refused:
        _verify(vector)
    assert refused.value.refusal.value == vector["expected_refusal"]
    assert "\n" not in refused.value.reason


def test_every_refusal_of_the_brief_has_a_vector() -> None:
    names = {vector["name"] for vector in VECTORS["negative"]}
    assert {
        "list-tampered",
        "list-one-signature",
        "list-duplicate-signature",
        "list-old-version",
        "list-expired",
        "rotation-old-keys-only",
    } <= names


def test_the_protocol_text_gives_the_labels_and_limits_of_the_library() -> None:
    text = (generate.ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = text[text.index("## 14. The member directory") : text.index("## Appendix A")]
    assert ROOT_LABEL.hex() in section
    assert LIST_LABEL.hex() in section
    constants = VECTORS["constants"]
    spaced = section.replace("\u202f", " ").replace("\u00a0", " ")
    for limit in ("max_root_bytes", "max_list_bytes"):
        assert f"{constants[limit]:,}".replace(",", " ") in spaced
    assert f"**{constants['max_signatures']}**" in section
    assert f"now + {constants['max_clock_skew_seconds']}" in section
