"""The case door and re-planning: every status change is read and written in one transaction,
and a new decision cancels or rewrites what the old one queued (real SQLite, real SMTP and
webhook receivers on 127.0.0.1, two live nodes for the federation)."""

from __future__ import annotations

import ast
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest

from node.app import Node
from node.cases.lifecycle import CaseStateError
from node.clock import ManualClock
from node.store.db import Database, Tx
from tests.node.test_channels import WINDOW, Setup, make_setup
from tests.node.test_federation import forward_case
from tests.support.dns_server import ZoneDnsServer
from tests.support.federation import Pair, live_pull_pair
from tests.support.rdap_server import RdapStub
from tests.support.sinks import SmtpSink, WebhookSink

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def interleave(db: Database, first: Callable[[], Awaitable[None]]) -> None:
    """Make `first` happen after the next caller has read the case but before its write
    transaction runs: the moment a status read on the reader connection used to go stale."""
    original = db.run

    async def run_after(transaction: Callable[[Tx], T]) -> T:
        db.run = original  # type: ignore[method-assign]
        await first()
        return await original(transaction)

    db.run = run_after  # type: ignore[method-assign]


async def status(db: Database, report_id: str) -> str:
    row = await db.fetch_one("SELECT status FROM reports WHERE id = ?", (report_id,))
    assert row is not None
    return str(row["status"])


async def test_a_peers_removal_between_an_analysts_read_and_write_keeps_the_case_closed(
    pair: Pair,
) -> None:
    report_id = await forward_case(pair)
    await pair.de.node.cases.record_action(
        report_id, code="content_removed", reason="gone", actor="analyst:bea"
    )
    fr = pair.fr.node
    # FR's analyst re-rates the case; DE's removal reaches FR after the analyst's view of the
    # case was read and before the re-rating is written.
    interleave(fr.db, pair.de.settle)
    with pytest.raises(CaseStateError, match="is closed: it cannot be assessed"):
        await fr.cases.assess(
            report_id, verdict="national", category="csam", legal_basis=None, actor="ana"
        )
    assert await status(fr.db, report_id) == "closed"
    assert [a["code"] for a in (await fr.cases.show(report_id))["actions"]][-1] == (
        "content_removed"
    )
    # The same for an override: it reroutes, which a closed case never is.
    await pair.de.node.cases.record_action(
        report_id, code="content_unavailable", reason="still gone", actor="analyst:bea"
    )
    interleave(fr.db, pair.de.settle)
    with pytest.raises(CaseStateError, match="is closed"):
        await fr.cases.override_jurisdiction(
            report_id, country="FR", reason="moved home", actor="ana"
        )
    assert await status(fr.db, report_id) == "closed"


async def routed_to_de(fr: Node, url: str) -> str:
    """A case of FR's hosted in DE, assessed illegal: a version of it queued for DE."""
    submitted = await fr.cases.submit(url, actor="ana", category="hate")
    await fr.trace_pending()
    await re_rate(fr, submitted.report_id, "national")
    return submitted.report_id


async def re_rate(fr: Node, report_id: str, verdict: str) -> None:
    await fr.cases.assess(
        report_id, verdict=verdict, category="hate", legal_basis=None, actor="ana"
    )


@pytest.fixture
async def setup(
    tmp_path: Path,
    clock: ManualClock,
    dns_server: ZoneDnsServer,
    rdap: RdapStub,
    smtp: SmtpSink,
    webhook: WebhookSink,
) -> AsyncIterator[Setup]:
    async for made in make_setup(
        tmp_path, clock, dns_server, rdap, smtp, webhook, lea_first_hours={"csam": 48}
    ):
        yield made


