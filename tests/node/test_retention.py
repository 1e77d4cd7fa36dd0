"""Personal data past retention is erased, in the database file and in its WAL."""

from __future__ import annotations

from datetime import timedelta

from node.clock import ManualClock
from node.store import submissions
from tests.support.federation import Pair

CONTACT = "reporter-7f3a9c@example.org"
DESCRIPTION = "seen on a forum, thread 7f3a9c"


async def test_purge_erases_reporters_data_and_leaves_no_copy_on_disk(
    pair: Pair, clock: ManualClock
) -> None:
    node = pair.fr.node
    submitted = await node.cases.submit(
        "http://de.example/r",
        actor="public",
        source="public",
        category="csam",
        description=DESCRIPTION,
        contact=CONTACT,
    )
    [given] = await submissions.for_case(node.db, submitted.report_id)
    assert (given.description, given.contact) == (DESCRIPTION, CONTACT)
    case_received = given.at
    database = node.data_dir.database
    wal = database.with_name(database.name + "-wal")
    assert CONTACT.encode() in wal.read_bytes() + database.read_bytes()

    assert await node.jobs.purge() == 0  # nothing is past retention yet
    clock.advance(timedelta(days=node.config.retention.personal_data_days + 1))
    assert await node.jobs.purge() == 1

    case = await node.db.fetch_one(
        "SELECT description, contact, url FROM reports WHERE id = ?", (submitted.report_id,)
    )
    assert case is not None
    assert (case["description"], case["contact"]) == (None, None)
    assert case["url"] == "http://de.example/r"  # the case itself stays
    [given] = await submissions.for_case(node.db, submitted.report_id)
    assert (given.description, given.contact) == (None, None)
    assert given.at == case_received  # when it was given stays, for the statistics
    for path in (database, wal):
        content = path.read_bytes() if path.exists() else b""
        assert CONTACT.encode() not in content, path.name
        assert DESCRIPTION.encode() not in content, path.name
