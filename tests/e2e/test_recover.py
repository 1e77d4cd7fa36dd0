"""The network gives back what a restored node lost: `reports recover --from PEER` restores the
cases made after the backup, with their timelines, from the records the peer kept as signed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from tests.e2e.test_rejoin import reassess, refused, rows
from tests.support.cluster import NodeProcess, cli, cli_json, wait_for
from tests.support.dns_server import ZoneDnsServer


def codes(node: NodeProcess, report_id: str) -> list[tuple[str, str]]:
    report = node.report(report_id)
    assert report is not None
    return sorted((a["code"], a["by"]) for a in report["actions"])


def act(node: NodeProcess, report_id: str, code: str) -> None:
    status, body = node.post(f"/api/v1/reports/{report_id}/actions", {"code": code})
    assert status == 201, body


def test_lost_cases_come_back_from_the_peer_with_their_timelines(
    tmp_path: Path, dns: ZoneDnsServer
) -> None:
    fr = NodeProcess("fr-pdc", "FR", tmp_path / "fr", dns.nameserver)
    de = NodeProcess("de-eco", "DE", tmp_path / "de", dns.nameserver)
    for node in (fr, de):
        node.init()
        node.start()
    restored = tmp_path / "fr-restored"
    again = NodeProcess("fr-pdc", "FR", restored, dns.nameserver, port=fr.port)
    try:
        fr.add_peer(de)
        de.add_peer(fr)
        kept = fr.submit_and_assess("http://de.example/before-backup")
        wait_for(lambda: de.report(kept), timeout=20)
        status, body = fr.post("/api/v1/reports", {"url": "http://de.example/assessed-later"})
        assert status == 201
        later: str = body["id"]  # held by the backup unassessed, forwarded after it
        archive = tmp_path / "fr.tar.gz"
        cli(fr.root, "backup", "--output", str(archive))
        reassess(fr, later, "assessed after the backup")
        wait_for(lambda: de.report(later), timeout=30)

        # After the backup: three cases forwarded to DE. DE has one removed; FR withdraws one
        # and re-assesses the third (a second version). All of it is lost with the restore.
        removed, withdrawn, updated = (
            fr.submit_and_assess(f"http://de.example/after-backup/{n}") for n in range(3)
        )
        wait_for(lambda: all(de.report(i) for i in (removed, withdrawn, updated)), timeout=30)
        act(de, removed, "content_removed")
        cli(fr.root, "reports", "withdraw", withdrawn, "--reason", "sent by mistake")
        reassess(fr, updated, "second look")
        wait_for(
            lambda: (
                de.report(withdrawn)["status"] == "withdrawn"  # type: ignore[index]
                and rows(de, f"SELECT legal_basis FROM reports WHERE id = '{updated}'")
                == [("second look",)]
                and ("content_removed", "de-eco") in codes(fr, removed)
            ),
            timeout=30,
        )
        before = {i: codes(fr, i) for i in (removed, withdrawn, updated)}
        fr.stop()

        cli(restored, "restore", str(archive))
        shutil.copy2(fr.root / "key-secret", restored / "key-secret")
        again.analyst, again.fingerprint = fr.analyst, fr.fingerprint
        again.start()
        assert again.report(removed) is None
        # DE acts on a lost case while FR does not hold it: kept apart until it comes back.
        act(de, updated, "notice_sent")
        act(de, later, "notice_sent")
        wait_for(
            lambda: (
                len(cli_json(restored, "peers", "show", "de-eco")["actions_on_unknown_cases"]) == 2
            ),
            timeout=30,
        )

        result = cli(restored, "reports", "recover", "--from", "de-eco")
        assert "3 case(s) restored" in result.stdout, result.stdout
        assert again.report(removed)["status"] == "closed"  # type: ignore[index]
        assert again.report(removed)["source"] == "recovered"  # type: ignore[index]
        assert again.report(withdrawn)["status"] == "withdrawn"  # type: ignore[index]
        assert again.report(updated)["status"] == "routed"  # type: ignore[index]
        assert again.report(updated)["assessment"]["legal_basis"] == "second look"  # type: ignore[index]
        for report_id, timeline in before.items():
            assert set(timeline) <= set(codes(again, report_id)), report_id
        assert ("notice_sent", "de-eco") in codes(again, updated)
        # The case the backup held without the record of sending it: DE holds it again too.
        assert ("notice_sent", "de-eco") in codes(again, later)
        assert cli_json(restored, "peers", "show", "de-eco")["actions_on_unknown_cases"] == []

        # Again: nothing new, nothing twice.
        second = cli_json(restored, "reports", "recover", "--from", "de-eco", "--json")
        assert second["restored"] == 0
        assert second["held"] == 5  # with the two the backup held
        assert codes(again, updated) == sorted(set(codes(again, updated)))

        # The restored case is ours again: a new version reaches DE above the one it holds,
        # and DE's next action on it arrives as on any case.
        reassess(again, updated, "after the recovery")
        wait_for(
            lambda: (
                rows(de, f"SELECT legal_basis FROM reports WHERE id = '{updated}'")
                == [("after the recovery",)]
            ),
            timeout=30,
        )
        act(de, updated, "content_unavailable")
        wait_for(
            lambda: again.report(updated)["status"] == "closed",  # type: ignore[index]
            timeout=30,
        )
        time.sleep(2)
        for node in (again, de):
            assert refused(node) == []
            assert "intact" in cli(node.root, "audit", "verify").stdout
    finally:
        again.stop()
        fr.stop()
        de.stop()
