"""Recovery between real nodes in one process (protocol.md §13.8): what a holder gives back over
GET /federation/v1/recover, what it refuses, and what the asking node does with a page it
cannot trust."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest
from aiohttp import web

from keys import NodeKeys, SigningKey
from node.clock import ManualClock
from node.errors import NotFound, UpstreamError
from node.store.db import Database
from protocol import (
    Action,
    MemoryReplayGuard,
    Report,
    Withdrawal,
    open_envelope,
    read_header,
    seal,
)
from protocol.federation import decode_frame
from protocol.httpsig import SignedRequest, sign_request
from protocol.recovery import RecoveryPage, SignedRecord, check_own_record
from tests.factories import sample_report, signed_record
from tests.node.test_cli import Cli
from tests.node.test_federation import forward_case, signed_push
from tests.support.dns_server import ZoneDnsServer
from tests.support.federation import LiveNode, Pair, befriend, live_node, node_dir

RECOVER = "/federation/v1/recover"
PROBLEM_JSON = "application/problem+json"


# --- helpers ---------------------------------------------------------------------------------


def sealed(sender: LiveNode, holder: LiveNode, record: Report | Withdrawal) -> bytes:
    """`record` as `sender` seals it to `holder` now, with the keys each holds now."""
    now = sender.node.clock.now()
    public = sender.node.registry.keys_for(holder.node_id)
    assert public is not None
    kid, key = public.sealing_key(now)
    return seal(
        record,
        sender=sender.node_id,
        signing_key=sender.node.keyring.current.current_signing(now),
        recipient=holder.node_id,
        recipient_kid=kid,
        recipient_key=key,
        msg_id=uuid.uuid4(),
        now=now,
    )


async def send(sender: LiveNode, holder: LiveNode, *records: Report | Withdrawal) -> None:
    """Push `records` to `holder` in one transaction, as the sender's delivery would."""
    frames = [sealed(sender, holder, record) for record in records]
    txn = f"txn-{uuid.uuid4().hex[:16]}"
    status, answer, _, _ = await signed_push(
        sender, holder.url, txn, frames, nonce=f"nonce-{uuid.uuid4().hex}"
    )
    assert status == 200, answer
    results: Any = answer["results"]
    assert [r["status"] for r in results] == ["accepted"] * len(records), results


def new_report(origin: str, ref: str) -> Report:
    return sample_report(origin).model_copy(update={"id": uuid.uuid4(), "local_ref": ref})


async def ask(
    holder: LiveNode,
    query: str,
    *,
    sender: str,
    key: SigningKey,
    at: datetime,
    nonce: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, Any, dict[str, str]]:
    """GET the holder's recover endpoint signed by `sender` (unsigned when `headers` is given):
    status, content type, JSON body, and the headers sent (to send them again)."""
    if headers is None:
        request = SignedRequest(
            "GET", holder.url.removeprefix("http://"), RECOVER, f"?{query}", b""
        )
        headers = sign_request(
            request,
            node_id=sender,
            key=key,
            nonce=nonce or f"nonce-{uuid.uuid4().hex}",
            now=at,
        )
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{holder.url}{RECOVER}?{query}", headers=headers, data=body) as response,
    ):
        content = await response.json(content_type=None)
        return response.status, response.content_type, content, headers


async def ask_as(caller: LiveNode, holder: LiveNode, query: str, **kwargs: Any) -> Any:
    """A page `caller` gets from `holder`, signed with its current key."""
    now = caller.node.clock.now()
    status, _, page, _ = await ask(
        holder,
        query,
        sender=caller.node_id,
        key=caller.node.keyring.current.current_signing(now),
        at=now,
        **kwargs,
    )
    assert status == 200, page
    return page


def records_of(caller: LiveNode, holder: LiveNode, page: Any) -> list[Any]:
    """The records a page gives back, each checked by the caller as one it signed."""
    parsed = RecoveryPage.model_validate(page)
    return [
        check_own_record(
            SignedRecord.from_wire(item),
            node_id=caller.node_id,
            holder=holder.node_id,
            keys=caller.node.keyring.current,
        ).record
        for item in parsed.records
    ]


def actions_of(caller: LiveNode, page: Any) -> set[tuple[str, str, str]]:
    """The holder's actions a page carries, opened by the caller as any envelope: (code, by,
    report id)."""
    found = set()
    for text in page["actions"]:
        opened = open_envelope(
            decode_frame(text),
            recipient=caller.node_id,
            keys=caller.node.keyring.current,
            peers=caller.node.registry,
            replay=MemoryReplayGuard(),
            now=caller.node.clock.now(),
        )
        assert isinstance(opened.record, Action)
        found.add((opened.record.code.value, opened.record.by, str(opened.record.report_id)))
    return found


