"""A full disk under the store, delivery and the channels (a tmpfs the test mounts and fills):
a typed error, a clean rollback, nothing dead-lettered or failed, and work going on afterwards."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from node.app import open_node
from node.clock import ManualClock, parse_iso
from node.errors import StorageFull
from node.store.db import Database, Tx
from node.store.disk import RESUME_MARGIN_BYTES, RETRY_SECONDS, DiskSpace
from tests.support import disk
from tests.support.cluster import REPO
from tests.support.dns_server import ZoneDnsServer
from tests.support.federation import befriend, live_node, node_dir
from tests.support.nodes import init_node
from tests.support.sinks import WebhookSink


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    try:
        with disk.small_disk(tmp_path / "small-disk", size_mb=16) as mount:
            yield mount
    except disk.CannotMount as exc:
        pytest.skip(str(exc))


@pytest.fixture
async def database(small_disk: Path) -> AsyncIterator[Database]:
    db = await Database.open(small_disk / "node.sqlite3")
    await db.run(lambda conn: conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
    try:
        yield db
    finally:
        await db.close()


def insert_rows(count: int) -> Callable[[Tx], None]:
    def insert_txn(conn: Tx) -> None:
        conn.executemany("INSERT INTO t (v) VALUES (?)", [("x" * 2000,)] * count)

    return insert_txn


async def rows(db: Database) -> int:
    row = await db.fetch_one("SELECT COUNT(*) FROM t")
    assert row is not None
    return int(row[0])


class Monotonic:
    """Seconds that pass when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_write_on_a_full_disk_is_storage_full_and_rolls_back_whole(
    database: Database, small_disk: Path
) -> None:
    await database.run(insert_rows(10))
    filler = disk.fill(small_disk)
    with pytest.raises(StorageFull) as raised:
        await database.run(insert_rows(200))
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
    assert raised.value.status == 507
    assert database.disk.full
    with pytest.raises(StorageFull):
        async with database.write() as conn:
            await conn.execute("INSERT INTO t (v) VALUES ('y')")
    # Rolled back whole, and the one writer is not left inside a transaction.
    assert await rows(database) == 10
    filler.unlink()
    await database.run(insert_rows(5))
    async with database.write() as conn:
        await conn.execute("INSERT INTO t (v) VALUES ('z')")
    assert await rows(database) == 16
    assert not database.disk.full
    check = await database.fetch_one("PRAGMA integrity_check")
    assert check is not None
    assert check[0] == "ok"


