"""The node does what docs/protocol.md says: suites, versioning, receipts, pull history, paths."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from keys import load_keys, save_keys
from keys.document import CLASSIC_SUITE, HYBRID_SUITE
from node.clock import ManualClock
from node.store import rejoin
from protocol import Action, ActionCode, Report, Withdrawal, read_header, record_bytes, seal
from protocol.derived import derived_action_id
from protocol.envelope import MAGIC, hpke_info, signed_bytes
from protocol.federation import TransactionResponse, decode_frame, encode_frame
from protocol.receipts import check_receipt
from tests.factories import sample_report
from tests.node.test_federation import forward_case, raw_post, signed_headers, signed_push
from tests.support.dns_server import ZoneDnsServer
from tests.support.federation import (
    LiveNode,
    Pair,
    befriend,
    free_port,
    live_node,
    live_pull_pair,
    node_dir,
)
from tests.support.nodes import START, rewrite_config

CLASSIC = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
HYBRID = Suite(KEM.MLKEM768_X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)


def _hand_frame(
    fr: LiveNode, de: LiveNode, header: dict[str, Any], payload: bytes, *, classic: bool = False
) -> bytes:
    """A frame sealed by hand with any header at all (in the hybrid suite unless `classic`):
    honest signature, honest encryption, so that only the rule under test can refuse it."""
    public = fr.node.registry.keys_for(de.node_id)
    assert public is not None
    kid, key = public.encryption_key(START) if classic else public.sealing_key(START)
    signing = fr.node.keyring.current.current_signing(START)
    full = {
        "v": 1,
        "suite": CLASSIC_SUITE if classic else HYBRID_SUITE,
        "from": fr.node_id,
        "from_kid": signing.kid,
        "to": de.node_id,
        "to_kid": kid,
        "msg_id": str(uuid.uuid4()),
        "created_at": int(START.timestamp()),
        "type": "report",
        **header,
    }
    header_bytes = orjson.dumps(full, option=orjson.OPT_SORT_KEYS)
    signature = signing.private.sign(signed_bytes(header_bytes, payload))
    sealed = (CLASSIC if classic else HYBRID).encrypt(
        signature + payload,
        key,
        info=hpke_info(header_bytes),
    )
    return MAGIC + len(header_bytes).to_bytes(2, "big") + header_bytes + sealed


async def _push(pair: Pair, txn_id: str, frames: list[bytes]) -> list[dict[str, Any]]:
    # A nonce of its own per transaction: a second push in one test is no replay.
    nonce = f"nonce-{txn_id}".ljust(22, "0")
    status, answer, _, _ = await signed_push(pair.fr, pair.de.url, txn_id, frames, nonce=nonce)
    assert status == 200, answer
    results = answer["results"]
    assert isinstance(results, list)
    return results


# --- suites (§6.3) -----------------------------------------------------------------------------


async def test_two_current_nodes_use_the_hybrid_suite_both_ways(pair: Pair) -> None:
    await forward_case(pair)
    [stored] = await pair.de.node.db.fetch_all("SELECT frame FROM inbox_envelopes")
    assert read_header(bytes(stored["frame"])).header.suite == HYBRID_SUITE
    [receipt] = await pair.fr.node.db.fetch_all("SELECT frame FROM receipts")
    assert read_header(bytes(receipt["frame"])).header.suite == HYBRID_SUITE


async def test_a_classic_frame_between_hybrid_nodes_is_refused_as_a_downgrade(pair: Pair) -> None:
    report = sample_report(pair.fr.node_id)
    frame = _hand_frame(pair.fr, pair.de, {}, record_bytes(report), classic=True)
    [result] = await _push(pair, "txn-downgrade", [frame])
    assert result["status"] == "rejected"
    assert await pair.de.node.db.fetch_all("SELECT * FROM reports") == []
    [dead] = await pair.de.node.db.fetch_all("SELECT reason FROM dead_letters")
    assert dead["reason"].startswith("downgrade")


async def test_a_node_without_a_hybrid_key_is_sent_classic_frames(
    tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> None:
    """A node from before the hybrid suite (its key document has no `suites`) keeps working."""
    fr_dir, fr_url = node_dir(tmp_path, "fr-pdc", "FR", clock, dns_server.nameserver)
    de_dir, de_url = node_dir(tmp_path, "de-eco", "DE", clock, dns_server.nameserver)
    secret = de_dir.read_secret()
    classic = load_keys(de_dir.keys, secret)
    save_keys(de_dir.keys, replace(classic, hybrid=[]), secret)
    async with live_node(fr_dir, fr_url, clock) as fr, live_node(de_dir, de_url, clock) as de:
        await befriend(fr, de)
        public = fr.node.registry.keys_for("de-eco")
        assert public is not None
        assert not public.advertises_hybrid
        report_id = await forward_case(Pair(fr, de))
        assert (await de.node.cases.show(report_id))["origin"] == "fr-pdc"
        [stored] = await de.node.db.fetch_all("SELECT frame FROM inbox_envelopes")
        assert read_header(bytes(stored["frame"])).header.suite == CLASSIC_SUITE


# --- versioning (§11) --------------------------------------------------------------------------


async def test_unknown_version_suite_type_or_member_refuses_that_item_only(pair: Pair) -> None:
    report = sample_report(pair.fr.node_id)
    payload = record_bytes(report)
    with_extra = orjson.dumps(
        {**orjson.loads(payload), "new_member": 1}, option=orjson.OPT_SORT_KEYS
    )
    frames = [
        _hand_frame(pair.fr, pair.de, {"v": 2}, payload),
        _hand_frame(pair.fr, pair.de, {"suite": "hpke-base-future"}, payload),
        _hand_frame(pair.fr, pair.de, {"type": "verdict"}, payload),
        _hand_frame(pair.fr, pair.de, {}, with_extra),
        _sealed_report(pair),  # an honest frame after them is applied
    ]
    results = await _push(pair, "txn-versions", frames)
    assert [r["status"] for r in results] == ["rejected"] * 4 + ["accepted"]
    reasons = [
        r["reason"]
        for r in await pair.de.node.db.fetch_all("SELECT reason FROM dead_letters ORDER BY id")
    ]
    assert [reason.split(":")[0] for reason in reasons] == [
        "version",
        "suite",
        "malformed",
        "payload",
    ]


def _sealed_report(pair: Pair) -> bytes:
    public = pair.fr.node.registry.keys_for(pair.de.node_id)
    assert public is not None
    kid, key = public.sealing_key(START)
    return seal(
        sample_report(pair.fr.node_id),
        sender=pair.fr.node_id,
        signing_key=pair.fr.node.keyring.current.current_signing(START),
        recipient=pair.de.node_id,
        recipient_kid=kid,
        recipient_key=key,
        msg_id=uuid.uuid4(),
        now=START,
    )


# --- receipts (§13.4) --------------------------------------------------------------------------


async def test_a_transaction_with_nothing_taken_still_gets_an_empty_receipt(pair: Pair) -> None:
    frame = bytearray(_sealed_report(pair))
    frame[-3] ^= 1
    status, answer, _, _ = await signed_push(pair.fr, pair.de.url, "txn-none-taken", [bytes(frame)])
    assert status == 200
    response = TransactionResponse.model_validate_json(orjson.dumps(answer))
    assert response.receipt is not None
    opened = pair.fr.node.delivery._open_receipt(decode_frame(response.receipt), START)
    receipt = check_receipt(response, "txn-none-taken", opened.record)
    assert receipt.accepted == ()


async def test_a_received_action_from_a_pushed_peer_is_a_duplicate(pair: Pair) -> None:
    """The origin records `received` from the receipt; the same fact sent by the peer under the
    derived id adds nothing (§9.8)."""
    report_id = await forward_case(pair)
    action = Action(
        id=derived_action_id(ActionCode.RECEIVED, report_id, "de-eco"),
        report_id=uuid.UUID(report_id),
        report_origin="fr-pdc",
        code=ActionCode.RECEIVED,
        at=START,
        by="de-eco",
        country="DE",
    )
    public = pair.de.node.registry.keys_for("fr-pdc")
    assert public is not None
    kid, key = public.sealing_key(START)
    frame = seal(
        action,
        sender="de-eco",
        signing_key=pair.de.node.keyring.current.current_signing(START),
        recipient="fr-pdc",
        recipient_kid=kid,
        recipient_key=key,
        msg_id=uuid.uuid4(),
        now=START,
    )
    status, answer, _, _ = await signed_push(pair.de, pair.fr.url, "txn-received-1", [frame])
    assert status == 200
    assert [r["status"] for r in answer["results"]] == ["duplicate"]  # type: ignore[attr-defined]
    actions = (await pair.fr.node.cases.show(report_id))["actions"]
    assert [a["code"] for a in actions].count("received") == 1


def _action_frame(sender: LiveNode, to: LiveNode, action: Action) -> bytes:
    public = sender.node.registry.keys_for(to.node_id)
    assert public is not None
    kid, key = public.sealing_key(START)
    return seal(
        action,
        sender=sender.node_id,
        signing_key=sender.node.keyring.current.current_signing(START),
        recipient=to.node_id,
        recipient_kid=kid,
        recipient_key=key,
        msg_id=uuid.uuid4(),
        now=START,
    )


async def test_received_without_its_derived_id_and_forwarded_are_refused(pair: Pair) -> None:
    """§9.8: a `received` action travels only under its derived id, and `forwarded` never
    travels; anything else would show the fact twice in the origin's timeline."""
    report_id = await forward_case(pair)
    minted = Action(
        id=uuid.uuid4(),
        report_id=uuid.UUID(report_id),
        report_origin="fr-pdc",
        code=ActionCode.RECEIVED,
        at=START,
        by="de-eco",
        country="DE",
    )
    forwarded = minted.model_copy(
        update={
            "id": derived_action_id(ActionCode.FORWARDED, report_id, "de-eco"),
            "code": ActionCode.FORWARDED,
        }
    )
    frames = [_action_frame(pair.de, pair.fr, a) for a in (minted, forwarded)]
    status, answer, _, _ = await signed_push(pair.de, pair.fr.url, "txn-received-2", frames)
    assert status == 200
    results: list[dict[str, str]] = answer["results"]  # type: ignore[assignment]
    assert [r["status"] for r in results] == ["rejected", "rejected"]
    derived = derived_action_id(ActionCode.RECEIVED, report_id, "de-eco")
    assert results[0]["error"] == f"received action {minted.id} is not under its id {derived}"
    assert results[1]["error"] == "forwarded actions are recorded by each end, never sent"
    codes = [a["code"] for a in (await pair.fr.node.cases.show(report_id))["actions"]]
    assert codes.count("received") == 1
    assert codes.count("forwarded") == 1


