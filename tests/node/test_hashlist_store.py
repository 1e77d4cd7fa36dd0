"""The hash-list store on a real SQLite file: idempotent imports, removals, re-additions."""

from __future__ import annotations

from pathlib import Path

from node.hashes.values import HashValue, parse_hash
from node.store import hashlists
from node.store.db import Database, Tx
from node.store.hashlists import ListEntry

AT, LATER = "2026-12-07T10:00:00Z", "2026-12-08T10:00:00Z"
SHA = parse_hash("sha256:" + "ab" * 32)
PDQ = parse_hash("pdq:" + "f0" * 32 + ":90")
LOW = parse_hash("pdq:" + "0f" * 32 + ":20")


def entry(value: HashValue, category: str = "csam", **more: str) -> ListEntry:
    return ListEntry(value=value, category=category, **more)


async def test_the_same_import_twice_changes_nothing_and_removal_is_idempotent(
    tmp_path: Path,
) -> None:
    db = await Database.open(tmp_path / "node.sqlite3")
    try:

        def first(conn: Tx) -> hashlists.Applied:
            known = hashlists.create_list_txn(
                conn, name="known-fr", owner="fr", origin_name="known-fr", shared=True, at=AT
            )
            return hashlists.upsert_entries_txn(conn, known.id, [entry(SHA), entry(PDQ)], AT)

        applied = await db.run(first)
        assert [added.value for _, added in applied.added] == [SHA, PDQ]

        def again(conn: Tx) -> hashlists.Applied:
            known = hashlists.list_named_txn(conn, "known-fr")
            assert known is not None
            return hashlists.upsert_entries_txn(conn, known.id, [entry(SHA), entry(PDQ)], LATER)

        assert not (await db.run(again)).changed

        def recategorise(conn: Tx) -> hashlists.Applied:
            return hashlists.upsert_entries_txn(conn, 1, [entry(SHA, "csem")], LATER)

        changed = await db.run(recategorise)
        assert [(e.value, e.category) for _, e in changed.added] == [(SHA, "csem")]

        def remove(conn: Tx) -> tuple[hashlists.Applied, hashlists.Applied]:
            return (
                hashlists.remove_entries_txn(conn, 1, [SHA], LATER),
                hashlists.remove_entries_txn(conn, 1, [SHA], LATER),
            )

        removed, removed_again = await db.run(remove)
        assert [value for _, value in removed.removed] == [SHA]
        assert not removed_again.changed
        (lists,) = await hashlists.all_lists(db)
        assert (lists.name, lists.entries, lists.shared) == ("known-fr", 1, True)

        def back(conn: Tx) -> list[tuple[int, ListEntry]]:
            hashlists.upsert_entries_txn(conn, 1, [entry(SHA), entry(LOW)], LATER)
            return list(hashlists.active_entries_txn(conn))

        active = await db.run(back)
        assert sorted(e.value.text for _, e in active) == sorted([SHA.text, PDQ.text, LOW.text])
        # The entry came back under its first id, so matches recorded before still name it.
        assert next(i for i, e in active if e.value == SHA) == 1

        def keys(conn: Tx) -> list[str]:
            return [
                f"{alg.value}:{digest.hex()}"
                for _, alg, digest in hashlists.matchable_keys_txn(conn)
            ]

        assert LOW.text.rsplit(":", 1)[0] not in await db.run(keys)  # low quality: never matched
    finally:
        await db.close()


async def test_matches_are_recorded_once_and_read_with_their_entry(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "node.sqlite3")
    try:

        def setup(conn: Tx) -> int:
            conn.execute(
                "INSERT INTO reports (id, origin, local_ref, seq, url, url_key, source, status,"
                " tlp, received_at, updated_at) VALUES ('r1', 'fr', 'fr-1', 1, 'http://a.test/',"
                " 'http://a.test/', 'analyst', 'new', 'amber', ?, ?)",
                (AT, AT),
            )
            known = hashlists.create_list_txn(
                conn,
                name="de-eco/known-de",
                owner="de-eco",
                origin_name="known-de",
                shared=False,
                at=AT,
            )
            applied = hashlists.upsert_entries_txn(
                conn, known.id, [entry(PDQ, added_at="2026-01-02T00:00:00Z")], AT
            )
            entry_id = applied.added[0][0]
            assert hashlists.add_matches_txn(conn, "r1", [(entry_id, PDQ.alg, 7)], AT) == 1
            assert hashlists.add_matches_txn(conn, "r1", [(entry_id, PDQ.alg, 3)], LATER) == 0
            return entry_id

        entry_id = await db.run(setup)
        (match,) = (await hashlists.matches_for(db, ["r1"]))["r1"]
        assert (match.list_name, match.list_owner, match.entry_id) == (
            "de-eco/known-de",
            "de-eco",
            entry_id,
        )
        assert (match.distance, match.since, match.matched_at) == (7, "2026-01-02T00:00:00Z", AT)
        assert match.value == PDQ
    finally:
        await db.close()
