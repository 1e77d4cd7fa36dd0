"""Two real nodes on loopback ports exchange reports, actions and withdrawals (in one process)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from keys import KeyUnavailableError
from node.clock import ManualClock
from node.errors import InvalidInput, NotFound
from node.federation.inbound import ClaimRefused
from node.federation.inbox import OPEN_CHUNK
from node.store import audit, peer_outbox
from protocol import (
    MAX_ENVELOPE_BYTES,
    Action,
    ActionCode,
    Report,
    Withdrawal,
    record_bytes,
    seal,
)
from protocol.federation import TransactionRequest, encode_frame
from protocol.httpsig import SignedRequest, sign_request
from tests.factories import sample_report
from tests.support.dns_server import ZoneDnsServer
from tests.support.federation import (
    LiveNode,
    Pair,
    befriend,
    live_node,
    live_pull_pair,
    node_dir,
)
from tests.support.nodes import START


async def forward_case(pair: Pair, url: str = "http://de.example/x.jpg") -> str:
    cases = pair.fr.node.cases
    submitted = await cases.submit(url, actor="analyst:ana", category="csam")
    await pair.fr.node.trace_pending()
    decision = await cases.assess(
        submitted.report_id,
        verdict="baseline",
        category="csam",
        legal_basis="227-23",
        actor="analyst:ana",
    )
    assert decision is not None
    assert decision.decision.value == "peer"
    await pair.fr.settle()
    return submitted.report_id


async def test_report_reaches_the_peer_and_the_outcome_comes_back(pair: Pair) -> None:
    report_id = await forward_case(pair)
    at_de = await pair.de.node.cases.show(report_id)
    assert at_de["origin"] == "fr-pdc"
    assert at_de["assessment"]["verdict"] == "baseline"
    assert at_de["hosting"]["countries"] == ["DE"]
    # Hosted at home for DE: its national channels get the case.
    assert at_de["routing"]["decision"] == "domestic"
    assert [a["code"] for a in at_de["actions"]] == ["received"]

    await pair.de.node.cases.record_action(
        report_id, code="content_removed", reason="gone", actor="analyst:bea"
    )
    await pair.de.settle()
    at_fr = await pair.fr.node.cases.show(report_id)
    timeline = [(a["code"], a["by"], a["country"]) for a in at_fr["actions"]]
    assert ("forwarded", "fr-pdc", "DE") in timeline
    assert ("received", "de-eco", "DE") in timeline
    assert ("content_removed", "de-eco", "DE") in timeline
    assert at_fr["status"] == "closed"
    # Nothing was echoed back to the origin as a report, and DE queued nothing for others.
    assert (
        await pair.de.node.db.fetch_all("SELECT * FROM peer_outbox WHERE record_type = 'report'")
        == []
    )


async def test_withdrawal_closes_the_case_at_the_peer(pair: Pair) -> None:
    report_id = await forward_case(pair)
    peers = await pair.fr.node.cases.withdraw(
        report_id, reason="mistaken report", actor="analyst:ana"
    )
    assert peers == ["de-eco"]
    await pair.fr.settle()
    at_de = await pair.de.node.cases.show(report_id)
    assert at_de["status"] == "withdrawn"


async def test_delivery_is_exactly_once_after_the_peer_comes_back(
    pair: Pair, clock: ManualClock
) -> None:
    await pair.de.stop_http()
    cases = pair.fr.node.cases
    ids = []
    for n in range(3):
        submitted = await cases.submit(f"http://de.example/{n}", actor="a", category="csam")
        ids.append(submitted.report_id)
    await pair.fr.node.trace_pending()
    for report_id in ids:
        await cases.assess(
            report_id, verdict="baseline", category="csam", legal_basis=None, actor="a"
        )
    first = await pair.fr.node.delivery.push("de-eco")
    assert first.sent == 0
    assert first.error
    peer = await pair.fr.node.registry.describe("de-eco")
    assert peer["backoff_attempts"] == 1
    assert peer["backing_off"]
    assert peer["queue_depth"] == 3
    # While backing off, the sweep does not hammer the peer.
    assert (await pair.fr.node.delivery.push("de-eco")).skipped
    await pair.de.start_http()
    clock.advance(timedelta(hours=1))
    second = await pair.fr.node.delivery.push("de-eco")
    assert second.sent == 3
    again = await pair.fr.node.delivery.push("de-eco")
    assert again.sent == 0
    rows = await pair.de.node.db.fetch_all("SELECT id FROM reports")
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert (await pair.fr.node.registry.describe("de-eco"))["backoff_attempts"] == 0


async def test_a_peer_lost_between_batches_keeps_the_rest_queued(
    pair: Pair, clock: ManualClock
) -> None:
    """Batches are sealed ahead and settled behind; a failure in the middle loses nothing
    and sends nothing twice."""
    delivery = pair.fr.node.delivery
    delivery.batch_size = 2
    cases = pair.fr.node.cases
    ids = [
        (await cases.submit(f"http://de.example/b{n}", actor="a", category="csam")).report_id
        for n in range(5)
    ]
    await pair.fr.node.trace_pending()
    for report_id in ids:
        await cases.assess(
            report_id, verdict="baseline", category="csam", legal_basis=None, actor="a"
        )
    real_push = delivery.client.push
    transactions: list[int] = []

    async def push_then_vanish(endpoint: str, txn_id: str, frames: list[bytes]) -> Any:
        transactions.append(len(frames))
        answer = await real_push(endpoint, txn_id, frames)
        await pair.de.stop_http()  # the peer goes away right after answering
        return answer

    delivery.client.push = push_then_vanish  # type: ignore[method-assign]
    # Failures before this run: the first answer resets the count, so the failure after it
    # starts the backoff again from one attempt.
    async with pair.fr.node.db.write() as conn:
        await conn.execute("UPDATE peers SET backoff_attempts = 5 WHERE node_id = 'de-eco'")
    progress: list[int] = []
    first = await delivery.push("de-eco", progress=lambda _, done, total: progress.append(done))
    assert first.sent == 2
    assert first.error
    assert progress == [2]
    peer = await pair.fr.node.registry.describe("de-eco")
    assert peer["queue_depth"] == 3
    assert peer["backoff_attempts"] == 1

    delivery.client.push = real_push  # type: ignore[method-assign]
    await pair.de.start_http()
    clock.advance(timedelta(hours=1))
    second = await delivery.push("de-eco")
    assert second.sent == 3
    assert transactions == [2, 2]  # the second attempt failed before any answer
    rows = await pair.de.node.db.fetch_all("SELECT id FROM reports")
    assert sorted(r["id"] for r in rows) == sorted(ids)
    states = await pair.fr.node.db.fetch_all(
        "SELECT state, COUNT(*) AS n FROM peer_outbox GROUP BY state"
    )
    assert [(r["state"], r["n"]) for r in states] == [("sent", 5)]


def content_removed(
    report_id: uuid.UUID, *, origin: str, by: str, country: str, reason: str | None = None
) -> Action:
    """A `content_removed` action by node `by` on a report of `origin`."""
    return Action(
        id=uuid.uuid4(),
        report_id=report_id,
        report_origin=origin,
        code=ActionCode.CONTENT_REMOVED,
        at=START,
        by=by,
        country=country,
        reason=reason,
    )


async def queue_action(sender: LiveNode, peer_id: str, action: Action, payload: bytes) -> None:
    """Put `payload` in the sender's outbox to `peer_id` as it is, without any check."""
    async with sender.node.db.write() as conn:
        await conn.call(
            peer_outbox.enqueue_one_txn,
            peer_id=peer_id,
            record_type="action",
            record_id=str(action.id),
            report_id=str(action.report_id),
            payload=payload,
            at="2026-11-29T09:00:00Z",
        )