async def test_a_later_version_of_a_withdrawn_report_is_a_duplicate(pair: Pair) -> None:
    """§9.7: the withdrawal is a tombstone; a version after it adds nothing."""
    report = sample_report(pair.fr.node_id)
    withdrawal = Withdrawal(
        id=uuid.uuid4(), report_id=report.id, origin="fr-pdc", at=START, reason="mistake"
    )
    later = report.model_copy(update={"seq": 2, "notes": "after the withdrawal"})
    frames = [_hand_sealed(pair, r) for r in (report, withdrawal, later)]
    results = await _push(pair, "txn-withdrawn-v2", frames)
    assert [r["status"] for r in results] == ["accepted", "accepted", "duplicate"]
    [row] = await pair.de.node.db.fetch_all("SELECT seq, status FROM reports")
    assert (row["seq"], row["status"]) == (1, "withdrawn")
    versions = await pair.de.node.db.fetch_all("SELECT seq FROM report_versions")
    assert [v["seq"] for v in versions] == [1]


async def test_a_withdrawal_of_a_report_never_held_is_refused_unless_restored(
    pair: Pair,
) -> None:
    """§13.7: a node restored from an older backup takes the withdrawal of a report it lost
    (`accepted`, audited as `report.withdrawn_unknown`); one never restored refuses it."""

    def withdrawal() -> Withdrawal:
        return Withdrawal(
            id=uuid.uuid4(), report_id=uuid.uuid4(), origin="fr-pdc", at=START, reason="mistake"
        )

    never_sent = withdrawal()
    results = await _push(pair, "txn-withdraw-unknown-1", [_hand_sealed(pair, never_sent)])
    assert results[0]["status"] == "rejected"
    assert results[0]["error"] == (
        f"withdrawal of report {never_sent.report_id}, which fr-pdc did not send"
    )
    await pair.de.node.db.run(
        lambda conn: rejoin.mark_restored_txn(conn, "de-eco", "2026-01-01T00:00:00Z")
    )
    lost = withdrawal()
    results = await _push(pair, "txn-withdraw-unknown-2", [_hand_sealed(pair, lost)])
    assert results[0]["status"] == "accepted"
    entries = await pair.de.node.db.fetch_all(
        "SELECT actor, subject, details FROM audit_log WHERE event = 'report.withdrawn_unknown'"
    )
    assert [tuple(e) for e in entries] == [
        ("peer:fr-pdc", str(lost.report_id), f'{{"withdrawal":"{lost.id}"}}')
    ]
    assert await pair.de.node.db.fetch_all("SELECT id FROM reports") == []


