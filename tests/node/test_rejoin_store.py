"""The numbers a restored node gives a pulling peer (node.store.rejoin), on a real SQLite file:
a restore marks the database, and the peer's first cursor renumbers what follows it."""

from __future__ import annotations

from pathlib import Path

from node.store import peer_outbox, rejoin
from node.store.db import Database, Tx, run_offline
from node.store.peer_outbox import Queued
from node.store.peers import NewPeer, add_txn

AT = "2026-12-07T12:00:00Z"


def peer_txn(conn: Tx) -> None:
    add_txn(
        conn,
        NewPeer("de-eco", "DE", "http://127.0.0.1:1", "f" * 43, "pull", [], "amber", b"{}", []),
        AT,
    )


def queue(conn: Tx, *names: str) -> int:
    return peer_outbox.enqueue_txn(
        conn, "de-eco", [Queued("action", name, "r", name.encode(), AT) for name in names]
    )


def numbered(conn: Tx) -> list[tuple[int, str]]:
    return [
        (int(row[0]), str(row[1]))
        for row in conn.execute(
            "SELECT seq, record_id FROM peer_outbox WHERE peer_id = 'de-eco' ORDER BY seq"
        )
    ]


async def test_a_peer_cursor_beyond_the_backup_moves_new_numbers_after_it(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    db = await Database.open(path)
    await db.run(peer_txn)
    await db.run(lambda conn: queue(conn, "a", "b", "c"))  # 1..3: in the backup
    await db.close()

    assert rejoin.mark_restored(path, "fr-pdc", AT) == 1
    db = await Database.open(path)
    try:
        # After the restore, before DE's first pull: numbered 4 and 5 again.
        assert await db.run(lambda conn: queue(conn, "d", "e")) == 5
        # DE had seen up to 7 before the restore: 4 and 5 move after it, in order.
        done = await db.run(lambda conn: rejoin.rejoin_txn(conn, "de-eco", 7))
        assert done == rejoin.Rejoined(restored_seq=3, peer_cursor=7, moved=2)
        assert await db.run(numbered) == [(1, "a"), (2, "b"), (3, "c"), (8, "d"), (9, "e")]
        assert await db.run(lambda conn: queue(conn, "f")) == 10
        # Only the first cursor after a restore counts.
        assert await db.run(lambda conn: rejoin.rejoin_txn(conn, "de-eco", 9)) is None
    finally:
        await db.close()


async def test_a_queue_emptied_before_the_first_pull_still_numbers_after_the_cursor(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node.sqlite3"
    run_offline(path, peer_txn)
    rejoin.mark_restored(path, "fr-pdc", AT)
    db = await Database.open(path)
    try:
        done = await db.run(lambda conn: rejoin.rejoin_txn(conn, "de-eco", 40))
        assert done == rejoin.Rejoined(restored_seq=0, peer_cursor=40, moved=0)
        assert await db.run(lambda conn: queue(conn, "x")) == 41
    finally:
        await db.close()


async def test_a_peer_behind_the_backup_changes_no_number(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    run_offline(path, peer_txn)
    run_offline(path, lambda conn: queue(conn, "a", "b", "c"))
    rejoin.mark_restored(path, "fr-pdc", AT)
    db = await Database.open(path)
    try:
        await db.run(lambda conn: queue(conn, "d"))
        done = await db.run(lambda conn: rejoin.rejoin_txn(conn, "de-eco", 2))
        assert done == rejoin.Rejoined(restored_seq=3, peer_cursor=2, moved=0)
        assert [seq for seq, _ in await db.run(numbered)] == [1, 2, 3, 4]
        assert await db.run(lambda conn: queue(conn, "e")) == 5
    finally:
        await db.close()


async def test_only_a_peer_asking_from_behind_gets_delivered_items_again(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    run_offline(path, peer_txn)
    run_offline(path, lambda conn: queue(conn, "a", "b", "c", "d"))
    db = await Database.open(path)
    try:
        # DE pulled and acknowledged 1..3 (cursor 3); 4 waits.
        assert await db.run(lambda conn: rejoin.furthest_cursor_txn(conn, "de-eco", 3)) == 3
        await db.run(lambda conn: peer_outbox.acknowledge_txn(conn, "de-eco", up_to=3, at=AT))

        async def page(after: int, furthest: int) -> list[int]:
            found = await peer_outbox.servable(
                db, "de-eco", after=after, limit=10, again_up_to=furthest
            )
            return [item.seq for item in found]

        assert await page(3, 3) == [4]
        # DE restored, asks from 1: its furthest cursor stays 3; it gets 2 and 3 again.
        furthest = await db.run(lambda conn: rejoin.furthest_cursor_txn(conn, "de-eco", 1))
        assert furthest == 3
        assert await page(1, furthest) == [2, 3, 4]
        # A peer that never sent a cursor past 0 (switched from push to pull) gets no history.
        assert await page(0, 0) == [4]
    finally:
        await db.close()