async def test_a_record_too_large_to_seal_is_dead_lettered_and_the_rest_goes(
    pair: Pair,
) -> None:
    huge = content_removed(
        uuid.uuid4(), origin="de-eco", by="fr-pdc", country="FR", reason="x" * 8000
    )
    # Stored payloads are sealed as they are: this one is over the envelope limit.
    await queue_action(pair.fr, "de-eco", huge, record_bytes(huge) + b" " * MAX_ENVELOPE_BYTES)
    report_id = await forward_case(pair)
    assert (await pair.de.node.cases.show(report_id))["origin"] == "fr-pdc"
    states = await pair.fr.node.db.fetch_all(
        "SELECT record_type, state FROM peer_outbox WHERE peer_id = 'de-eco' ORDER BY seq"
    )
    assert [(r["record_type"], r["state"]) for r in states] == [
        ("action", "dead"),
        ("report", "sent"),
    ]
    [dead] = await pair.fr.node.db.fetch_all("SELECT * FROM dead_letters WHERE direction = 'out'")
    assert dead["reason"].startswith("cannot be sealed: record too large")
    assert (await pair.fr.node.registry.describe("de-eco"))["backoff_attempts"] == 0


# --- refusals -----------------------------------------------------------------------------


async def signed_push(
    sender: LiveNode,
    target_url: str,
    txn_id: str,
    frames: list[bytes],
    *,
    authority: str | None = None,
    nonce: str = "nonce-0123456789abcdef",
) -> tuple[int, dict[str, object], dict[str, str], bytes]:
    """Build a push exactly as PeerClient does, but with control over what is signed."""
    body = orjson.dumps(
        TransactionRequest(envelopes=[encode_frame(f) for f in frames]).model_dump()
    )
    path = f"/federation/v1/transactions/{txn_id}"
    headers = signed_headers(
        sender, authority or target_url.removeprefix("http://"), path, body, nonce
    )
    status, answer = await raw_post(target_url + path, body, headers)
    return status, answer, headers, body


def signed_headers(
    sender: LiveNode, authority: str, path: str, body: bytes, nonce: str
) -> dict[str, str]:
    headers = sign_request(
        SignedRequest("POST", authority, path, "?", body),
        node_id=sender.node_id,
        key=sender.node.keyring.current.current_signing(START),
        nonce=nonce,
        now=sender.node.clock.now(),
    )
    headers["Content-Type"] = "application/json"
    return headers


def prepared_push(
    pair: Pair, txn_id: str, nonce: str, body: bytes | None = None
) -> tuple[str, bytes, dict[str, str]]:
    """A signed push from FR to DE, ready to send (and to send again): URL, body, headers.
    The body carries one new report unless given."""
    if body is None:
        frame = encode_frame(report_frame(pair.fr, pair.de))
        body = orjson.dumps(TransactionRequest(envelopes=[frame]).model_dump())
    path = f"/federation/v1/transactions/{txn_id}"
    authority = pair.de.url.removeprefix("http://")
    return pair.de.url + path, body, signed_headers(pair.fr, authority, path, body, nonce)


async def raw_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


