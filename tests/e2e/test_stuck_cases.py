"""Nothing stuck unseen, on real node processes: a delivery no channel serves waits in view and
goes once a channel is configured; a case sent to the fallback while its peer is suspended goes
to the peer once it is resumed (peers added and suspended with the documented commands)."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.config import parse_config, render_config
from tests.support.cluster import NodeProcess, cli, cli_json, wait_for
from tests.support.dns_server import ZoneDnsServer
from tests.support.sinks import SmtpSink

Pair = tuple[NodeProcess, NodeProcess]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, dns: ZoneDnsServer) -> Iterator[Pair]:
    root: Path = tmp_path_factory.mktemp("stuck")
    fr = NodeProcess("fr-pdc", "FR", root / "fr-pdc", dns.nameserver)
    de = NodeProcess("de-eco", "DE", root / "de-eco", dns.nameserver)
    try:
        for node in (fr, de):
            node.init()
            node.start()
        fr.add_peer(de)
        de.add_peer(fr)
        yield fr, de
    finally:
        for node in (fr, de):
            node.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


def queued(node: NodeProcess, report_id: str) -> dict[str, dict[str, Any]]:
    case = cli_json(node.root, "reports", "show", report_id)
    return {f"{q['kind']}:{q['name']}": q for q in case["routing"]["queued"]}


def import_line(node: NodeProcess, tmp_path: Path, **fields: str) -> str:
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(fields) + "\n")
    cli(node.root, "reports", "import", str(path), "--as", "ana")
    listed = cli_json(node.root, "reports", "list", "--limit", "1")
    report_id: str = listed["reports"][0]["id"]
    return report_id


def add_channel(node: NodeProcess, name: str, table: dict[str, Any]) -> None:
    """Edit node.toml as an operator does; the serving node applies it without a restart."""
    path = node.root / "node.toml"
    raw = tomllib.loads(path.read_text())
    raw.setdefault("channels", {})[name] = table
    path.write_text(render_config(parse_config(raw)))


def test_a_role_no_channel_serves_waits_in_view_and_goes_once_one_is_configured(
    pair: Pair, tmp_path: Path, smtp: SmtpSink
) -> None:
    fr, _ = pair
    report_id = import_line(
        fr,
        tmp_path,
        url="http://za.example/no-channel.jpg",
        category="hate",
        verdict="national",
        hosting_country="ZA",
    )
    fallback = wait_for(
        lambda: (q := queued(fr, report_id).get("channel:fallback")) and q["last_error"] and q,
        timeout=20,
    )
    assert fallback["state"] == "no channel"
    assert "no channel configured for role fallback" in fallback["last_error"]
    add_channel(
        fr,
        "interpol",
        {
            "kind": "email",
            "roles": ["fallback"],
            "to": "ncb@interpol.example",
            "from_address": "notices@pointdecontact.example",
            "smtp_port": smtp.port,
        },
    )
    # Taken up at once (not after the hour a set-aside message waits), and sent once.
    wait_for(lambda: smtp.messages, timeout=20)
    assert "za.example/no-channel.jpg" in str(smtp.messages[0].get_content())
    wait_for(lambda: queued(fr, report_id)["channel:fallback"]["state"] == "delivered")


def test_a_case_sent_to_the_fallback_while_its_peer_is_suspended_reaches_it_on_resume(
    pair: Pair,
) -> None:
    fr, de = pair
    cli(fr.root, "peers", "suspend", "de-eco")
    report_id = fr.submit_and_assess("http://de.example/while-suspended.jpg", category="hate")
    case = wait_for(
        lambda: (
            (c := cli_json(fr.root, "reports", "show", report_id))["routing"]["decision"]
            == "fallback"
            and c
        )
    )
    assert any("peer de-eco is suspended" in r for r in case["routing"]["reasons"])
    assert de.report(report_id) is None
    cli(fr.root, "peers", "resume", "de-eco")
    arrived = wait_for(lambda: de.report(report_id), timeout=20)
    assert arrived["origin"] == "fr-pdc"
    case = cli_json(fr.root, "reports", "show", report_id)
    assert case["routing"]["decision"] == "peer"
    fallback = queued(fr, report_id)["channel:fallback"]
    assert fallback["state"] == "cancelled"
    assert "now peer" in fallback["last_error"]
