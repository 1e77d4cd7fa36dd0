"""Backup and restore as the operator guide says: the stopped node's data dir, modes kept."""

from __future__ import annotations

import shutil
import stat
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from node.app import Node, open_node
from node.clock import ManualClock
from node.datadir import DataDir
from node.store import audit
from tests.support.dns_server import ZoneDnsServer
from tests.support.federation import befriend, live_node, node_dir

pytestmark = pytest.mark.skipif(shutil.which("tar") is None, reason="needs tar")


async def snapshot(node: Node) -> dict[str, Any]:
    """Everything a restore must bring back: cases, peers, keys, tokens, the audit chain."""
    rows = await node.cases.list_cases(limit=1000)
    verified = await audit.verify(node.db)
    last = await node.db.fetch_one("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    keys = node.keyring.current
    return {
        "cases": [await node.cases.show(row["id"]) for row in rows],
        "peers": [await node.registry.describe(row.node_id) for row in await node.registry.all()],
        "outbox": [
            dict(row)
            for row in await node.db.fetch_all(
                "SELECT peer_id, seq, record_type, record_id, state FROM peer_outbox"
                " ORDER BY peer_id, seq"
            )
        ],
        "fingerprint": keys.fingerprint,
        "kids": sorted([k.kid for k in keys.signing] + [k.kid for k in keys.encryption]),
        "revoked": sorted(keys.revoked),
        # Ed25519 signatures are deterministic: the same keys at the same time, the same bytes.
        "key_document": node.key_document(),
        "audit": (verified.ok, verified.entries, tuple(last) if last else None),
    }


def modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


def backup_and_restore(source: Path, archive: Path, target_parent: Path) -> Path:
    """The guide's commands: `tar --preserve-permissions -czf`, then unpack elsewhere."""
    subprocess.run(
        [
            "tar",
            "--preserve-permissions",
            "-czf",
            str(archive),
            "-C",
            str(source.parent),
            source.name,
        ],
        check=True,
    )
    target_parent.mkdir()
    subprocess.run(
        ["tar", "--preserve-permissions", "-xzf", str(archive), "-C", str(target_parent)],
        check=True,
    )
    return target_parent / source.name


async def test_a_restored_copy_is_the_same_node(
    tmp_path: Path,
    clock: ManualClock,
    dns_server: ZoneDnsServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The key secret sits in the data directory, as `init` leaves it.
    monkeypatch.delenv("HOTLINE_NODE_KEY_SECRET_FILE", raising=False)
    fr_dir, fr_url = node_dir(tmp_path / "live", "fr-pdc", "FR", clock, dns_server.nameserver)
    de_dir, de_url = node_dir(tmp_path / "live", "de-eco", "DE", clock, dns_server.nameserver)
    async with live_node(fr_dir, fr_url, clock) as fr, live_node(de_dir, de_url, clock) as de:
        await befriend(fr, de)
        token = await fr.node.tokens.create("analyst", "restored")
        cases = fr.node.cases
        forwarded = await cases.submit("http://de.example/kept", actor="a", category="csam")
        domestic = await cases.submit("http://fr.example/kept", actor="a", category="hate")
        await cases.submit(
            "http://us.example/p", actor="public", source="public", description="a reporter"
        )
        await fr.node.trace_pending()
        clock.advance(timedelta(hours=1))
        for submitted in (forwarded, domestic):
            await cases.assess(
                submitted.report_id,
                verdict="baseline",
                category="csam",
                legal_basis=None,
                actor="a",
            )
        await fr.settle()
        await cases.record_action(
            domestic.report_id, code="content_removed", reason=None, actor="a"
        )
        before = await snapshot(fr.node)
    assert before["audit"][0] is True
    assert len(before["cases"]) == 3
    assert [p["node_id"] for p in before["peers"]] == ["de-eco"]

    restored_root = backup_and_restore(
        fr_dir.root, tmp_path / "hotline-backup.tgz", tmp_path / "restored"
    )
    restored = DataDir(restored_root)
    assert modes(restored_root) == modes(fr_dir.root)
    assert modes(restored_root)["."] == 0o700
    assert modes(restored_root)["key-secret"] == 0o600
    assert modes(restored_root)["node.sqlite3"] == 0o600
    assert all(
        mode == 0o600
        for name, mode in modes(restored_root).items()
        if name.startswith("keys/") and (restored_root / name).is_file()
    )

    async with open_node(restored, clock) as node:
        after = await snapshot(node)
        assert (await node.tokens.authenticate(f"Bearer {token}")).name == "restored"
    assert after == before

    # The copy is this hotline's node: the peer's sealed records open with the restored keys,
    # and the peer accepts the restored node's signatures.
    shutil.rmtree(fr_dir.root)
    async with (
        live_node(restored, fr_url, clock) as fr_again,
        live_node(de_dir, de_url, clock) as de,
    ):
        clock.advance(timedelta(days=1))
        await de.node.cases.record_action(
            forwarded.report_id, code="content_removed", reason="gone", actor="analyst:bea"
        )
        await de.settle()
        case = await fr_again.node.cases.show(forwarded.report_id)
        assert ("content_removed", "de-eco") in [(a["code"], a["by"]) for a in case["actions"]]
        assert case["status"] == "closed"
        assert (await audit.verify(fr_again.node.db)).ok