def report_frame(fr: LiveNode, de: LiveNode) -> bytes:
    return record_frame(fr, de, sample_report(fr.node_id))


def record_frame(fr: LiveNode, de: LiveNode, record: Report | Withdrawal) -> bytes:
    public = fr.node.registry.keys_for(de.node_id)
    assert public is not None
    kid, key = public.sealing_key(START)
    return seal(
        record,
        sender=fr.node_id,
        signing_key=fr.node.keyring.current.current_signing(START),
        recipient=de.node_id,
        recipient_kid=kid,
        recipient_key=key,
        msg_id=uuid.uuid4(),
        now=START,
    )


async def test_a_mixed_batch_is_applied_in_order(pair: Pair) -> None:
    """New reports are written together, but every item sees the ones before it: a new
    version and a withdrawal of reports earlier in the same batch, a copy of an envelope,
    and reports the receiver refuses (a bad URL, a reused reference), between new reports."""
    first, second, third, bad_url = (
        sample_report(pair.fr.node_id).model_copy(update={"local_ref": f"PDC-{n}"})
        for n in range(4)
    )
    bad_url = bad_url.model_copy(update={"url": "http://de.example:99999/x"})
    # Another case under a reference the origin already used: refused, not a failed batch.
    same_ref = sample_report(pair.fr.node_id).model_copy(update={"local_ref": "PDC-0"})
    first_frame = record_frame(pair.fr, pair.de, first)
    frames = [
        first_frame,
        record_frame(pair.fr, pair.de, bad_url),
        record_frame(pair.fr, pair.de, first.model_copy(update={"seq": 2, "notes": "v2"})),
        first_frame,
        record_frame(pair.fr, pair.de, second),
        record_frame(
            pair.fr,
            pair.de,
            Withdrawal(
                id=uuid.uuid4(), report_id=second.id, origin="fr-pdc", at=START, reason="mistake"
            ),
        ),
        record_frame(pair.fr, pair.de, third),
        record_frame(pair.fr, pair.de, same_ref),
    ]
    status, answer, _, _ = await signed_push(pair.fr, pair.de.url, "txn-mixed-1", frames)
    assert status == 200, answer
    results = answer["results"]
    assert isinstance(results, list)
    assert [r["status"] for r in results] == [
        "accepted",
        "rejected",
        "accepted",
        "duplicate",
        "accepted",
        "accepted",
        "accepted",
        "rejected",
    ]
    assert "report url refused" in results[1]["error"]
    assert "already names another report" in results[7]["error"]
    db = pair.de.node.db
    cases = {r["id"]: (r["seq"], r["status"]) for r in await db.fetch_all("SELECT * FROM reports")}
    assert cases == {
        str(first.id): (2, "routed"),
        str(second.id): (1, "withdrawn"),
        str(third.id): (1, "routed"),
    }
    versions = await db.fetch_all("SELECT report_id, seq FROM report_versions ORDER BY seq")
    assert sorted((r["report_id"], r["seq"]) for r in versions) == sorted(
        [(str(first.id), 1), (str(first.id), 2), (str(second.id), 1), (str(third.id), 1)]
    )
    received = await db.fetch_all("SELECT report_id FROM actions WHERE code = 'received'")
    assert sorted(r["report_id"] for r in received) == sorted(
        str(r.id) for r in (first, second, third)
    )
    dead = await db.fetch_all("SELECT record_id, reason FROM dead_letters ORDER BY id")
    assert [(r["record_id"], r["reason"].split(":")[0]) for r in dead] == [
        (str(bad_url.id), "report url refused"),
        (str(same_ref.id), "local_ref 'PDC-0' already names another report"),
    ]
    # Five accepted envelopes kept as evidence; the copy and the refused one are not.
    assert len(await db.fetch_all("SELECT digest FROM inbox_envelopes")) == 5
    assert (await audit.verify(db)).ok


async def test_a_batch_spanning_several_opened_chunks_is_applied_in_order(pair: Pair) -> None:
    """The receiver opens a batch in chunks of OPEN_CHUNK while it writes: a withdrawal, a new
    version and a copy of an envelope in later chunks still see the earlier ones."""
    reports = [
        sample_report(pair.fr.node_id).model_copy(update={"local_ref": f"PDC-{n}"})
        for n in range(3 * OPEN_CHUNK)
    ]
    first, second = reports[0], reports[OPEN_CHUNK + 5]
    frames = [record_frame(pair.fr, pair.de, r) for r in reports]
    clash = sample_report(pair.fr.node_id).model_copy(update={"local_ref": "PDC-1"})
    later = [
        record_frame(
            pair.fr,
            pair.de,
            Withdrawal(
                id=uuid.uuid4(), report_id=first.id, origin="fr-pdc", at=START, reason="mistake"
            ),
        ),
        record_frame(pair.fr, pair.de, second.model_copy(update={"seq": 2})),
        frames[0],
        record_frame(pair.fr, pair.de, clash),
    ]
    # Spread over the later chunks.
    for offset, frame in zip(
        (OPEN_CHUNK + 10, 2 * OPEN_CHUNK + 1, 2 * OPEN_CHUNK + 20, 3 * OPEN_CHUNK),
        later,
        strict=True,
    ):
        frames.insert(offset, frame)
    status, answer, _, _ = await signed_push(pair.fr, pair.de.url, "txn-chunks-1", frames)
    assert status == 200, answer
    results = answer["results"]
    assert isinstance(results, list)
    statuses = [r["status"] for r in results]
    assert statuses.count("accepted") == len(reports) + 2
    assert statuses[2 * OPEN_CHUNK + 20] == "duplicate"
    assert statuses[3 * OPEN_CHUNK] == "rejected"
    assert "already names another report" in results[3 * OPEN_CHUNK]["error"]
    db = pair.de.node.db
    row = await db.fetch_one("SELECT status FROM reports WHERE id = ?", (str(first.id),))
    assert row is not None
    assert row["status"] == "withdrawn"
    row = await db.fetch_one("SELECT seq FROM reports WHERE id = ?", (str(second.id),))
    assert row is not None
    assert row["seq"] == 2
    count = await db.fetch_one("SELECT COUNT(*) FROM reports")
    assert count is not None
    assert count[0] == len(reports)
    assert (await audit.verify(db)).ok


