"""The audit log: each state change is chained; an edit, deletion or re-link is found and named."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta

import orjson
import pytest

from node.app import open_node
from node.cli import main
from node.clock import ManualClock
from node.datadir import DataDir
from node.errors import InvalidInput
from node.store import audit
from node.store.audit import GENESIS, entry_hash
from node.store.db import Database


async def build_history(data_dir: DataDir, clock: ManualClock) -> str:
    """Tokens, intake, a duplicate, a trace, an assessment with routing, an override, an action."""
    async with open_node(data_dir, clock) as node:
        await node.tokens.create("analyst", "alice")
        clock.advance(timedelta(seconds=1))
        report = await node.cases.submit("http://de.example/a", actor="analyst:alice")
        await node.cases.submit("http://de.example/a", actor="public", source="public")
        clock.advance(timedelta(seconds=1))
        assert await node.trace_pending() == 1
        await node.cases.assess(
            report.report_id,
            verdict="baseline",
            category="csam",
            legal_basis=None,
            actor="analyst:alice",
        )
        await node.cases.override_jurisdiction(
            report.report_id, country="FR", reason="the hoster moved it", actor="analyst:alice"
        )
        await node.cases.record_action(
            report.report_id, code="content_removed", reason=None, actor="analyst:alice"
        )
        return report.report_id


def entries(data_dir: DataDir) -> list[tuple[int, str, str, str]]:
    with sqlite3.connect(data_dir.database) as conn:
        rows = conn.execute("SELECT seq, actor, event, subject FROM audit_log ORDER BY seq")
        result = [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]
    conn.close()
    return result


def tamper(data_dir: DataDir, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Edit the database file directly, as someone with access to the disk would."""
    with sqlite3.connect(data_dir.database) as conn:
        for sql, params in statements:
            conn.execute(sql, params)
    conn.close()


async def verify(data_dir: DataDir, batch: int = 5000) -> audit.AuditVerification:
    db = await Database.open(data_dir.database)
    try:
        return await audit.verify(db, batch=batch)
    finally:
        await db.close()


async def test_every_state_change_appends_an_entry(data_dir: DataDir, clock: ManualClock) -> None:
    report_id = await build_history(data_dir, clock)
    logged = entries(data_dir)
    assert [seq for seq, *_ in logged] == list(range(1, len(logged) + 1))
    assert [(actor, event) for _, actor, event, _ in logged] == [
        ("cli", "token.created"),
        ("analyst:alice", "report.submitted"),
        ("public", "report.duplicate"),
        ("jurisdiction", "report.traced"),
        ("analyst:alice", "report.assessed"),
        ("analyst:alice", "report.routed"),
        ("analyst:alice", "jurisdiction.override"),
        ("analyst:alice", "report.routed"),
        ("analyst:alice", "action.recorded"),
    ]
    assert all(subject == report_id for *_, subject in logged[1:])
    result = await verify(data_dir)
    assert result.ok
    assert result.entries == len(logged)
    assert result.problem is None


async def test_entries_record_what_was_decided(data_dir: DataDir, clock: ManualClock) -> None:
    await build_history(data_dir, clock)
    with sqlite3.connect(data_dir.database) as conn:
        rows = conn.execute("SELECT event, details, at FROM audit_log ORDER BY seq").fetchall()
    conn.close()
    details = {event: orjson.loads(text) for event, text, _ in rows}
    assert details["report.assessed"] == {"verdict": "baseline", "category": "csam"}
    assert details["jurisdiction.override"] == {"country": "FR", "reason": "the hoster moved it"}
    assert details["action.recorded"]["code"] == "content_removed"
    assert details["report.traced"]["countries"] == ["DE"]
    # The last routing (after the override) went to the domestic channels.
    assert details["report.routed"]["decision"] == "domestic"
    assert [at for *_, at in rows][:3] == [
        "2026-11-29T09:00:00Z",
        "2026-11-29T09:00:01Z",
        "2026-11-29T09:00:01Z",
    ]


async def test_refused_changes_append_nothing(data_dir: DataDir, clock: ManualClock) -> None:
    async with open_node(data_dir, clock) as node:
        report = await node.cases.submit("http://de.example/ok", actor="t")
        before = (await audit.verify(node.db)).entries
        refused = [
            node.cases.submit("ftp://de.example/a", actor="t"),
            node.cases.assess(
                report.report_id, verdict="guilty", category="csam", legal_basis=None, actor="t"
            ),
            node.cases.record_action(report.report_id, code="deleted", reason=None, actor="t"),
            node.cases.override_jurisdiction(
                report.report_id, country="XXX", reason="r", actor="t"
            ),
            node.tokens.create("admin", "root"),
        ]
        for attempt in refused:
            with pytest.raises(InvalidInput, match="must"):
                await attempt
        after = await audit.verify(node.db)
        assert after.ok
        assert after.entries == before