async def test_a_relayed_frame_is_rejected_with_the_relay_named(pair: Pair) -> None:
    """§13.3: a frame whose `from` is not the peer that signed the request is refused before
    it is opened, and the error names both."""
    relayed = _hand_frame(pair.fr, pair.de, {"from": "it-hotline"}, record_bytes(_report(pair)))
    results = await _push(pair, "txn-relayed-1", [relayed])
    assert results[0]["status"] == "rejected"
    assert results[0]["error"] == "envelope from it-hotline relayed by fr-pdc"


async def test_a_padded_frame_makes_the_whole_body_malformed(pair: Pair) -> None:
    """§13.3: a frame in a body is unpadded base64url; `=` padding (or any other spelling) is
    a malformed body, answered 400, and nothing of the transaction is applied."""
    frames = [_sealed_report(pair), _sealed_report(pair)]
    padded = encode_frame(frames[1]) + "=" * (-len(encode_frame(frames[1])) % 4 or 4)
    body = orjson.dumps({"envelopes": [encode_frame(frames[0]), padded]})
    path = "/federation/v1/transactions/txn-padded-1"
    headers = signed_headers(pair.fr, pair.de.url.removeprefix("http://"), path, body, "n" * 24)
    status, answer = await raw_post(pair.de.url + path, body, headers)
    assert status == 400
    assert str(answer["type"]).endswith("malformed-request")
    assert await pair.de.node.db.fetch_all("SELECT id FROM reports") == []


