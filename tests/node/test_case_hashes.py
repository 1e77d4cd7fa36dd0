"""Hashes on cases: through one door on every path, each bad value refused in one line, kept
once, carried to peers in the report record and kept from theirs (real SQLite, real HTTP)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from node.cases import ImportItem
from node.errors import InvalidInput
from node.store import report_hashes
from protocol.records import ContentHash
from tests.factories import sample_report
from tests.node.test_federation import forward_case, record_frame, signed_push
from tests.node.test_openapi import exchange
from tests.support.federation import Pair
from tests.support.nodes import ApiHarness, table_counts

SHA256 = "sha256:" + "ab" * 32
SHA1 = "sha1:" + "cd" * 20
MD5 = "md5:" + "ef" * 16
PDQ_GOOD = "pdq:" + "f0" * 32 + ":88"
PDQ_POOR = "pdq:" + "0f" * 32 + ":30"
# Each kind of bad value, and the one line that says what is wrong with it.
BAD_HASHES: dict[str, tuple[object, str]] = {
    "no type": ("ab" * 32, "a hash is written TYPE:VALUE, TYPE one of md5, sha1, sha256, pdq"),
    "unknown type": (
        "crc32:" + "ab" * 4,
        "unknown hash type 'crc32': one of md5, sha1, sha256, pdq",
    ),
    "not hexadecimal": ("sha256:" + "zz" * 32, "sha256 value must be hexadecimal"),
    "wrong length": ("md5:" + "ab" * 20, "md5 value must be 32 hexadecimal digits (got 40)"),
    "quality on sha1": (SHA1 + ":80", "only a pdq hash carries a quality (pdq:HEX:QUALITY)"),
    "quality too high": ("pdq:" + "f0" * 32 + ":101", "PDQ quality must be a whole number"),
    "quality not a number": ("pdq:" + "f0" * 32 + ":high", "PDQ quality must be a whole number"),
    "not text": (5, "a hash must be text such as sha256:HEX"),
}


async def audit_events(api_node: Any, report_id: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await api_node.db.fetch_all(
        "SELECT event, details FROM audit_log WHERE subject = ? ORDER BY seq", (report_id,)
    )
    return [(r["event"], orjson.loads(r["details"])) for r in rows]


async def test_hashes_given_at_submit_are_kept_once_each_and_audited(api: ApiHarness) -> None:
    cases = api.node.cases
    first = await cases.submit(
        "http://de.example/h/1.jpg", actor="alice", hashes=[SHA256, MD5, PDQ_POOR, SHA256]
    )
    # The same URL again: the open case takes the hashes it lacks, the others change nothing.
    again = await cases.submit(
        "http://de.example/h/1.jpg",
        actor="bob",
        hashes=[SHA256.upper().replace("SHA", "sha"), SHA1],
    )
    assert (again.report_id, again.duplicate) == (first.report_id, True)
    # Oldest first; the same moment (this test's clock stands still) by type and value.
    shown = (await cases.show(first.report_id))["hashes"]
    assert [(h["type"], h["source"], h["quality"], h["matchable"]) for h in shown] == [
        ("md5", "analyst", None, True),
        ("pdq", "analyst", 30, False),
        ("sha1", "analyst", None, True),
        ("sha256", "analyst", None, True),
    ]
    assert shown[3]["value"] == "ab" * 32
    assert shown[1]["unmatched_reason"] == "PDQ quality 30 is below 50: kept, but never matched"
    assert [h["unmatched_reason"] for h in shown if h["type"] != "pdq"] == [None] * 3
    added = [
        d for e, d in await audit_events(api.node, first.report_id) if e == "report.hashes_added"
    ]
    assert added == [
        {"source": "analyst", "hashes": [SHA256, MD5, PDQ_POOR]},
        {"source": "analyst", "hashes": [SHA1]},
    ]
    # Adding what the case holds changes nothing, and says so by adding nothing.
    assert await cases.add_hashes(first.report_id, [SHA1, MD5], actor="alice") == []
    assert len(await report_hashes.for_report(api.node.db, first.report_id)) == 4


@pytest.mark.parametrize("kind", list(BAD_HASHES))
async def test_each_kind_of_bad_hash_is_refused_in_one_line_with_nothing_written(
    api: ApiHarness, kind: str
) -> None:
    value, reason = BAD_HASHES[kind]
    existing = await api.node.cases.submit("http://de.example/h/ok.jpg", actor="alice")
    before = await table_counts(api.node)
    with pytest.raises(InvalidInput) as refused:
        await api.node.cases.submit("http://de.example/h/2.jpg", actor="alice", hashes=[value])
    assert reason in str(refused.value)
    assert "\n" not in str(refused.value)
    with pytest.raises(InvalidInput) as refused:
        await api.node.cases.add_hashes(existing.report_id, [SHA256, value], actor="alice")
    assert reason in str(refused.value)
    with pytest.raises(InvalidInput) as refused:
        ImportItem.check({"url": "http://de.example/h/3.jpg", "hashes": [value]})
    assert reason in str(refused.value)
    assert await table_counts(api.node) == before
    assert await report_hashes.for_report(api.node.db, existing.report_id) == []


def test_an_import_line_takes_a_list_or_a_cell_of_hashes_separated_by_spaces() -> None:
    from_json = ImportItem.check({"url": "http://de.example/i", "hashes": [SHA256, PDQ_GOOD]})
    from_csv = ImportItem.check({"url": "http://de.example/i", "hashes": f" {SHA256}  {PDQ_GOOD} "})
    assert from_json.intake.hashes == from_csv.intake.hashes
    assert [h.text for h in from_csv.intake.hashes] == [SHA256, PDQ_GOOD]
    for shape in ({"sha256": "ab"}, True, 3):
        with pytest.raises(InvalidInput, match="hashes must be a list of TYPE:VALUE texts"):
            ImportItem.check({"url": "http://de.example/i", "hashes": shape})


async def test_the_analyst_api_takes_hashes_and_answers_as_documented(api: ApiHarness) -> None:
    client, analyst = api.client, api.analyst
    created = await exchange(
        client,
        "POST",
        "/api/v1/reports",
        "/api/v1/reports",
        token=analyst,
        body={"url": "http://de.example/api/1.jpg", "hashes": [SHA256, PDQ_POOR]},
    )
    assert created.status == 201
    path = f"/api/v1/reports/{created.body['id']}"
    added = await exchange(
        client,
        "POST",
        "/api/v1/reports/{id}/hashes",
        f"{path}/hashes",
        token=analyst,
        body={"hashes": [SHA1, SHA256]},
    )
    assert added.status == 200
    assert [(h["type"], h["value"]) for h in added.body["hashes"]] == [
        ("pdq", "0f" * 32),
        ("sha1", "cd" * 20),
        ("sha256", "ab" * 32),
    ]
    shown = await exchange(client, "GET", "/api/v1/reports/{id}", path, token=analyst)
    assert shown.body["hashes"] == added.body["hashes"]
    before = await table_counts(api.node)
    for value, reason in BAD_HASHES.values():
        for template, url, body in (
            ("/api/v1/reports", "/api/v1/reports", {"url": "http://de.example/api/2.jpg"}),
            ("/api/v1/reports/{id}/hashes", f"{path}/hashes", {}),
        ):
            refused = await exchange(
                client,
                "POST",
                template,
                url,
                token=analyst,
                body={**body, "hashes": [SHA1, value]},
                check_body=False,
            )
            assert refused.status == 422, refused.body
            assert refused.content_type == "application/problem+json"
            assert reason in refused.body["detail"]
    empty = await exchange(
        client, "POST", "/api/v1/reports/{id}/hashes", f"{path}/hashes", token=analyst,
        body={"hashes": []}, check_body=False,
    )  # fmt: skip
    assert empty.status == 422
    assert empty.body["detail"] == "give at least one hash (TYPE:VALUE)"
    assert await table_counts(api.node) == before
    missing = await exchange(
        client,
        "POST",
        "/api/v1/reports/{id}/hashes",
        "/api/v1/reports/2f1e7c1a-5b6d-4e8f-9a0b-1c2d3e4f5a6b/hashes",
        token=analyst,
        body={"hashes": [SHA1]},
    )
    assert missing.status == 404
    # The public gives no hashes: its body has no such field.
    public = await api.post(
        "/api/v1/public/reports",
        {"url": "http://fr.example/p", "description": "a post", "hashes": [SHA256]},
    )
    assert public.status == 422
    assert "hashes" in (await public.json())["detail"]


async def test_an_imported_case_for_a_peer_carries_its_lines_hashes_in_its_version(
    pair: Pair,
) -> None:
    cases = pair.fr.node.cases
    line = {"url": "http://de.example/imp", "category": "csam", "verdict": "baseline"}
    results = await cases.import_batch(
        [
            ImportItem.check({**line, "hosting_country": "DE", "hashes": [SHA256]}),
            # A later line of the same URL joins the case: its hashes travel with it too.
            ImportItem.check({"url": "http://de.example/imp", "hashes": f"{MD5} {SHA256}"}),
        ],
        actor="import:test",
    )
    report_id = results[0].report_id
    assert results[1].report_id == report_id
    [version] = await pair.fr.node.db.fetch_all(
        "SELECT seq, payload FROM report_versions WHERE report_id = ?", (report_id,)
    )
    carried = orjson.loads(version["payload"])["hashes"]
    assert carried == [{"alg": "sha256", "value": "ab" * 32}, {"alg": "md5", "value": "ef" * 16}]
    await pair.fr.settle()
    at_de = await pair.de.node.cases.show(report_id)
    assert {(h["type"], h["value"], h["source"]) for h in at_de["hashes"]} == {
        ("sha256", "ab" * 32, "peer:fr-pdc"),
        ("md5", "ef" * 16, "peer:fr-pdc"),
    }


async def test_hashes_reach_the_peer_holding_the_case_and_later_ones_follow(pair: Pair) -> None:
    cases = pair.fr.node.cases
    submitted = await cases.submit(
        "http://de.example/fwd.jpg", actor="ana", category="csam", hashes=[SHA256, PDQ_GOOD]
    )
    await pair.fr.node.trace_pending()
    await cases.assess(
        submitted.report_id, verdict="baseline", category="csam", legal_basis="227-23", actor="ana"
    )
    await pair.fr.settle()
    report_id = submitted.report_id
    at_de = await pair.de.node.cases.show(report_id)
    # DE announces it reads a PDQ quality: the quality travels with the digest.
    assert [(h["type"], h["value"], h["quality"], h["source"]) for h in at_de["hashes"]] == [
        ("pdq", "f0" * 32, 88, "peer:fr-pdc"),
        ("sha256", "ab" * 32, None, "peer:fr-pdc"),
    ]
    added = await cases.add_hashes(report_id, [SHA1], actor="ana")
    assert [value.text for value in added] == [SHA1]
    await pair.fr.settle()
    at_de = await pair.de.node.cases.show(report_id)
    assert ("sha1", "cd" * 20) in {(h["type"], h["value"]) for h in at_de["hashes"]}
    head = await pair.de.node.db.fetch_one("SELECT seq FROM reports WHERE id = ?", (report_id,))
    assert head is not None
    assert head["seq"] == 3  # submitted 1, routed 2, routed again with the new hash 3
    assert (await cases.show(report_id))["routing"]["decision"] == "peer"
    # The same hash again sends nothing new.
    assert await cases.add_hashes(report_id, [SHA1], actor="ana") == []
    pending = await pair.fr.node.db.fetch_all(
        "SELECT seq FROM peer_outbox WHERE report_id = ? AND state = 'pending'", (report_id,)
    )
    assert pending == []
    # DE's own analyst may put hashes on the case it holds: kept there, never sent back.
    assert await pair.de.node.cases.add_hashes(report_id, [MD5], actor="bea")
    assert await pair.de.node.delivery.pending_peers() == []


async def test_a_peers_hash_of_the_wrong_length_is_dropped_and_the_case_says_so(
    pair: Pair,
) -> None:
    report = sample_report(pair.fr.node_id).model_copy(
        update={
            "hashes": (
                ContentHash(alg="sha256", value="12" * 32),
                ContentHash(alg="md5", value="34" * 32),  # an md5 is 32 digits, not 64
            )
        }
    )
    status, answer, _, _ = await signed_push(
        pair.fr, pair.de.url, "txn-hashes-1", [record_frame(pair.fr, pair.de, report)]
    )
    assert status == 200, answer
    at_de = await pair.de.node.cases.show(str(report.id))
    assert [(h["type"], h["value"]) for h in at_de["hashes"]] == [("sha256", "12" * 32)]
    assert any(
        "the origin's hash md5:3434343434343434… dropped: md5 value must be 32 hexadecimal"
        " digits (got 64)" in error
        for error in at_de["hosting"]["errors"]
    ), at_de["hosting"]["errors"]


async def test_a_hash_added_once_the_peer_no_longer_holds_the_case_sends_it_nothing(
    pair: Pair,
) -> None:
    cases, db = pair.fr.node.cases, pair.fr.node.db
    report_id = await forward_case(pair, "http://de.example/moved.jpg")
    # Found to be hosted at home after all: DE is sent a withdrawal, and holds it no more.
    await cases.override_jurisdiction(
        report_id, country="FR", reason="the host moved it to France", actor="ana"
    )
    await pair.fr.settle()
    queued = "SELECT record_type FROM peer_outbox WHERE report_id = ? ORDER BY seq"
    before = [r["record_type"] for r in await db.fetch_all(queued, (report_id,))]
    assert before[-1] == "withdrawal"
    added = await cases.add_hashes(report_id, [SHA256], actor="ana")
    assert [value.text for value in added] == [SHA256]
    assert [r["record_type"] for r in await db.fetch_all(queued, (report_id,))] == before
    assert (await cases.show(report_id))["routing"]["decision"] == "domestic"


async def test_a_case_holds_at_most_256_hashes_the_most_a_report_record_carries(
    pair: Pair,
) -> None:
    many = [f"sha256:{n:064x}" for n in range(257)]
    cases, db = pair.fr.node.cases, pair.fr.node.db
    # Two lines of one URL, routed to DE at once: refused before its version is built.
    line = {"url": "http://de.example/many", "category": "csam", "verdict": "baseline"}
    with pytest.raises(InvalidInput, match=r"a case holds at most 256 hashes \(report "):
        await cases.import_batch(
            [
                ImportItem.check({**line, "hosting_country": "DE", "hashes": many[:200]}),
                ImportItem.check({"url": line["url"], "hashes": many[200:]}),
            ],
            actor="import:test",
        )
    assert await db.fetch_all("SELECT id FROM reports") == []
    submitted = await cases.submit("http://de.example/many-2", actor="ana", hashes=many[:256])
    with pytest.raises(InvalidInput, match=r"a case holds at most 256 hashes \(report "):
        await cases.add_hashes(submitted.report_id, many[256:], actor="ana")
    assert len(await report_hashes.for_report(db, submitted.report_id)) == 256
    with pytest.raises(InvalidInput, match="at most 256 hashes at once"):
        await cases.submit("http://de.example/many-3", actor="ana", hashes=many)
