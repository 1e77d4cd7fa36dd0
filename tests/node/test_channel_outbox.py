"""The channel outbox's store rules, on a real SQLite file: requeue, settling, dead letters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node.store import channel_outbox
from node.store.channel_outbox import ChannelItem, DeadRow
from node.store.db import Database, Tx

AT = "2026-03-01T10:00:00Z"
LATER = "2026-03-02T10:00:00Z"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "node.sqlite3")
    try:
        yield database
    finally:
        await database.close()


async def queue(db: Database, *items: tuple[str, str]) -> list[int]:
    """Queue (role, report id) rows; returns their ids in order."""

    def transaction(conn: Tx) -> list[int]:
        channel_outbox.enqueue_txn(
            conn,
            [
                ChannelItem(role, report_id, "report", {"report_id": report_id}, AT)
                for role, report_id in items
            ],
        )
        return [int(row[0]) for row in conn.execute("SELECT id FROM channel_outbox ORDER BY id")]

    return await db.run(transaction)


async def rows(db: Database) -> dict[int, dict[str, Any]]:
    return {
        int(row["id"]): dict(row)
        for row in await db.fetch_all("SELECT * FROM channel_outbox ORDER BY id")
    }


async def letters(db: Database) -> list[tuple[Any, ...]]:
    return [
        tuple(row)
        for row in await db.fetch_all(
            "SELECT peer_id, direction, seq, record_type, record_id, reason FROM dead_letters"
            " ORDER BY id"
        )
    ]


async def test_queued_rows_hold_their_role_and_are_due_at_once(db: Database) -> None:
    [police, host] = await queue(db, ("law_enforcement", "r1"), ("host_notice", "r2"))
    due = await channel_outbox.due(db, AT, 10)
    assert [(row.id, row.role, row.report_id, row.kind) for row in due] == [
        (police, "law_enforcement", "r1", "report"),
        (host, "host_notice", "r2", "report"),
    ]
    assert await channel_outbox.due(db, "2026-03-01T09:59:59Z", 10) == []
    assert await channel_outbox.pending_by_role(db) == {"law_enforcement": 1, "host_notice": 1}


async def test_requeue_moves_only_the_dead_rows_of_that_channel(db: Database) -> None:
    ids = await queue(
        db,
        ("law_enforcement", "delivered"),
        ("law_enforcement", "dead-here"),
        ("law_enforcement", "dead-elsewhere"),
        ("law_enforcement", "pending"),
        ("law_enforcement", "dead-unread"),
    )
    delivered, dead_here, dead_elsewhere, pending, dead_unread = ids

    def settle(conn: Tx) -> None:
        channel_outbox.delivered_txn(
            conn, [delivered], at=AT, attempts=1, channel="pharos", notice_ref=None
        )
        channel_outbox.retry_txn(
            conn, [dead_here], attempts=2, error="503", next_attempt_at=AT, notice_ref="NAAAA0001"
        )
        channel_outbox.dead_txn(
            conn,
            [DeadRow(dead_here, "law_enforcement", "dead-here", "410 gone", "pharos")],
            at=AT,
            attempts=3,
            sent_via="pharos",
        )
        channel_outbox.dead_txn(
            conn,
            [
                DeadRow(
                    dead_elsewhere, "law_enforcement", "dead-elsewhere", "refused", "gendarmerie"
                )
            ],
            at=AT,
            attempts=5,
            sent_via="gendarmerie",
        )
        # Never sent (its payload could not be read): no channel carried it.
        channel_outbox.dead_txn(
            conn, [DeadRow(dead_unread, "law_enforcement", "dead-unread", "unreadable")], at=AT
        )

    await db.run(settle)
    before = await rows(db)

    moved = await db.run(lambda conn: channel_outbox.requeue_dead_txn(conn, "pharos", LATER))

    assert moved == [dead_here]
    after = await rows(db)
    again = after[dead_here]
    assert (again["state"], again["attempts"], again["last_error"]) == ("pending", 0, None)
    assert again["next_attempt_at"] == LATER
    assert again["notice_ref"] == "NAAAA0001"  # the host may already hold a copy under it
    assert {i: r for i, r in after.items() if i != dead_here} == {
        i: r for i, r in before.items() if i != dead_here
    }
    assert [before[i]["state"] for i in (delivered, dead_elsewhere, pending, dead_unread)] == [
        "delivered",
        "dead",
        "pending",
        "dead",
    ]
    # The dead letters stay as history.
    assert len(await letters(db)) == 3
    assert await db.run(lambda conn: channel_outbox.requeue_dead_txn(conn, "pharos", LATER)) == []


async def test_a_grouped_notice_settles_all_its_rows_and_no_other(db: Database) -> None:
    first, second, other = await queue(
        db, ("host_notice", "r1"), ("host_notice", "r2"), ("host_notice", "r3")
    )

    def deliver(conn: Tx) -> int:
        attempts = channel_outbox.attempts_txn(conn, [first, second]) + 1
        channel_outbox.delivered_txn(
            conn,
            [first, second],
            at=LATER,
            attempts=attempts,
            channel="hosts",
            notice_ref="N1A2B3C4",
        )
        return attempts

    assert await db.run(deliver) == 1
    after = await rows(db)
    for row_id in (first, second):
        row = after[row_id]
        assert (row["state"], row["delivered_at"], row["sent_via"], row["notice_ref"]) == (
            "delivered",
            LATER,
            "hosts",
            "N1A2B3C4",
        )
    assert after[other]["state"] == "pending"
    assert after[other]["sent_via"] is None
    assert sorted(await channel_outbox.report_ids_by_notice_ref(db, "N1A2B3C4")) == ["r1", "r2"]
    assert await channel_outbox.counts_by_channel(db) == {("hosts", "delivered"): 2}


async def test_a_grouped_notice_given_up_on_leaves_one_dead_letter_per_case(
    db: Database,
) -> None:
    first, second = await queue(db, ("host_notice", "r1"), ("host_notice", "r2"))

    def give_up(conn: Tx) -> None:
        channel_outbox.retry_txn(
            conn, [first], attempts=4, error="421", next_attempt_at=AT, notice_ref="N00000001"
        )
        attempts = channel_outbox.attempts_txn(conn, [first, second]) + 1
        channel_outbox.dead_txn(
            conn,
            [
                DeadRow(first, "host_notice", "r1", "550 no such user " + "x" * 600, "hosts"),
                DeadRow(second, "host_notice", "r2", "550 no such user " + "x" * 600, "hosts"),
            ],
            at=LATER,
            attempts=attempts,
            sent_via="hosts",
        )

    await db.run(give_up)
    after = await rows(db)
    for row_id in (first, second):
        assert (after[row_id]["state"], after[row_id]["attempts"], after[row_id]["sent_via"]) == (
            "dead",
            5,  # the group goes at the pace of its most-tried row
            "hosts",
        )
        assert len(after[row_id]["last_error"]) == channel_outbox.ERROR_LIMIT
    # Each names the channel that gave up, the role, the row and the case.
    assert [letter[:5] for letter in await letters(db)] == [
        ("hosts", "channel", first, "host_notice", "r1"),
        ("hosts", "channel", second, "host_notice", "r2"),
    ]


async def test_a_dead_letter_names_the_role_when_no_channel_was_chosen(db: Database) -> None:
    [row_id] = await queue(db, ("cdn_notice", "r1"))
    await db.run(
        lambda conn: channel_outbox.dead_txn(
            conn, [DeadRow(row_id, "cdn_notice", "r1", "unreadable outbox row")], at=AT
        )
    )
    assert await letters(db) == [
        ("cdn_notice", "channel", row_id, "cdn_notice", "r1", "unreadable outbox row")
    ]
    row = (await rows(db))[row_id]
    assert (row["state"], row["attempts"], row["sent_via"]) == ("dead", 0, None)


async def test_cancelling_touches_only_what_still_waits(db: Database) -> None:
    waiting, sent, other_case = await queue(
        db, ("host_notice", "r1"), ("law_enforcement", "r1"), ("host_notice", "r2")
    )

    def settle_and_cancel(conn: Tx) -> None:
        channel_outbox.delivered_txn(
            conn, [sent], at=AT, attempts=1, channel="pharos", notice_ref=None
        )
        channel_outbox.cancel_txn(conn, [waiting, sent], "cancelled: the case was withdrawn")

    await db.run(settle_and_cancel)
    now = await rows(db)
    states = {row_id: row["state"] for row_id, row in now.items()}
    assert states == {waiting: "cancelled", sent: "delivered", other_case: "pending"}
    assert now[waiting]["last_error"] == "cancelled: the case was withdrawn"
    assert now[sent]["last_error"] is None
    assert await channel_outbox.waiting_host_notices(db, "r1") == []
    assert await channel_outbox.waiting_host_notices(db, "r2") == [AT]


async def test_attempts_are_read_over_more_rows_than_one_statement_takes(db: Database) -> None:
    ids = await queue(db, *[("host_notice", f"r{n}") for n in range(1200)])
    await db.run(
        lambda conn: channel_outbox.retry_txn(
            conn, [ids[-1]], attempts=7, error="x", next_attempt_at=AT, notice_ref=None
        )
    )
    assert await db.run(lambda conn: channel_outbox.attempts_txn(conn, ids)) == 7
