"""Notices carry what they must: TLP, TEST, a short reference, holds, reroutes, missing channels."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from node.app import open_node
from node.cases import ImportItem
from node.cli import main
from node.clock import ManualClock, SystemClock, iso
from node.datadir import DataDir
from node.stats import collect
from tests.node.test_channels import Setup, make_setup
from tests.support.dns_server import ZoneDnsServer
from tests.support.rdap_server import RdapStub, ip_network
from tests.support.sinks import SmtpSink, WebhookSink

WINDOW = 60


@pytest.fixture
async def setup(
    tmp_path: Path,
    clock: ManualClock,
    dns_server: ZoneDnsServer,
    smtp: SmtpSink,
    webhook: WebhookSink,
) -> AsyncIterator[Setup]:
    async with RdapStub() as rdap:
        rdap.add_network(
            "5.39.0.0/16", ip_network("5.39.0.0", "5.39.255.255", abuse_email="abuse@ovh.example")
        )
        async for made in make_setup(
            tmp_path, clock, dns_server, rdap, smtp, webhook, lea_first_hours={"csam": 48}
        ):
            yield made


async def case(setup: Setup, url: str, *, category: str = "csam", tlp: str = "amber") -> str:
    cases = setup.node.cases
    submitted = await cases.submit(url, actor="analyst:ana", category=category, tlp=tlp)
    await setup.node.trace_pending()
    await cases.assess(
        submitted.report_id,
        verdict="baseline",
        category=category,
        legal_basis="Code pénal art. 227-23",
        actor="analyst:ana",
    )
    return submitted.report_id


async def test_every_e_mail_and_webhook_carries_the_tlp(setup: Setup) -> None:
    red = await case(setup, "http://za.example/red", tlp="red")  # no peer in ZA: fallback
    await case(setup, "http://fr.example/amber", category="hate")  # domestic: police webhook
    await setup.node.dispatcher.run_once()
    [fallback] = [m for m in setup.smtp.messages if "za.example" in str(m.get_content())]
    assert fallback["Subject"].startswith("[TLP:RED] Referral of illegal content")
    assert fallback["X-Hotline-TLP"] == "TLP:RED"
    body = str(fallback.get_content())
    assert body.startswith("TLP:RED — For the eyes and ears of individual recipients only")
    assert f"reference     {red}\r\n  tlp           TLP:RED" in body
    [(_, raw)] = setup.webhook.received
    referral = orjson.loads(raw)
    assert (referral["tlp"], referral["test"]) == ("amber", False)
    assert referral["cases"][0]["tlp"] == "amber"
    # The DSA notice to the host, in French, carries the label untranslated.
    setup.clock.advance(timedelta(seconds=WINDOW))
    await setup.node.dispatcher.run_once()
    [notice] = [m for m in setup.smtp.messages if m["Content-Language"] == "fr"]
    assert notice["Subject"].startswith("[TLP:AMBER] Notification de contenu illicite")
    assert str(notice.get_content()).startswith("TLP:AMBER — Diffusion limitée")


async def test_channel_tests_say_test(setup: Setup) -> None:
    assert (await setup.node.dispatcher.test("interpol")).delivered
    [mail] = setup.smtp.messages
    assert mail["Subject"].startswith("TEST [TLP:AMBER] ")
    assert mail["X-Hotline-Test"] == "yes"
    assert str(mail.get_content()).startswith("TEST MESSAGE — not a real case")
    assert (await setup.node.dispatcher.test("pharos")).delivered
    [(_, raw)] = setup.webhook.received
    assert orjson.loads(raw)["test"] is True


async def test_a_grouped_notice_has_one_short_reference_that_names_its_cases(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [await case(setup, f"http://fr.example/g{i}", category="hate") for i in range(40)]
    setup.clock.advance(timedelta(seconds=WINDOW))
    await setup.node.dispatcher.run_once()
    [notice] = [m for m in setup.smtp.messages if m["Content-Language"] == "fr"]
    reference = notice["X-Hotline-Reference"]
    assert len(reference) == 9
    assert reference.startswith("N")
    assert notice["Subject"].endswith(f"réf. {reference}")
    assert len(notice["Subject"]) < 120
    assert sorted(await setup.node.cases.resolve(reference)) == sorted(ids)
    assert sorted(await setup.node.cases.resolve(reference.lower())) == sorted(ids)
    shown = await setup.node.cases.show(ids[0])
    assert reference in {q.get("notice_ref") for q in shown["routing"]["queued"]}
    # One case alone is named by its own public reference, as before.
    assert await setup.node.cases.resolve(ids[0][-8:]) == [ids[0]]
    # The command line shows the notice's cases (main runs its own loop: in a thread).
    root = str(setup.node.data_dir.root)
    code = await asyncio.to_thread(
        main, ["reports", "show", reference, "--json", "--data-dir", root]
    )
    assert code == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert shown["reference"] == reference
    assert sorted(case["id"] for case in shown["reports"]) == sorted(ids)


async def test_a_held_notice_shows_as_held_until_its_deadline(setup: Setup) -> None:
    report_id = await case(setup, "http://fr.example/held")
    created = setup.clock.now()
    setup.clock.advance(timedelta(hours=1))
    await setup.node.dispatcher.run_once()
    queued = (await setup.node.cases.show(report_id))["routing"]["queued"]
    [host] = [q for q in queued if q["name"] == "host_notice"]
    assert host["state"] == "held"
    assert host["held_until"] == iso(created + timedelta(hours=48))
    assert f"reports clear {report_id[-8:]}" in host["detail"]
    assert await setup.node.cases.clear_for_host(report_id, reason="ok", actor="a") == 1
    queued = (await setup.node.cases.show(report_id))["routing"]["queued"]
    assert [q["state"] for q in queued if q["name"] == "host_notice"] == ["pending"]
    await setup.node.dispatcher.run_once()
    assert any("fr.example/held" in str(m.get_content()) for m in setup.smtp.messages)
    # Nothing held any more: a second case cleared before it is routed says so.
    other = await setup.node.cases.submit("http://fr.example/x", actor="a", category="hate")
    assert await setup.node.cases.clear_for_host(other.report_id, reason=None, actor="a") == 0


async def test_rerouting_for_tlp_or_a_suspended_peer_is_recorded_and_counted(
    setup: Setup,
) -> None:
    db = setup.node.db

    def add_peer(conn: Any) -> None:
        conn.execute(
            "INSERT INTO peers (node_id, country, endpoint, fingerprint, status, mode,"
            " categories, max_tlp, added_at) VALUES ('de-eco', 'DE', 'http://127.0.0.1:9',"
            " 'f', 'active', 'push', '[\"csam\", \"hate\"]', 'amber', '2026-11-30T00:00:00Z')"
        )

    await db.run(add_peer)

    def item(url: str, tlp: str) -> ImportItem:
        return ImportItem.check(
            {
                "url": url,
                "category": "csam",
                "verdict": "baseline",
                "hosting_country": "DE",
                "tlp": tlp,
            }
        )

    red, amber = await setup.node.cases.import_batch(
        [item("http://de.example/red", "red"), item("http://de.example/amber", "amber")],
        actor="analyst:ana",
    )
    shown = await setup.node.cases.show(red.report_id)
    [target] = shown["routing"]["targets"]
    assert (target["name"], target["rerouted"]) == ("fallback", "above_peer_max_tlp")
    assert "TLP:RED, above peer de-eco's maximum TLP:AMBER" in target["reason"]
    assert (await setup.node.cases.show(amber.report_id))["routing"]["decision"] == "peer"

    await db.run(lambda conn: conn.execute("UPDATE peers SET status = 'suspended'"))
    [paused] = await setup.node.cases.import_batch(
        [item("http://de.example/paused", "amber")], actor="analyst:ana"
    )
    [target] = (await setup.node.cases.show(paused.report_id))["routing"]["targets"]
    assert (target["name"], target["rerouted"]) == ("fallback", "peer_suspended")
    assert "peer de-eco is suspended" in target["reason"]
    entry = await db.fetch_one(
        "SELECT details FROM audit_log WHERE event = 'report.routed' AND subject = ?",
        (paused.report_id,),
    )
    assert entry is not None
    assert orjson.loads(entry["details"])["rerouted"] == ["peer_suspended"]
    figures = await collect(db, node_id="fr-pointdecontact")
    assert figures["rerouted"] == {"above_peer_max_tlp": 1, "peer_suspended": 1}


def test_init_holds_csam_host_notices_48_hours_for_the_police(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "node"
    base = ["init", "--node-id", "fr-x", "--country", "FR"]
    assert main([*base, "--data-dir", str(root)]) == 0
    config = tomllib.loads((root / "node.toml").read_text())
    assert config["notices"]["lea_first_hours"] == {"csam": 48}
    other = tmp_path / "nohold"
    assert main([*base, "--police-first-hours", "0", "--data-dir", str(other)]) == 0
    assert tomllib.loads((other / "node.toml").read_text())["notices"]["lea_first_hours"] == {}


def test_roles_without_a_channel_are_warned_about_and_their_cases_show_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dns_server: ZoneDnsServer
) -> None:
    root = tmp_path / "node"
    assert (
        main(
            [
                "init",
                "--node-id",
                "fr-x",
                "--country",
                "FR",
                "--dns-server",
                dns_server.nameserver,
                "--data-dir",
                str(root),
            ]
        )
        == 0
    )
    capsys.readouterr()
    data = ["--data-dir", str(root)]
    assert main(["reports", "submit", "http://fr.example/w", "--category", "hate", *data]) == 0
    report_id = capsys.readouterr().out.strip()
    assert (
        main(["reports", "assess", report_id, "--verdict", "national", "--category", "hate", *data])
        == 0
    )
    capsys.readouterr()
    assert main(["channels", "list", *data]) == 0
    err = capsys.readouterr().err
    assert "warning: no channel serves role law_enforcement" in err
    assert "role host_notice (notices to hosts in our country): 1 case(s) wait for it" in err

    async def dispatch() -> None:
        async with open_node(DataDir(root), SystemClock()) as node:
            await node.dispatcher.run_once()

    asyncio.run(dispatch())
    assert main(["reports", "show", report_id[-8:], "--json", *data]) == 0
    queued = orjson.loads(capsys.readouterr().out)["routing"]["queued"]
    assert {q["state"] for q in queued} == {"no channel"}
    assert all("no channel serves role" in q["detail"] for q in queued)
    # Hate is not held for the police: clearing it says that nothing was held.
    assert main(["reports", "clear", report_id, *data]) == 0
    assert "no host notice was waiting" in capsys.readouterr().out
