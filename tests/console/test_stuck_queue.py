"""The triage queue shows what would otherwise be stuck unseen: a case sent to the fallback
while its peer is suspended (two live nodes; the console over real HTTP on 127.0.0.1)."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from node.clock import ManualClock
from tests.console.conftest import Browser
from tests.support.dns_server import ZoneDnsServer
from tests.support.federation import live_pair

HEADING = "Envoyés au canal de repli pendant la suspension d\u2019un pair"


def suspended_section(page: str) -> str:
    found = re.search(rf"{HEADING}</h2>(.*?)</section>", page, re.S)
    assert found is not None, page
    return found.group(1)


async def test_a_case_sent_to_the_fallback_while_its_peer_is_suspended_waits_in_the_queue(
    tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> None:
    async with live_pair(tmp_path, clock, dns_server.nameserver) as pair:
        fr = pair.fr.node
        await fr.admin.set_status("de-eco", "suspended", "olga")
        submitted = await fr.cases.submit(
            "http://de.example/queue.jpg", actor="ana", category="hate"
        )
        await fr.trace_pending()
        await fr.cases.assess(
            submitted.report_id, verdict="national", category="hate", legal_basis=None, actor="ana"
        )
        made = await fr.users.add("alice", "analyst", totp=False, actor="test")
        own = "alice-own-password"  # the first password only sets one's own
        await fr.users.change_password(
            "alice", current=made.password, new=own, repeated=own, client="test"
        )
        async with TestClient(TestServer(fr.make_app(), host="127.0.0.1")) as client:
            alice = Browser(client)
            await alice.sign_in("alice", own, None, clock.now())
            _, page = await alice.get("/console/queue")
            listed = suspended_section(page)
            assert f"/console/case/{submitted.report_id}" in listed
            assert "peer de-eco is suspended" in listed
            assert "DE" in listed
            # Resumed: the case goes to the peer and leaves that part of the queue.
            await fr.admin.set_status("de-eco", "active", "olga")
            _, page = await alice.get("/console/queue")
            assert f"/console/case/{submitted.report_id}" not in suspended_section(page)
        case = await fr.cases.show(submitted.report_id)
        assert case["routing"]["decision"] == "peer"