def deliveries(case: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {
        f"{q['kind']}:{q['name']}": (q["state"], q.get("last_error"))
        for q in case["routing"]["queued"]
    }


async def test_re_rated_not_illegal_nothing_the_old_verdict_queued_goes_out(
    setup: Setup,
) -> None:
    """The issue's story: a CSAM case routed while the police platform is down, its host
    notice held for the police; the analyst re-rates it not illegal. Neither the referral
    waiting for its retry nor the held notice ever goes, and the case says why."""
    await setup.webhook.stop()
    report_id = await setup.case("http://fr.example/re-rated")
    assert (await setup.node.dispatcher.run_once()).failed == 1  # police down: a retry waits
    await setup.node.cases.assess(
        report_id, verdict="not_illegal", category="csam", legal_basis=None, actor="ana"
    )
    case = await setup.node.cases.show(report_id)
    assert case["status"] == "closed"
    queued = deliveries(case)
    assert {k: v[0] for k, v in queued.items()} == {
        "channel:law_enforcement": "cancelled",
        "channel:host_notice": "cancelled",
    }
    assert all("now closed" in (why or "") for _, why in queued.values())
    await setup.webhook.start()
    setup.webhook.reply = {"cleared": True}
    for _ in range(4):  # past every retry and past the police-first hold
        setup.clock.advance(timedelta(hours=49))
        await setup.node.dispatcher.run_once()
    assert setup.webhook.received == []
    assert setup.smtp.messages == []
    assert "lea_referred" not in await setup.codes(report_id)
    # A dead letter of the old verdict cannot be sent again by a requeue either.
    await setup.node.dispatcher.requeue_dead("pharos", "olga")
    await setup.node.dispatcher.run_once()
    assert setup.webhook.received == []


async def test_what_went_out_stays_and_only_what_waits_is_cancelled(setup: Setup) -> None:
    report_id = await setup.case("http://fr.example/half-sent")
    await setup.node.dispatcher.run_once()  # the referral goes; the host notice is held
    assert len(setup.webhook.received) == 1
    await setup.node.cases.assess(
        report_id, verdict="not_illegal", category="csam", legal_basis=None, actor="ana"
    )
    case = await setup.node.cases.show(report_id)
    states = {k: v[0] for k, v in deliveries(case).items()}
    assert states == {"channel:law_enforcement": "delivered", "channel:host_notice": "cancelled"}
    # The timeline keeps what went out before the change.
    assert [a["code"] for a in case["actions"]] == ["lea_referred"]


async def test_a_new_category_rewrites_the_held_notice_and_is_not_sent_twice(
    setup: Setup,
) -> None:
    report_id = await setup.case(
        "http://fr.example/recategorised", category="hate", verdict="national"
    )
    await setup.node.dispatcher.run_once()  # referral and notice go (no hold for hate)
    setup.clock.advance(timedelta(seconds=WINDOW))
    await setup.node.dispatcher.run_once()
    assert (len(setup.webhook.received), len(setup.smtp.messages)) == (1, 1)
    # Routed again with the same verdict (an override to the same country): nothing again.
    await setup.node.cases.override_jurisdiction(
        report_id, country="FR", reason="confirmed by the host", actor="ana"
    )
    setup.clock.advance(timedelta(seconds=WINDOW))
    await setup.node.dispatcher.run_once()
    assert (len(setup.webhook.received), len(setup.smtp.messages)) == (1, 1)
    # A new category is news to the police and the host: told once more, in its new words.
    await setup.node.cases.assess(
        report_id, verdict="national", category="terrorism", legal_basis=None, actor="ana"
    )
    setup.clock.advance(timedelta(seconds=WINDOW))
    await setup.node.dispatcher.run_once()
    setup.clock.advance(timedelta(seconds=WINDOW))
    await setup.node.dispatcher.run_once()
    assert len(setup.webhook.received) == 2
    assert b'"terrorism"' in setup.webhook.received[1][1]


async def test_a_held_notice_carries_the_new_category(setup: Setup) -> None:
    report_id = await setup.case("http://fr.example/held-then-hate")
    await setup.node.cases.assess(
        report_id, verdict="national", category="hate", legal_basis=None, actor="ana"
    )
    rows = await setup.node.db.fetch_all(
        "SELECT role, state, payload FROM channel_outbox WHERE report_id = ? ORDER BY id",
        (report_id,),
    )
    assert [(r["role"], r["state"]) for r in rows] == [
        ("law_enforcement", "pending"),
        ("host_notice", "pending"),
    ]  # one message per role, not a second queued beside the first
    assert all('"category":"hate"' in r["payload"] for r in rows)


async def test_a_version_not_yet_sent_to_a_dropped_peer_is_cancelled_not_withdrawn(
    pair: Pair,
) -> None:
    await pair.de.stop_http()  # DE is unreachable: FR's version waits in its outbox
    fr = pair.fr.node
    report_id = await routed_to_de(fr, "http://de.example/wait.jpg")
    await re_rate(fr, report_id, "not_illegal")
    rows = await fr.db.fetch_all(
        "SELECT record_type, state, last_error FROM peer_outbox WHERE report_id = ? ORDER BY seq",
        (report_id,),
    )
    # No withdrawal: DE never got the report, so it has nothing to withdraw.
    assert [(r["record_type"], r["state"]) for r in rows] == [("report", "cancelled")]
    assert "now closed" in rows[0]["last_error"]
    await pair.de.start_http()
    await pair.fr.settle()
    assert (
        await pair.de.node.db.fetch_one("SELECT id FROM reports WHERE id = ?", (report_id,)) is None
    )


async def test_the_origins_new_category_is_replanned_at_the_peer(pair: Pair) -> None:
    report_id = await forward_case(pair)
    de = pair.de.node
    before = await de.db.fetch_all(
        "SELECT id, role, payload FROM channel_outbox WHERE report_id = ? ORDER BY id",
        (report_id,),
    )
    assert before
    assert all('"category":"csam"' in r["payload"] for r in before)
    await pair.fr.node.cases.assess(
        report_id, verdict="national", category="csem", legal_basis=None, actor="ana"
    )
    await pair.fr.settle()
    after = await de.db.fetch_all(
        "SELECT id, role, payload FROM channel_outbox WHERE report_id = ? ORDER BY id",
        (report_id,),
    )
    # The same messages, now saying what the origin now says.
    assert [(r["id"], r["role"]) for r in after] == [(r["id"], r["role"]) for r in before]
    assert all('"category":"csem"' in r["payload"] for r in after)


def test_only_the_door_writes_a_case_status() -> None:
    """The store's status writer and new-case insert are called from node/cases/door.py
    alone, so no path can change a case's status without the lifecycle table."""
    callers: dict[str, list[str]] = {"set_status_txn": [], "insert_many": []}
    for path in (ROOT / "node").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in callers
                and isinstance(node.value, ast.Name)
                and node.value.id == "ReportStore"
            ):
                callers[node.attr].append(str(path.relative_to(ROOT)))
    assert callers == {
        "set_status_txn": ["node/cases/door.py"],
        "insert_many": ["node/cases/door.py"],
    }
    sql = "\n".join(p.read_text() for p in (ROOT / "node").rglob("*.py"))
    assert "UPDATE reports SET status" in (ROOT / "node/store/reports.py").read_text()
    assert sql.count("UPDATE reports SET status") == 1