async def test_replayed_request_is_refused_and_the_same_txn_gets_the_same_answer(
    pair: Pair,
) -> None:
    frame = report_frame(pair.fr, pair.de)
    status, answer, headers, body = await signed_push(pair.fr, pair.de.url, "txn-replay-1", [frame])
    assert status == 200, answer
    # The captured request, byte for byte: the nonce is spent.
    replay_status, problem = await raw_post(
        f"{pair.de.url}/federation/v1/transactions/txn-replay-1", body, headers
    )
    assert replay_status == 401
    assert "replayed" in str(problem["detail"])
    # A fresh, correctly signed retry of the same transaction gets the stored answer.
    status, again, _, _ = await signed_push(
        pair.fr, pair.de.url, "txn-replay-1", [frame], nonce="nonce-fedcba9876543210"
    )
    assert status == 200
    assert again == answer
    rows = await pair.de.node.db.fetch_all("SELECT id FROM reports")
    assert len(rows) == 1


async def test_the_same_request_twice_at_once_is_applied_once(pair: Pair) -> None:
    """Of two copies of one request sent together, one is applied and the other refused
    (before any work, or at the latest when the nonce is claimed with the batch)."""
    url, body, headers = prepared_push(pair, "txn-twice-1", "nonce-twice-0000000000")
    outcomes = await asyncio.gather(raw_post(url, body, headers), raw_post(url, body, headers))
    assert sorted(status for status, _ in outcomes) == [200, 401]
    refused = next(problem for status, problem in outcomes if status == 401)
    assert "replayed" in str(refused["detail"])
    assert len(await pair.de.node.db.fetch_all("SELECT * FROM reports")) == 1
    assert len(await pair.de.node.db.fetch_all("SELECT * FROM inbound_transactions")) == 1
    assert (await audit.verify(pair.de.node.db)).ok


async def test_a_transaction_applied_again_gets_the_stored_answer(pair: Pair) -> None:
    """The stored answer is looked up again under the write lock: a retry of a transaction
    that got past the handler's check while its first copy was being applied is answered
    with what the first copy stored, not a conflict. Called directly, without that check."""
    frame = report_frame(pair.fr, pair.de)
    inbound = pair.de.node.inbound
    first, _ = await inbound.receive_transaction(pair.fr.node_id, "txn-retried-1", [frame])
    second, pushed = await inbound.receive_transaction(pair.fr.node_id, "txn-retried-1", [frame])
    assert second == first
    assert pushed == []
    assert len(await pair.de.node.db.fetch_all("SELECT * FROM reports")) == 1
    assert len(await pair.de.node.db.fetch_all("SELECT * FROM inbound_transactions")) == 1


async def test_a_taken_claim_applies_nothing(pair: Pair) -> None:
    frame = report_frame(pair.fr, pair.de)
    with pytest.raises(ClaimRefused):
        await pair.de.node.inbound.receive_transaction(
            pair.fr.node_id, "txn-claimed-1", [frame], claim=lambda conn: False
        )
    for table in ("reports", "inbox_seen", "inbox_envelopes", "inbound_transactions"):
        assert await pair.de.node.db.fetch_all(f"SELECT * FROM {table}") == [], table


