"""The `hashset` record, the key document's `accepts`, and reports written for v1 readers."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
import rfc8785

from keys import build_key_document, sign_key_document, verify_key_document
from keys.thumbprint import b64url_decode
from protocol import (
    MAX_ENVELOPE_BYTES,
    HashSet,
    MemoryReplayGuard,
    RecordError,
    SealError,
    open_envelope,
    parse_record,
    record_bytes,
    seal,
)
from protocol.features import ACCEPTED, HASHSET, PDQ_QUALITY, SHA1, report_for
from protocol.records import (
    MAX_HASH_SET_ENTRIES,
    ContentHash,
    HashAlgorithm,
)
from tests.factories import NOW, Directory, make_node, sample_report
from tests.vectors import generate

FR = make_node("fr-pdc", "FR", NOW - timedelta(days=1))
DE = make_node("de-eco", "DE", NOW - timedelta(days=1))
SHA256 = hashlib.sha256(b"x").hexdigest()
SHA1_HEX = hashlib.sha1(b"x").hexdigest()
MD5 = hashlib.md5(b"x").hexdigest()
PDQ = hashlib.sha256(b"pdq").hexdigest()


def addition(**changes: Any) -> dict[str, Any]:
    return {"alg": "sha256", "value": SHA256, "category": "csam", "use": "hotlines", **changes}


def hashset(**changes: Any) -> dict[str, Any]:
    return {
        "type": "hashset",
        "v": 1,
        "id": str(uuid4()),
        "origin": "fr-pdc",
        "name": "known-fr",
        "seq": 1,
        "at": "2026-11-29T12:00:00Z",
        "add": [addition()],
        "remove": [{"alg": "md5", "value": MD5}],
        **changes,
    }


def parse(payload: dict[str, Any]) -> HashSet:
    record = parse_record(json.dumps(payload).encode(), "hashset")
    assert isinstance(record, HashSet)
    return record


def test_a_hashset_round_trips_and_its_bytes_are_rfc8785() -> None:
    record = parse(
        hashset(
            add=[
                addition(grade="A", added_at="2026-11-28T09:00:00Z"),
                addition(alg="sha1", value=SHA1_HEX, use="industry"),
                addition(alg="pdq", value=PDQ, quality=80),
            ]
        )
    )
    payload = record_bytes(record)
    assert payload == rfc8785.dumps(json.loads(payload))
    assert parse_record(payload) == record
    algs = [HashAlgorithm.SHA256, HashAlgorithm.SHA1, HashAlgorithm.PDQ]
    assert [a.alg for a in record.add] == algs


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"add": [addition(value=SHA256[:40])]}, "add.0"),  # a sha256 value of sha1's length
        ({"remove": [{"alg": "md5", "value": SHA256}]}, "remove.0"),
        ({"add": [addition(value=SHA256.upper())]}, "add.0.value"),
        ({"add": [addition(quality=80)]}, "add.0"),  # a quality on a sha256
        ({"add": [addition(alg="pdq", value=PDQ, quality=101)]}, "add.0.quality"),
        ({"add": [addition(alg="pdq", value=PDQ, quality=True)]}, "add.0.quality"),
        ({"add": [addition(use="everyone")]}, "add.0.use"),
        ({"add": [addition(category="spam")]}, "add.0.category"),
        ({"add": [addition(grade="A\nB")]}, "add.0.grade"),
        ({"add": [addition(grade="x" * 33)]}, "add.0.grade"),
        ({"add": [addition(note="kept at home")]}, "add.0.note"),
        ({"add": [], "remove": []}, ""),
        ({"remove": [{"alg": "sha256", "value": SHA256}]}, ""),  # added and removed at once
        ({"add": [addition(), addition()], "remove": []}, ""),
        ({"name": "de-eco/known"}, "name"),
        ({"name": "Known"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"seq": 0}, "seq"),
        ({"seq": "1"}, "seq"),
        ({"at": "2026-11-29T12:00:00"}, "at"),
        ({"add": [addition(value=f"{n:064x}") for n in range(MAX_HASH_SET_ENTRIES + 1)]}, "add"),
    ],
)
def test_a_hashset_breaking_a_rule_is_refused(changes: dict[str, Any], where: str) -> None:
    with pytest.raises(RecordError) as refused:
        parse(hashset(**changes))
    assert str(refused.value).startswith(f"invalid record: {where}")


def test_the_largest_hashset_fits_in_a_frame() -> None:
    """At its bounds (500 entries each way, every member at its longest) a record seals well
    inside the frame limit: a change larger than that is several records, never too large."""
    longest = {
        "alg": "sha256",
        "category": "terrorism",
        "grade": "G" * 32,
        "use": "hotlines",
        "added_at": "2026-11-29T12:00:00.123456Z",
    }
    record = parse(
        hashset(
            name="n" * 64,
            seq=2**53 - 1,
            add=[{**longest, "value": f"{n:064x}"} for n in range(MAX_HASH_SET_ENTRIES)],
            remove=[
                {"alg": "sha256", "value": f"{n + MAX_HASH_SET_ENTRIES:064x}"}
                for n in range(MAX_HASH_SET_ENTRIES)
            ],
        )
    )
    payload = record_bytes(record)
    assert len(payload) < 170_000
    frame = seal(
        record,
        sender="fr-pdc",
        signing_key=FR.keys.current_signing(NOW),
        recipient="de-eco",
        recipient_kid=DE.keys.encryption[0].kid,
        recipient_key=DE.keys.encryption[0].private.public_key(),
        msg_id=uuid4(),
        now=NOW,
    )
    assert len(frame) < MAX_ENVELOPE_BYTES * 2 // 3
    opened = open_envelope(
        frame,
        recipient="de-eco",
        keys=DE.keys,
        peers=Directory(FR),
        replay=MemoryReplayGuard(),
        now=NOW,
    )
    assert opened.record == record
    assert opened.header.type == "hashset"


def test_only_the_origin_may_sign_its_hashset() -> None:
    record = parse(hashset(origin="de-eco"))
    with pytest.raises(SealError, match="may not sign a hashset written by de-eco"):
        seal(
            record,
            sender="fr-pdc",
            signing_key=FR.keys.current_signing(NOW),
            recipient="de-eco",
            recipient_kid=DE.keys.encryption[0].kid,
            recipient_key=DE.keys.encryption[0].private.public_key(),
            msg_id=uuid4(),
            now=NOW,
        )


# --- a report's hashes: sha1 and quality, for readers that announce them -------------------


def test_a_report_hash_carries_a_quality_only_for_pdq() -> None:
    assert ContentHash(alg="pdq", value=PDQ, quality=49).quality == 49
    with pytest.raises(ValueError, match="only a pdq hash carries a quality"):
        ContentHash(alg="sha256", value=SHA256, quality=49)


def test_a_report_goes_whole_to_a_reader_of_everything_and_without_the_rest_to_others() -> None:
    report = sample_report().model_copy(
        update={
            "hashes": (
                ContentHash(alg="sha256", value=SHA256),
                ContentHash(alg="sha1", value=SHA1_HEX),
                ContentHash(alg="pdq", value=PDQ, quality=90),
                ContentHash(alg="md5", value=MD5),
            )
        }
    )
    assert report_for(report, ACCEPTED) is report
    v1 = report_for(report, ())
    assert [(h.alg.value, h.quality) for h in v1.hashes] == [
        ("sha256", None),
        ("pdq", None),
        ("md5", None),
    ]
    # What a v1 reader gets parses with the rules of v1 (no sha1, no quality member).
    v1_bytes = record_bytes(v1)
    assert b"sha1" not in v1_bytes
    assert b"quality" not in v1_bytes
    assert v1.model_copy(update={"hashes": ()}) == report.model_copy(update={"hashes": ()})
    assert [h.alg.value for h in report_for(report, {SHA1}).hashes] == [
        "sha256",
        "sha1",
        "pdq",
        "md5",
    ]
    assert report_for(report, {PDQ_QUALITY}).hashes[1].quality == 90
    plain = sample_report()
    assert report_for(plain, ()) is plain


# --- the key document's `accepts` --------------------------------------------------------------


def test_accepts_is_written_sorted_only_when_it_names_something() -> None:
    plain = build_key_document(FR.keys, node_id="fr-pdc", country="FR", endpoint="x", now=NOW)
    assert plain.accepts is None
    assert b"accepts" not in sign_key_document(plain, FR.keys)
    document = build_key_document(
        FR.keys,
        node_id="fr-pdc",
        country="FR",
        endpoint="x",
        now=NOW,
        accepts=["sha1", HASHSET, "sha1"],
    )
    wire = sign_key_document(document, FR.keys)
    body = json.loads(b64url_decode(json.loads(wire)["document"]))
    assert body["accepts"] == ["hashset", "sha1"]
    read = verify_key_document(wire, pinned_fingerprint=FR.keys.fingerprint)
    assert read.accepted == {"hashset", "sha1"}


def test_the_vectors_accepting_document_verifies_and_is_reproduced() -> None:
    vectors = json.loads(generate.VECTORS_PATH.read_text(encoding="utf-8"))
    entry = vectors["accepting_key_document"]
    node = vectors["nodes"][entry["node_id"]]
    wire = b64url_decode(entry["wire_b64url"])
    document = verify_key_document(wire, pinned_fingerprint=node["identity"]["fingerprint"])
    assert document.accepts == entry["accepts"] == entry["document"]["accepts"]
    assert sorted(document.accepted) == list(ACCEPTED)
    assert "accepts" not in node["key_document"]["document"]
    keys = generate.all_node_keys()[entry["node_id"]]
    again = build_key_document(
        keys,
        node_id=node["node_id"],
        country=node["country"],
        endpoint=node["endpoint"],
        now=generate.DOCUMENT_ISSUED_AT,
        accepts=entry["accepts"],
    )
    assert sign_key_document(again, keys) == wire
    # Apart from `accepts`, the same document as the one announcing nothing.
    plain = dict(entry["document"])
    del plain["accepts"]
    assert plain == node["key_document"]["document"]