async def test_work_waits_until_space_returns_or_the_retry_delay_passes(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Monotonic()
    space = DiskSpace(small_disk, warn_free_bytes=8 * disk.MIB, monotonic=clock)
    assert not space.waiting()
    caplog.set_level(logging.WARNING, logger="hotline.storage")
    space.check()
    assert caplog.text == ""  # 16 MiB free: above the threshold
    filler = disk.fill(small_disk)
    clock.now += 2  # the cached measure is stale
    space.check()
    assert "warning below 8.0 MiB" in caplog.text
    space.found_full()
    space.found_full()  # said once per episode
    assert [r.levelname for r in caplog.records if "is full (" in r.getMessage()] == ["ERROR"]
    assert space.waiting()
    clock.now += RETRY_SECONDS  # one try is let through after the delay ...
    assert not space.waiting()
    space.found_full()  # ... and when it fails too, work waits again
    assert space.waiting()
    filler.unlink()
    clock.now += 2
    assert (space.free_bytes() or 0) >= RESUME_MARGIN_BYTES
    assert not space.waiting()  # space came back: no need to wait for the delay
    space.wrote()
    assert not space.full
    assert "takes writes again" in caplog.text
    space.check()
    assert "back above 8.0 MiB" in caplog.text


async def test_a_push_the_full_disk_cannot_record_goes_again_and_is_recorded_once(
    small_disk: Path, tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> None:
    fr_dir, fr_url = node_dir(small_disk, "fr-pdc", "FR", clock, dns_server.nameserver)
    de_dir, de_url = node_dir(tmp_path, "de-eco", "DE", clock, dns_server.nameserver)
    async with live_node(fr_dir, fr_url, clock) as fr, live_node(de_dir, de_url, clock) as de:
        await befriend(fr, de)
        cases = fr.node.cases
        submitted = await cases.submit("http://de.example/full", actor="a", category="csam")
        await fr.node.trace_pending()
        await cases.assess(
            submitted.report_id, verdict="baseline", category="csam", legal_basis=None, actor="a"
        )
        filler = disk.fill(small_disk)

        # DE takes the record, but FR cannot write that it did: the row stays pending, and
        # neither the record nor the peer is blamed (no dead letter, no backoff).
        first = await fr.node.delivery.push("de-eco", force=True)
        assert first.error == "our disk is full: waiting for space"
        assert await de.node.cases.show(submitted.report_id)
        outbox = await fr.node.db.fetch_all("SELECT state FROM peer_outbox")
        assert [row["state"] for row in outbox] == ["pending"]
        assert await fr.node.db.fetch_all("SELECT * FROM dead_letters") == []
        peer = await fr.node.registry.describe("de-eco")
        assert peer["backoff_attempts"] == 0
        # Until space returns, nothing more is sent.
        again = await fr.node.delivery.push("de-eco", force=True)
        assert again.skipped == "our disk is full: waiting for space"

        filler.unlink()
        resumed = await fr.node.delivery.push("de-eco", force=True)
        assert (resumed.sent, resumed.rejected, resumed.error) == (1, 0, None)
        outbox = await fr.node.db.fetch_all("SELECT state FROM peer_outbox")
        assert [row["state"] for row in outbox] == ["sent"]
        codes = [(a["code"], a["by"]) for a in (await cases.show(submitted.report_id))["actions"]]
        assert codes.count(("forwarded", "fr-pdc")) == 1
        assert codes.count(("received", "de-eco")) == 1
        copies = await de.node.db.fetch_one("SELECT COUNT(*) FROM reports")
        assert copies is not None
        assert copies[0] == 1
        assert await de.node.db.fetch_all("SELECT * FROM dead_letters") == []


async def test_a_channel_message_waits_for_space_and_is_neither_failed_nor_dead(
    small_disk: Path,
    clock: ManualClock,
    dns_server: ZoneDnsServer,
    webhook: WebhookSink,
) -> None:
    data_dir = init_node(
        small_disk / "fr",
        clock=clock,
        extra={
            "jurisdiction": {"dns_server": dns_server.nameserver, "dns_timeout_seconds": 1.0},
            # Every role served (the host notice gathers for its window): nothing else to
            # write in the sweep before the police referral goes.
            "channels": {
                "pharos": {
                    "kind": "webhook",
                    "roles": ["law_enforcement", "host_notice", "fallback", "cdn_notice"],
                    "url": webhook.url,
                }
            },
        },
    )
    async with open_node(data_dir, clock) as node:
        await node.dispatcher.run_once()  # the first sweep's housekeeping, while there is room
        submitted = await node.cases.submit("http://fr.example/a.jpg", actor="a", category="hate")
        await node.trace_pending()
        await node.cases.assess(
            submitted.report_id, verdict="national", category="hate", legal_basis=None, actor="a"
        )
        filler = disk.fill(small_disk)
        # Sent, but the full disk cannot record it: the sweep stops, the message stays pending.
        with pytest.raises(StorageFull):
            await node.dispatcher.run_once()
        assert len(webhook.received) == 1
        state = "SELECT state, attempts FROM channel_outbox WHERE role = 'law_enforcement'"
        assert [tuple(r) for r in await node.db.fetch_all(state)] == [("pending", 0)]
        # While the disk is full no more is sent: it could not be recorded either.
        assert (await node.dispatcher.run_once()).delivered == 0
        assert len(webhook.received) == 1

        filler.unlink()
        assert (await node.dispatcher.run_once()).delivered == 1
        assert [tuple(r) for r in await node.db.fetch_all(state)] == [("delivered", 1)]
        # The one message in flight as the disk filled went twice, with the same reference.
        assert len(webhook.received) == 2
        sent = [orjson.loads(body) for _, body in webhook.received]
        assert [[c["report_id"] for c in body["cases"]] for body in sent] == [
            [submitted.report_id]
        ] * 2
        codes = [a["code"] for a in (await node.cases.show(submitted.report_id))["actions"]]
        assert codes.count("lea_referred") == 1


async def test_a_peer_refused_for_a_full_disk_retries_within_its_retry_after(
    small_disk: Path, tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> None:
    fr_dir, fr_url = node_dir(small_disk, "fr-pdc", "FR", clock, dns_server.nameserver)
    de_dir, de_url = node_dir(tmp_path, "de-eco", "DE", clock, dns_server.nameserver)
    async with live_node(fr_dir, fr_url, clock) as fr, live_node(de_dir, de_url, clock) as de:
        await befriend(fr, de)
        cases = de.node.cases
        submitted = await cases.submit("http://fr.example/for-fr", actor="b", category="csam")
        await de.node.trace_pending()
        await cases.assess(
            submitted.report_id, verdict="baseline", category="csam", legal_basis=None, actor="b"
        )
        filler = disk.fill(small_disk)
        with pytest.raises(StorageFull):
            await fr.node.cases.submit("http://fr.example/refused", actor="a")

        # DE has been failing to reach FR for a long time: its backoff would be an hour.
        def long_outage_txn(conn: Tx) -> None:
            conn.execute("UPDATE peers SET backoff_attempts = 20 WHERE node_id = 'fr-pdc'")

        await de.node.db.run(long_outage_txn)
        pushed = await de.node.delivery.push("fr-pdc", force=True)
        assert pushed.error is not None
        assert "peer answered 507" in pushed.error
        peer = await de.node.registry.describe("fr-pdc")
        assert peer["backoff_attempts"] == 21
        # FR said when (Retry-After: 60): no later than that, whatever the attempts.
        waited = parse_iso(peer["backoff_until"]) - clock.now()
        assert timedelta(seconds=1) <= waited <= timedelta(seconds=60)
        assert await de.node.db.fetch_all("SELECT * FROM dead_letters") == []
        outbox = await de.node.db.fetch_all("SELECT state FROM peer_outbox")
        assert [row["state"] for row in outbox] == ["pending"]

        filler.unlink()
        clock.advance(timedelta(seconds=61))
        resumed = await de.node.delivery.push("fr-pdc")
        assert (resumed.sent, resumed.error) == (1, None)
        assert await fr.node.cases.show(submitted.report_id)


def test_a_node_that_starts_on_a_full_disk_says_so_in_one_line(
    small_disk: Path, clock: ManualClock
) -> None:
    data_dir = init_node(small_disk / "fr", clock=clock)

    def hotline(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "node", *args, "--data-dir", str(data_dir.root)],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
            check=False,
        )

    assert hotline("reports", "submit", "http://fr.example/kept").returncode == 0
    filler = disk.fill(small_disk)
    # Its -wal and -shm files cannot even be made: SQLite's "disk I/O error" is the full disk.
    for args in (("serve",), ("reports", "list"), ("reports", "submit", "http://fr.example/x")):
        result = hotline(*args)
        assert result.returncode == 1, result
        assert result.stderr.startswith("hotline-node: error: the node's disk is full"), result
        assert result.stderr.count("\n") == 1, result.stderr
    filler.unlink()
    listed = hotline("reports", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["url"] for r in json.loads(listed.stdout)["reports"]] == ["http://fr.example/kept"]
