"""Bulk import: written per table, with the same outcome as importing the lines one by one."""

from __future__ import annotations

from typing import Any

from node.cases import ImportItem
from node.store import audit
from tests.support.federation import Pair


def item(url: str, **fields: Any) -> ImportItem:
    return ImportItem.check({"url": url, "category": "csam", **fields})


async def test_duplicates_within_a_batch_join_the_first_open_case(pair: Pair) -> None:
    cases = pair.fr.node.cases
    results = await cases.import_batch(
        [
            item("http://de.example/a", verdict="baseline", hosting_country="DE"),
            item("HTTP://DE.example/a#frag"),
            item("http://de.example/a"),
            item("http://de.example/b"),
        ],
        actor="import:test",
    )
    assert [(r.duplicate, r.duplicates) for r in results] == [
        (False, 0),
        (True, 1),
        (True, 2),
        (False, 0),
    ]
    assert results[1].report_id == results[0].report_id
    first = await cases.show(results[0].report_id)
    assert first["duplicates"] == 2
    assert first["status"] == "routed"
    assert first["routing"]["decision"] == "peer"
    # A later import of the same URL joins the same case.
    [again] = await cases.import_batch([item("http://de.example/a")], actor="import:test")
    assert (again.report_id, again.duplicates) == (results[0].report_id, 3)
    assert (await audit.verify(pair.fr.node.db)).ok


async def test_a_case_closed_by_its_routing_takes_no_duplicates(pair: Pair) -> None:
    cases = pair.fr.node.cases
    results = await cases.import_batch(
        [
            # Not illegal, with a hosting country: routed at once, and so closed.
            item("http://de.example/n", verdict="not_illegal", hosting_country="DE"),
            item("http://de.example/n"),
            # Not illegal without one: it waits for its trace, open, and takes duplicates.
            item("http://de.example/w", verdict="not_illegal"),
            item("http://de.example/w"),
        ],
        actor="import:test",
    )
    assert [r.duplicate for r in results] == [False, False, False, True]
    assert (await cases.show(results[0].report_id))["status"] == "closed"
    assert results[1].report_id != results[0].report_id
    assert (await cases.show(results[2].report_id))["status"] == "assessed"
    assert results[3].report_id == results[2].report_id


async def test_an_imported_case_for_a_peer_is_queued_with_its_new_version(pair: Pair) -> None:
    cases = pair.fr.node.cases
    [result] = await cases.import_batch(
        [item("http://de.example/p", verdict="baseline", hosting_country="DE")],
        actor="import:test",
    )
    db = pair.fr.node.db
    case = await db.fetch_one("SELECT seq, status FROM reports WHERE id = ?", (result.report_id,))
    assert case is not None
    assert (case["seq"], case["status"]) == (2, "routed")
    versions = await db.fetch_all(
        "SELECT seq FROM report_versions WHERE report_id = ?", (result.report_id,)
    )
    assert [v["seq"] for v in versions] == [2]
    queued = await db.fetch_all(
        "SELECT peer_id, record_type FROM peer_outbox WHERE report_id = ?", (result.report_id,)
    )
    assert [(q["peer_id"], q["record_type"]) for q in queued] == [("de-eco", "report")]
    events = await db.fetch_all(
        "SELECT event FROM audit_log WHERE subject = ? ORDER BY seq", (result.report_id,)
    )
    assert [e["event"] for e in events] == ["report.submitted", "report.assessed", "report.routed"]