async def arrivals(db: Database, sender: str) -> list[int]:
    rows = await db.fetch_all(
        "SELECT id FROM inbox_envelopes WHERE sender = ? ORDER BY id", (sender,)
    )
    return [int(r["id"]) for r in rows]


async def everything(db: Database) -> dict[str, list[str]]:
    """Every row of every table, to show that nothing changed."""
    tables = await db.fetch_all("SELECT name FROM sqlite_master WHERE type = 'table'")
    dump = {}
    for table in tables:
        rows = await db.fetch_all(f'SELECT * FROM "{table["name"]}"')
        dump[table["name"]] = sorted(repr(tuple(row)) for row in rows)
    return dump


@asynccontextmanager
async def fake_holder(
    holder: LiveNode, answer: Callable[[int], dict[str, Any]], calls: list[str]
) -> AsyncIterator[None]:
    """The holder's endpoint answering recoveries with `answer(after)`, unchecked (a holder
    that lies), instead of the real node."""
    await holder.stop_http()

    async def recover(request: web.Request) -> web.Response:
        calls.append(request.query_string)
        return web.json_response(answer(int(request.query["after"])))

    app = web.Application()
    app.router.add_get(RECOVER, recover)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = urlsplit(holder.url).port
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


# --- the holder ------------------------------------------------------------------------------