def _report(pair: Pair) -> Report:
    return sample_report(pair.fr.node_id)


def _hand_sealed(pair: Pair, record: Report | Withdrawal) -> bytes:
    public = pair.fr.node.registry.keys_for(pair.de.node_id)
    assert public is not None
    kid, key = public.sealing_key(START)
    return seal(
        record,
        sender=pair.fr.node_id,
        signing_key=pair.fr.node.keyring.current.current_signing(START),
        recipient=pair.de.node_id,
        recipient_kid=kid,
        recipient_key=key,
        msg_id=uuid.uuid4(),
        now=START,
    )


# --- pull acknowledgement (§13.5) --------------------------------------------------------------


async def test_a_pull_peer_gets_the_same_history_as_a_push_peer(
    tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> None:
    async with live_pull_pair(tmp_path, clock, dns_server.nameserver) as pair:
        fr, de = pair.fr, pair.de
        report_id = await forward_case(Pair(fr, de))
        assert (await de.node.delivery.pull("fr-pdc")).pulled == 1
        # One pull round acknowledges its own last page: nothing waits for the next round.
        [row] = await fr.node.db.fetch_all("SELECT state, sent_at, attempts FROM peer_outbox")
        assert row["state"] == "sent"
        assert row["sent_at"] is not None
        assert row["attempts"] == 1
        described = await fr.node.registry.describe("de-eco")
        assert described["queue_depth"] == 0
        assert described["delivered"] == 1
        shown = await fr.node.cases.show(report_id)
        timeline = [(a["id"], a["code"], a["by"]) for a in shown["actions"]]
        forwarded_id = str(derived_action_id(ActionCode.FORWARDED, report_id, "de-eco"))
        assert (forwarded_id, "forwarded", "fr-pdc") in timeline
        # `received` is DE's own signed statement, its `received` action under the derived id.
        await de.settle()
        shown = await fr.node.cases.show(report_id)
        timeline = [(a["id"], a["code"], a["by"]) for a in shown["actions"]]
        received_id = str(derived_action_id(ActionCode.RECEIVED, report_id, "de-eco"))
        assert (received_id, "received", "de-eco") in timeline
        codes = [code for _, code, _ in timeline]
        assert codes.count("received") == 1
        assert codes.count("forwarded") == 1
        # Pulling again acknowledges nothing new and records nothing twice.
        assert (await de.node.delivery.pull("fr-pdc")).pulled == 0
        again = [a["code"] for a in (await fr.node.cases.show(report_id))["actions"]]
        assert sorted(again) == sorted(codes)


# --- endpoints with a path (§13.1) -------------------------------------------------------------


async def test_an_endpoint_with_a_path_prefix_works_with_or_without_a_proxy(
    tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> None:
    fr_dir, fr_url = node_dir(tmp_path, "fr-pdc", "FR", clock, dns_server.nameserver)
    de_dir, de_root = node_dir(tmp_path, "de-eco", "DE", clock, dns_server.nameserver)
    de_url = de_root + "/hotline/de"
    rewrite_config(de_dir, endpoint=de_url)
    async with live_node(fr_dir, fr_url, clock) as fr, live_node(de_dir, de_url, clock) as de:
        # The key document is fetched from <endpoint>/.well-known/hotline-node.
        await befriend(fr, de)
        report_id = await forward_case(Pair(fr, de))
        assert (await de.node.cases.show(report_id))["origin"] == "fr-pdc"
        # A proxy that strips the prefix: the request arrives at the root path, signed for
        # the full one, and verifies.
        body = orjson.dumps({"envelopes": [encode_frame(_sealed_report(Pair(fr, de)))]})
        path = "/federation/v1/transactions/txn-stripped"
        authority = de_root.removeprefix("http://")
        signed_for_endpoint = signed_headers(fr, authority, "/hotline/de" + path, body, "n" * 20)
        status, answer = await raw_post(de_root + path, body, signed_for_endpoint)
        assert status == 200, answer
        assert [r["status"] for r in answer["results"]] == ["accepted"]  # type: ignore[attr-defined]
        # Signed for the root path, which is not DE's endpoint: refused.
        signed_for_root = signed_headers(fr, authority, path, body, "m" * 20)
        status, _ = await raw_post(de_root + path, body, signed_for_root)
        assert status == 401


async def test_a_pull_stops_when_the_peer_serves_nothing_past_the_cursor(
    tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> None:
    """The puller asks until an empty page; a peer that keeps serving old sequence numbers
    must not keep it asking forever."""
    calls: list[str] = []

    async def stuck_outbox(request: web.Request) -> web.Response:
        calls.append(request.query_string)
        page = {"v": 1, "envelopes": [{"seq": 1, "frame": "SExOMQ"}], "next_after": 1, "more": True}
        return web.json_response(page)

    app = web.Application()
    app.router.add_get("/federation/v1/outbox", stuck_outbox)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    fr_dir, fr_url = node_dir(tmp_path, "fr-pdc", "FR", clock, dns_server.nameserver)
    de_dir, de_url = node_dir(
        tmp_path, "de-eco", "DE", clock, dns_server.nameserver, federation={"pull_from_peers": True}
    )
    try:
        async with live_node(fr_dir, fr_url, clock) as fr, live_node(de_dir, de_url, clock) as de:
            await befriend(fr, de, pull_only=True)
            async with de.node.db.write() as conn:
                await conn.execute(
                    "UPDATE peers SET endpoint = ? WHERE node_id = 'fr-pdc'",
                    (f"http://127.0.0.1:{port}",),
                )
            await de.node.registry.load()
            report = await de.node.delivery.pull("fr-pdc")
            assert report.pulled == 0
            assert calls == ["after=0&limit=200", "after=1&limit=200"]
    finally:
        await runner.cleanup()
