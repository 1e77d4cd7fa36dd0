"""Three node processes (FR, DE, US) on loopback: forwarding, outcomes, outages, SIGKILL."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

from tests.support.cluster import NodeProcess, cli, wait_for
from tests.support.dns_server import ZoneDnsServer

Cluster = dict[str, NodeProcess]


def timeline(node: NodeProcess, report_id: str) -> list[tuple[str, str]]:
    report = node.report(report_id)
    return [(a["code"], a["by"]) for a in report["actions"]] if report else []


def count_reports(node: NodeProcess) -> int:
    with sqlite3.connect(node.root / "node.sqlite3") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM reports").fetchone()[0])


def test_forwarded_case_reaches_the_peer_and_its_outcome_comes_back(cluster: Cluster) -> None:
    fr, de = cluster["FR"], cluster["DE"]
    started = time.monotonic()
    report_id = fr.submit_and_assess("http://de.example/gallery/1.jpg")
    arrived = wait_for(lambda: de.report(report_id), timeout=15)
    latency = time.monotonic() - started
    assert arrived["origin"] == "fr-pdc"
    assert arrived["hosting"]["countries"] == ["DE"]
    # Pushed right after the routing commit: well within a few seconds here (not a sweep).
    assert latency < 5, latency
    status, _ = de.post(
        f"/api/v1/reports/{report_id}/actions",
        {"code": "content_removed", "reason": "removed by the host"},
    )
    assert status == 201
    wait_for(lambda: ("content_removed", "de-eco") in timeline(fr, report_id), timeout=15)
    codes = timeline(fr, report_id)
    assert ("forwarded", "fr-pdc") in codes
    assert ("received", "de-eco") in codes
    assert fr.report(report_id)["status"] == "closed"  # type: ignore[index]


def test_records_queued_while_a_peer_is_down_arrive_exactly_once(cluster: Cluster) -> None:
    fr, us = cluster["FR"], cluster["US"]
    before = count_reports(us) if (us.root / "node.sqlite3").exists() else 0
    assert us.stop() == 0
    ids = [fr.submit_and_assess(f"http://us.example/outage/{n}") for n in range(5)]
    time.sleep(2)  # FR tries, fails, and backs off
    us.start()
    wait_for(lambda: all(us.report(i) for i in ids), timeout=60)
    time.sleep(2)  # let any duplicate delivery show itself
    assert count_reports(us) == before + len(ids)
    for report_id in ids:
        assert [c for c, _ in timeline(us, report_id)].count("received") == 1


def test_sigkill_in_the_middle_of_a_batch_loses_and_duplicates_nothing(
    cluster: Cluster,
) -> None:
    fr, de = cluster["FR"], cluster["DE"]
    before = count_reports(de)
    de.pause()  # DE holds the request open: FR's transaction is in flight
    try:
        ids = [fr.submit_and_assess(f"http://de.example/kill/{n}") for n in range(20)]
        time.sleep(1.5)
        assert fr.stop(signal.SIGKILL) == -signal.SIGKILL
    finally:
        de.resume()
    fr.start()
    wait_for(lambda: count_reports(de) >= before + len(ids), timeout=60)
    time.sleep(2)
    assert count_reports(de) == before + len(ids)
    for node in (fr, de):
        result = cli(node.root, "audit", "verify")
        assert "intact" in result.stdout


def test_a_stale_pin_and_forged_requests_are_refused_and_logged(cluster: Cluster) -> None:
    fr, de, us = cluster["FR"], cluster["DE"], cluster["US"]
    status, problem = fr.post(
        "/admin/v1/peers",
        {
            "node_id": "de-eco",
            "country": "DE",
            "endpoint": us.url,
            "fingerprint": de.fingerprint,
        },
        token=fr.operator,
    )
    assert status in (409, 422)
    status, problem = fr.post(
        "/admin/v1/peers",
        {
            "node_id": "it-x",
            "country": "IT",
            "endpoint": us.url,
            "fingerprint": de.fingerprint,
        },
        token=fr.operator,
    )
    # The operator's fingerprint does not match what the endpoint serves: their input (422).
    assert status == 422
    assert "does not match the pinned fingerprint" in problem["detail"]
    status, problem = de.post(
        "/federation/v1/transactions/abcdefgh-1", {"envelopes": ["AA"]}, token=None
    )
    assert status == 401
    assert problem["type"].endswith("/request-signature")
    assert "refused federation request" in (de.log_path.read_text() if de.log_path else "")


def test_cases_routed_by_a_command_line_import_go_out_within_seconds(
    tmp_path: Path, dns: ZoneDnsServer
) -> None:
    """`reports import` runs in its own process and cannot wake the server: the server looks
    for pending peer queues every second, whatever the (here: one minute) sweep period."""
    fr = NodeProcess("fr-imp", "FR", tmp_path / "fr", dns.nameserver)
    de = NodeProcess("de-imp", "DE", tmp_path / "de", dns.nameserver)
    try:
        for node in (fr, de):
            node.init(sweep_seconds=60)
            node.start()
        fr.add_peer(de)
        de.add_peer(fr)
        batch = tmp_path / "import.jsonl"
        batch.write_text(
            json.dumps(
                {
                    "url": "http://de.example/imported/1.jpg",
                    "category": "csam",
                    "verdict": "baseline",
                    "hosting_country": "DE",
                }
            )
            + "\n"
        )
        started = time.monotonic()
        cli(fr.root, "reports", "import", str(batch))
        wait_for(lambda: count_reports(de) == 1, timeout=45)
        # Well before the one-minute sweep, with room for a loaded machine.
        assert time.monotonic() - started < 30
    finally:
        for node in (fr, de):
            node.stop()
