"""National channels against a real SMTP server and a real webhook receiver on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from keys import build_key_document
from keys.document import PublicKeySet
from node.app import Node, open_node
from node.cli import main
from node.clock import ManualClock
from node.config import parse_config
from node.errors import ConfigError, InvalidInput
from protocol.httpsig import MemoryNonceGuard, SignedRequest, verify_request
from tests.support.dns_server import ZoneDnsServer
from tests.support.nodes import init_node
from tests.support.rdap_server import RdapStub
from tests.support.sinks import SmtpSink, WebhookSink

WINDOW = 60


def channel_config(smtp: SmtpSink, webhook: WebhookSink, **notices: Any) -> dict[str, Any]:
    return {
        "channels": {
            "pharos": {"kind": "webhook", "roles": ["law_enforcement"], "url": webhook.url},
            "hosts": {
                "kind": "email",
                "roles": ["host_notice", "cdn_notice"],
                "from_address": "notices@pointdecontact.example",
                "smtp_port": smtp.port,
            },
            "interpol": {
                "kind": "email",
                "roles": ["fallback"],
                "to": "ncb@interpol.example",
                "from_address": "notices@pointdecontact.example",
                "smtp_port": smtp.port,
            },
        },
        "notices": {
            "notifier_name": "Point de Contact",
            "notifier_email": "contact@pointdecontact.example",
            "notifier_address": "Paris, France",
            "group_window_seconds": WINDOW,
            **notices,
        },
    }


@dataclass
class Setup:
    node: Node
    clock: ManualClock
    smtp: SmtpSink
    webhook: WebhookSink

    async def case(self, url: str, category: str = "csam", verdict: str = "baseline") -> str:
        cases = self.node.cases
        submitted = await cases.submit(url, actor="analyst:ana", category=category)
        await self.node.trace_pending()
        await cases.assess(
            submitted.report_id,
            verdict=verdict,
            category=category,
            legal_basis="Code pénal art. 227-23",
            actor="analyst:ana",
        )
        return submitted.report_id

    async def codes(self, report_id: str) -> list[str]:
        return [a["code"] for a in (await self.node.cases.show(report_id))["actions"]]


async def make_setup(
    tmp_path: Path,
    clock: ManualClock,
    dns_server: ZoneDnsServer,
    rdap: RdapStub,
    smtp: SmtpSink,
    webhook: WebhookSink,
    **notices: Any,
) -> AsyncIterator[Setup]:
    data_dir = init_node(
        tmp_path / "fr",
        clock=clock,
        extra={
            "jurisdiction": {
                "dns_server": dns_server.nameserver,
                "dns_timeout_seconds": 1.0,
                "rdap_base": rdap.base_url,
            },
            **channel_config(smtp, webhook, **notices),
        },
    )
    async with open_node(data_dir, clock) as node:
        yield Setup(node, clock, smtp, webhook)


@pytest.fixture
async def setup(
    tmp_path: Path,
    clock: ManualClock,
    dns_server: ZoneDnsServer,
    rdap: RdapStub,
    smtp: SmtpSink,
    webhook: WebhookSink,
) -> AsyncIterator[Setup]:
    async for made in make_setup(tmp_path, clock, dns_server, rdap, smtp, webhook):
        yield made


async def test_domestic_case_reaches_police_signed_and_the_host_as_a_dsa_notice(
    setup: Setup,
) -> None:
    report_id = await setup.case("http://fr.example/album/1.jpg")
    first = await setup.node.dispatcher.run_once()
    assert first.delivered == 1  # police at once; the host notice gathers for the window
    assert len(setup.webhook.received) == 1
    headers, body = setup.webhook.received[0]
    referral = orjson.loads(body)
    assert referral["cases"][0]["report_id"] == report_id
    assert referral["cases"][0]["url"] == "http://fr.example/album/1.jpg"
    # The police platform can verify the referral against our published key document.
    keys = setup.node.keyring.current
    document = build_key_document(
        keys, node_id="fr-pointdecontact", country="FR", endpoint="http://x", now=setup.clock.now()
    )

    class Directory:
        def keys_for(self, node_id: str) -> PublicKeySet | None:
            return PublicKeySet.from_document(document)

    sender = verify_request(
        SignedRequest("POST", f"127.0.0.1:{setup.webhook.port}", "/referrals", "?", body),
        headers,
        peers=Directory(),
        nonces=MemoryNonceGuard(),
        now=setup.clock.now(),
    )
    assert sender == "fr-pointdecontact"
    assert "lea_referred" in await setup.codes(report_id)

    setup.clock.advance(timedelta(seconds=WINDOW))
    await setup.node.dispatcher.run_once()
    assert len(setup.smtp.messages) == 1
    notice = setup.smtp.messages[0]
    assert setup.smtp.recipients[0] == ["abuse@ovh.example"]
    assert notice["From"] == "notices@pointdecontact.example"
    assert notice["Content-Language"] == "fr"  # the host is in France
    assert "règlement (UE) 2022/2065" in str(notice.get_content())
    text = str(notice.get_content())
    assert "http://fr.example/album/1.jpg" in text
    assert "Code pénal art. 227-23" in text
    assert "de bonne foi" in text
    assert report_id[-8:] in notice["Subject"]
    # CSAM: the notifier's identity is left out (DSA Art. 16(2)(c)).
    assert "contact@pointdecontact.example" not in text
    assert "notice_sent" in await setup.codes(report_id)


async def test_cases_for_one_abuse_desk_go_out_as_one_notice(setup: Setup) -> None:
    first = await setup.case("http://fr.example/a", category="hate", verdict="national")
    second = await setup.case("http://fr.example/b", category="hate", verdict="national")
    setup.clock.advance(timedelta(seconds=WINDOW))
    await setup.node.dispatcher.run_once()
    assert len(setup.smtp.messages) == 1
    text = str(setup.smtp.messages[0].get_content())
    assert "http://fr.example/a" in text
    assert "http://fr.example/b" in text
    # Not CSAM: the notifier is named, with an address to reply to.
    assert "contact@pointdecontact.example" in text
    for report_id in (first, second):
        assert "notice_sent" in await setup.codes(report_id)


async def test_reminders_until_the_content_is_removed(setup: Setup) -> None:
    report_id = await setup.case("http://fr.example/r")
    setup.clock.advance(timedelta(seconds=WINDOW))
    await setup.node.dispatcher.run_once()
    assert len(setup.smtp.messages) == 1
    setup.clock.advance(timedelta(hours=23))
    assert await setup.node.dispatcher.schedule_reminders() == 0
    setup.clock.advance(timedelta(hours=2))
    assert await setup.node.dispatcher.schedule_reminders() == 1
    await setup.node.dispatcher.run_once()
    assert len(setup.smtp.messages) == 2
    assert "Relance" in setup.smtp.messages[1]["Subject"]
    assert "reminder_sent" in await setup.codes(report_id)
    await setup.node.cases.record_action(
        report_id, code="content_removed", reason=None, actor="analyst:ana"
    )
    setup.clock.advance(timedelta(hours=25))
    assert await setup.node.dispatcher.schedule_reminders() == 0


async def test_receiver_down_then_back_gets_the_referral_once(setup: Setup) -> None:
    await setup.webhook.stop()
    report_id = await setup.case("http://fr.example/down")
    result = await setup.node.dispatcher.run_once()
    assert result.failed == 1
    row = await setup.node.db.fetch_one(
        "SELECT attempts, last_error, state FROM channel_outbox WHERE role = 'law_enforcement'"
    )
    assert row is not None
    assert row["state"] == "pending"
    assert row["attempts"] == 1
    assert "pharos" in row["last_error"]
    await setup.webhook.start()
    assert (await setup.node.dispatcher.run_once()).delivered == 0  # backing off
    setup.clock.advance(timedelta(minutes=5))
    await setup.node.dispatcher.run_once()
    setup.clock.advance(timedelta(minutes=5))
    await setup.node.dispatcher.run_once()
    assert len(setup.webhook.received) == 1
    assert (await setup.codes(report_id)).count("lea_referred") == 1


async def test_a_refusing_receiver_is_dead_lettered_with_the_reason(setup: Setup) -> None:
    setup.webhook.status = 400
    setup.smtp.reply = "550 5.1.1 mailbox unavailable"
    report_id = await setup.case("http://fr.example/refused")
    setup.clock.advance(timedelta(seconds=WINDOW))
    result = await setup.node.dispatcher.run_once()
    assert result.dead == 2
    dead = await setup.node.db.fetch_all(
        "SELECT peer_id, reason FROM dead_letters WHERE direction = 'channel' ORDER BY peer_id"
    )
    assert [row["peer_id"] for row in dead] == ["hosts", "pharos"]
    assert "550" in dead[0]["reason"]
    assert "HTTP 400" in dead[1]["reason"]
    assert "notice_sent" not in await setup.codes(report_id)


async def test_no_peer_country_reaches_the_fallback(setup: Setup) -> None:
    report_id = await setup.case("http://za.example/x")
    await setup.node.dispatcher.run_once()
    assert setup.smtp.recipients == [["ncb@interpol.example"]]
    assert "za.example" in str(setup.smtp.messages[0].get_content())
    assert "lea_referred" in await setup.codes(report_id)


async def test_cdn_case_asks_the_cdn_for_the_origin(setup: Setup) -> None:
    await setup.case("http://cdn.example/x", category="hate", verdict="national")
    setup.clock.advance(timedelta(seconds=WINDOW))
    await setup.node.dispatcher.run_once()
    assert setup.smtp.recipients == [["abuse@cloudflare.com"]]
    assert "origin host" in setup.smtp.messages[0]["Subject"]


async def test_law_enforcement_first_hold_waits_for_clearance_or_deadline(
    tmp_path: Path,
    clock: ManualClock,
    dns_server: ZoneDnsServer,
    rdap: RdapStub,
    smtp: SmtpSink,
    webhook: WebhookSink,
) -> None:
    async for setup in make_setup(
        tmp_path, clock, dns_server, rdap, smtp, webhook, lea_first_hours={"csam": 48}
    ):
        held = await setup.case("http://fr.example/held")
        setup.clock.advance(timedelta(hours=1))
        result = await setup.node.dispatcher.run_once()
        assert result.held == 1
        assert smtp.messages == []
        setup.clock.advance(timedelta(hours=48))
        await setup.node.dispatcher.run_once()
        assert len(smtp.messages) == 1
        # The police may clear earlier: their webhook answer releases the notice.
        webhook.reply = {"cleared": True}
        cleared = await setup.case("http://fr.example/cleared")
        setup.clock.advance(timedelta(seconds=WINDOW))
        await setup.node.dispatcher.run_once()  # police referral; answer clears
        await setup.node.dispatcher.run_once()
        assert len(smtp.messages) == 2
        assert "http://fr.example/cleared" in str(smtp.messages[1].get_content())
        assert held != cleared


def test_bad_channel_configuration_names_the_key() -> None:
    base = {"node_id": "fr-x", "country": "FR", "endpoint": "http://127.0.0.1:1"}
    with pytest.raises(ConfigError, match=r"channels.pharos: .*needs url"):
        parse_config(
            {**base, "channels": {"pharos": {"kind": "webhook", "roles": ["law_enforcement"]}}}
        )
    with pytest.raises(ConfigError, match=r"channels.hosts.roles.0"):
        parse_config(
            {
                **base,
                "channels": {
                    "hosts": {"kind": "email", "roles": ["police"], "from_address": "a@b.example"}
                },
            }
        )
    with pytest.raises(ConfigError, match=r"channels.mail: .*password_file"):
        parse_config(
            {
                **base,
                "channels": {
                    "mail": {
                        "kind": "email",
                        "roles": ["fallback"],
                        "from_address": "a@b.example",
                        "username": "u",
                    }
                },
            }
        )


async def test_channels_over_the_admin_api_and_police_clearance(setup: Setup) -> None:
    operator = await setup.node.tokens.create("operator", "olivier")
    analyst = await setup.node.tokens.create("analyst", "ana")
    async with TestClient(TestServer(setup.node.make_app(), host="127.0.0.1")) as client:
        auth = {"Authorization": f"Bearer {operator}"}
        listed = await client.get("/admin/v1/channels", headers=auth)
        assert listed.status == 200
        names = [c["name"] for c in (await listed.json())["channels"]]
        assert names == ["pharos", "hosts", "interpol"]
        tested = await client.post(
            "/admin/v1/channels/hosts/test", headers=auth, json={"to": "abuse@test.example"}
        )
        assert tested.status == 200
        assert setup.smtp.recipients == [["abuse@test.example"]]
        assert "TEST MESSAGE" in str(setup.smtp.messages[0].get_content())
        missing = await client.post("/admin/v1/channels/hosts/test", headers=auth, json={})
        assert missing.status == 422
        assert "give --to" in (await missing.json())["detail"]
        unknown = await client.post("/admin/v1/channels/nope/test", headers=auth, json={})
        assert unknown.status == 404
        forbidden = await client.get(
            "/admin/v1/channels", headers={"Authorization": f"Bearer {analyst}"}
        )
        assert forbidden.status == 403
        report_id = await setup.case("http://fr.example/clear-me")
        cleared = await client.post(
            f"/api/v1/reports/{report_id}/clearance",
            headers={"Authorization": f"Bearer {analyst}"},
            json={"reason": "Pharos: no objection"},
        )
        assert cleared.status == 200
        again = await client.post(
            f"/api/v1/reports/{report_id}/clearance",
            headers={"Authorization": f"Bearer {analyst}"},
            json={},
        )
        assert again.status == 409


def test_channels_commands(
    tmp_path: Path,
    clock: ManualClock,
    dns_server: ZoneDnsServer,
    smtp: SmtpSink,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data_dir = init_node(
        tmp_path / "cli",
        clock=clock,
        extra={
            "channels": {
                "police": {
                    "kind": "email",
                    "roles": ["law_enforcement"],
                    "to": "brigade@police.example",
                    "smtp_port": smtp.port,
                    "from_address": "notices@pointdecontact.example",
                }
            },
        },
    )
    assert main(["channels", "list", "--json", "--data-dir", str(data_dir.root)]) == 0
    listed = orjson.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "police"
    assert listed[0]["target"] == "brigade@police.example"
    assert main(["channels", "test", "police", "--data-dir", str(data_dir.root)]) == 0
    assert "delivered" in capsys.readouterr().out
    assert smtp.recipients == [["brigade@police.example"]]
    smtp.stop()
    assert main(["channels", "test", "police", "--data-dir", str(data_dir.root)]) == 1
    assert "FAILED" in capsys.readouterr().out


async def test_a_failing_receiver_is_retried_then_dead_lettered(
    tmp_path: Path,
    clock: ManualClock,
    dns_server: ZoneDnsServer,
    rdap: RdapStub,
    smtp: SmtpSink,
    webhook: WebhookSink,
) -> None:
    async for setup in make_setup(tmp_path, clock, dns_server, rdap, smtp, webhook, max_attempts=3):
        webhook.status = 503
        report_id = await setup.case("http://fr.example/flaky")
        for expected_attempts in (1, 2):
            result = await setup.node.dispatcher.run_once()
            assert result.failed == 1
            row = await setup.node.db.fetch_one(
                "SELECT state, attempts, last_error FROM channel_outbox"
                " WHERE role = 'law_enforcement'"
            )
            assert row is not None
            assert (row["state"], row["attempts"]) == ("pending", expected_attempts)
            assert "HTTP 503" in row["last_error"]
            setup.clock.advance(timedelta(hours=1))
        result = await setup.node.dispatcher.run_once()
        assert result.dead == 1
        assert len(webhook.received) == 3
        dead = await setup.node.db.fetch_one(
            "SELECT reason FROM dead_letters WHERE peer_id = 'pharos'"
        )
        assert dead is not None
        assert "HTTP 503" in dead["reason"]
        assert "lea_referred" not in await setup.codes(report_id)


async def test_a_poisoned_host_notice_fails_alone_and_the_others_go(setup: Setup) -> None:
    """Regression (issue 12): an abuse contact with CR/LF (stored before contacts were checked
    where they enter) made building the mail raise in run_once; from then on no notice left,
    for any desk, and a traceback was logged every sweep."""
    clean = await setup.case("http://fr.example/clean", category="hate", verdict="national")
    crlf = await setup.case("http://fr.example/crlf", category="hate", verdict="national")
    unreadable = await setup.case("http://fr.example/junk", category="hate", verdict="national")
    raising = await setup.case("http://fr.example/raise", category="hate", verdict="national")
    unrecordable = await setup.case("http://fr.example/norec", category="hate", verdict="national")
    db = setup.node.db

    async def poison(report_id: str, payload: bytes) -> None:
        async with db.write() as conn:
            await conn.execute(
                "UPDATE channel_outbox SET payload = ? WHERE report_id = ?"
                " AND role = 'host_notice'",
                (payload, report_id),
            )

    row = await db.fetch_one(
        "SELECT payload FROM channel_outbox WHERE report_id = ? AND role = 'host_notice'",
        (crlf,),
    )
    assert row is not None
    item = orjson.loads(row["payload"])
    await poison(
        crlf, orjson.dumps({**item, "abuse_contact": "abuse@evil.example\r\nBcc: x@y.example"})
    )
    await poison(unreadable, b"{not json")
    # A category that is not text: the row cannot be planned (it raised in _held before).
    await poison(
        raising, orjson.dumps({**item, "category": ["hate"], "abuse_contact": "a@b.example"})
    )
    # Not a report id: the notice goes, but its outcome cannot be recorded on any case.
    await poison(
        unrecordable, orjson.dumps({**item, "report_id": "zz", "abuse_contact": "c@d.example"})
    )

    setup.clock.advance(timedelta(seconds=WINDOW))
    await setup.node.dispatcher.run_once()
    assert sorted(setup.smtp.recipients) == [["abuse@ovh.example"], ["c@d.example"]]
    assert "notice_sent" in await setup.codes(clean)
    dead = await db.fetch_all(
        "SELECT record_id, reason FROM dead_letters WHERE direction = 'channel'"
    )
    reasons = {row["record_id"]: row["reason"] for row in dead}
    assert "recipient" in reasons[crlf]
    assert "unreadable outbox row" in reasons[unreadable]
    assert "category is not text" in reasons[raising]
    assert "not recorded" in reasons["zz"]
    states = await db.fetch_all(
        "SELECT report_id, state FROM channel_outbox WHERE role = 'host_notice'"
    )
    assert {r["report_id"]: r["state"] for r in states} == {
        clean: "delivered",
        crlf: "dead",
        unreadable: "dead",
        raising: "dead",
        unrecordable: "dead",
    }
    # Nothing is left to fail again on the next sweep.
    again = await setup.node.dispatcher.run_once()
    assert (again.delivered, again.dead, again.failed) == (0, 0, 0)


async def test_a_channel_dead_letter_names_the_channel_chosen_else_the_role(setup: Setup) -> None:
    """Regression (issue 14): a notice that went through `hosts` but could not be recorded was
    dead-lettered under the role (host_notice), while a refusal names the channel; now the
    channel is named whenever one was chosen, and the role only when none was."""
    sent = await setup.case("http://fr.example/norec", category="hate", verdict="national")
    unread = await setup.case("http://fr.example/unread", category="hate", verdict="national")
    db = setup.node.db
    row = await db.fetch_one(
        "SELECT payload FROM channel_outbox WHERE report_id = ? AND role = 'host_notice'", (sent,)
    )
    assert row is not None
    item = orjson.loads(row["payload"])
    async with db.write() as conn:
        # Not a report id: the notice goes, but its outcome cannot be recorded on any case.
        await conn.execute(
            "UPDATE channel_outbox SET payload = ? WHERE report_id = ? AND role = 'host_notice'",
            (orjson.dumps({**item, "report_id": "zz", "abuse_contact": "c@d.example"}), sent),
        )
        await conn.execute(
            "UPDATE channel_outbox SET payload = '{not json' WHERE report_id = ?"
            " AND role = 'host_notice'",
            (unread,),
        )
    setup.clock.advance(timedelta(seconds=WINDOW))
    await setup.node.dispatcher.run_once()
    assert setup.smtp.recipients == [["c@d.example"]]
    dead = await db.fetch_all(
        "SELECT peer_id, record_type, record_id FROM dead_letters WHERE direction = 'channel'"
        " ORDER BY id"
    )
    assert [tuple(row) for row in dead] == [
        ("host_notice", "host_notice", unread),  # never planned: no channel was chosen
        ("hosts", "host_notice", "zz"),
    ]


async def test_channel_test_refuses_an_address_that_is_not_one_address(setup: Setup) -> None:
    """Regression (issue 12): CR/LF, NUL or U+2028 in `to` gave a 500 over HTTP."""
    for bad in ("a@b.example\r\nBcc: c@d.example", "a@b.example\x00", "a\u2028@b.example", "<>"):
        with pytest.raises(InvalidInput, match="to"):
            await setup.node.dispatcher.test("hosts", bad)
    assert setup.smtp.messages == []


async def test_channel_test_over_http_answers_422_for_a_bad_address(setup: Setup) -> None:
    """Regression (issue 12): the same over HTTP was a 500 with a traceback in the log."""
    token = await setup.node.tokens.create("operator", "op")
    headers = {"Authorization": f"Bearer {token}"}
    async with TestClient(TestServer(setup.node.make_app(), host="127.0.0.1")) as client:
        for bad in ("a@b.example\r\nX: y", "a@b.example\x00", "a\u2028@b.example", "<>"):
            response = await client.post(
                "/admin/v1/channels/hosts/test", json={"to": bad}, headers=headers
            )
            assert response.status == 422, await response.text()
            assert response.content_type == "application/problem+json"
            assert "to" in (await response.json())["detail"]
    assert setup.smtp.messages == []
