"""The federation's store modules on a real SQLite file: peers, peer outbox, inbound, tokens."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node.store import inbound, peer_outbox, tokens
from node.store import peers as peer_store
from node.store.db import Database, Tx
from node.store.inbound import KeptEnvelope, SeenMessage
from node.store.peers import NewPeer

AT = "2026-11-29T09:00:00Z"
NODE = Path(__file__).resolve().parents[2] / "node"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "node.sqlite3")
    try:
        yield database
    finally:
        await database.close()


def new_peer(node_id: str, country: str = "DE", mode: str = "push") -> NewPeer:
    return NewPeer(
        node_id=node_id,
        country=country,
        endpoint=f"https://{node_id}.example",
        fingerprint="f" * 43,
        mode=mode,
        categories=["hate", "csam"],
        max_tlp="amber",
        key_document=b"{}",
        revoked_keys=["k2", "k1"],
    )


async def add_peers(db: Database, *node_ids: str) -> None:
    def transaction(conn: Tx) -> None:
        for node_id in node_ids:
            peer_store.add_txn(conn, new_peer(node_id), AT)

    await db.run(transaction)


def queue(conn: Tx, peer_id: str, *record_ids: str, record_type: str = "report") -> int:
    return peer_outbox.enqueue_txn(
        conn,
        peer_id,
        [
            peer_outbox.Queued(record_type, record_id, f"case-{record_id}", record_id.encode(), AT)
            for record_id in record_ids
        ],
    )


# peers ---------------------------------------------------------------------------------------
async def test_a_peer_is_read_back_as_a_typed_row(db: Database) -> None:
    await add_peers(db, "de-eco")
    peer = await peer_store.get(db, "de-eco")
    assert peer is not None
    assert (peer.node_id, peer.country, peer.status, peer.mode) == (
        "de-eco",
        "DE",
        "active",
        "push",
    )
    # Lists are stored sorted, so that the same policy is always the same text.
    assert peer.categories == '["csam","hate"]'
    assert peer.revoked_keys == '["k1","k2"]'
    assert (peer.added_at, peer.keys_refreshed_at, peer.delivered, peer.received) == (AT, AT, 0, 0)
    assert await peer_store.get(db, "nl-meldpunt") is None


async def test_contact_from_a_peer_forgets_its_backoff_and_refusal(db: Database) -> None:
    await add_peers(db, "de-eco")

    def fail_twice(conn: Tx) -> None:
        peer_store.back_off_txn(
            conn, "de-eco", attempts=2, until="2026-11-29T10:00:00Z", error="x" * 900
        )
        peer_store.refused_txn(conn, "de-eco", error="not a peer", until="2026-11-29T09:05:00Z")

    await db.run(fail_twice)
    peer = await peer_store.get(db, "de-eco")
    assert peer is not None
    assert (peer.backoff_attempts, peer.backoff_until, peer.refused) == (
        2,
        "2026-11-29T09:05:00Z",
        "not a peer",
    )
    await db.run(lambda conn: peer_store.heard_from_txn(conn, "de-eco", received=3, at=AT))
    peer = await peer_store.get(db, "de-eco")
    assert peer is not None
    assert (peer.backoff_attempts, peer.backoff_until, peer.refused) == (0, None, None)
    assert (peer.received, peer.last_contact_at) == (3, AT)
    # The last error stays for the operator to read; only an answered push clears it.
    assert peer.last_error == "not a peer"
    await db.run(lambda conn: peer_store.delivered_txn(conn, "de-eco", count=5, at=AT))
    peer = await peer_store.get(db, "de-eco")
    assert peer is not None
    assert (peer.delivered, peer.last_error) == (5, None)


async def test_a_long_error_is_cut_to_a_diagnosis(db: Database) -> None:
    await add_peers(db, "de-eco")
    await db.run(
        lambda conn: peer_store.back_off_txn(conn, "de-eco", attempts=1, until=AT, error="e" * 900)
    )
    peer = await peer_store.get(db, "de-eco")
    assert peer is not None
    assert peer.last_error == "e" * peer_store.ERROR_LIMIT


async def test_the_pull_cursor_moves_and_starts_at_zero(db: Database) -> None:
    assert await peer_store.pull_cursor(db, "de-eco") == 0
    await db.run(lambda conn: peer_store.move_pull_cursor_txn(conn, "de-eco", 40, AT))
    await db.run(lambda conn: peer_store.move_pull_cursor_txn(conn, "de-eco", 42, AT))
    assert await peer_store.pull_cursor(db, "de-eco") == 42


def test_only_the_peers_store_writes_the_peers_table() -> None:
    writes = re.compile(r"(INSERT( OR \w+)? INTO|UPDATE|DELETE FROM)\s+peers\b")
    writers = sorted(
        str(path.relative_to(NODE.parent))
        for path in NODE.rglob("*.py")
        if writes.search(path.read_text())
    )
    assert writers == ["node/store/peers.py"]


FEDERATION_FILES = [
    "federation/inbox.py",
    "federation/inbound.py",
    "federation/delivery.py",
    "federation/registry.py",
    "federation/admin.py",
    "federation/peer_keys.py",
    "api/federation.py",
    "tokens.py",
    "jobs.py",
]


@pytest.mark.parametrize("name", FEDERATION_FILES)
def test_the_federation_code_leaves_sql_to_the_store(name: str) -> None:
    sql = re.compile(r"SELECT |INSERT |UPDATE |DELETE |execute\(")
    assert [line for line in (NODE / name).read_text().splitlines() if sql.search(line)] == []


# peer outbox ---------------------------------------------------------------------------------
async def test_each_peer_has_its_own_sequence(db: Database) -> None:
    def transaction(conn: Tx) -> tuple[int, int, int]:
        return (
            queue(conn, "de-eco", "a", "b"),
            queue(conn, "nl-meldpunt", "c"),
            queue(conn, "de-eco", "d"),
        )

    assert await db.run(transaction) == (2, 1, 3)
    items = await peer_outbox.pending(db, "de-eco", after=0, limit=10)
    assert [(i.seq, i.record_id, i.payload) for i in items] == [
        (1, "a", b"a"),
        (2, "b", b"b"),
        (3, "d", b"d"),
    ]
    assert [i.seq for i in await peer_outbox.pending(db, "de-eco", after=1, limit=1)] == [2]
    assert await peer_outbox.pending_count(db, "de-eco") == 3
    assert sorted(await peer_outbox.peers_with_pending(db)) == ["de-eco", "nl-meldpunt"]


async def test_a_pull_cursor_acknowledges_what_is_pending_up_to_it(db: Database) -> None:
    await db.run(lambda conn: queue(conn, "de-eco", "a", "b", "c"))
    acknowledged = await db.run(
        lambda conn: peer_outbox.acknowledge_txn(conn, "de-eco", up_to=2, at=AT)
    )
    assert [(i.seq, i.label, i.payload) for i in acknowledged] == [
        (1, "report:a", b""),
        (2, "report:b", b""),
    ]
    assert [i.seq for i in await peer_outbox.pending(db, "de-eco", after=0, limit=10)] == [3]
    # The same cursor again acknowledges nothing more.
    again = await db.run(lambda conn: peer_outbox.acknowledge_txn(conn, "de-eco", up_to=2, at=AT))
    assert again == []
    [row] = await db.fetch_all("SELECT state, sent_at, attempts FROM peer_outbox WHERE seq = 1")
    assert tuple(row) == ("sent", AT, 1)


async def test_dead_items_are_requeued_at_the_end_under_new_numbers(db: Database) -> None:
    def transaction(conn: Tx) -> list[int]:
        queue(conn, "de-eco", "a", "b", "c")
        peer_outbox.mark_dead_txn(conn, "de-eco", [(1, "refused"), (3, "too large")])
        return peer_outbox.requeue_dead_txn(conn, "de-eco", AT)

    assert await db.run(transaction) == [1, 3]
    rows = await db.fetch_all("SELECT seq, record_id, state FROM peer_outbox ORDER BY seq")
    assert [tuple(r) for r in rows] == [
        (1, "a", "requeued"),
        (2, "b", "pending"),
        (3, "c", "requeued"),
        (4, "a", "pending"),
        (5, "c", "pending"),
    ]
    assert await peer_outbox.dead_count(db, "de-eco") == 0
    # Nothing dead: nothing queued.
    assert await db.run(lambda conn: peer_outbox.requeue_dead_txn(conn, "de-eco", AT)) == []


async def test_holders_are_peers_sent_a_version_that_was_not_refused(db: Database) -> None:
    await add_peers(db, "de-eco", "nl-meldpunt", "be-childfocus", "it-sos")

    def transaction(conn: Tx) -> list[str]:
        for peer in ("de-eco", "nl-meldpunt", "be-childfocus", "it-sos"):
            queue(conn, peer, "x")
        peer_outbox.mark_sent_txn(conn, "de-eco", [1], AT)
        peer_outbox.mark_dead_txn(conn, "nl-meldpunt", [(1, "refused")])
        peer_store.set_status_txn(conn, "be-childfocus", "removed")
        # Only an action queued for this one: it never held the case.
        queue(conn, "fr-other", "y", record_type="action")
        return peer_outbox.holders_txn(conn, "case-x")

    assert await db.run(transaction) == ["de-eco", "it-sos"]


async def test_a_receipt_is_kept_once(db: Database) -> None:
    def transaction(conn: Tx) -> None:
        peer_outbox.store_receipt_txn(conn, "de-eco", "txn-1", b"first", AT)
        peer_outbox.store_receipt_txn(conn, "de-eco", "txn-1", b"second", AT)

    await db.run(transaction)
    rows = await db.fetch_all("SELECT frame FROM receipts")
    assert [bytes(r[0]) for r in rows] == [b"first"]


# inbound -------------------------------------------------------------------------------------
async def test_a_nonce_is_claimed_once(db: Database) -> None:
    assert not await inbound.nonce_used(db, "de-eco", "n-1")
    assert await db.run(lambda conn: inbound.claim_nonce_txn(conn, "de-eco", "n-1", AT))
    assert not await db.run(lambda conn: inbound.claim_nonce_txn(conn, "de-eco", "n-1", AT))
    assert await inbound.nonce_used(db, "de-eco", "n-1")
    # Nonces are per sender.
    assert await db.run(lambda conn: inbound.claim_nonce_txn(conn, "nl-meldpunt", "n-1", AT))


async def test_a_nonce_claimed_in_a_failed_transaction_stays_unused(db: Database) -> None:
    def failing(conn: Tx) -> None:
        assert inbound.claim_nonce_txn(conn, "de-eco", "n-2", AT)
        raise RuntimeError("the batch failed")

    with pytest.raises(RuntimeError):
        await db.run(failing)
    assert not await inbound.nonce_used(db, "de-eco", "n-2")


async def test_a_stored_answer_is_the_senders_own(db: Database) -> None:
    assert await inbound.stored_answer(db, "de-eco", "txn-1") is None
    await db.run(lambda conn: inbound.store_answer_txn(conn, "de-eco", "txn-1", b'{"ok":1}', AT))
    assert await inbound.stored_answer(db, "de-eco", "txn-1") == b'{"ok":1}'
    assert (
        await db.run(lambda conn: inbound.stored_answer_txn(conn, "de-eco", "txn-1")) == b'{"ok":1}'
    )
    # Transaction ids are the sender's: another sender's same id is another transaction.
    assert await inbound.stored_answer(db, "nl-meldpunt", "txn-1") is None


async def test_a_message_id_is_taken_once_per_sender(db: Database) -> None:
    def transaction(conn: Tx) -> tuple[bool, bool, bool]:
        first = inbound.mark_seen_txn(conn, SeenMessage("de-eco", "m-1", AT))
        again = inbound.mark_seen_txn(conn, SeenMessage("de-eco", "m-1", AT))
        inbound.mark_seen_many_txn(
            conn, [SeenMessage("de-eco", "m-2", AT), SeenMessage("de-eco", "m-1", AT)]
        )
        other = inbound.mark_seen_txn(conn, SeenMessage("nl-meldpunt", "m-1", AT))
        return first, again, other

    assert await db.run(transaction) == (True, False, True)
    assert await inbound.seen(db, "de-eco", ["m-1", "m-2", "m-3"]) == {"m-1", "m-2"}
    assert await db.run(lambda conn: inbound.seen_txn(conn, "nl-meldpunt", ["m-1", "m-2"])) == {
        "m-1"
    }


async def test_kept_envelopes_are_the_bytes_received(db: Database) -> None:
    envelope = KeptEnvelope("d1", "de-eco", "m-1", "report", "r-1", "r-1", AT, b"\x00frame")
    await db.run(lambda conn: inbound.keep_envelopes_txn(conn, [envelope]))
    [row] = await db.fetch_all(
        "SELECT digest, sender, msg_id, record_type, record_id, report_id, received_at, frame"
        " FROM inbox_envelopes"
    )
    assert KeptEnvelope(*row) == envelope


async def test_pruning_forgets_only_what_is_past_each_horizon(db: Database) -> None:
    old, new = "2026-11-01T00:00:00Z", "2026-11-29T00:00:00Z"

    def fill(conn: Tx) -> None:
        for at, n in ((old, "1"), (new, "2")):
            inbound.mark_seen_txn(conn, SeenMessage("de-eco", f"m-{n}", at))
            inbound.claim_nonce_txn(conn, "de-eco", f"n-{n}", at)
            inbound.store_answer_txn(conn, "de-eco", f"txn-{n}", b"{}", at)

    await db.run(fill)
    counts = await db.run(
        lambda conn: inbound.prune_txn(
            conn,
            seen_before="2026-11-20T00:00:00Z",
            nonces_before="2026-11-20T00:00:00Z",
            answers_before="2026-10-01T00:00:00Z",
        )
    )
    assert counts == {"inbox_seen": 1, "request_nonces": 1, "inbound_transactions": 0}
    assert await inbound.seen(db, "de-eco", ["m-1", "m-2"]) == {"m-2"}
    assert not await inbound.nonce_used(db, "de-eco", "n-1")
    assert await inbound.stored_answer(db, "de-eco", "txn-1") == b"{}"


# tokens --------------------------------------------------------------------------------------
async def test_a_revoked_token_is_no_longer_found_by_its_hash(db: Database) -> None:
    await db.run(
        lambda conn: tokens.insert_txn(
            conn, token_id="t1", role="analyst", name="alice", token_hash="h1", at=AT
        )
    )
    live = await tokens.live_by_hash(db, "h1")
    assert live is not None
    assert (live.id, live.role, live.name, live.revoked_at) == ("t1", "analyst", "alice", None)
    await db.run(lambda conn: tokens.revoke_txn(conn, "t1", "2026-11-30T00:00:00Z"))
    assert await tokens.live_by_hash(db, "h1") is None
    row = await tokens.get(db, "t1")
    assert row is not None
    assert row.revoked_at == "2026-11-30T00:00:00Z"
    assert [t.id for t in await tokens.list_all(db)] == ["t1"]