async def assert_withdrawn_at_the_peer(fr: Node, peer: Node, report_id: str) -> None:
    """The version went out (cancelled too late), and a withdrawal followed it."""
    rows = await fr.db.fetch_all(
        "SELECT record_type, state FROM peer_outbox WHERE report_id = ? ORDER BY seq",
        (report_id,),
    )
    assert [(r["record_type"], r["state"]) for r in rows] == [
        ("report", "sent"),
        ("withdrawal", "sent"),
    ]
    assert (await peer.cases.show(report_id))["status"] == "withdrawn"


async def test_a_version_cancelled_while_a_push_carries_it_is_withdrawn_at_the_peer(
    pair: Pair,
) -> None:
    fr = pair.fr.node
    report_id = await routed_to_de(fr, "http://de.example/in-flight.jpg")
    # FR re-rates the case while its push is at DE, after the version left FR's outbox.
    interleave(pair.de.node.db, partial(re_rate, fr, report_id, "not_illegal"))
    await pair.fr.settle()
    await pair.fr.settle()
    await assert_withdrawn_at_the_peer(fr, pair.de.node, report_id)


async def test_a_version_cancelled_after_a_pulling_peer_took_it_is_withdrawn_there(
    tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> None:
    async with live_pull_pair(tmp_path, clock, dns_server.nameserver) as pair:
        fr, de = pair.fr.node, pair.de.node
        report_id = await routed_to_de(fr, "http://de.example/pulled.jpg")
        # DE has FR's page in hand when FR re-rates the case; DE stores the version, and its
        # next request acknowledges it.
        interleave(de.db, partial(re_rate, fr, report_id, "not_illegal"))
        await de.delivery.pull("fr-pdc")
        await de.delivery.pull("fr-pdc")
        await assert_withdrawn_at_the_peer(fr, de, report_id)
