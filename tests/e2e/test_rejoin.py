"""A node restored from an older backup rejoins a live federation: nothing refused, nothing
delivered twice, and what its peers did meanwhile on cases it lost is kept and shown."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

from tests.support.cluster import NodeProcess, cli, cli_json, wait_for
from tests.support.dns_server import ZoneDnsServer


def rows(node: NodeProcess, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(node.root / "node.sqlite3") as conn:
        found = conn.execute(sql).fetchall()
    conn.close()
    return found


def refused(node: NodeProcess) -> list[tuple[object, ...]]:
    """Every dead letter and every outbox item a peer refused, on this node."""
    return rows(node, "SELECT direction, reason FROM dead_letters") + rows(
        node, "SELECT peer_id, last_error FROM peer_outbox WHERE state = 'dead'"
    )


def reassess(node: NodeProcess, report_id: str, basis: str) -> None:
    status, body = node.post(
        f"/api/v1/reports/{report_id}/assessment",
        {"verdict": "baseline", "category": "csam", "legal_basis": basis},
    )
    assert status == 200, body


def legal_basis(node: NodeProcess, report_id: str) -> object:
    found = rows(node, f"SELECT legal_basis, seq FROM reports WHERE id = '{report_id}'")
    return found[0][0] if found else None


def restore_and_start(again: NodeProcess, archive: Path, original: NodeProcess) -> None:
    """`hotline-node restore` of `original`'s backup into `again`'s empty directory, the key
    secret copied as an operator keeps it apart (a backup never holds it), then `serve`."""
    cli(again.root, "restore", str(archive))
    shutil.copy2(original.root / "key-secret", again.root / "key-secret")
    again.analyst, again.fingerprint = original.analyst, original.fingerprint
    again.start()


def test_a_restored_older_backup_rejoins_without_refusal_or_duplicate(
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
        later: str = body["id"]
        archive = tmp_path / "fr.tar.gz"
        cli(fr.root, "backup", "--output", str(archive))
        # After the backup: cases FR forwards to DE, then loses with the restore; a case the
        # backup holds unassessed, assessed and forwarded after it; and a new version of a
        # case the backup holds as forwarded.
        reassess(fr, later, "assessed after the backup")
        wait_for(lambda: de.report(later), timeout=30)
        lost = [fr.submit_and_assess(f"http://de.example/after-backup/{n}") for n in range(3)]
        wait_for(lambda: all(de.report(i) for i in lost), timeout=30)
        reassess(fr, kept, "after the backup")
        wait_for(lambda: legal_basis(de, kept) == "after the backup", timeout=30)
        fr.stop()

        restore_and_start(again, archive, fr)
        assert again.report(lost[0]) is None

        # DE acts on a case FR no longer holds: FR keeps it and shows it, DE refuses nothing.
        # So does one on a case FR holds but does not know it sent to DE.
        for report_id in (lost[0], later):
            status, _ = de.post(
                f"/api/v1/reports/{report_id}/actions",
                {"code": "content_removed", "reason": "removed by the host"},
            )
            assert status == 201
        wait_for(
            lambda: (
                len(cli_json(restored, "peers", "show", "de-eco")["actions_on_unknown_cases"]) == 2
            ),
            timeout=30,
        )
        waiting = cli_json(restored, "peers", "show", "de-eco")["actions_on_unknown_cases"]
        assert sorted((a["report_id"], a["code"]) for a in waiting) == sorted(
            [(lost[0], "content_removed"), (later, "content_removed")]
        )
        text = cli(restored, "peers", "show", "de-eco").stdout
        assert "case not held here" in text

        # A new version of a case the backup holds goes past the one DE saw, not under it.
        reassess(again, kept, "after the restore")
        wait_for(lambda: legal_basis(de, kept) == "after the restore", timeout=30)

        # New cases both ways, each arriving once.
        ours = again.submit_and_assess("http://de.example/after-restore")
        theirs = de.submit_and_assess("http://fr.example/from-de")
        wait_for(lambda: de.report(ours), timeout=30)
        wait_for(lambda: again.report(theirs), timeout=30)
        status, _ = de.post(
            f"/api/v1/reports/{ours}/actions", {"code": "notice_sent", "reason": "host told"}
        )
        assert status == 201
        wait_for(
            lambda: "notice_sent" in [a["code"] for a in again.report(ours)["actions"]],  # type: ignore[index]
            timeout=30,
        )
        time.sleep(3)  # let any duplicate or refusal show itself
        for node in (again, de):
            assert refused(node) == []
            assert rows(node, "SELECT COUNT(*) FROM peer_outbox WHERE state = 'pending'") == [(0,)]
        received = rows(
            de, f"SELECT code FROM actions WHERE report_id = '{ours}' AND code = 'received'"
        )
        assert len(received) == 1
        assert rows(de, "SELECT COUNT(*) FROM reports") == [(len(lost) + 4,)]
    finally:
        again.stop()
        fr.stop()
        de.stop()


def test_a_pulling_peer_beyond_the_restored_numbers_gets_what_is_new(
    tmp_path: Path, dns: ZoneDnsServer
) -> None:
    """DE pulls from FR (pull-only): after FR's restore, FR's outbox numbers restart below
    DE's cursor. DE's first pull says where it stands; FR's new records go after it."""
    fr = NodeProcess("fr-pdc", "FR", tmp_path / "fr", dns.nameserver)
    de = NodeProcess("de-eco", "DE", tmp_path / "de", dns.nameserver)
    fr.init()
    de.init(pull_from_peers=True)
    for node in (fr, de):
        node.start()
    restored = tmp_path / "fr-restored"
    again = NodeProcess("fr-pdc", "FR", restored, dns.nameserver, port=fr.port)
    try:
        fr.add_peer(de, "--pull-only")
        de.add_peer(fr)
        first = fr.submit_and_assess("http://de.example/pulled/before")
        wait_for(lambda: de.report(first), timeout=30)
        archive = tmp_path / "fr.tar.gz"
        cli(fr.root, "backup", "--output", str(archive))
        lost = [fr.submit_and_assess(f"http://de.example/pulled/after/{n}") for n in range(3)]
        wait_for(lambda: all(de.report(i) for i in lost), timeout=30)
        time.sleep(2)  # DE's next pull acknowledges them
        fr.stop()
        de.stop()

        restore_and_start(again, archive, fr)
        # Queued before DE's first pull: numbered again, then moved past DE's cursor.
        new = [again.submit_and_assess("http://de.example/pulled/new/0")]
        de.start()
        events = wait_for(
            lambda: rows(
                again, "SELECT details FROM audit_log WHERE event = 'federation.rejoined'"
            ),
            timeout=30,
        )
        assert len(events) == 1
        assert '"renumbered":' in str(events[0][0])
        assert '"renumbered":0' not in str(events[0][0])
        # Queued after it: numbered after DE's cursor.
        new.append(again.submit_and_assess("http://de.example/pulled/new/1"))
        wait_for(lambda: all(de.report(i) for i in new), timeout=30)
        time.sleep(3)
        for node in (again, de):
            assert refused(node) == []
        assert rows(de, "SELECT COUNT(*) FROM reports") == [(1 + len(lost) + len(new),)]
        for report_id in new:
            received = rows(
                de,
                f"SELECT id FROM actions WHERE report_id = '{report_id}' AND code = 'received'",
            )
            assert len(received) == 1
    finally:
        again.stop()
        fr.stop()
        de.stop()


