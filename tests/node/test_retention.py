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


async def test_each_submission_is_kept_for_the_retention_from_when_it_was_given(
    pair: Pair, clock: ManualClock
) -> None:
    """A later reporter's words on an old case are younger personal data: they stay until their
    own retention ends; the first reporter's go at theirs. When each came stays."""
    node = pair.fr.node
    days = node.config.retention.personal_data_days
    url = "http://de.example/twice"
    first = await node.cases.submit(
        url, actor="public", source="public", description="first words", contact=CONTACT
    )
    clock.advance(timedelta(days=days - 1))
    later = await node.cases.submit(
        url, actor="public", source="public", description="later words", contact="b@example.org"
    )
    assert later.report_id == first.report_id
    clock.advance(timedelta(days=2))
    assert await node.jobs.purge() == 1
    given = await submissions.for_case(node.db, first.report_id)
    assert [(g.description, g.contact) for g in given] == [
        (None, None),
        ("later words", "b@example.org"),
    ]
    assert given[0].at < given[1].at
    entry = await node.db.fetch_one(
        "SELECT details FROM audit_log WHERE event = 'retention.purged' ORDER BY rowid DESC"
    )
    assert entry is not None
    assert '"submissions":1' in entry["details"].replace(" ", "")