async def test_a_copy_of_a_push_in_progress_is_refused_before_any_work(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbound = pair.de.node.inbound
    real, started, release, calls = (
        inbound.receive_transaction,
        asyncio.Event(),
        asyncio.Event(),
        [],
    )

    async def held(*args: Any, **kwargs: Any) -> tuple[bytes, list[str]]:
        calls.append(args)
        started.set()
        await release.wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(inbound, "receive_transaction", held)
    url, body, headers = prepared_push(pair, "txn-in-flight-1", "nonce-in-flight-00000")
    first = asyncio.create_task(raw_post(url, body, headers))
    await asyncio.wait_for(started.wait(), timeout=10)
    status, problem = await asyncio.wait_for(raw_post(url, body, headers), 10)
    assert status == 401
    assert "replayed" in str(problem["detail"])
    release.set()
    status, answer = await first
    assert status == 200, answer
    assert len(calls) == 1
    assert len(await pair.de.node.db.fetch_all("SELECT * FROM reports")) == 1


async def test_a_push_that_fails_still_spends_its_nonce(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(*args: object, **kwargs: object) -> tuple[bytes, list[str]]:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pair.de.node.inbound, "receive_transaction", failing)
    url, body, headers = prepared_push(pair, "txn-failing-1", "nonce-failing-0000000")
    status, problem = await raw_post(url, body, headers)
    assert status == 500
    assert "disk on fire" not in str(problem)
    status, problem = await raw_post(url, body, headers)
    assert status == 401
    assert "replayed" in str(problem["detail"])


async def test_a_malformed_body_spends_its_nonce(pair: Pair) -> None:
    bad = orjson.dumps({"envelopes": "not a list"})
    url, _, headers = prepared_push(pair, "txn-bad-body-1", "nonce-bad-body-000000", bad)
    status, problem = await raw_post(url, bad, headers)
    assert status == 400, problem
    status, problem = await raw_post(url, bad, headers)
    assert status == 401
    assert "replayed" in str(problem["detail"])


async def test_tampered_envelope_is_rejected_and_nothing_of_it_is_stored(pair: Pair) -> None:
    frame = bytearray(report_frame(pair.fr, pair.de))
    frame[-5] ^= 0x01
    status, answer, _, _ = await signed_push(pair.fr, pair.de.url, "txn-tamper-1", [bytes(frame)])
    assert status == 200
    results = answer["results"]
    assert isinstance(results, list)
    assert results[0]["status"] == "rejected"
    assert results[0]["error"] == "envelope could not be opened"
    assert await pair.de.node.db.fetch_all("SELECT * FROM reports") == []
    assert await pair.de.node.db.fetch_all("SELECT * FROM inbox_envelopes") == []
    dead = await pair.de.node.db.fetch_all("SELECT reason FROM dead_letters")
    assert "decrypt" in dead[0]["reason"]


async def test_request_meant_for_another_destination_is_refused(pair: Pair) -> None:
    frame = report_frame(pair.fr, pair.de)
    status, problem, _, _ = await signed_push(
        pair.fr, pair.de.url, "txn-dest-1", [frame], authority="127.0.0.1:1"
    )
    assert status == 401
    assert problem["type"] == "https://hotline-node.org/problems/request-signature"
    assert await pair.de.node.db.fetch_all("SELECT * FROM reports") == []


async def test_unsigned_request_is_refused(pair: Pair) -> None:
    status, problem = await raw_post(
        f"{pair.de.url}/federation/v1/transactions/txn-unsigned",
        b'{"envelopes": ["AAAA"]}',
        {"Content-Type": "application/json"},
    )
    assert status == 401
    assert "Signature-Input" in str(problem["detail"])


async def test_suspended_peer_is_refused_and_receives_nothing(pair: Pair) -> None:
    await pair.de.node.admin.set_status("fr-pdc", "suspended", "test")
    frame = report_frame(pair.fr, pair.de)
    status, problem, _, _ = await signed_push(pair.fr, pair.de.url, "txn-susp-1", [frame])
    assert status == 401
    assert "not a peer" in str(problem["detail"])
    await pair.fr.node.admin.set_status("de-eco", "suspended", "test")
    submitted = await pair.fr.node.cases.submit("http://de.example/s", actor="a", category="csam")
    await pair.fr.node.trace_pending()
    decision = await pair.fr.node.cases.assess(
        submitted.report_id, verdict="baseline", category="csam", legal_basis=None, actor="a"
    )
    assert decision is not None
    assert decision.decision.value == "fallback"


async def test_peer_whose_key_does_not_match_its_pin_is_not_added(
    tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer, pair: Pair
) -> None:
    it_dir, it_url = node_dir(tmp_path, "it-ks", "IT", clock, dns_server.nameserver)
    async with live_node(it_dir, it_url, clock) as it:
        with pytest.raises(InvalidInput, match="does not match the pinned fingerprint"):
            await pair.fr.node.admin.add(
                node_id="it-ks",
                country="IT",
                endpoint=it.url,
                fingerprint=pair.de.fingerprint,
                actor="test",
            )
        with pytest.raises(InvalidInput, match="is it-ks, not de-eco"):
            await pair.fr.node.admin.add(
                node_id="de-eco",
                country="DE",
                endpoint=it.url,
                fingerprint=it.fingerprint,
                actor="test",
            )
    assert [r.node_id for r in await pair.fr.node.registry.all()] == ["de-eco"]


async def test_rejected_record_is_dead_lettered_and_does_not_block_the_queue(
    pair: Pair,
) -> None:
    # An action about a report of a third node, which FR does not hold: FR refuses it, the
    # rest goes through. (One on an unknown report of FR's own is kept, not refused: FR may
    # have lost it with a restore, tests/e2e/test_rejoin.py.)
    bogus = content_removed(uuid.uuid4(), origin="it-hotline", by="de-eco", country="DE")
    await queue_action(pair.de, "fr-pdc", bogus, record_bytes(bogus))
    report_id = await forward_case(pair)
    await pair.de.node.cases.record_action(
        report_id, code="content_removed", reason=None, actor="analyst:bea"
    )
    result = await pair.de.node.delivery.push("fr-pdc")
    assert result.rejected == 1
    assert result.sent == 1  # content_removed (`received` travelled in the receipt)
    states = await pair.de.node.db.fetch_all(
        "SELECT record_id, state FROM peer_outbox WHERE peer_id = 'fr-pdc' ORDER BY seq"
    )
    assert [r["state"] for r in states] == ["dead", "sent"]
    dead = await pair.de.node.db.fetch_all("SELECT * FROM dead_letters WHERE direction = 'out'")
    assert "not one of ours" in dead[0]["reason"]


async def test_rejected_records_go_again_when_the_operator_requeues_them(pair: Pair) -> None:
    # An action about an FR case that FR has not forwarded to DE yet: FR refuses it. Once the
    # case has gone to DE, the operator at DE queues the rejected action again, and it lands.
    cases = pair.fr.node.cases
    submitted = await cases.submit("http://de.example/early.jpg", actor="analyst:ana")
    early = content_removed(
        uuid.UUID(submitted.report_id), origin="fr-pdc", by="de-eco", country="DE"
    )
    await queue_action(pair.de, "fr-pdc", early, record_bytes(early))
    assert (await pair.de.node.delivery.push("fr-pdc")).rejected == 1
    assert (await pair.de.node.registry.describe("fr-pdc"))["dead_outbox"] == 1

    await pair.fr.node.trace_pending()
    await cases.assess(
        submitted.report_id,
        verdict="baseline",
        category="csam",
        legal_basis="227-23",
        actor="analyst:ana",
    )
    await pair.fr.settle()
    assert await pair.de.node.registry.requeue_dead("fr-pdc", "operator:olga") == 1
    result = await pair.de.node.delivery.push("fr-pdc")
    assert (result.sent, result.rejected) == (1, 0)
    codes = [a["code"] for a in (await cases.show(submitted.report_id))["actions"]]
    assert "content_removed" in codes
    states = await pair.de.node.db.fetch_all(
        "SELECT state FROM peer_outbox WHERE peer_id = 'fr-pdc' AND record_id = ? ORDER BY seq",
        (str(early.id),),
    )
    assert [r["state"] for r in states] == ["requeued", "sent"]
    described = await pair.de.node.registry.describe("fr-pdc")
    assert (described["dead_outbox"], described["dead_letters"]) == (0, 1)  # history kept
    [entry] = await pair.de.node.db.fetch_all(
        "SELECT actor, details FROM audit_log WHERE event = 'peer.requeued'"
    )
    assert entry["actor"] == "operator:olga"
    assert await pair.de.node.registry.requeue_dead("fr-pdc", "operator:olga") == 0


async def test_requeue_for_an_unknown_peer_is_refused(pair: Pair) -> None:
    with pytest.raises(NotFound, match="no peer 'xx-nobody'"):
        await pair.de.node.registry.requeue_dead("xx-nobody", "operator:olga")


# --- pull-only peers and key changes --------------------------------------------------------


async def test_pull_only_peer_collects_its_records_with_a_committed_cursor(
    tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> None:
    async with live_pull_pair(tmp_path, clock, dns_server.nameserver) as pair:
        fr, de = pair.fr, pair.de
        report_id = await forward_case(Pair(fr, de))
        # FR does not push to a pull-only peer: the record waits in its outbox.
        assert (await fr.node.registry.describe("de-eco"))["queue_depth"] == 1
        pulled = await de.node.delivery.pull("fr-pdc")
        assert pulled.pulled == 1
        assert (await de.node.cases.show(report_id))["origin"] == "fr-pdc"
        cursor = await de.node.db.fetch_one("SELECT after_seq FROM pull_cursors")
        assert cursor is not None
        assert cursor["after_seq"] == 1
        # The next pull acknowledges through the cursor and finds nothing new.
        assert (await de.node.delivery.pull("fr-pdc")).pulled == 0
        assert (await fr.node.registry.describe("de-eco"))["queue_depth"] == 0
        # DE can still push to FR: its `received` action arrives.
        await de.settle()
        codes = [a["code"] for a in (await fr.node.cases.show(report_id))["actions"]]
        assert "received" in codes


async def test_rotated_keys_are_picked_up_and_revoked_keys_refused(
    pair: Pair, clock: ManualClock
) -> None:
    old_kid = pair.de.node.keyring.current.current_signing(START).kid
    clock.advance(timedelta(minutes=1))
    pair.de.node.keyring.rotate(clock.now())
    new_kid = pair.de.node.keyring.current.current_signing(clock.now()).kid
    assert new_kid != old_kid
    # FR has not fetched DE's new key yet. DE's receipt, signed with it, makes FR fetch DE's
    # key document at once (checked against the pinned identity) instead of failing.
    report_id = await forward_case(pair)
    codes = [a["code"] for a in (await pair.fr.node.cases.show(report_id))["actions"]]
    assert "received" in codes
    assert (await pair.fr.node.registry.describe("de-eco"))["backoff_attempts"] == 0
    await pair.de.node.cases.record_action(report_id, code="moved", reason=None, actor="a")
    delivered = await pair.de.node.delivery.push("fr-pdc", force=True)
    assert delivered.error is None
    assert delivered.sent == 1  # the `moved` action (`received` travels in receipts)
    keys_at_fr = pair.fr.node.registry.keys_for("de-eco")
    assert keys_at_fr is not None
    assert keys_at_fr.signing_key(new_kid, clock.now()) is not None
    assert await pair.fr.node.admin.refresh_keys() == {"de-eco": "refreshed"}
    # Revocation: FR learns it on refresh and refuses the old key from then on, whatever
    # time an envelope claims.
    pair.de.node.keyring.revoke(old_kid, clock.now())
    await pair.fr.node.admin.refresh_keys()
    described = await pair.fr.node.registry.describe("de-eco")
    assert old_kid in described["revoked_keys"]
    keys = pair.fr.node.registry.keys_for("de-eco")
    assert keys is not None
    with pytest.raises(KeyUnavailableError, match="revoked"):
        keys.signing_key(old_kid, START)


async def test_a_request_signed_with_a_rotated_key_makes_the_receiver_fetch_it_once(
    pair: Pair, clock: ManualClock
) -> None:
    report_id = await forward_case(pair)
    clock.advance(timedelta(minutes=1))
    pair.de.node.keyring.rotate(clock.now())
    await pair.de.node.cases.record_action(
        report_id, code="content_removed", reason=None, actor="a"
    )
    delivered = await pair.de.node.delivery.push("fr-pdc", force=True)
    assert delivered.error is None
    assert delivered.sent == 1
    codes = [a["code"] for a in (await pair.fr.node.cases.show(report_id))["actions"]]
    assert "content_removed" in codes
    # On-demand fetches are limited: a forged request naming unknown keys cannot make FR
    # hammer the peer's endpoint.
    assert await pair.fr.node.admin.refresh_peer("de-eco") is False
    # The scheduled refresh of every peer is not limited, and does not count.
    assert await pair.fr.node.admin.refresh_keys() == {"de-eco": "refreshed"}
    assert await pair.fr.node.admin.refresh_peer("de-eco") is False
    clock.advance(timedelta(minutes=2))
    assert await pair.fr.node.admin.refresh_peer("de-eco") is True


async def test_a_401_from_the_key_fetch_limit_holds_the_records_until_it_passes(
    pair: Pair, clock: ManualClock
) -> None:
    """§13.6: the first on-demand fetch counts toward the once-a-minute limit; a request
    refused (401) because the limit stopped a second fetch is not final: the sender holds its
    records, dead-letters nothing, and they go once the minute has passed."""
    report_id = await forward_case(pair)
    for n in range(2):
        clock.advance(timedelta(seconds=10))
        pair.de.node.keyring.rotate(clock.now())
        await pair.de.node.cases.record_action(
            report_id, code="notice_sent", reason=f"notice {n}", actor="a"
        )
        delivered = await pair.de.node.delivery.push("fr-pdc", force=True)
        if n == 0:  # FR fetches DE's document once: the first rotation is taken
            assert (delivered.error, delivered.sent) == (None, 1)
    assert delivered.sent == 0
    assert delivered.error is not None
    assert "401" in delivered.error
    states = await pair.de.node.db.fetch_all(
        "SELECT state FROM peer_outbox WHERE peer_id = 'fr-pdc' AND record_type = 'action'"
    )
    assert sorted(r["state"] for r in states) == ["pending", "sent"]
    assert await pair.de.node.db.fetch_all("SELECT id FROM dead_letters") == []
    clock.advance(timedelta(minutes=1))
    delivered = await pair.de.node.delivery.push("fr-pdc", force=True)
    assert (delivered.error, delivered.sent) == (None, 1)
    reasons = [a["reason"] for a in (await pair.fr.node.cases.show(report_id))["actions"]]
    assert {"notice 0", "notice 1"} <= set(reasons)


# --- poisoned items fail alone (issue 12) ---------------------------------------------------


async def test_delivery_dead_letters_a_poisoned_outbox_row_and_the_rest_goes(pair: Pair) -> None:
    # A row no code path writes any more (an unknown record type): before, only a SealError
    # was caught per row; anything else failed the whole batch and backed the peer off.
    async with pair.fr.node.db.write() as conn:
        await conn.call(
            peer_outbox.enqueue_one_txn,
            peer_id="de-eco",
            record_type="bogus",
            record_id=str(uuid.uuid4()),
            report_id=str(uuid.uuid4()),
            payload=b"{}",
            at="2026-11-29T09:00:00Z",
        )
    report_id = await forward_case(pair)
    assert (await pair.de.node.cases.show(report_id))["origin"] == "fr-pdc"
    [dead] = await pair.fr.node.db.fetch_all("SELECT * FROM dead_letters WHERE direction = 'out'")
    assert dead["record_type"] == "bogus"
    assert "unknown record type" in dead["reason"]
    assert (await pair.fr.node.registry.describe("de-eco"))["backoff_attempts"] == 0


async def test_pull_dead_letters_a_poisoned_record_and_applies_the_rest(
    tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> None:
    async with live_pull_pair(tmp_path, clock, dns_server.nameserver) as pair:
        fr, de = pair.fr, pair.de
        junk = content_removed(uuid.uuid4(), origin="de-eco", by="fr-pdc", country="FR")
        # Sealed and signed by FR as it is, but not a valid action record.
        await queue_action(fr, "de-eco", junk, b'{"type": "action", "junk": true}')
        report_id = await forward_case(Pair(fr, de))
        assert (await de.node.delivery.pull("fr-pdc")).pulled == 1
        assert (await de.node.cases.show(report_id))["origin"] == "fr-pdc"
        [dead] = await de.node.db.fetch_all("SELECT * FROM dead_letters WHERE direction = 'in'")
        assert dead["peer_id"] == "fr-pdc"
        assert dead["reason"]
        cursor = await de.node.db.fetch_one("SELECT after_seq FROM pull_cursors")
        assert cursor is not None
        assert cursor["after_seq"] == 2  # past the poisoned record too: it is not pulled again
        # A pull has no per-item answer (protocol.md §11, §13.5): the cursor acknowledges the
        # refused record too, and the server counts both delivered.
        states = await fr.node.db.fetch_all(
            "SELECT state FROM peer_outbox WHERE peer_id = 'de-eco' ORDER BY seq"
        )
        assert [r["state"] for r in states] == ["sent", "sent"]


async def test_the_pull_job_survives_a_peer_serving_a_poisoned_page(
    tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> None:
    """A frame that is not base64url used to raise out of Delivery.pull, and Jobs.pull stopped
    there: peers after it (by node id) were never pulled, on every sweep."""
    dns = dns_server.nameserver
    bad_dir, bad_url = node_dir(tmp_path, "at-bad", "AT", clock, dns)
    fr_dir, fr_url = node_dir(tmp_path, "fr-pdc", "FR", clock, dns)
    de_dir, de_url = node_dir(
        tmp_path, "de-eco", "DE", clock, dns, federation={"pull_from_peers": True}
    )
    async with (
        live_node(bad_dir, bad_url, clock) as bad,
        live_node(fr_dir, fr_url, clock) as fr,
        live_node(de_dir, de_url, clock) as de,
    ):
        await befriend(fr, de, pull_only=True)
        await befriend(bad, de, pull_only=True)
        # The AT node now answers pulls with a page holding one frame that is not base64url.
        await bad.stop_http()
        page = {
            "envelopes": [{"seq": 1, "frame": "not base64url!"}],
            "next_after": 1,
            "more": False,
        }
        app = aiohttp.web.Application()

        async def outbox(request: aiohttp.web.Request) -> aiohttp.web.Response:
            # As a peer does: only what lies past the caller's cursor.
            if int(request.query.get("after", "0")) >= 1:
                return aiohttp.web.json_response({"envelopes": [], "next_after": 1, "more": False})
            return aiohttp.web.json_response(page)

        app.router.add_get("/federation/v1/outbox", outbox)
        runner = aiohttp.web.AppRunner(app, access_log=None)
        await runner.setup()
        await aiohttp.web.TCPSite(runner, "127.0.0.1", int(bad_url.rsplit(":", 1)[1])).start()
        try:
            report_id = await forward_case(Pair(fr, de))
            assert await de.node.jobs.pull() == 1
        finally:
            await runner.cleanup()
        assert (await de.node.cases.show(report_id))["origin"] == "fr-pdc"
        [dead] = await de.node.db.fetch_all("SELECT * FROM dead_letters WHERE direction = 'in'")
        assert dead["peer_id"] == "at-bad"
        cursors = await de.node.db.fetch_all("SELECT peer_id, after_seq FROM pull_cursors")
        assert {(r["peer_id"], r["after_seq"]) for r in cursors} == {("at-bad", 1), ("fr-pdc", 1)}


async def test_the_key_refresh_job_survives_a_poisoned_peer_row(pair: Pair) -> None:
    """Isolation (issue 12): an endpoint aiohttp cannot parse (stored before endpoints were
    checked) raised out of refresh_keys, and no peer after it had its keys refreshed."""
    async with pair.fr.node.db.write() as conn:
        await conn.execute(
            "INSERT INTO peers (node_id, country, endpoint, fingerprint, status, mode, categories,"
            " max_tlp, added_at) VALUES ('at-bad', 'AT', 'http://[::1', ?, 'active', 'push',"
            " '[]', 'amber', '2026-11-29T09:00:00Z')",
            ("A" * 43,),
        )
    results = await pair.fr.node.jobs.refresh_peer_keys()
    assert results["de-eco"] == "refreshed"
    assert results["at-bad"].startswith("failed: ")


async def test_a_peer_record_with_control_characters_is_refused_alone(pair: Pair) -> None:
    """Issue 12: text from a peer obeys the rule ours does; a terminal escape in a reason
    (shown by `reports show`) is refused, dead-lettered with the field, and the rest applies."""
    report_id = await forward_case(pair)
    hostile = content_removed(
        uuid.UUID(report_id), origin="fr-pdc", by="de-eco", country="DE", reason="gone\x1b[2J"
    )
    await queue_action(pair.de, "fr-pdc", hostile, record_bytes(hostile))
    fine = content_removed(
        uuid.UUID(report_id), origin="fr-pdc", by="de-eco", country="DE", reason="gone\n\tfor good"
    )
    await queue_action(pair.de, "fr-pdc", fine, record_bytes(fine))
    await pair.de.settle()
    [dead] = await pair.fr.node.db.fetch_all("SELECT * FROM dead_letters WHERE direction = 'in'")
    assert dead["peer_id"] == "de-eco"
    assert "reason contains a control character" in dead["reason"]
    reasons = [a.get("reason") for a in (await pair.fr.node.cases.show(report_id))["actions"]]
    assert "gone\n\tfor good" in reasons
    assert not any("\x1b" in (r or "") for r in reasons)


async def test_a_peer_abuse_contact_that_is_not_one_address_is_dropped_not_the_case(
    pair: Pair,
) -> None:
    """Regression (issue 12): a peer's `hosting.abuse_contact` with CR/LF was stored as it came
    and later raised in the channel dispatcher, stopping every host notice for good."""
    report = sample_report(pair.fr.node_id)
    poisoned = report.model_copy(
        update={
            "local_ref": "PDC-crlf",
            "hosting": report.hosting.model_copy(
                update={"abuse_contact": "abuse@host.example\r\nBcc: all@evil.example"}
            ),
        }
    )
    frames = [record_frame(pair.fr, pair.de, poisoned)]
    status, answer, _, _ = await signed_push(pair.fr, pair.de.url, "txn-crlf-1", frames)
    assert status == 200, answer
    case = await pair.de.node.cases.show(str(poisoned.id))
    assert case["hosting"]["abuse_contact"] is None
    row = await pair.de.node.db.fetch_one(
        "SELECT trace_json FROM reports WHERE id = ?", (str(poisoned.id),)
    )
    assert row is not None
    assert "not one valid e-mail address" in row["trace_json"]