def test_a_restored_puller_gets_again_what_its_peer_had_delivered(
    tmp_path: Path, dns: ZoneDnsServer
) -> None:
    """DE pulls from FR and is restored from a backup older than a case FR delivered to it:
    DE's cursor goes back with the backup, and FR serves the case again."""
    fr = NodeProcess("fr-pdc", "FR", tmp_path / "fr", dns.nameserver)
    de = NodeProcess("de-eco", "DE", tmp_path / "de", dns.nameserver)
    fr.init()
    de.init(pull_from_peers=True)
    for node in (fr, de):
        node.start()
    again = NodeProcess("de-eco", "DE", tmp_path / "de-restored", dns.nameserver, port=de.port)
    try:
        fr.add_peer(de, "--pull-only")
        de.add_peer(fr)
        first = fr.submit_and_assess("http://de.example/puller/before")
        wait_for(lambda: de.report(first), timeout=30)
        archive = tmp_path / "de.tar.gz"
        cli(de.root, "backup", "--output", str(archive))
        lost = fr.submit_and_assess("http://de.example/puller/after")
        wait_for(lambda: de.report(lost), timeout=30)
        time.sleep(2)  # DE's next pull acknowledges it: FR holds it as delivered
        assert rows(fr, f"SELECT state FROM peer_outbox WHERE report_id = '{lost}'") == [("sent",)]
        de.stop()

        restore_and_start(again, archive, de)
        wait_for(lambda: again.report(lost), timeout=30)
        time.sleep(3)
        for node in (fr, again):
            assert refused(node) == []
        assert rows(again, "SELECT COUNT(*) FROM reports") == [(2,)]
        received = rows(
            fr, f"SELECT id FROM actions WHERE report_id = '{lost}' AND code = 'received'"
        )
        assert len(received) == 1
    finally:
        again.stop()
        fr.stop()
        de.stop()


