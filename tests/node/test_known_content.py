"""Hash lists against a node's cases: a list that arrives later finds the open cases it knows."""

from __future__ import annotations

from node.app import open_node
from node.clock import ManualClock, iso
from node.datadir import DataDir
from node.hashes.values import parse_hash
from node.store.db import Tx
from node.store.hashlists import ListEntry

PDQ = parse_hash("pdq:" + "5a" * 32 + ":88")
SHA = parse_hash("sha256:" + "c3" * 32)


def near(bits: int) -> str:
    """PDQ's digest with its first `bits` bits flipped."""
    number = int.from_bytes(PDQ.digest) ^ ((1 << 256) - (1 << (256 - bits)))
    return number.to_bytes(32).hex()


async def test_a_list_arriving_later_matches_the_open_cases_only(
    data_dir: DataDir, clock: ManualClock
) -> None:
    async with open_node(data_dir, clock) as node:
        open_case = (await node.cases.submit("http://a.example/1.jpg", actor="alice")).report_id
        closed = (await node.cases.submit("http://a.example/2.jpg", actor="alice")).report_id
        await node.cases.record_action(closed, code="not_illegal", reason=None, actor="alice")
        at = iso(clock.now())

        def give_hashes(conn: Tx) -> None:
            # What every path that gives a case its hashes writes (node.cases.hashes).
            for report_id in (open_case, closed):
                conn.executemany(
                    "INSERT INTO report_hashes (report_id, alg, value, quality, source, added_at)"
                    " VALUES (?, ?, ?, ?, 'analyst', ?)",
                    [
                        (report_id, "pdq", bytes.fromhex(near(31)), 90, at),
                        (report_id, "sha256", SHA.digest, None, at),
                    ],
                )

        await node.db.run(give_hashes)
        entries = [ListEntry(PDQ, "csam"), ListEntry(SHA, "csem", grade="A")]
        result = await node.known.add_entries("known-fr", entries, share=None, actor="olga")
        assert result.cases_matched == {open_case}
        case = await node.cases.show(open_case)
        assert [(m["type"], m["distance"], m["list"]) for m in case["matches"]] == [
            ("sha256", 0, "known-fr"),
            ("pdq", 31, "known-fr"),
        ]
        assert case["matches"][0]["known"].startswith("on our list known-fr since ")
        # The closest entry's category fills in a case that had none; no verdict, no routing.
        assert case["assessment"]["category"] == "csem"
        assert (case["assessment"]["verdict"], case["status"]) == (None, "new")
        assert (await node.cases.show(closed))["matches"] == []
        known = await node.console_context().reads.known_cases(("new",), limit=10)
        assert [k.id for k in known] == [open_case]

        # The same entries again match nothing new; an entry removed no longer matches.
        again = await node.known.add_entries("known-fr", entries, share=None, actor="olga")
        assert (again.added, again.unchanged, again.cases_matched) == (0, 2, set())
        await node.known.remove_entries("known-fr", [SHA], actor="olga")
        assert await node.known.match(SHA) == []
        (found,) = await node.known.match(parse_hash(f"pdq:{near(31)}"))
        assert (found.list_name, found.distance, found.category) == ("known-fr", 31, "csam")

    # A restarted node matches what its lists held: the index is loaded at start.
    async with open_node(data_dir, clock) as node:
        assert len(node.known.index) == 1
        assert await node.known.match(parse_hash(f"pdq:{near(32)}")) == []
