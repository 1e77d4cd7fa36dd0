"""The issue's story on a real node process, with a real police webhook and a real SMTP server:
a CSAM case confirmed by a reviewer and routed while the police platform is down, then re-rated
not illegal (and that confirmed too). Nothing the old verdict queued goes out, and the case says
why. (tests/node/test_case_door.py drives the same with a clock moved past every retry.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import NodeProcess, cli, cli_json, wait_for
from tests.support.dns_server import ZoneDnsServer
from tests.support.sinks import SmtpSink, WebhookSink


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def police() -> WebhookSink:
    return WebhookSink()  # not listening yet: the police platform is down


@pytest.fixture
def node(
    tmp_path: Path, dns: ZoneDnsServer, smtp: SmtpSink, police: WebhookSink
) -> Iterator[NodeProcess]:
    fr = NodeProcess("fr-pdc", "FR", tmp_path / "fr", dns.nameserver)
    try:
        fr.init(
            {
                "console": {"four_eyes": ["csam"]},
                "channels": {
                    "pharos": {"kind": "webhook", "roles": ["law_enforcement"], "url": police.url},
                    "hosts": {
                        "kind": "email",
                        "roles": ["host_notice"],
                        "from_address": "notices@pointdecontact.example",
                        "smtp_port": smtp.port,
                    },
                },
                "notices": {
                    "notifier_name": "Point de Contact",
                    "notifier_email": "contact@pointdecontact.example",
                    "lea_first_hours": {"csam": 48},
                },
            }
        )
        fr.start()
        for name, role in (("alice", "analyst"), ("rene", "reviewer")):
            cli(fr.root, "users", "add", name, "--role", role)
        yield fr
    finally:
        fr.stop()


def show(node: NodeProcess, report_id: str) -> dict[str, Any]:
    case: dict[str, Any] = cli_json(node.root, "reports", "show", report_id)
    return case


def assess_and_confirm(node: NodeProcess, report_id: str, verdict: str) -> dict[str, Any]:
    """Alice gives the verdict; Rene confirms the very review he read."""
    case = cli_json(
        node.root,
        "reports",
        "assess",
        report_id,
        "--verdict",
        verdict,
        "--category",
        "csam",
        "--as",
        "alice",
    )
    assert case["review"]["state"] == "pending", case["review"]
    rid = case["review"]["id"]
    confirmed: dict[str, Any] = cli_json(
        node.root, "reports", "review", report_id, "--confirm", "--review", rid, "--as", "rene"
    )
    return confirmed


def deliveries(case: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {q["name"]: q for q in case["routing"]["queued"] if q["kind"] == "channel"}


def test_a_re_rating_to_not_illegal_stops_the_referral_and_the_held_notice(
    node: NodeProcess, smtp: SmtpSink, police: WebhookSink
) -> None:
    report_id = cli_json(
        node.root, "reports", "submit", "http://fr.example/story.jpg", "--category", "csam"
    )["id"]
    assess_and_confirm(node, report_id, "baseline")
    # Traced and routed at home: the referral fails (police down) and waits for its retry,
    # the host notice is held for the police.
    waiting = wait_for(
        lambda: (
            (q := deliveries(show(node, report_id))).get("law_enforcement", {}).get("detail") and q
        ),
        timeout=30,
    )
    assert waiting["law_enforcement"]["state"] == "pending"
    assert "pharos" in waiting["law_enforcement"]["detail"]
    assert waiting["host_notice"]["state"] == "held"

    # One analyst alone cannot undo what two decided: the re-rating waits for the reviewer.
    alone = cli_json(
        node.root,
        "reports",
        "assess",
        report_id,
        "--verdict",
        "not_illegal",
        "--category",
        "csam",
        "--as",
        "alice",
    )
    assert alone["review"]["state"] == "pending"
    assert alone["status"] == "routed"
    assess_and_confirm(node, report_id, "not_illegal")

    case = show(node, report_id)
    assert case["status"] == "closed"
    queued = deliveries(case)
    assert {name: q["state"] for name, q in queued.items()} == {
        "law_enforcement": "cancelled",
        "host_notice": "cancelled",
    }
    assert all("now closed" in q["detail"] for q in queued.values())

    asyncio.run(_police_back_for_a_while(police))
    assert police.received == []
    assert smtp.messages == []
    assert "lea_referred" not in [a["code"] for a in show(node, report_id)["actions"]]


async def _police_back_for_a_while(police: WebhookSink) -> None:
    """The platform comes back; the node's channel sweep (every second here) runs meanwhile."""
    await police.start()
    try:
        started = time.monotonic()
        while time.monotonic() - started < 4:
            await asyncio.sleep(0.2)
    finally:
        await police.stop()
