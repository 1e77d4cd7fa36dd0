"""The vectors of protocol.md §14 (the member directory): tests/vectors/directory-v1.json.

Six signer keys from fixed seeds; root version 1 (2 of signers 1-3, signed by all three); member
lists signed by two of them; root version 2 (2 of signers 4-6) signed by signers 1 and 2 and by
4, 5 and 6; a list under root 2; and lists, roots and rotations that must be refused, each with
the refusal the reference gives. Ed25519 is deterministic: every byte is reproducible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keys.canonical import canonical_json
from keys.thumbprint import b64url
from protocol.directory import (
    LIST_LABEL,
    LIST_TYPE,
    MAX_CLOCK_SKEW,
    MAX_LIST_BYTES,
    MAX_ROOT_BYTES,
    MAX_SIGNATURES,
    ROOT_LABEL,
    ROOT_TYPE,
    DirectoryError,
    DirectorySignature,
    Member,
    Root,
    list_document,
    root_document,
    sign,
    verify_list,
    verify_root,
    verify_rotation,
    wire_form,
)
from tests.vectors import generate as g

DIRECTORY_PATH = g.ROOT / "tests" / "vectors" / "directory-v1.json"
NAME = "example-umbrella"
ISSUED_AT = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
EXPIRES = ISSUED_AT + timedelta(days=7)
NOW = ISSUED_AT + timedelta(hours=1)
SEED_RULE = 'seed of signer N = SHA-256("hotline-node/v1 test vector directory signer N")'


def signer_seed(number: int) -> bytes:
    return hashlib.sha256(
        f"hotline-node/v1 test vector directory signer {number}".encode()
    ).digest()


def signer(number: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(signer_seed(number))


def _members(node_ids: Sequence[str]) -> list[Member]:
    keys = g.all_node_keys()
    nodes = {node_id: (country, endpoint) for node_id, country, endpoint, *_ in g.NODES}
    return [
        Member(
            node_id=node_id,
            country=nodes[node_id][0],
            endpoint=nodes[node_id][1].rstrip("/"),
            fingerprint=keys[node_id].fingerprint,
            categories=["csam", "grooming"] if node_id == g.FR else None,
        )
        for node_id in node_ids
    ]


def _root(version: int, numbers: Sequence[int], threshold: int = 2) -> dict[str, Any]:
    return root_document(
        name=NAME,
        version=version,
        threshold=threshold,
        keys=[signer(n).public_key() for n in numbers],
    )


def _list(
    version: int,
    node_ids: Sequence[str],
    *,
    name: str = NAME,
    issued_at: datetime = ISSUED_AT,
    expires: datetime = EXPIRES,
) -> dict[str, Any]:
    return list_document(
        name=name,
        version=version,
        issued_at=g.unix(issued_at),
        expires=g.unix(expires),
        members=_members(node_ids),
    )


def _signed(document: dict[str, Any], numbers: Sequence[int]) -> bytes:
    return wire_form(document, [sign(document, signer(n)) for n in numbers])


def _entry(document: dict[str, Any], wire: bytes, numbers: Sequence[int]) -> dict[str, Any]:
    label = ROOT_LABEL if document["type"] == ROOT_TYPE else LIST_LABEL
    return {
        "signed": document,
        "signed_bytes": canonical_json(document).decode(),
        "signers": [f"signer-{n}" for n in numbers],
        "message_hex": (label + canonical_json(document)).hex(),
        "wire": wire.decode(),
    }


def _refusal(
    kind: str,
    wire: bytes,
    roots: dict[str, Root],
    *,
    root: str,
    now: datetime = NOW,
    held_version: int | None = None,
) -> str:
    try:
        if kind == "root":
            verify_root(wire)
        elif kind == "rotation":
            verify_rotation(roots[root], wire)
        else:
            verify_list(wire, roots[root], now=now, held_version=held_version)
    except DirectoryError as exc:
        return exc.refusal.value
    raise AssertionError(f"a negative {kind} vector verified")


def directory_vectors() -> dict[str, Any]:
    root1 = _root(1, (1, 2, 3))
    root1_wire = _signed(root1, (1, 2, 3))
    root2 = _root(2, (4, 5, 6))
    root2_wire = _signed(root2, (1, 2, 4, 5, 6))
    roots = {"root-v1": verify_root(root1_wire)}
    roots["root-v2"] = verify_rotation(roots["root-v1"], root2_wire)

    list1 = _list(1, (g.DE, g.FR))
    list1_wire = _signed(list1, (1, 2))
    list2 = _list(2, (g.DE, g.FR, g.IT))
    list2_wire = _signed(list2, (2, 3))
    list3 = _list(3, (g.DE, g.FR, g.IT))
    list3_wire = _signed(list3, (4, 6))
    lists = [
        ("list-v1", list1, list1_wire, (1, 2), "root-v1", None),
        ("list-v2", list2, list2_wire, (2, 3), "root-v1", 1),
        ("list-v3", list3, list3_wire, (4, 6), "root-v2", 2),
    ]
    for _, _, wire, _, root, held in lists:
        verify_list(wire, roots[root], now=NOW, held_version=held)

    negative: list[dict[str, Any]] = []

    def refused(
        name: str,
        description: str,
        kind: str,
        wire: bytes,
        *,
        root: str = "root-v1",
        now: datetime = NOW,
        held_version: int | None = None,
    ) -> None:
        negative.append(
            {
                "name": name,
                "description": description,
                "kind": kind,
                "root": None if kind == "root" else root,
                "now": g.unix(now),
                "held_version": held_version,
                "expected_refusal": _refusal(
                    kind, wire, roots, root=root, now=now, held_version=held_version
                ),
                "wire": wire.decode(),
            }
        )

    tampered = list1_wire.replace(b"https://node.eco.example", b"https://node.evil.example")
    refused(
        "list-tampered",
        "list-v1 with de-eco's endpoint changed after signing; still canonical JSON.",
        "list",
        tampered,
    )
    refused("list-one-signature", "list-v1 signed by signer-1 only.", "list", _signed(list1, (1,)))
    one = sign(list1, signer(1)).to_json()
    refused(
        "list-duplicate-signature",
        "list-v1 with signer-1's signature twice: a key counts once.",
        "list",
        canonical_json({"signed": list1, "signatures": [one, one]}),
    )
    refused(
        "list-unknown-signer",
        "list-v1 signed by signer-1 and signer-4, which is not a key of root-v1.",
        "list",
        _signed(list1, (1, 4)),
    )
    refused(
        "list-root-label",
        "list-v1 signed by signer-1 and signer-2 over ROOT_LABEL instead of LIST_LABEL.",
        "list",
        wire_form(
            list1,
            [_sign_with(ROOT_LABEL, list1, signer(1)), _sign_with(ROOT_LABEL, list1, signer(2))],
        ),
    )
    refused(
        "list-old-version",
        "list-v1 offered to a node that holds version 2.",
        "list",
        list1_wire,
        held_version=2,
    )
    refused(
        "list-same-version",
        "list-v2 offered to a node that holds version 2 (a node compares the bytes first to"
        " tell an unchanged list from a replaced one).",
        "list",
        list2_wire,
        held_version=2,
    )
    refused(
        "list-expired",
        "list-v1 at its `expires` (exclusive).",
        "list",
        list1_wire,
        now=EXPIRES,
    )
    future = _list(4, (g.DE, g.FR), issued_at=NOW + MAX_CLOCK_SKEW + timedelta(seconds=1))
    refused(
        "list-future",
        "A list issued one second beyond the allowed clock skew after `now`.",
        "list",
        _signed(future, (1, 2)),
    )
    refused(
        "list-not-canonical",
        "list-v1's wire form with a space after the first colon.",
        "list",
        list1_wire.replace(b":", b": ", 1),
    )
    other = _list(1, (g.DE, g.FR), name="another-umbrella")
    refused(
        "list-wrong-name",
        "A list of another directory signed by signer-1 and signer-2.",
        "list",
        _signed(other, (1, 2)),
    )
    unsorted = dict(list1, members=list(reversed(list1["members"])))
    refused(
        "list-members-unsorted",
        "list-v1 with its members in reverse order, signed by signer-1 and signer-2.",
        "list",
        canonical_json(
            {
                "signed": unsorted,
                "signatures": [sign(unsorted, signer(n)).to_json() for n in (1, 2)],
            }
        ),
    )
    refused("root-as-list", "root-v1 offered as a member list.", "list", root1_wire)
    refused(
        "list-of-the-old-root",
        "list-v1 checked against root-v2: its signers are no longer in the root.",
        "list",
        list1_wire,
        root="root-v2",
    )
    refused(
        "root-below-threshold",
        "root-v1's document signed by signer-1 only (verified as a root given to trust).",
        "root",
        _signed(root1, (1,)),
    )
    refused(
        "rotation-old-keys-only",
        "root-v2 signed by signer-1 and signer-2 of root-v1 only: the new keys did not sign.",
        "rotation",
        _signed(root2, (1, 2)),
    )
    refused(
        "rotation-new-keys-only",
        "root-v2 signed by its own keys only: root-v1's signers did not agree.",
        "rotation",
        _signed(root2, (4, 5, 6)),
    )
    root3 = _root(3, (4, 5, 6))
    refused(
        "rotation-skips-a-version",
        "A root version 3 signed by everyone, offered to a node holding root-v1.",
        "rotation",
        _signed(root3, (1, 2, 3, 4, 5, 6)),
    )

    return {
        "description": (
            "Test vectors for protocol.md §14 (the member directory). Generated by"
            " tests/vectors/generate.py; do not edit by hand. These private keys are public:"
            " never use them for anything but tests."
        ),
        "constants": {
            "root_label_hex": ROOT_LABEL.hex(),
            "list_label_hex": LIST_LABEL.hex(),
            "root_type": ROOT_TYPE,
            "list_type": LIST_TYPE,
            "max_root_bytes": MAX_ROOT_BYTES,
            "max_list_bytes": MAX_LIST_BYTES,
            "max_signatures": MAX_SIGNATURES,
            "max_clock_skew_seconds": int(MAX_CLOCK_SKEW.total_seconds()),
        },
        "seed_rule": SEED_RULE,
        "signers": [
            {
                "name": f"signer-{n}",
                "seed_hex": signer_seed(n).hex(),
                "public_b64url": root_keys_of(n)["key"],
                "kid": root_keys_of(n)["kid"],
            }
            for n in range(1, 7)
        ],
        "roots": {
            "root-v1": _entry(root1, root1_wire, (1, 2, 3)),
            "root-v2": _entry(root2, root2_wire, (1, 2, 4, 5, 6)),
        },
        "lists": [
            {
                "name": name,
                "root": root,
                "now": g.unix(NOW),
                "held_version": held,
                **_entry(document, wire, numbers),
            }
            for name, document, wire, numbers, root, held in lists
        ],
        "negative": negative,
    }


def root_keys_of(number: int) -> dict[str, str]:
    """Signer `number`'s entry in a root's `keys`: {"kid", "key"}."""
    entry: dict[str, str] = root_document(
        name=NAME, version=1, threshold=1, keys=[signer(number).public_key()]
    )["keys"][0]
    return entry


def _sign_with(
    label: bytes, document: dict[str, Any], key: Ed25519PrivateKey
) -> DirectorySignature:
    """A signature over another label than the document's (for a negative vector)."""
    return DirectorySignature(
        sign(document, key).kid, b64url(key.sign(label + canonical_json(document)))
    )
