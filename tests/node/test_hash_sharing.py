"""Hash lists shared between real nodes on loopback (in one process): our shared lists' changes
reach the peers whose policy allows hashes as `<node>/<list>`, removals follow, copies change
nothing, a peer writes only its own lists, and a list received is never sent on."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from keys import build_key_document, sign_key_document, verify_key_document
from node.clock import ManualClock, iso
from node.hashes.sharing import HashSharing, OnChange
from node.hashes.values import parse_hash
from node.store import hashlists, peer_outbox
from node.store.db import Tx
from node.store.hashlists import Applied, HashList, ListEntry
from node.store.peer_outbox import Queued
from protocol import HashSet, parse_record, record_bytes, seal_payload
from protocol.records import HashAddition, HashRemoval
from tests.node.test_federation import signed_push
from tests.support.dns_server import ZoneDnsServer
from tests.support.federation import (
    LiveNode,
    Pair,
    befriend,
    http_json,
    live_node,
    live_pull_pair,
    node_dir,
)
from tests.support.nodes import START


def sha256(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


A, B, C, D = (sha256(name) for name in "abcd")
PDQ = "pdq:" + hashlib.sha256(b"pdq").hexdigest() + ":87"
MD5 = "md5:" + hashlib.md5(b"md5").hexdigest()


def entry(
    text: str, category: str = "csam", use: str = "hotlines", grade: str | None = None
) -> ListEntry:
    return ListEntry(value=parse_hash(text), category=category, use=use, grade=grade)


@dataclass
class Recorder:
    """Around the hook KnownContent gives (index and matching): what it was called with, and
    the list as the transaction saw it."""

    then: OnChange | None
    calls: list[tuple[str, int, list[str], list[str]]] = field(default_factory=list)

    def __call__(self, conn: Tx, hash_list: HashList, applied: Applied, at: str) -> None:
        self.calls.append(
            (
                hash_list.name,
                hash_list.entries,
                sorted(e.value.text for _, e in applied.added),
                sorted(v.text for _, v in applied.removed),
            )
        )
        if self.then is not None:
            self.then(conn, hash_list, applied, at)


async def change(
    node: LiveNode,
    name: str,
    *,
    add: Sequence[ListEntry] = (),
    remove: Sequence[str] = (),
    shared: bool | None = True,
) -> None:
    """A change of one of our lists, as `hashes import` / `hashes remove` make it (KnownContent:
    the change, the index, and the queueing for peers, in one transaction)."""
    known = node.node.known
    if remove:
        await known.remove_entries(name, [parse_hash(t) for t in remove], actor="olga")
    if add or shared is not None:
        await known.add_entries(name, add, share=shared, actor="olga")


async def share_hashes(node: LiveNode, peer: str, on: bool = True) -> None:
    await node.node.admin.set_policy(
        peer, categories=None, max_tlp=None, pull_only=None, share_hashes=on, actor="operator:olga"
    )


async def held(node: LiveNode, name: str) -> dict[str, ListEntry]:
    """The active entries of a list, by TYPE:VALUE; {} when there is no such list."""

    def read_txn(conn: Tx) -> dict[str, ListEntry]:
        found = hashlists.list_named_txn(conn, name)
        if found is None:
            return {}
        return {e.value.text: e for _, e in hashlists.active_entries_txn(conn, found.id)}

    return await node.node.db.run(read_txn)


async def the_list(node: LiveNode, name: str) -> HashList | None:
    lists = {found.name: found for found in await hashlists.all_lists(node.node.db)}
    return lists.get(name)


async def hashset_rows(node: LiveNode, peer: str) -> list[tuple[str, HashSet]]:
    rows = await node.node.db.fetch_all(
        "SELECT state, payload FROM peer_outbox WHERE peer_id = ? AND record_type = 'hashset'"
        " ORDER BY seq",
        (peer,),
    )
    out = []
    for row in rows:
        record = parse_record(bytes(row["payload"]), "hashset")
        assert isinstance(record, HashSet)
        out.append((str(row["state"]), record))
    return out


@pytest.fixture
def recorder(pair: Pair) -> Recorder:
    hook = Recorder(pair.de.node.hash_sharing.on_change)
    pair.de.node.hash_sharing.on_change = hook
    return hook


async def both_share(pair: Pair) -> None:
    await share_hashes(pair.fr, "de-eco")
    await share_hashes(pair.de, "fr-pdc")


# --- reaching the peer -------------------------------------------------------------------------


async def test_a_shared_list_reaches_the_peer_as_node_slash_list(
    pair: Pair, recorder: Recorder
) -> None:
    await both_share(pair)
    await change(
        pair.fr,
        "known-fr",
        add=[entry(A, grade="A"), entry(PDQ, use="industry"), entry(MD5, category="csem")],
    )
    await pair.fr.settle()

    received = await the_list(pair.de, "fr-pdc/known-fr")
    assert received is not None
    assert (received.owner, received.origin_name, received.shared) == ("fr-pdc", "known-fr", False)
    ours = await the_list(pair.fr, "known-fr")
    assert ours is not None
    assert received.seq == ours.seq == 1
    entries = await held(pair.de, "fr-pdc/known-fr")
    assert set(entries) == {A, PDQ, MD5}
    assert (entries[A].category, entries[A].grade, entries[A].use) == ("csam", "A", "hotlines")
    assert entries[PDQ].value.quality == 87
    assert entries[PDQ].use == "industry"
    assert entries[MD5].category == "csem"
    # Known since when FR added them, not since they arrived.
    fr_entries = await held(pair.fr, "known-fr")
    assert {t: e.added_at for t, e in entries.items()} == {
        t: e.added_at for t, e in fr_entries.items()
    }
    assert recorder.calls == [("fr-pdc/known-fr", 3, sorted([A, PDQ, MD5]), [])]
    # Matchable at DE at once, as DE's own lists are: "known to fr-pdc since ...".
    [found] = await pair.de.node.known.match(parse_hash(A))
    assert (found.list_name, found.list_owner) == ("fr-pdc/known-fr", "fr-pdc")
    assert found.since == fr_entries[A].added_at
    # Delivered like any record, with a signed receipt; no case bookkeeping for it.
    assert [state for state, _ in await hashset_rows(pair.fr, "de-eco")] == ["sent"]
    actions = await pair.fr.node.db.fetch_all("SELECT * FROM actions WHERE report_id = ''")
    assert actions == []
    kept = await pair.de.node.db.fetch_all(
        "SELECT record_type, report_id FROM inbox_envelopes WHERE record_type = 'hashset'"
    )
    assert [(r["record_type"], r["report_id"]) for r in kept] == [("hashset", "")]


async def test_a_removal_at_the_origin_removes_the_entry_at_the_peer(
    pair: Pair, recorder: Recorder
) -> None:
    await both_share(pair)
    await change(pair.fr, "known-fr", add=[entry(A), entry(B)])
    await pair.fr.settle()
    assert set(await held(pair.de, "fr-pdc/known-fr")) == {A, B}

    await change(pair.fr, "known-fr", remove=[A])
    await pair.fr.settle()
    assert set(await held(pair.de, "fr-pdc/known-fr")) == {B}
    assert recorder.calls[-1] == ("fr-pdc/known-fr", 1, [], [A])
    received = await the_list(pair.de, "fr-pdc/known-fr")
    assert received is not None
    assert received.seq == 2


async def test_the_same_change_twice_changes_nothing(pair: Pair, recorder: Recorder) -> None:
    await both_share(pair)
    await change(pair.fr, "known-fr", add=[entry(A), entry(B)])
    await pair.fr.settle()
    # The same import again at the origin: nothing changed, nothing queued.
    await change(pair.fr, "known-fr", add=[entry(A), entry(B)])
    assert len(await hashset_rows(pair.fr, "de-eco")) == 1

    # The same record delivered again (a copy in the queue): a duplicate, nothing changes.
    [(_, record)] = await hashset_rows(pair.fr, "de-eco")
    copy = Queued("hashset", str(record.id), "", record_bytes(record), iso(START))
    await pair.fr.node.db.run(lambda conn: peer_outbox.enqueue_txn(conn, "de-eco", [copy]))
    before = await held(pair.de, "fr-pdc/known-fr")
    result = await pair.fr.node.delivery.push("de-eco")
    assert (result.sent, result.rejected) == (1, 0)
    assert await held(pair.de, "fr-pdc/known-fr") == before
    assert len(recorder.calls) == 1
    received = await pair.de.node.db.fetch_all(
        "SELECT * FROM audit_log WHERE event = 'hashes.received'"
    )
    assert len(received) == 1


async def test_an_older_change_arriving_late_changes_nothing(pair: Pair) -> None:
    await both_share(pair)
    await change(pair.fr, "known-fr", add=[entry(A)])
    await change(pair.fr, "known-fr", remove=[A])
    await pair.fr.settle()
    rows = await hashset_rows(pair.fr, "de-eco")
    assert [r.seq for _, r in rows] == [1, 2]
    # A copy of change 1 arrives after change 2 (say, queued again): it does not bring A back.
    old = rows[0][1]
    copy = Queued("hashset", str(old.id), "", record_bytes(old), iso(START))
    await pair.fr.node.db.run(lambda conn: peer_outbox.enqueue_txn(conn, "de-eco", [copy]))
    await pair.fr.settle()
    assert [state for state, _ in await hashset_rows(pair.fr, "de-eco")] == ["sent"] * 3
    assert await held(pair.de, "fr-pdc/known-fr") == {}
    received = await the_list(pair.de, "fr-pdc/known-fr")
    assert received is not None
    assert received.seq == 2


async def test_a_big_change_travels_as_several_records_each_under_its_own_seq(
    pair: Pair,
) -> None:
    await both_share(pair)
    pair.fr.node.hash_sharing.chunk = 2
    await change(pair.fr, "known-fr", add=[entry(t) for t in (A, B, C, D, PDQ)])
    rows = await hashset_rows(pair.fr, "de-eco")
    assert [(r.seq, len(r.add)) for _, r in rows] == [(1, 2), (2, 2), (3, 1)]
    await pair.fr.settle()
    received = await the_list(pair.de, "fr-pdc/known-fr")
    assert received is not None
    assert (received.seq, received.entries) == (3, 5)


async def test_a_pull_only_peer_collects_the_lists_with_its_cursor(
    tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> None:
    async with live_pull_pair(tmp_path, clock, dns_server.nameserver) as pair:
        await both_share(pair)
        await change(pair.fr, "known-fr", add=[entry(A), entry(B)])
        assert (await pair.de.node.delivery.pull("fr-pdc")).pulled == 1
        assert set(await held(pair.de, "fr-pdc/known-fr")) == {A, B}
        assert (await pair.de.node.delivery.pull("fr-pdc")).pulled == 0  # acknowledges it
        assert [state for state, _ in await hashset_rows(pair.fr, "de-eco")] == ["sent"]
        assert await pair.fr.node.db.fetch_all("SELECT * FROM actions WHERE report_id = ''") == []


# --- policy and announcements ------------------------------------------------------------------


async def test_a_policy_that_withholds_hashes_sends_nothing_and_enabling_sends_the_whole_list(
    pair: Pair,
) -> None:
    await share_hashes(pair.de, "fr-pdc")  # DE takes FR's lists; FR does not send them yet
    described = await pair.fr.node.registry.describe("de-eco")
    assert described["share_hashes"] is False
    assert described["accepts"] == ["hashset", "pdq-quality", "sha1"]
    await change(pair.fr, "known-fr", add=[entry(A), entry(B), entry(C)])
    await change(pair.fr, "known-fr", remove=[B])
    await change(pair.fr, "private", add=[entry(D)], shared=False)
    assert await hashset_rows(pair.fr, "de-eco") == []
    await pair.fr.settle()
    assert await the_list(pair.de, "fr-pdc/known-fr") is None

    await share_hashes(pair.fr, "de-eco")
    assert (await pair.fr.node.registry.describe("de-eco"))["share_hashes"] is True
    await pair.fr.settle()
    assert set(await held(pair.de, "fr-pdc/known-fr")) == {A, C}
    assert await the_list(pair.de, "fr-pdc/private") is None  # not shared: never sent
    [entry_] = await pair.fr.node.db.fetch_all(
        "SELECT details FROM audit_log WHERE event = 'hashes.shared_whole'"
    )
    assert '"known-fr"' in entry_["details"]
    # Turned on again: nothing more (it was on already).
    rows = len(await hashset_rows(pair.fr, "de-eco"))
    await share_hashes(pair.fr, "de-eco")
    assert len(await hashset_rows(pair.fr, "de-eco")) == rows


async def test_a_removal_made_while_withheld_reaches_the_peer_when_its_policy_allows_again(
    pair: Pair,
) -> None:
    await both_share(pair)
    await change(pair.fr, "known-fr", add=[entry(A), entry(B)])
    await pair.fr.settle()
    await share_hashes(pair.fr, "de-eco", on=False)
    await change(pair.fr, "known-fr", remove=[A], add=[entry(C)])
    await pair.fr.settle()
    assert set(await held(pair.de, "fr-pdc/known-fr")) == {A, B}
    await share_hashes(pair.fr, "de-eco")
    await pair.fr.settle()
    assert set(await held(pair.de, "fr-pdc/known-fr")) == {B, C}


async def test_a_list_marked_shared_goes_whole_to_every_peer_that_takes_lists(pair: Pair) -> None:
    await both_share(pair)
    await change(pair.fr, "later", add=[entry(A), entry(B)], shared=False)
    await change(pair.fr, "later", remove=[B], shared=None)
    assert await hashset_rows(pair.fr, "de-eco") == []
    # `hashes import FILE --list later --share`: what it held goes whole, then the new entry.
    await change(pair.fr, "later", add=[entry(C)], shared=True)
    rows = [record for _, record in await hashset_rows(pair.fr, "de-eco")]
    assert [(r.seq, len(r.remove), len(r.add)) for r in rows] == [(1, 1, 0), (2, 0, 1), (3, 0, 1)]
    await pair.fr.settle()
    assert set(await held(pair.de, "fr-pdc/later")) == {A, C}
    # Marked private again: its changes stay here.
    await change(pair.fr, "later", add=[entry(D)], shared=False)
    assert len(await hashset_rows(pair.fr, "de-eco")) == 3


async def test_a_peer_that_does_not_announce_hashset_is_never_sent_one(pair: Pair) -> None:
    """DE's key document as an older node writes it (no `accepts`): nothing is queued for it
    whatever its policy; once its document announces the record, it gets our lists whole."""
    de_keys = pair.de.node.keyring.current
    old = sign_key_document(
        build_key_document(
            de_keys, node_id="de-eco", country="DE", endpoint=pair.de.url, now=START
        ),
        de_keys,
    )
    registry = pair.fr.node.registry
    document = verify_key_document(old, pinned_fingerprint=pair.de.fingerprint)
    await registry.store_document("de-eco", old, document)
    assert (await registry.describe("de-eco"))["accepts"] == []
    await both_share(pair)
    await change(pair.fr, "known-fr", add=[entry(A)])
    assert await hashset_rows(pair.fr, "de-eco") == []

    new = pair.de.node.key_document()
    await registry.store_document(
        "de-eco", new, verify_key_document(new, pinned_fingerprint=pair.de.fingerprint)
    )
    assert (await registry.describe("de-eco"))["accepts"] == ["hashset", "pdq-quality", "sha1"]
    await pair.fr.settle()
    assert set(await held(pair.de, "fr-pdc/known-fr")) == {A}


async def test_a_suspended_peer_gets_the_changes_made_meanwhile_when_resumed(pair: Pair) -> None:
    await both_share(pair)
    await pair.fr.node.admin.set_status("de-eco", "suspended", "operator:olga")
    await change(pair.fr, "known-fr", add=[entry(A), entry(B)])
    await change(pair.fr, "known-fr", remove=[A])
    await pair.fr.settle()
    assert [state for state, _ in await hashset_rows(pair.fr, "de-eco")] == ["pending"] * 2
    await pair.fr.node.admin.set_status("de-eco", "active", "operator:olga")
    await pair.fr.settle()
    assert set(await held(pair.de, "fr-pdc/known-fr")) == {B}


async def test_the_admin_api_sets_the_policy_and_refuses_a_bad_value(pair: Pair) -> None:
    url = f"{pair.fr.url}/admin/v1/peers/de-eco"
    status, body = await http_json("PATCH", url, pair.fr.operator, {"share_hashes": True})
    assert status == 200
    assert body["share_hashes"] is True
    assert body["categories"]  # the rest of the policy as it was
    status, body = await http_json("PATCH", url, pair.fr.operator, {"share_hashes": "yes"})
    assert status == 422
    assert body["type"].endswith("/invalid-input")
    assert "share_hashes" in body["detail"]
    status, body = await http_json("GET", f"{pair.fr.url}/admin/v1/peers", pair.fr.operator)
    assert [p["share_hashes"] for p in body["peers"]] == [True]


# --- what a receiver refuses ---------------------------------------------------------------------


async def test_a_hashset_from_a_peer_whose_policy_does_not_share_hashes_is_rejected(
    pair: Pair, recorder: Recorder
) -> None:
    await share_hashes(pair.fr, "de-eco")  # FR sends; DE has not agreed to take FR's lists
    await change(pair.fr, "known-fr", add=[entry(A)])
    result = await pair.fr.node.delivery.push("de-eco")
    assert (result.sent, result.rejected) == (0, 1)
    assert [state for state, _ in await hashset_rows(pair.fr, "de-eco")] == ["dead"]
    [dead] = await pair.fr.node.db.fetch_all(
        "SELECT reason, record_type FROM dead_letters WHERE direction = 'out'"
    )
    assert dead["record_type"] == "hashset"
    assert dead["reason"] == (
        "de-eco does not take hash lists from fr-pdc: its policy for that peer does not share"
        " hashes"
    )
    assert await the_list(pair.de, "fr-pdc/known-fr") is None
    assert recorder.calls == []
    # DE's operator agrees; FR's operator sends the rejected records again.
    await share_hashes(pair.de, "fr-pdc")
    assert await pair.fr.node.registry.requeue_dead("de-eco", "operator:olga") == 1
    await pair.fr.settle()
    assert set(await held(pair.de, "fr-pdc/known-fr")) == {A}


async def test_a_peer_writes_only_its_own_lists(pair: Pair) -> None:
    await both_share(pair)
    await change(pair.de, "known-de", add=[entry(A)], shared=False)
    # FR names DE's list: it lands in FR's own list of that name at DE, DE's list is untouched.
    await change(pair.fr, "known-de", add=[entry(B)])
    await pair.fr.settle()
    assert set(await held(pair.de, "known-de")) == {A}
    assert set(await held(pair.de, "fr-pdc/known-de")) == {B}

    # A record whose author is another node does not open (author = sender).
    forged = HashSet(
        id=uuid.uuid4(),
        origin="de-eco",
        name="known-de",
        seq=9,
        at=START,
        remove=[HashRemoval(alg="sha256", value=A.split(":")[1])],
    )
    public = pair.fr.node.registry.keys_for("de-eco")
    assert public is not None
    kid, key = public.sealing_key(START)
    frame = seal_payload(
        record_bytes(forged),
        record_type="hashset",
        sender="fr-pdc",
        signing_key=pair.fr.node.keyring.current.current_signing(START),
        recipient="de-eco",
        recipient_kid=kid,
        recipient_key=key,
        msg_id=uuid.uuid4(),
        now=START,
    )
    status, answer, _, _ = await signed_push(pair.fr, pair.de.url, "txn-forged-list", [frame])
    assert status == 200
    results = answer["results"]
    assert isinstance(results, list)
    assert [r["status"] for r in results] == ["rejected"]
    assert set(await held(pair.de, "known-de")) == {A}


async def test_a_local_list_holding_a_peers_name_is_not_taken_over(pair: Pair) -> None:
    await both_share(pair)
    # Our list names have no "/" (KnownContent refuses one): a list of that name that is not
    # the peer's can only be left from elsewhere. It is not taken over.
    at = iso(START)

    def odd_list_txn(conn: Tx) -> None:
        made = hashlists.create_list_txn(
            conn, name="fr-pdc/known-fr", owner="de-eco", origin_name="odd", shared=False, at=at
        )
        hashlists.upsert_entries_txn(conn, made.id, [entry(A)], at)

    await pair.de.node.db.run(odd_list_txn)
    await change(pair.fr, "known-fr", add=[entry(B)])
    assert (await pair.fr.node.delivery.push("de-eco")).rejected == 1
    [dead] = await pair.fr.node.db.fetch_all("SELECT reason FROM dead_letters")
    assert dead["reason"] == "a list named fr-pdc/known-fr that fr-pdc does not own exists"
    assert set(await held(pair.de, "fr-pdc/known-fr")) == {A}


async def test_a_node_without_hash_sharing_refuses_hashsets(pair: Pair) -> None:
    await both_share(pair)
    pair.de.node.inbox.hashes = None
    await change(pair.fr, "known-fr", add=[entry(A)])
    assert (await pair.fr.node.delivery.push("de-eco")).rejected == 1
    [dead] = await pair.fr.node.db.fetch_all("SELECT reason FROM dead_letters")
    assert dead["reason"] == "this node does not take hash lists"


# --- never passed on ---------------------------------------------------------------------------


async def test_a_received_list_is_never_passed_on_to_a_third_node(
    pair: Pair, tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> None:
    it_dir, it_url = node_dir(tmp_path, "it-hotline", "IT", clock, dns_server.nameserver)
    async with live_node(it_dir, it_url, clock) as it:
        await befriend(pair.de, it)
        await both_share(pair)
        await share_hashes(pair.de, "it-hotline")
        await share_hashes(it, "de-eco")
        await change(pair.fr, "known-fr", add=[entry(A)])
        await pair.fr.settle()
        await change(pair.de, "known-de", add=[entry(B)])
        await pair.de.settle()
        assert set(await held(pair.de, "fr-pdc/known-fr")) == {A}
        assert set(await held(it, "de-eco/known-de")) == {B}
        assert await the_list(it, "de-eco/fr-pdc/known-fr") is None
        assert [r.name for _, r in await hashset_rows(pair.de, "it-hotline")] == ["known-de"]

        # Even when asked: DE never queues a list it does not own.
        sharing: HashSharing = pair.de.node.hash_sharing
        at = iso(START)

        def pass_on_txn(conn: Tx) -> list[str]:
            received = hashlists.list_of_owner_txn(conn, "fr-pdc", "known-fr")
            assert received is not None
            hashlists.set_shared_txn(conn, received.id, True, at)
            again = hashlists.list_of_owner_txn(conn, "fr-pdc", "known-fr")
            assert again is not None
            added = hashlists.upsert_entries_txn(conn, again.id, [entry(C)], at)
            return [
                *sharing.queue_txn(conn, again, added, at),
                *sharing.share_list_txn(conn, again, at),
                *sharing.share_all_txn(conn, "it-hotline", at),
            ]

        assert await pair.de.node.db.run(pass_on_txn) == ["it-hotline"]  # share_all: known-de
        await pair.de.settle()
        assert [r.name for _, r in await hashset_rows(pair.de, "it-hotline")] == [
            "known-de",
            "known-de",
        ]
        assert {found.name for found in await hashlists.all_lists(it.node.db)} == {
            "de-eco/known-de"
        }


async def test_an_entry_the_wire_cannot_carry_is_left_out_and_the_rest_goes(pair: Pair) -> None:
    await both_share(pair)
    await change(
        pair.fr,
        "known-fr",
        add=[entry(A, grade="grade with\ttab"), entry(B, category="spam"), entry(C)],
    )
    [(_, record)] = await hashset_rows(pair.fr, "de-eco")
    assert [(a.value, a.grade) for a in record.add] == [
        (A.split(":")[1], None),
        (C.split(":")[1], None),
    ]
    assert all(isinstance(a, HashAddition) for a in record.add)
