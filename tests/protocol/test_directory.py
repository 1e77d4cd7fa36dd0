"""protocol/directory.py: what a node accepts from a root and a member list, at the edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from keys.canonical import canonical_json
from keys.thumbprint import b64url
from protocol.directory import (
    MAX_CLOCK_SKEW,
    MAX_LIST_BYTES,
    MAX_SIGNATURES,
    DirectoryError,
    DirectorySignature,
    Member,
    Refusal,
    Root,
    list_document,
    root_document,
    sign,
    verify_list,
    verify_list_signatures,
    verify_root,
    verify_rotation,
    wire_form,
)
from tests.vectors.directory import signer

ISSUED = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
NOW = ISSUED + timedelta(hours=1)
KEYS = [signer(n) for n in range(1, 7)]
OLD, NEW = KEYS[:3], KEYS[3:]


def unix(at: datetime) -> int:
    return int(at.timestamp())


def member(node_id: str, fingerprint: str = "") -> Member:
    return Member(
        node_id=node_id,
        country="FR",
        endpoint=f"https://{node_id}.example",
        fingerprint=fingerprint or b64url(node_id.encode().ljust(32, b"\0")[:32]),
    )


def root_of(keys: list[Ed25519PrivateKey], threshold: int = 2, version: int = 1) -> dict[str, Any]:
    return root_document(
        name="umbrella", version=version, threshold=threshold, keys=[k.public_key() for k in keys]
    )


def signed(document: dict[str, Any], keys: list[Ed25519PrivateKey]) -> bytes:
    return wire_form(document, [sign(document, k) for k in keys])


ROOT = verify_root(signed(root_of(OLD), OLD))


def a_list(version: int = 1, issued: datetime = ISSUED, **changes: Any) -> dict[str, Any]:
    document = list_document(
        name="umbrella",
        version=version,
        issued_at=unix(issued),
        expires=unix(issued + timedelta(days=7)),
        members=[member("de-eco"), member("fr-pointdecontact")],
    )
    return {**document, **changes}


def refusal(wire: bytes, root: Root = ROOT, **options: Any) -> Refusal:
    with pytest.raises(DirectoryError) as refused:
        verify_list(wire, root, now=options.pop("now", NOW), **options)
    assert "\n" not in refused.value.reason
    return refused.value.refusal


def test_a_list_signed_by_the_threshold_is_taken_with_what_it_says() -> None:
    wire = signed(a_list(), OLD[:2])
    taken = verify_list(wire, ROOT, now=NOW)
    assert (taken.name, taken.version, taken.wire) == ("umbrella", 1, wire)
    assert [m.node_id for m in taken.members] == ["de-eco", "fr-pointdecontact"]
    assert taken.member("de-eco") == member("de-eco")
    assert taken.member("it-hotline") is None
    assert len(taken.signed_by) == 2
    assert not taken.is_expired(NOW)
    assert taken.is_expired(ISSUED + timedelta(days=7))


def test_the_validity_window_and_the_clock_skew_at_their_edges() -> None:
    wire = signed(a_list(), OLD[:2])
    expires = ISSUED + timedelta(days=7)
    verify_list(wire, ROOT, now=expires - timedelta(seconds=1))
    assert refusal(wire, now=expires) is Refusal.EXPIRED
    ahead = signed(a_list(issued=NOW + MAX_CLOCK_SKEW), OLD[:2])
    verify_list(ahead, ROOT, now=NOW)
    too_far = signed(a_list(issued=NOW + MAX_CLOCK_SKEW + timedelta(seconds=1)), OLD[:2])
    assert refusal(too_far) is Refusal.FUTURE
    # A list held and expired is still read back (the last good list stays in force).
    assert verify_list_signatures(wire, ROOT).version == 1


def test_versions_only_go_forward() -> None:
    wire = signed(a_list(version=5), OLD[:2])
    verify_list(wire, ROOT, now=NOW, held_version=4)
    assert refusal(wire, held_version=5) is Refusal.STALE
    assert refusal(wire, held_version=6) is Refusal.STALE


def test_unknown_members_are_ignored_and_still_signed() -> None:
    document = a_list(note="added by a newer umbrella")
    document["members"][0] = {**document["members"][0], "region": "EU"}
    wire = signed(document, OLD[:2])
    assert verify_list(wire, ROOT, now=NOW).members[0] == member("de-eco")
    tampered = wire.replace(b"newer", b"older")
    assert refusal(tampered) is Refusal.SIGNATURES


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (b'{"signed":{},"signatures":[],"extra":1}', Refusal.MALFORMED),
        (b"[]", Refusal.MALFORMED),
        (b"not json", Refusal.MALFORMED),
        (b'{"signatures":[{"kid":"x","sig":"y"}],"signed":{}}', Refusal.MALFORMED),
        (b'{"signatures":[],"signed":{"a":1.5}}', Refusal.NOT_CANONICAL),
        (b'{"signatures":[],"signed":{"a":9007199254740992}}', Refusal.NOT_CANONICAL),
        (b'{"signatures":[],"signed":{"a":1,"a":1}}', Refusal.NOT_CANONICAL),
        (b'{"signed":{},"signatures":[]}', Refusal.NOT_CANONICAL),
        (b'{"signatures":[],"signed":{}}\n', Refusal.NOT_CANONICAL),
        (b'{"signatures":[],"signed":{"type":"hotline-directory-root"}}', Refusal.WRONG_TYPE),
        (b'{"signatures":[],"signed":{"type":"hotline-directory"}}', Refusal.MALFORMED),
    ],
)
def test_malformed_and_non_canonical_wires(bad: bytes, expected: Refusal) -> None:
    assert refusal(bad) is expected


def test_size_is_checked_before_anything_is_parsed() -> None:
    assert refusal(b"{" * (MAX_LIST_BYTES + 1)) is Refusal.OVERSIZED


def test_too_many_signatures_are_refused_unread() -> None:
    document = a_list()
    entry = sign(document, OLD[0]).to_json()
    wire = canonical_json({"signed": document, "signatures": [entry] * (MAX_SIGNATURES + 1)})
    assert refusal(wire) is Refusal.MALFORMED


@pytest.mark.parametrize(
    ("members", "problem"),
    [
        ([member("fr-a"), member("de-b")], "out of order"),
        ([member("de-b"), member("de-b")], "twice"),
        ([member("de-b", "A" * 43), member("fr-a", "A" * 43)], "same fingerprint"),
    ],
)
def test_members_are_sorted_unique_and_hold_distinct_keys(
    members: list[Member], problem: str
) -> None:
    document = {**a_list(), "members": [m.to_json() for m in members]}
    with pytest.raises(DirectoryError, match=problem):
        verify_list(signed(document, OLD[:2]), ROOT, now=NOW)


def test_roots_are_checked_key_by_key() -> None:
    with pytest.raises(DirectoryError, match="more than its 3 key"):
        root_of(OLD, threshold=4)
    document = root_of(OLD)
    swapped = {**document, "keys": [{**document["keys"][0], "kid": document["keys"][1]["kid"]}]}
    with pytest.raises(DirectoryError, match="not the thumbprint"):
        verify_root(signed(swapped, OLD))
    twice = {**document, "keys": [document["keys"][0]] * 2, "threshold": 1}
    with pytest.raises(DirectoryError, match="twice"):
        verify_root(signed(twice, OLD))
    with pytest.raises(DirectoryError) as refused:
        verify_root(signed(document, OLD[:1]))
    assert refused.value.refusal is Refusal.SIGNATURES
    assert "signed by 1 of its own 3 keys, 2 needed" in refused.value.reason


def test_a_rotation_needs_both_thresholds_and_the_next_version() -> None:
    new = root_of(NEW, version=2)
    assert verify_rotation(ROOT, signed(new, OLD[:2] + NEW[:2])).kids == {
        k.kid for k in (sign(new, key) for key in NEW)
    }
    for keys in (OLD, NEW, OLD[:1] + NEW, OLD + NEW[:1]):
        with pytest.raises(DirectoryError) as refused:
            verify_rotation(ROOT, signed(new, keys))
        assert refused.value.refusal is Refusal.SIGNATURES
    same = root_of(NEW, version=1)
    with pytest.raises(DirectoryError) as stale:
        verify_rotation(ROOT, signed(same, OLD + NEW))
    assert stale.value.refusal is Refusal.STALE
    renamed = {**new, "name": "another"}
    with pytest.raises(DirectoryError) as wrong:
        verify_rotation(ROOT, signed(renamed, OLD + NEW))
    assert wrong.value.refusal is Refusal.WRONG_NAME


def test_sign_refuses_what_is_not_a_directory_document() -> None:
    with pytest.raises(ValueError, match="not a directory document"):
        sign({"type": "report"}, OLD[0])


# --- properties ---------------------------------------------------------------------------------

EXACT = signed(a_list(), OLD[:2])


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, len(EXACT) - 1), byte=st.integers(0, 255))
def test_any_changed_byte_of_a_list_signed_by_exactly_the_threshold_is_refused(
    index: int, byte: int
) -> None:
    if EXACT[index] == byte:
        return
    changed = EXACT[:index] + bytes([byte]) + EXACT[index + 1 :]
    with pytest.raises(DirectoryError):
        verify_list(changed, ROOT, now=NOW)


@settings(max_examples=100, deadline=None)
@given(
    signers=st.lists(st.sampled_from(range(6)), max_size=12),
    junk=st.lists(
        st.tuples(st.sampled_from(range(6)), st.binary(min_size=64, max_size=64)), max_size=20
    ),
    order=st.randoms(use_true_random=False),
)
def test_a_list_is_taken_iff_distinct_root_keys_with_valid_signatures_reach_the_threshold(
    signers: list[int], junk: list[tuple[int, bytes]], order: Any
) -> None:
    """Whatever is repeated, forged or signed by strangers, each key of the root counts once."""
    document = a_list()
    entries = [sign(document, KEYS[n]) for n in signers]
    entries += [DirectorySignature(sign(document, KEYS[n]).kid, b64url(sig)) for n, sig in junk]
    order.shuffle(entries)
    wire = canonical_json({"signed": document, "signatures": [e.to_json() for e in entries]})
    counted = {n for n in signers if n < 3}  # KEYS[:3] are the root's
    if len(counted) >= 2:
        assert verify_list(wire, ROOT, now=NOW).signed_by == {
            sign(document, KEYS[n]).kid for n in counted
        }
    else:
        assert refusal(wire) is Refusal.SIGNATURES


node_ids = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True)


@settings(max_examples=50, deadline=None)
@given(ids=st.sets(node_ids, max_size=20))
def test_any_set_of_members_is_written_sorted_and_read_back_as_written(ids: set[str]) -> None:
    members = [
        member(node_id, b64url(bytes(32 - len(node_id)) + node_id.encode())) for node_id in ids
    ]
    document = list_document(
        name="umbrella",
        version=1,
        issued_at=unix(ISSUED),
        expires=unix(ISSUED + timedelta(days=1)),
        members=members,
    )
    wire = signed(document, OLD[1:])
    taken = verify_list(wire, ROOT, now=NOW)
    assert [m.node_id for m in taken.members] == sorted(ids)
    assert orjson.loads(wire)["signed"] == document
    assert canonical_json(orjson.loads(wire)) == wire