# tampering -----------------------------------------------------------------------------------
async def test_altered_details_are_found(data_dir: DataDir, clock: ManualClock) -> None:
    await build_history(data_dir, clock)
    tamper(
        data_dir,
        (
            "UPDATE audit_log SET details = ? WHERE seq = 5",
            ('{"category":"csam","verdict":"not_illegal"}',),
        ),
    )
    result = await verify(data_dir)
    assert not result.ok
    assert result.first_broken == 5
    assert result.entries == 4  # the entries before it are intact
    assert result.problem == "entry 5 was altered (hash mismatch)"


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("at", "2026-11-29T08:00:00Z"),
        ("actor", "analyst:mallory"),
        ("event", "report.withdrawn"),
        ("subject", "someone-else"),
        ("hash", "f" * 64),
    ],
)
async def test_any_altered_column_is_found(
    data_dir: DataDir, clock: ManualClock, column: str, value: str
) -> None:
    await build_history(data_dir, clock)
    tamper(data_dir, (f"UPDATE audit_log SET {column} = ? WHERE seq = 3", (value,)))
    result = await verify(data_dir)
    assert result.first_broken == 3
    assert result.problem is not None
    assert "entry 3" in result.problem


async def test_a_deleted_middle_entry_is_found(data_dir: DataDir, clock: ManualClock) -> None:
    await build_history(data_dir, clock)
    tamper(data_dir, ("DELETE FROM audit_log WHERE seq = 4", ()))
    result = await verify(data_dir)
    assert result.first_broken == 4
    assert result.problem == "entry 4 is missing"
    # Across a batch boundary too.
    result = await verify(data_dir, batch=2)
    assert result.first_broken == 4
    assert result.entries == 3


async def test_relinking_around_a_deleted_entry_is_found(
    data_dir: DataDir, clock: ManualClock
) -> None:
    """Entry 4 removed, entry 5 renumbered to 4 and linked to entry 3: the link is right, but
    the hash, which covers the sequence number, no longer is."""
    await build_history(data_dir, clock)
    with sqlite3.connect(data_dir.database) as conn:
        hash3 = conn.execute("SELECT hash FROM audit_log WHERE seq = 3").fetchone()[0]
    conn.close()
    tamper(
        data_dir,
        ("DELETE FROM audit_log WHERE seq = 4", ()),
        ("UPDATE audit_log SET seq = 4, prev_hash = ? WHERE seq = 5", (hash3,)),
    )
    result = await verify(data_dir)
    assert result.first_broken == 4
    assert result.problem == "entry 4 was altered (hash mismatch)"


async def test_a_broken_link_is_found(data_dir: DataDir, clock: ManualClock) -> None:
    """An entry whose own hash is consistent but whose prev_hash points elsewhere."""
    await build_history(data_dir, clock)
    with sqlite3.connect(data_dir.database) as conn:
        row = conn.execute(
            "SELECT seq, at, actor, event, subject, details FROM audit_log WHERE seq = 6"
        ).fetchone()
    conn.close()
    forged_prev = GENESIS
    forged_hash = entry_hash(forged_prev, *row)
    tamper(
        data_dir,
        (
            "UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = 6",
            (forged_prev, forged_hash),
        ),
    )
    result = await verify(data_dir)
    assert result.first_broken == 6
    assert result.problem == "entry 6 does not link to entry 5"


async def test_audit_verify_command_names_the_broken_entry(
    data_dir: DataDir, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    await build_history(data_dir, clock)
    root = str(data_dir.root)
    capsys.readouterr()
    # `main` runs its own event loop: call it from a worker thread of this test's loop.
    assert await run_cli("audit", "verify", "--data-dir", root) == 0
    assert "audit log intact: 9 entries verified" in capsys.readouterr().out

    tamper(data_dir, ("UPDATE audit_log SET details = '{}' WHERE seq = 7", ()))
    code = await run_cli("audit", "verify", "--data-dir", root)
    out, err = capsys.readouterr()
    assert code != 0
    assert "entry 7" in out + err
    assert "Traceback" not in out + err
    code = await run_cli("audit", "verify", "--data-dir", root, "--json")
    report = orjson.loads(capsys.readouterr().out)
    assert code != 0
    assert report == {
        "ok": False,
        "entries": 6,
        "first_broken": 7,
        "problem": "entry 7 was altered (hash mismatch)",
    }


async def run_cli(*args: str) -> int:
    return await asyncio.to_thread(main, list(args))


def test_entry_hash_covers_every_field() -> None:
    base = (GENESIS, 1, "2026-11-29T09:00:00Z", "cli", "e", "s", "{}")
    digest = entry_hash(*base)
    for index in range(len(base)):
        changed = list(base)
        changed[index] = "0" * 63 + "1" if index == 0 else (2 if index == 1 else "x")
        assert entry_hash(*changed) != digest, index  # type: ignore[arg-type]