async def test_a_page_gives_the_caller_its_own_records_and_our_actions_on_them(
    pair: Pair, tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> None:
    fr, de = pair.fr, pair.de
    it_dir, it_url = node_dir(tmp_path, "it-ks", "IT", clock, dns_server.nameserver)
    async with live_node(it_dir, it_url, clock) as it:
        await befriend(it, de)
        first, second, third = (new_report(fr.node_id, f"PDC-{n}") for n in range(3))
        withdrawal = Withdrawal(
            id=uuid.uuid4(), report_id=second.id, origin=fr.node_id, at=clock.now(), reason="x"
        )
        theirs = new_report(it.node_id, "KS-1")
        # IT's report arrives between FR's: a page for FR is still only FR's.
        await send(fr, de, first)
        await send(it, de, theirs)
        await send(fr, de, second, withdrawal, third)
        for report, code in ((first, "content_removed"), (theirs, "notice_sent")):
            await de.node.cases.record_action(
                str(report.id), code=code, reason=None, actor="analyst:bea"
            )
        ours = await arrivals(de.node.db, fr.node_id)
        assert len(ours) == 4
        assert (await arrivals(de.node.db, it.node_id))[0] in range(ours[0], ours[1])

        page = await ask_as(fr, de, "after=0&limit=2")
        assert [r["n"] for r in page["records"]] == ours[:2]
        assert (page["next_after"], page["more"]) == (ours[1], True)
        assert records_of(fr, de, page) == [first, second]
        assert actions_of(fr, page) == {
            ("received", de.node_id, str(first.id)),
            ("content_removed", de.node_id, str(first.id)),
            ("received", de.node_id, str(second.id)),
        }
        page = await ask_as(fr, de, f"after={ours[1]}&limit=2")
        assert [r["n"] for r in page["records"]] == ours[2:]
        assert (page["next_after"], page["more"]) == (ours[3], False)
        assert records_of(fr, de, page) == [withdrawal, third]
        # The actions go with the pages that give back the reports they are about.
        assert actions_of(fr, page) == {("received", de.node_id, str(third.id))}
        page = await ask_as(fr, de, f"after={ours[3]}&limit=2")
        assert (page["records"], page["actions"], page["next_after"], page["more"]) == (
            [],
            [],
            ours[3],
            False,
        )
        # One page by default, with all of it.
        page = await ask_as(fr, de, "after=0")
        assert records_of(fr, de, page) == [first, second, withdrawal, third]
        assert not page["more"]

        # IT gets only its own, and DE's actions on its case only.
        page = await ask_as(it, de, "after=0")
        assert records_of(it, de, page) == [theirs]
        assert actions_of(it, page) == {
            ("received", de.node_id, str(theirs.id)),
            ("notice_sent", de.node_id, str(theirs.id)),
        }
    served = await de.node.db.fetch_all(
        "SELECT actor, details FROM audit_log WHERE event = 'federation.recovery_served'"
    )
    assert [r["actor"] for r in served] == ["peer:fr-pdc"] * 4 + ["peer:it-ks"]
    assert orjson.loads(served[0]["details"]) == {"after": 0, "records": 2, "actions": 3}


async def test_records_kept_before_migration_17_are_opened_again_while_the_key_lasts(
    pair: Pair, clock: ManualClock
) -> None:
    """A row with no `signed` bytes is opened with our key; once a rotation has deleted that
    key it is left out, and the rest of the page still comes."""
    fr, de = pair.fr, pair.de
    old, new = new_report(fr.node_id, "PDC-old"), new_report(fr.node_id, "PDC-new")
    await send(fr, de, old)
    # DE rotates its keys and FR learns the new ones: the next record is sealed to them.
    clock.advance(timedelta(minutes=1))
    de.node.keyring.rotate(clock.now())
    assert await fr.node.admin.refresh_keys() == {"de-eco": "refreshed"}
    await send(fr, de, new)
    ours = await arrivals(de.node.db, fr.node_id)
    kept = await de.node.db.fetch_all("SELECT frame, signed FROM inbox_envelopes ORDER BY id")
    assert all(row["signed"] for row in kept)
    first_kid, second_kid = (read_header(bytes(row["frame"])).header.to_kid for row in kept)
    assert first_kid != second_kid
    as_signed = [
        SignedRecord.from_bytes(bytes(row["signed"])).to_wire(n)
        for row, n in zip(kept, ours, strict=True)
    ]
    async with de.node.db.write() as conn:
        await conn.execute("UPDATE inbox_envelopes SET signed = NULL")

    page = await ask_as(fr, de, "after=0")
    assert page["records"] == [item.model_dump() for item in as_signed]
    assert records_of(fr, de, page) == [old, new]

    # Past the overlap, DE's next rotation deletes the key the first was sealed to.
    clock.advance(timedelta(days=15))
    held = de.node.keyring.rotate(clock.now())
    kids = {k.kid for k in held.encryption} | {k.kid for k in held.hybrid}
    assert first_kid not in kids
    assert second_kid in kids
    page = await ask_as(fr, de, "after=0")
    assert page["records"] == [as_signed[1].model_dump()]
    assert (page["next_after"], page["more"]) == (ours[1], False)
    assert records_of(fr, de, page) == [new]
    # Its arrival number is passed, not asked again forever.
    page = await ask_as(fr, de, "after=0&limit=1")
    assert (page["records"], page["next_after"], page["more"]) == ([], ours[0], True)


async def test_refused_requests_are_problems_and_change_nothing(pair: Pair) -> None:
    fr, de = pair.fr, pair.de
    await forward_case(pair)
    now = fr.node.clock.now()
    key = fr.node.keyring.current.current_signing(now)
    status, _, _, sent = await ask(de, "after=0", sender=fr.node_id, key=key, at=now)
    assert status == 200
    before = await everything(de.node.db)

    async def refused(query: str, **kwargs: Any) -> tuple[int, Any]:
        args: dict[str, Any] = {"sender": fr.node_id, "key": key, "at": now} | kwargs
        status, content_type, problem, _ = await ask(de, query, **args)
        assert content_type == PROBLEM_JSON, problem
        assert problem["status"] == status
        return status, problem

    status, problem = await refused("after=0", headers={})
    assert status == 401
    assert "Signature-Input" in problem["detail"]
    for query in ("after=-1", "after=x", "limit=0", "limit=201", "after=%C2%B2"):
        status, problem = await refused(query)
        assert (status, problem["type"]) == (422, "https://hotline-node.org/problems/invalid-input")
    status, problem = await refused("after=0", body=b"{}")
    assert (status, problem["detail"]) == (400, "a recovery request has no body")
    stranger = NodeKeys.generate(now).current_signing(now)
    status, problem = await refused("after=0", sender="it-ks", key=stranger)
    assert (status, problem["detail"]) == (401, "it-ks is not a peer of this node")
    # The first request again, byte for byte: its nonce is spent.
    status, problem = await refused("after=0", headers=sent)
    assert status == 401
    assert "replayed" in problem["detail"]
    assert await everything(de.node.db) == before


# --- the asking side -------------------------------------------------------------------------


async def test_records_a_holder_altered_or_signed_itself_are_refused_and_nothing_restored(
    pair: Pair,
) -> None:
    fr, de = pair.fr, pair.de
    report_id = await forward_case(pair)
    # What DE really holds of FR's: one report, as FR signed it.
    real = await fr.node.recovery.client.recover(de.url, 0, 200)
    [item] = real.records
    genuine = SignedRecord.from_wire(item)
    fr_key = fr.node.keyring.current.current_signing(fr.node.clock.now())
    de_key = de.node.keyring.current.current_signing(de.node.clock.now())

    def forged_by(key: SigningKey, *, sender: str = "fr-pdc", to: str = "de-eco") -> SignedRecord:
        return signed_record(
            orjson.dumps(orjson.loads(genuine.payload) | {"id": str(uuid.uuid4())}),
            record_type="report",
            sender=sender,
            signing_key=key,
            to=to,
            created=fr.node.clock.now(),
        )

    altered = SignedRecord(
        genuine.header, genuine.signature, genuine.payload.replace(b"227-23", b"227-24")
    )
    assert altered.payload != genuine.payload
    # DE signing as FR, under FR's key id.
    as_fr = SigningKey(fr_key.kid, de_key.private, fr_key.validity)
    lies = [
        altered,
        forged_by(as_fr),
        forged_by(de_key, sender="de-eco"),  # DE's own record, really DE's
        forged_by(fr_key, to="it-ks"),  # FR's, but sent to another holder
    ]
    items = [record.to_wire(n).model_dump() for n, record in enumerate(lies, start=2)]
    # The genuine record spelled with unused bits set: not one spelling per value.
    bad_spelling = item.model_dump()
    last = bad_spelling["signature"][-1]
    bad_spelling["signature"] = bad_spelling["signature"][:-1] + ("B" if last == "A" else "A")
    assert bad_spelling["signature"] != item.signature
    page = {
        "v": 1,
        "records": [item.model_dump(), *items, bad_spelling | {"n": 7}],
        "actions": [],
        "next_after": 7,
        "more": False,
    }
    before = {
        table: await fr.node.db.fetch_all(f"SELECT * FROM {table}")
        for table in ("reports", "report_versions", "actions", "peer_outbox")
    }
    calls: list[str] = []
    async with fake_holder(de, lambda after: page, calls):
        done = await fr.node.recovery.recover_from("de-eco", actor="operator:op")
    assert calls == ["after=0&limit=200"]
    assert (done.records, done.refused, done.unverifiable) == (6, 5, 0)
    assert (done.restored, done.versions, done.cases, done.actions) == (0, 0, [], 0)
    assert done.held == 1  # the genuine one, of a case FR still holds
    for table, rows in before.items():
        assert await fr.node.db.fetch_all(f"SELECT * FROM {table}") == rows, table
    assert [r["id"] for r in await fr.node.db.fetch_all("SELECT id FROM reports")] == [report_id]
    audit = await fr.node.db.fetch_all(
        "SELECT event, details FROM audit_log WHERE event LIKE 'report.recover%'"
    )
    assert [r["event"] for r in audit] == ["report.recovery"]
    assert orjson.loads(audit[0]["details"])["refused"] == 5


@pytest.mark.parametrize(
    "pages",
    [
        {0: (0, True)},  # more, but no further
        {0: (3, True), 3: (2, True)},  # more, but back
    ],
    ids=["standing-still", "going-back"],
)
async def test_pages_that_do_not_move_forward_are_an_error_not_a_loop(
    pair: Pair, pages: dict[int, tuple[int, bool]]
) -> None:
    def answer(after: int) -> dict[str, Any]:
        next_after, more = pages[after]
        return {"v": 1, "records": [], "actions": [], "next_after": next_after, "more": more}

    calls: list[str] = []
    async with fake_holder(pair.de, answer, calls):
        with pytest.raises(UpstreamError) as caught:
            await pair.fr.node.recovery.recover_from("de-eco", actor="operator:op")
    assert str(caught.value) == "cannot recover from de-eco: its pages do not move forward"
    assert calls == [f"after={after}&limit=200" for after in pages]


async def test_a_page_a_holder_cannot_spell_is_an_error_naming_it(pair: Pair) -> None:
    calls: list[str] = []
    async with fake_holder(pair.de, lambda after: {"records": "none"}, calls):
        with pytest.raises(UpstreamError, match=r"^cannot recover from de-eco: malformed"):
            await pair.fr.node.recovery.recover_from("de-eco", actor="operator:op")


async def test_an_unreachable_holder_is_an_error_naming_it(pair: Pair) -> None:
    await pair.de.stop_http()
    with pytest.raises(UpstreamError, match=r"^cannot recover from de-eco: ") as caught:
        await pair.fr.node.recovery.recover_from("de-eco", actor="operator:op")
    assert pair.de.url in str(caught.value)


async def test_recovering_from_an_unknown_peer_is_not_found(pair: Pair) -> None:
    with pytest.raises(NotFound, match="no peer 'xx-nobody'"):
        await pair.fr.node.recovery.recover_from("xx-nobody", actor="operator:op")


def test_the_command_names_an_unknown_peer_in_one_line(
    tmp_path: Path, dns_server: ZoneDnsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = Cli(capsys, tmp_path / "node", dns_server.nameserver)
    assert cli.init().code == 0
    assert cli.fails("reports", "recover", "--from", "nobody") == (
        "hotline-node: error: no peer 'nobody'\n"
    )