def test_a_restored_receiver_takes_the_withdrawal_of_a_case_it_lost(
    tmp_path: Path, dns: ZoneDnsServer
) -> None:
    """DE is restored from a backup older than a case FR forwarded to it; FR then withdraws
    that case. DE takes the withdrawal (what it asks already holds there) and says so in its
    audit log; FR dead-letters nothing. A withdrawal of a case DE never had is still refused
    by a node never restored (tests/node/test_inbox*)."""
    fr = NodeProcess("fr-pdc", "FR", tmp_path / "fr", dns.nameserver)
    de = NodeProcess("de-eco", "DE", tmp_path / "de", dns.nameserver)
    for node in (fr, de):
        node.init()
        node.start()
    again = NodeProcess("de-eco", "DE", tmp_path / "de-restored", dns.nameserver, port=de.port)
    try:
        fr.add_peer(de)
        de.add_peer(fr)
        kept = fr.submit_and_assess("http://de.example/receiver/before")
        wait_for(lambda: de.report(kept), timeout=30)
        archive = tmp_path / "de.tar.gz"
        cli(de.root, "backup", "--output", str(archive))
        lost = fr.submit_and_assess("http://de.example/receiver/after")
        wait_for(lambda: de.report(lost), timeout=30)
        de.stop()

        restore_and_start(again, archive, de)
        assert again.report(lost) is None
        cli(fr.root, "reports", "withdraw", lost, "--reason", "sent by mistake")
        cli(fr.root, "reports", "withdraw", kept, "--reason", "a duplicate of another")
        wait_for(
            lambda: (again.report(kept) or {}).get("status") == "withdrawn",
            timeout=30,
        )
        wait_for(
            lambda: (
                rows(
                    again,
                    "SELECT subject, actor FROM audit_log WHERE event = 'report.withdrawn_unknown'",
                )
                == [(lost, "peer:fr-pdc")]
            ),
            timeout=30,
        )
        time.sleep(2)
        for node in (fr, again):
            assert refused(node) == []
            assert rows(node, "SELECT COUNT(*) FROM peer_outbox WHERE state = 'pending'") == [(0,)]
        assert again.report(lost) is None  # nothing made up from the withdrawal
        assert cli(again.root, "audit", "verify").returncode == 0
    finally:
        again.stop()
        fr.stop()
        de.stop()
