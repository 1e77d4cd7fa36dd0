"""Every case event reaches everyone who holds the case (two real nodes, one process)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from node.cases import ImportItem
from node.cases.lifecycle import CaseStateError, closes
from node.cli import main
from node.clock import ManualClock
from protocol.records import ActionCode
from tests.node.test_federation import forward_case
from tests.support.dns_server import ZoneDnsServer
from tests.support.federation import Pair, live_pair
from tests.support.rdap_server import RdapStub, ip_network
from tests.support.sinks import SmtpSink, WebhookSink


def timeline(case: dict[str, object]) -> list[tuple[str, str]]:
    return [(a["code"], a["by"]) for a in case["actions"]]  # type: ignore[attr-defined]


async def test_the_origins_own_actions_reach_the_peer_holding_the_case(pair: Pair) -> None:
    report_id = await forward_case(pair)
    for code in ("moved", "content_unavailable"):
        await pair.fr.node.cases.record_action(
            report_id, code=code, reason="seen by FR", actor="analyst:ana"
        )
    await pair.fr.settle()
    at_de = await pair.de.node.cases.show(report_id)
    assert ("moved", "fr-pdc") in timeline(at_de)
    assert ("content_unavailable", "fr-pdc") in timeline(at_de)
    assert at_de["status"] == "closed"  # the content is gone: closed everywhere
    # Nothing is relayed back: DE queued nothing for FR about FR's own actions.
    queued = await pair.de.node.db.fetch_all(
        "SELECT record_id FROM peer_outbox WHERE peer_id = 'fr-pdc' AND record_type = 'action'"
    )
    own = {a["id"] for a in at_de["actions"] if a["by"] == "fr-pdc"}
    assert own.isdisjoint({r["record_id"] for r in queued})


async def test_the_origins_not_illegal_closes_the_case_at_the_peer(pair: Pair) -> None:
    report_id = await forward_case(pair)
    await pair.fr.node.cases.record_action(
        report_id, code="not_illegal", reason="second review", actor="analyst:ana"
    )
    await pair.fr.settle()
    assert (await pair.de.node.cases.show(report_id))["status"] == "closed"


async def test_a_peers_not_illegal_leaves_the_origins_case_open(pair: Pair) -> None:
    report_id = await forward_case(pair)
    await pair.de.node.cases.record_action(
        report_id, code="not_illegal", reason="legal under German law", actor="analyst:bea"
    )
    assert (await pair.de.node.cases.show(report_id))["status"] == "closed"
    await pair.de.settle()
    at_fr = await pair.fr.node.cases.show(report_id)
    assert ("not_illegal", "de-eco") in timeline(at_fr)
    assert at_fr["status"] == "routed"  # FR's analyst decides what next


async def test_re_assessed_as_not_illegal_after_forwarding_withdraws_it_at_the_peer(
    pair: Pair,
) -> None:
    report_id = await forward_case(pair)
    decision = await pair.fr.node.cases.assess(
        report_id,
        verdict="not_illegal",
        category="csam",
        legal_basis=None,
        actor="analyst:ana",
    )
    assert decision is not None
    at_fr = await pair.fr.node.cases.show(report_id)
    assert at_fr["status"] == "closed"
    # The analyst sees what was sent.
    sent = [(q["name"], q["record_type"]) for q in at_fr["routing"]["queued"]]
    assert ("de-eco", "withdrawal") in sent
    await pair.fr.settle()
    at_de = await pair.de.node.cases.show(report_id)
    assert at_de["status"] == "withdrawn"
    assert ("withdrawn", "fr-pdc") in timeline(at_de)
    # DE's police referral and host notice for it no longer go out.
    pending = await pair.de.node.db.fetch_all(
        "SELECT id FROM channel_outbox WHERE report_id = ? AND state = 'pending'", (report_id,)
    )
    assert pending == []


async def test_re_assessed_still_illegal_sends_the_peer_the_new_version(pair: Pair) -> None:
    report_id = await forward_case(pair)
    await pair.fr.node.cases.assess(
        report_id,
        verdict="baseline",
        category="csem",
        legal_basis="227-23 al. 2",
        actor="analyst:ana",
    )
    await pair.fr.settle()
    at_de = await pair.de.node.cases.show(report_id)
    assert at_de["assessment"]["category"] == "csem"
    assert at_de["status"] != "withdrawn"


async def test_a_withdrawal_is_in_both_timelines(pair: Pair) -> None:
    report_id = await forward_case(pair)
    await pair.fr.node.cases.withdraw(report_id, reason="mistaken report", actor="analyst:ana")
    await pair.fr.settle()
    at_fr = await pair.fr.node.cases.show(report_id)
    at_de = await pair.de.node.cases.show(report_id)
    entries = [[a for a in case["actions"] if a["code"] == "withdrawn"] for case in (at_fr, at_de)]
    assert [len(e) for e in entries] == [1, 1]
    assert entries[0][0]["id"] == entries[1][0]["id"]
    assert entries[1][0]["by"] == "fr-pdc"
    assert entries[1][0]["reason"] == "mistaken report"


async def test_a_channels_outcome_at_the_peer_goes_back_to_the_origin(
    tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> None:
    police = await WebhookSink().start()
    channels = {"polizei": {"kind": "webhook", "roles": ["law_enforcement"], "url": police.url}}
    try:
        async with live_pair(
            tmp_path, clock, dns_server.nameserver, de_extra={"channels": channels}
        ) as pair:
            report_id = await forward_case(pair)
            report = await pair.de.node.dispatcher.run_once()
            assert report.delivered >= 1
            assert report_id.encode() in police.received[-1][1]
            at_de = await pair.de.node.cases.show(report_id)
            assert ("lea_referred", "de-eco") in timeline(at_de)
            await pair.de.settle()
            at_fr = await pair.fr.node.cases.show(report_id)
            assert ("lea_referred", "de-eco") in timeline(at_fr)
    finally:
        await police.stop()


@pytest.mark.parametrize(
    ("code", "by", "origin", "here", "closed"),
    [
        (ActionCode.CONTENT_REMOVED, "de", "fr", "fr", True),
        (ActionCode.CONTENT_UNAVAILABLE, "fr", "fr", "de", True),
        (ActionCode.NOT_ILLEGAL, "fr", "fr", "fr", True),
        (ActionCode.NOT_ILLEGAL, "fr", "fr", "de", True),
        (ActionCode.NOT_ILLEGAL, "de", "fr", "de", True),
        (ActionCode.NOT_ILLEGAL, "de", "fr", "fr", False),
        (ActionCode.MOVED, "fr", "fr", "de", False),
        (ActionCode.LEA_REFERRED, "de", "fr", "fr", False),
        (ActionCode.NOTICE_SENT, "de", "fr", "fr", False),
    ],
)
def test_which_actions_close_a_case_and_whose(
    code: ActionCode, by: str, origin: str, here: str, closed: bool
) -> None:
    assert closes(code, by=by, origin=origin, here=here) is closed


async def test_an_imported_hosting_country_travels_and_the_peer_does_not_land_in_manual(
    pair: Pair,
) -> None:
    fr = pair.fr.node
    item = ImportItem.check(
        {
            "url": "http://untraced.example/gallery/7.jpg",
            "category": "csam",
            "verdict": "baseline",
            "hosting_country": "DE",
        }
    )
    [result] = await fr.cases.import_batch([item], actor="import")
    at_fr = await fr.cases.show(result.report_id)
    assert at_fr["hosting"]["countries"] == ["DE"]
    assert at_fr["routing"]["decision"] == "peer"
    await pair.fr.settle()
    at_de = await pair.de.node.cases.show(result.report_id)
    assert at_de["hosting"]["countries"] == ["DE"]
    assert at_de["routing"]["decision"] == "domestic"
    assert at_de["status"] != "manual"


async def test_an_analysts_override_is_the_jurisdiction_that_travels(pair: Pair) -> None:
    fr = pair.fr.node
    submitted = await fr.cases.submit(
        "http://fr.example/moved/1.jpg", actor="analyst:ana", category="csam"
    )
    await fr.trace_pending()
    await fr.cases.override_jurisdiction(
        submitted.report_id,
        country="DE",
        reason="the host confirmed the server is in Frankfurt",
        actor="analyst:ana",
    )
    await fr.cases.assess(
        submitted.report_id,
        verdict="baseline",
        category="csam",
        legal_basis=None,
        actor="analyst:ana",
    )
    await pair.fr.settle()
    at_de = await pair.de.node.cases.show(submitted.report_id)
    assert at_de["hosting"]["countries"] == ["DE"]
    assert at_de["routing"]["decision"] == "domestic"


def de_with_host_notices(dns: str, smtp: SmtpSink, rdap: RdapStub) -> dict[str, object]:
    return {
        "jurisdiction": {"dns_server": dns, "dns_timeout_seconds": 1.0, "rdap_base": rdap.base_url},
        # No police-first hold and no grouping window: the notice goes at the first sweep.
        "notices": {"lea_first_hours": {}, "group_window_seconds": 0},
        "channels": {
            "hosts": {
                "kind": "email",
                "roles": ["host_notice"],
                "from_address": "notices@eco.example",
                "smtp_port": smtp.port,
            }
        },
    }


async def test_the_receiver_looks_up_the_abuse_contact_itself_and_requeues_dead_notices(
    tmp_path: Path,
    clock: ManualClock,
    dns_server: ZoneDnsServer,
    smtp: SmtpSink,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with RdapStub() as rdap:
        rdap.add_network(
            "88.198.0.0/16",
            ip_network("88.198.0.0", "88.198.255.255", abuse_email="abuse@hetzner.example"),
        )
        settings = de_with_host_notices(dns_server.nameserver, smtp, rdap)
        async with live_pair(tmp_path, clock, dns_server.nameserver, de_extra=settings) as pair:
            report_id = await forward_case(pair)
            de = pair.de.node
            assert (await de.cases.show(report_id))["hosting"]["abuse_contact"] is None
            smtp.reply = "550 mailbox unavailable"  # the first try is refused for good
            first = await de.dispatcher.run_once()
            assert first.dead == 1
            assert smtp.recipients == []
            # The contact was found by DE's own RDAP lookup and kept with the case.
            at_de = await de.cases.show(report_id)
            assert at_de["hosting"]["abuse_contact"] == "abuse@hetzner.example"
            smtp.reply = None
            capsys.readouterr()
            argv = ["channels", "requeue", "hosts", "--data-dir", str(de.data_dir.root), "--json"]
            assert await asyncio.to_thread(main, argv) == 0
            assert json.loads(capsys.readouterr().out) == {"channel": "hosts", "requeued": 1}
            clock.set(datetime.now(UTC) + timedelta(seconds=1))  # the command ran on real time
            again = await de.dispatcher.run_once()
            assert again.delivered == 1
            assert smtp.recipients == [["abuse@hetzner.example"]]
            assert ("notice_sent", "de-eco") in timeline(await de.cases.show(report_id))


async def test_the_lifecycle_table_refuses_at_both_ends_and_writes_nothing(pair: Pair) -> None:
    report_id = await forward_case(pair)
    await pair.fr.node.cases.withdraw(report_id, reason="mistaken report", actor="analyst:ana")
    await pair.fr.settle()
    before = [await side.node.cases.show(report_id) for side in (pair.fr, pair.de)]
    assert [case["status"] for case in before] == ["withdrawn", "withdrawn"]
    for side in (pair.fr, pair.de):
        with pytest.raises(CaseStateError, match="is withdrawn: it cannot be acted on"):
            await side.node.cases.record_action(report_id, code="moved", reason=None, actor="a")
    with pytest.raises(CaseStateError, match="is withdrawn: it cannot be withdrawn"):
        await pair.fr.node.cases.withdraw(report_id, reason="again", actor="a")
    with pytest.raises(CaseStateError, match="is withdrawn: it cannot be assessed"):
        await pair.fr.node.cases.assess(
            report_id, verdict="baseline", category="csam", legal_basis=None, actor="a"
        )
    with pytest.raises(CaseStateError, match="is withdrawn: it cannot be given a hosting"):
        await pair.fr.node.cases.override_jurisdiction(
            report_id, country="FR", reason="r", actor="a"
        )
    after = [await side.node.cases.show(report_id) for side in (pair.fr, pair.de)]
    assert after == before
