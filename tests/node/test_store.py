"""The SQLite store: restarts, migrations, WAL, file modes, atomic writes, index use."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import sqlite3
import stat
import threading
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from node.app import open_node
from node.cases import CaseService
from node.cases.actionlog import ActionLog
from node.clock import ManualClock, iso
from node.datadir import DataDir
from node.errors import StoreError
from node.hashes.service import KnownContent
from node.review import FourEyes
from node.store import audit, channel_outbox, submissions
from node.store.db import Database
from node.store.migrations import MIGRATIONS
from node.store.reports import ReportStore
from tests.support.nodes import START, table_counts

URL = "http://fr.example/persist"


async def insert_token(conn: Any, token_id: str) -> None:
    """One row written with plain SQL (the store's own helpers are tested through the services)."""
    await conn.execute(
        "INSERT INTO tokens (id, role, name, token_hash, created_at) VALUES (?, ?, ?, ?, ?)",
        (token_id, "analyst", "alice", f"hash-{token_id}", iso(START)),
    )


async def insert_report(conn: Any, report_id: str) -> None:
    columns = report_row(report_id, f"http://fr.example/{report_id}")
    await conn.execute(
        f"INSERT INTO reports ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
        tuple(columns.values()),
    )


async def trace_writer(db: Database, callback: Callable[[str], object] | None) -> None:
    """Install SQLite's statement trace callback on the writer connection."""
    runner: Any = db

    def install(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(callback)

    if hasattr(runner, "run"):  # transactions run as functions in the writer's thread
        await runner.run(install)
    else:  # an aiosqlite writer connection
        async with db.write() as tx:
            writer: Any = tx
            await writer.set_trace_callback(callback)


# persistence ---------------------------------------------------------------------------------
async def test_cases_actions_routing_and_tokens_survive_a_restart(
    data_dir: DataDir, clock: ManualClock
) -> None:
    async with open_node(data_dir, clock) as node:
        token = await node.tokens.create("analyst", "alice")
        submitted = await node.cases.submit(URL, actor="analyst:alice", category="csam", note="n")
        await node.cases.submit(URL, actor="public", source="public")
        assert await node.trace_pending() == 1
        await node.cases.assess(
            submitted.report_id,
            verdict="baseline",
            category="csam",
            legal_basis="Art. 227-23",
            actor="analyst:alice",
        )
        action_id = await node.cases.record_action(
            submitted.report_id, code="notice_sent", reason="sent", actor="analyst:alice"
        )
        before = await node.cases.show(submitted.report_id)
        listed = await node.cases.list_cases()
        counts = await table_counts(node)
        chain = await audit.verify(node.db)

    async with open_node(data_dir, clock) as node:
        after = await node.cases.show(submitted.report_id)
        assert after == before
        assert after["duplicates"] == 1
        assert after["notes"] == "n"
        assert after["assessment"]["legal_basis"] == "Art. 227-23"
        assert after["hosting"]["countries"] == ["FR"]
        assert after["routing"]["decision"] == "domestic"
        assert {q["name"] for q in after["routing"]["queued"]} == {
            "host_notice",
            "law_enforcement",
        }
        assert [(a["id"], a["code"]) for a in after["actions"]] == [(action_id, "notice_sent")]
        assert await node.cases.list_cases() == listed
        assert await table_counts(node) == counts
        principal = await node.tokens.authenticate(f"Bearer {token}")
        assert (principal.role.value, principal.name) == ("analyst", "alice")
        reverified = await audit.verify(node.db)
        assert reverified.ok
        assert reverified.entries == chain.entries
        # Work goes on from the stored state: the duplicate counter, the audit chain.
        again = await node.cases.submit(URL, actor="analyst:alice")
        assert (again.report_id, again.duplicates) == (submitted.report_id, 2)
        assert (await audit.verify(node.db)).entries == chain.entries + 1


# migrations ----------------------------------------------------------------------------------
async def user_version(db: Database) -> int:
    row = await db.fetch_one("PRAGMA user_version")
    assert row is not None
    return int(row[0])


async def test_migrations_are_applied_once(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    db = await Database.open(path)
    try:
        assert await user_version(db) == len(MIGRATIONS)
        async with db.write() as conn:
            await insert_token(conn, "t1")
    finally:
        await db.close()
    # Opening again runs nothing (a second CREATE TABLE would fail) and keeps the data.
    db = await Database.open(path)
    try:
        assert await user_version(db) == len(MIGRATIONS)
        row = await db.fetch_one("SELECT COUNT(*) FROM tokens")
        assert row is not None
        assert row[0] == 1
    finally:
        await db.close()


async def test_evidence_frames_keep_their_bytes_and_order_when_rekeyed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Migration 5 keys inbox_envelopes by arrival instead of by digest.
    path = tmp_path / "node.sqlite3"
    with sqlite3.connect(path) as conn:
        for script in MIGRATIONS[:4]:
            conn.executescript(script)
        conn.execute("PRAGMA user_version = 4")
        conn.executemany(
            "INSERT INTO inbox_envelopes (digest, sender, msg_id, record_type, record_id,"
            " report_id, received_at, frame) VALUES (?, 'de-eco', ?, 'report', 'r', 'r', ?, ?)",
            [
                ("f" * 64, "m-1", "2026-01-01T00:00:00Z", b"first"),
                ("0" * 64, "m-2", "2026-01-02T00:00:00Z", b"second"),
            ],
        )
    conn.close()
    db = await Database.open(path)
    try:
        # The operator learns why this start takes longer than usual.
        assert "upgrading the database schema from version 4 to" in caplog.text
        rows = await db.fetch_all("SELECT digest, msg_id, frame FROM inbox_envelopes ORDER BY id")
        assert [(r["digest"], r["msg_id"], r["frame"]) for r in rows] == [
            ("f" * 64, "m-1", b"first"),
            ("0" * 64, "m-2", b"second"),
        ]
        indexes = await db.fetch_all("PRAGMA index_list(inbox_envelopes)")
        columns = {
            tuple(c["name"] for c in await db.fetch_all(f"PRAGMA index_info({i['name']})"))
            for i in indexes
        }
        assert columns == {("received_at",), ("report_id",)}  # no random digest index
    finally:
        await db.close()


async def test_an_older_database_is_migrated_forward_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(MIGRATIONS[0])
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO tokens (id, role, name, token_hash, created_at)"
            " VALUES ('t1', 'analyst', 'alice', 'h', '2026-01-01T00:00:00Z')"
        )
    conn.close()
    db = await Database.open(path)
    try:
        assert await user_version(db) == len(MIGRATIONS)
        row = await db.fetch_one("SELECT name FROM tokens WHERE id = 't1'")
        assert row is not None
        assert row["name"] == "alice"
    finally:
        await db.close()


async def test_queued_channel_rows_keep_everything_when_channel_becomes_role(
    tmp_path: Path,
) -> None:
    # Migration 10 renames channel_outbox.channel (it held a role) to role.
    path = tmp_path / "node.sqlite3"
    columns = (
        "id, channel, report_id, kind, payload, state, attempts, next_attempt_at, created_at,"
        " delivered_at, last_error, sent_via, notice_ref"
    )
    queued = [
        (1, "law_enforcement", "r1", "report", '{"report_id": "r1"}', "pending", 0,
         "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", None, None, None, None),
        (2, "host_notice", "r1", "report", '{"report_id": "r1"}', "dead", 5,
         "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", None, "550", "hosts", "N0000ABCD"),
        (3, "host_notice", "r2", "reminder", '{"report_id": "r2"}', "delivered", 1,
         "2026-01-02T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-02T00:01:00Z", None, "hosts",
         None),
    ]  # fmt: skip
    with sqlite3.connect(path) as conn:
        for script in MIGRATIONS[:9]:
            conn.executescript(script)
        conn.execute("PRAGMA user_version = 9")
        conn.executemany(
            f"INSERT INTO channel_outbox ({columns}) VALUES ({', '.join('?' * 13)})",
            queued,
        )
    conn.close()
    db = await Database.open(path)
    try:
        assert await user_version(db) == len(MIGRATIONS)
        rows = await db.fetch_all(
            f"SELECT {columns.replace('channel', 'role')} FROM channel_outbox ORDER BY id"
        )
        assert [tuple(row) for row in rows] == queued
        names = {row["name"] for row in await db.fetch_all("PRAGMA table_info(channel_outbox)")}
        assert "role" in names
        assert "channel" not in names
        # The index over the renamed column follows it, and the pending query still uses it.
        index = await db.fetch_all("PRAGMA index_info(channel_outbox_pending)")
        assert [row["name"] for row in index] == ["role", "state", "id"]
        lines = plan(
            path, "SELECT COUNT(*) FROM channel_outbox WHERE role = ? AND state = 'pending'", ("x",)
        )
        assert any("channel_outbox_pending" in line for line in lines), lines
        # What the dispatcher reads works on the upgraded rows.
        assert [row.id for row in await channel_outbox.due(db, "2026-01-01T00:00:00Z", 10)] == [1]
        assert await channel_outbox.pending_by_role(db) == {"law_enforcement": 1}
    finally:
        await db.close()


async def test_migration_12_makes_the_words_on_existing_cases_their_first_submission(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node.sqlite3"
    columns = "id, origin, local_ref, seq, url, url_key, source, status, tlp, received_at"
    with sqlite3.connect(path) as conn:
        for script in MIGRATIONS[:11]:
            conn.executescript(script)
        conn.execute("PRAGMA user_version = 11")
        for n, (description, contact) in enumerate(
            [("seen on a forum", "me@example.org"), (None, None), ("a video", None)]
        ):
            conn.execute(
                f"INSERT INTO reports ({columns}, updated_at, description, contact)"
                " VALUES (?, 'fr-pdc', ?, 1, ?, ?, 'public', 'new', 'amber', ?, ?, ?, ?)",
                (f"r{n}", f"ref{n}", f"http://x.example/{n}", f"http://x.example/{n}",
                 f"2026-01-0{n + 1}T00:00:00Z", f"2026-01-0{n + 1}T00:00:00Z", description,
                 contact),
            )  # fmt: skip
    conn.close()
    db = await Database.open(path)
    try:
        assert await user_version(db) == len(MIGRATIONS)
        assert await submissions.for_case(db, "r0") == [
            submissions.Submission(
                "2026-01-01T00:00:00Z", "seen on a forum", "me@example.org", None, "public"
            )
        ]
        assert await submissions.for_case(db, "r1") == []
        [given] = await submissions.for_case(db, "r2")
        assert (given.description, given.contact) == ("a video", None)
        # One copy of the personal data: the reports row no longer holds it.
        rows = await db.fetch_all("SELECT description, contact FROM reports")
        assert all(tuple(row) == (None, None) for row in rows)
    finally:
        await db.close()


async def test_a_database_newer_than_the_program_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    db = await Database.open(path)
    await db.close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    threads = threading.active_count()
    with pytest.raises(StoreError) as refused:
        await Database.open(path)
    message = str(refused.value)
    assert f"schema version {len(MIGRATIONS) + 1} is newer than this program" in message
    assert "upgrade hotline-node" in message
    # Nothing left open: an unclosed connection keeps a worker thread alive (and warns).
    gc.collect()
    await asyncio.sleep(0.05)
    assert threading.active_count() == threads
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1
    conn.close()


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    path.write_bytes(b"this is not SQLite " * 100)
    path.chmod(0o600)
    threads = threading.active_count()
    with pytest.raises(StoreError, match="cannot open database"):
        await Database.open(path)
    gc.collect()
    await asyncio.sleep(0.05)
    assert threading.active_count() == threads


# WAL and file modes --------------------------------------------------------------------------
async def test_wal_mode_and_private_files(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    old_umask = os.umask(0)  # whatever the umask, the files are the owner's only
    try:
        db = await Database.open(path)
        try:
            row = await db.fetch_one("PRAGMA journal_mode")
            assert row is not None
            assert row[0] == "wal"
            async with db.write() as conn:
                await insert_token(conn, "t1")
            for name in ("node.sqlite3", "node.sqlite3-wal", "node.sqlite3-shm"):
                assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
        finally:
            await db.close()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_a_read_sees_every_write_committed_before_it_while_other_reads_overlap(
    tmp_path: Path,
) -> None:
    """The one reader connection serves every request. A statement left open between two of
    its calls (executed, then fetched in a later one) kept a read transaction open, and the
    reads queued meanwhile shared its snapshot: under load, a case just created answered 404
    to the assessment that followed (seen in bench/soak.py, after a peer's outage)."""
    db = await Database.open(tmp_path / "node.sqlite3")
    stop = asyncio.Event()

    async def other_requests() -> None:
        while not stop.is_set():
            await db.fetch_all("SELECT id FROM tokens ORDER BY id DESC LIMIT 5")
            await db.fetch_one("SELECT COUNT(*) FROM tokens")

    def insert(token_id: str) -> Callable[[sqlite3.Connection], None]:
        def txn(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO tokens (id, role, name, token_hash, created_at)"
                " VALUES (?, 'analyst', 'alice', ?, ?)",
                (token_id, f"hash-{token_id}", iso(START)),
            )

        return txn

    readers = [asyncio.create_task(other_requests()) for _ in range(8)]
    try:
        unseen = []
        for n in range(200):
            token_id = f"t{n:04d}"
            await db.run(insert(token_id))  # committed: the API would answer 201 now
            if await db.fetch_one("SELECT id FROM tokens WHERE id = ?", (token_id,)) is None:
                unseen.append(token_id)
        assert unseen == []
    finally:
        stop.set()
        await asyncio.gather(*readers)
        await db.close()


# transactions --------------------------------------------------------------------------------
def report_row(report_id: str, url: str) -> dict[str, Any]:
    now = iso(START)
    return {
        "id": report_id,
        "origin": "fr-pointdecontact",
        "local_ref": f"ref-{report_id}",
        "seq": 1,
        "url": url,
        "url_key": url,
        "source": "analyst",
        "status": "new",
        "tlp": "amber",
        "received_at": now,
        "updated_at": now,
    }


async def test_a_failed_transaction_leaves_nothing_behind(
    data_dir: DataDir, clock: ManualClock
) -> None:
    async with open_node(data_dir, clock) as node:
        before = await table_counts(node)
        # A constraint fails after two writes went through in the same transaction.

        async def duplicate_key() -> None:
            async with node.db.write() as conn:
                await insert_report(conn, "r1")
                await insert_token(conn, "t1")
                await insert_report(conn, "r1")

        with pytest.raises(sqlite3.IntegrityError):
            await duplicate_key()
        assert await table_counts(node) == before

        # A Python error in the middle of the work.
        async def python_error() -> None:
            async with node.db.write() as conn:
                await insert_report(conn, "r2")
                raise RuntimeError("half way")

        with pytest.raises(RuntimeError, match="half way"):
            await python_error()
        assert await table_counts(node) == before

        # Cancelled while inside the transaction (a client that went away, a shutdown).
        inside = asyncio.Event()

        async def slow_write() -> None:
            async with node.db.write() as conn:
                await insert_report(conn, "r3")
                inside.set()
                await asyncio.sleep(60)

        task = asyncio.create_task(slow_write())
        await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await table_counts(node) == before
        # And the writer is usable afterwards.
        submitted = await node.cases.submit("http://fr.example/after", actor="t")
        await node.cases.record_trace(submitted.report_id, {"countries": [], "addresses": []})
        assert (await node.cases.show(submitted.report_id))["status"] == "new"
        assert (await audit.verify(node.db)).ok

        # A real service call failing at its last step (routing), after the assessment and its
        # audit entry were written: none of it stays.
        before = await table_counts(node)
        async with node.db.write() as conn:
            await conn.execute("ALTER TABLE routing_decisions RENAME TO routing_gone")
        try:
            with pytest.raises(sqlite3.OperationalError, match="routing_decisions"):
                await node.cases.assess(
                    submitted.report_id,
                    verdict="baseline",
                    category="csam",
                    legal_basis=None,
                    actor="t",
                )
        finally:
            async with node.db.write() as conn:
                await conn.execute("ALTER TABLE routing_gone RENAME TO routing_decisions")
        assert await table_counts(node) == before
        row = await node.db.fetch_one(
            "SELECT status, verdict FROM reports WHERE id = ?", (submitted.report_id,)
        )
        assert row is not None
        assert (row["status"], row["verdict"]) == ("new", None)


# query plans ---------------------------------------------------------------------------------
class RecordingDatabase(Database):
    """A real Database that also notes each read statement it runs, to explain it later."""

    reads: list[tuple[str, tuple[Any, ...]]]

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        self.reads.append((sql, tuple(params)))
        return await super().fetch_all(sql, params)

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        self.reads.append((sql, tuple(params)))
        return await super().fetch_one(sql, params)


SCANNED = re.compile(r"^SCAN (\w+)(?! USING (COVERING )?INDEX)")
CASE_TABLES = {
    "reports",
    "actions",
    "hosting_addresses",
    "routing_decisions",
    "peer_outbox",
    "channel_outbox",
}


def plan(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    conn.close()
    return [str(row[3]) for row in rows]


def full_scans(lines: list[str]) -> list[str]:
    return [line for line in lines if (m := SCANNED.match(line)) and m.group(1) in CASE_TABLES]


async def test_read_paths_use_indexes(tmp_path: Path, clock: ManualClock) -> None:
    path = tmp_path / "node.sqlite3"
    db = await RecordingDatabase.open(path)
    assert isinstance(db, RecordingDatabase)
    db.reads = []
    try:
        cases = _cases(db, clock)
        first = await cases.submit("http://fr.example/a", actor="t", category="csam")
        await cases.submit("http://fr.example/b", actor="t")
        await cases.record_trace(
            first.report_id,
            {
                "countries": ["FR"],
                "addresses": [{"ip": "5.39.0.1", "country": "FR", "basis": "registration"}],
            },
        )
        await cases.assess(
            first.report_id, verdict="baseline", category="csam", legal_basis=None, actor="t"
        )
        await cases.record_action(first.report_id, code="notice_sent", reason=None, actor="t")

        store = ReportStore(db)
        read_paths: dict[str, Callable[[], Awaitable[Any]]] = {
            "get": lambda: store.get(first.report_id),
            "list by status": lambda: store.list_cases(status="routed", limit=50, after=None),
            "actions by report": lambda: store.actions(first.report_id),
            "addresses": lambda: store.addresses(first.report_id),
            "latest routing": lambda: store.latest_routing(first.report_id),
            "queued": lambda: store.queued(first.report_id),
            "pending traces": lambda: store.pending_traces(50),
        }
        for name, read in read_paths.items():
            db.reads.clear()
            await read()
            assert db.reads, name
            for sql, params in db.reads:
                lines = plan(path, sql, params)
                assert any(line.startswith("SEARCH ") for line in lines), (name, lines)
                assert not full_scans(lines), (name, lines)

        # The whole unfiltered list walks an index in order (and stops at LIMIT).
        db.reads.clear()
        await store.list_cases(status=None, limit=50, after=None)
        [(sql, params)] = db.reads
        assert not full_scans(plan(path, sql, params))

        # The duplicate lookup (open_by_urls) runs on the writer inside the intake
        # transaction: trace it there, as a second report of a known URL looks its case up.
        executed: list[str] = []
        await trace_writer(db, executed.append)
        again = await cases.submit("http://fr.example/b", actor="t")
        await trace_writer(db, None)
        assert again.duplicate
        [statement] = [
            s for s in executed if s.lstrip().upper().startswith("SELECT") and "url_key" in s
        ]
        lines = plan(path, statement)
        assert lines[0].startswith("SEARCH reports USING INDEX reports_url_key"), lines
        assert not full_scans(lines)
    finally:
        await db.close()


async def test_case_service_writes_find_rows_by_index(tmp_path: Path, clock: ManualClock) -> None:
    """Every UPDATE/DELETE/SELECT the intake-to-action flow runs on the writer uses an index."""
    path = tmp_path / "node.sqlite3"
    db = await Database.open(path)
    executed: list[str] = []
    try:
        await trace_writer(db, executed.append)
        cases = _cases(db, clock)
        first = await cases.submit("http://fr.example/a", actor="t")
        await cases.submit("http://fr.example/a", actor="t")
        await cases.record_trace(first.report_id, {"countries": ["FR"], "addresses": []})
        await cases.assess(
            first.report_id, verdict="baseline", category="csam", legal_basis=None, actor="t"
        )
        await cases.override_jurisdiction(first.report_id, country="DE", reason="hoster", actor="t")
        await cases.record_action(first.report_id, code="content_removed", reason=None, actor="t")
        await trace_writer(db, None)
    finally:
        await db.close()
    checked = 0
    for statement in executed:
        if not re.match(r"\s*(SELECT|UPDATE|DELETE)\b", statement, re.IGNORECASE):
            continue
        if not any(table in statement for table in CASE_TABLES):
            continue
        assert not full_scans(plan(path, statement)), statement
        checked += 1
    assert checked >= 8


class _EveryRoleServed:
    """Channels as a node with no notice held and every role served."""

    def hold_hours(self, category: str | None) -> int | None:
        return None

    def role_served(self, role: str) -> bool:
        return True


def _cases(db: Database, clock: ManualClock) -> CaseService:
    return CaseService(
        db,
        clock,
        node_id="fr-pointdecontact",
        country="FR",
        actions=ActionLog("fr-pointdecontact", "FR"),
        notices=_EveryRoleServed(),
        wake=lambda peers: None,
        four_eyes=FourEyes(clock, categories=[]),
        hash_lists=KnownContent(db, clock, node_id="fr-pointdecontact", pdq_max_distance=31),
    )


async def test_reviews_tokens_and_accounts_of_before_four_eyes_by_person(tmp_path: Path) -> None:
    """Migration 11: a pending review gets an id and its analyst as a person (a token's name is
    none), old tokens belong to no one, and every account sets its own password next time."""
    path = tmp_path / "node.sqlite3"
    at = "2026-01-01T00:00:00Z"
    with sqlite3.connect(path) as conn:
        for script in MIGRATIONS[:12]:
            conn.executescript(script)
        conn.execute("PRAGMA user_version = 12")
        for n in (1, 2):
            conn.execute(
                "INSERT INTO reports (id, origin, local_ref, seq, url, url_key, source, status,"
                " tlp, received_at, updated_at, trace_status) VALUES (?, 'fr', ?, 1, ?, ?,"
                " 'analyst', 'new', 'amber', ?, ?, 'done')",
                (f"r{n}", f"ref{n}", f"http://x/{n}", f"http://x/{n}", at, at),
            )
        conn.executemany(
            "INSERT INTO reviews (report_id, verdict, category, legal_basis, analyst,"
            " requested_at) VALUES (?, 'baseline', 'csam', NULL, ?, ?)",
            [("r1", "Alice", at), ("r2", "analyst:rene", at)],
        )
        conn.execute(
            "INSERT INTO tokens (id, role, name, token_hash, created_at)"
            " VALUES ('t1', 'analyst', 'rene', 'h', ?)",
            (at,),
        )
        conn.execute(
            "INSERT INTO users (name, role, password_hash, created_at, password_set_at)"
            " VALUES ('alice', 'analyst', 'x', ?, ?)",
            (at, at),
        )
    conn.close()
    db = await Database.open(path)
    try:
        assert await user_version(db) == len(MIGRATIONS)
        rows = await db.fetch_all(
            "SELECT report_id, id, state, analyst_person FROM reviews ORDER BY report_id"
        )
        assert [(r["report_id"], r["state"], r["analyst_person"]) for r in rows] == [
            ("r1", "pending", "alice"),
            ("r2", "pending", None),
        ]
        assert all(len(r["id"]) == 16 for r in rows)
        token = await db.fetch_one("SELECT person FROM tokens WHERE id = 't1'")
        assert token is not None
        assert token["person"] is None
        user = await db.fetch_one("SELECT password_temporary FROM users WHERE name = 'alice'")
        assert user is not None
        assert user["password_temporary"] == 1
    finally:
        await db.close()
