"""A backup taken while a real node accepts reports without pause, restored and served again."""

from __future__ import annotations

import shutil
import sqlite3
import stat
import threading
from pathlib import Path

from tests.support.cluster import NodeProcess, cli, cli_json, wait_for
from tests.support.dns_server import ZoneDnsServer


class Pouring:
    """Reports submitted and assessed one after the other, from a thread, until stopped."""

    def __init__(self, node: NodeProcess) -> None:
        self.node = node
        self.accepted: list[str] = []
        self.assessed: list[str] = []
        self.refused: list[tuple[int, object]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Pouring:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            status, body = self.node.post(
                "/api/v1/reports", {"url": f"http://fr.example/pour/{n}", "category": "hate"}
            )
            if status != 201:
                self.refused.append((status, body))
                continue
            self.accepted.append(body["id"])
            status, body = self.node.post(
                f"/api/v1/reports/{body['id']}/assessment",
                {"verdict": "national", "category": "hate", "legal_basis": "Art. 24 loi 1881"},
            )
            if status != 200:
                self.refused.append((status, body))
                continue
            self.assessed.append(self.accepted[-1])
            n += 1


def modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


def test_a_backup_taken_while_serving_restores_a_consistent_node(
    tmp_path: Path, dns: ZoneDnsServer
) -> None:
    fr = NodeProcess("fr-pdc", "FR", tmp_path / "fr", dns.nameserver)
    fr.init()
    fr.start()
    pouring = Pouring(fr).start()
    archive = tmp_path / "backups" / "fr-pdc.tar.gz"
    archive.parent.mkdir()
    try:
        wait_for(lambda: len(pouring.assessed) >= 30, timeout=60)
        before = set(pouring.assessed)
        taken = cli(fr.root, "backup", "--output", str(archive), "--json")
        during = set(pouring.accepted)
        # It kept taking reports after the backup as well.
        wait_for(lambda: len(pouring.accepted) >= len(during) + 10, timeout=60)
    finally:
        pouring.stop()
        fr.stop()
    assert pouring.refused == []
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert taken.stderr == ""  # no terminal: no progress bar

    # Listed: names and sizes, who, when, what the database holds, and the checksums.
    listed = cli_json(tmp_path, "backup", "--list", str(archive))
    assert listed["node_id"] == "fr-pdc"
    assert listed["checksums"] == "ok"
    names = [m["name"] for m in listed["members"]]
    assert names[0] == "node.toml"
    assert names[-1] == "node.sqlite3"
    assert "keys/identity.pem" in names
    assert "keys/keys.json" in names
    assert not any("secret" in name for name in names)
    facts = listed["database"]
    assert facts["integrity"] == "ok"
    assert len(before) <= facts["cases"] <= len(during)
    text = cli(tmp_path, "backup", "--list", str(archive)).stdout
    assert f"{facts['cases']} cases" in text
    assert "every member matches its checksum" in text
    assert "node.sqlite3" in text

    # Restored into an empty directory: modes as the node expects; then the key secret back.
    restored = tmp_path / "restored"
    result = cli(restored, "restore", str(archive))
    assert "put this node's key secret back" in result.stdout
    assert "hotline-node serve --data-dir" in result.stdout
    found = modes(restored)
    assert found["."] == 0o700
    assert found["keys"] == 0o700
    assert all(mode == 0o600 for name, mode in found.items() if (restored / name).is_file())
    shutil.copy2(fr.root / "key-secret", restored / "key-secret")

    # Every case in it is whole: its intake, and its assessment with its routing if it had one.
    with sqlite3.connect(restored / "node.sqlite3") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = {r[0] for r in conn.execute("SELECT id FROM reports")}
        submitted = {
            r[0]
            for r in conn.execute("SELECT subject FROM audit_log WHERE event = 'report.submitted'")
        }
        assessed = {r[0] for r in conn.execute("SELECT id FROM reports WHERE verdict IS NOT NULL")}
        assessed_logged = {
            r[0]
            for r in conn.execute("SELECT subject FROM audit_log WHERE event = 'report.assessed'")
        }
        routed = {r[0] for r in conn.execute("SELECT DISTINCT report_id FROM routing_decisions")}
    conn.close()
    assert before <= ids <= during
    assert submitted == ids
    assert assessed == assessed_logged
    assert assessed <= routed
    assert len(ids) == facts["cases"]

    # And it serves: the same node, its audit chain whole, its cases readable.
    shutil.rmtree(fr.root)
    again = NodeProcess("fr-pdc", "FR", restored, dns.nameserver, port=fr.port)
    again.analyst, again.fingerprint = fr.analyst, fr.fingerprint
    again.start()
    try:
        assert cli(restored, "audit", "verify").returncode == 0
        assert cli_json(restored, "keys", "show")["fingerprint"] == fr.fingerprint
        listed_cases = cli_json(restored, "reports", "list", "--limit", "1000")["reports"]
        assert {row["id"] for row in listed_cases} == ids
        for report_id in sorted(ids)[:5]:
            case = again.report(report_id)
            assert case is not None
            assert case["url"].startswith("http://fr.example/pour/")
        status, _ = again.post("/api/v1/reports", {"url": "http://fr.example/after-restore"})
        assert status == 201
    finally:
        again.stop()
