"""Scheduled jobs: trace, deliver, pull, refresh peer keys, rotate ours, prune, purge."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any

from node.cases import CaseService
from node.channels.dispatcher import Dispatcher
from node.clock import Clock, iso
from node.config import NodeConfig
from node.errors import StorageFull, is_disk_full
from node.federation.admin import PeerAdmin
from node.federation.delivery import Delivery
from node.federation.directory import DirectoryService
from node.keyring import KeyRing
from node.store import audit, inbound, submissions
from node.store.db import Database, Tx
from node.store.reports import ReportStore
from protocol.envelope import DEFAULT_MAX_AGE, DEFAULT_MAX_SKEW
from protocol.httpsig import DEFAULT_WINDOW

log = logging.getLogger("hotline.jobs")
INBOUND_TRANSACTIONS_KEPT = timedelta(days=7)


QUEUE_CHECK_SECONDS = 1


@dataclass
class Jobs:
    config: NodeConfig
    clock: Clock
    db: Database
    cases: CaseService
    delivery: Delivery
    admin: PeerAdmin
    keyring: KeyRing
    dispatcher: Dispatcher
    directory: DirectoryService

    async def deliver(self) -> None:
        self.delivery.kick(await self.delivery.pending_peers())

    async def dispatch(self) -> None:
        await self.dispatcher.run_once()

    async def pull(self) -> int:
        total = 0
        for peer in await self.admin.registry.known():
            if peer.status != "active":
                continue
            try:
                total += (await self.delivery.pull(peer.node_id)).pulled
            except StorageFull:
                raise  # ours, not the peer's: the round stops, and the cursor has not moved
            except Exception:  # one peer's failure (or a bug it triggers) skips that peer only
                log.exception("pull from %s failed", peer.node_id)
        return total

    async def refresh_peer_keys(self) -> dict[str, str]:
        return await self.admin.refresh_keys()

    async def refresh_directory(self) -> None:
        """Fetch the member list again (when a directory is trusted); a refusal or a failed
        fetch is logged and recorded, and the list held stays in force."""
        await self.directory.refresh_if_trusted("scheduler")

    async def rotate_keys(self) -> bool:
        now = self.clock.now()
        if not self.keyring.due_for_rotation(now):
            return False
        keys = self.keyring.rotate(now)

        def rotate_keys_txn(conn: Tx) -> None:
            audit.append(
                conn,
                at=now,
                actor="scheduler",
                event="keys.rotated",
                subject=self.config.node_id,
                details={"signing": keys.current_signing(now).kid},
            )

        await self.db.run(rotate_keys_txn)
        log.info("rotated our keys")
        return True

    async def prune(self) -> dict[str, int]:
        """Replay caches only need to cover the windows in which messages are accepted."""
        now = self.clock.now()

        def prune_txn(conn: Tx) -> dict[str, int]:
            return inbound.prune_txn(
                conn,
                seen_before=iso(now - DEFAULT_MAX_AGE - DEFAULT_MAX_SKEW),
                nonces_before=iso(now - 2 * DEFAULT_WINDOW),
                answers_before=iso(now - INBOUND_TRANSACTIONS_KEPT),
            )

        return await self.db.run(prune_txn)

    async def purge(self) -> int:
        """Personal data past retention is erased; cases and statistics stay."""
        now = self.clock.now()
        horizon = now - timedelta(days=self.config.retention.personal_data_days)

        def purge_txn(conn: Tx) -> int:
            purged = ReportStore.purge_personal_data(conn, received_before=iso(horizon))
            # Each public submission is kept for the retention from when it was given: a later
            # reporter's words outlive the case's first ones by as long as they came later.
            words = submissions.purge_txn(conn, given_before=iso(horizon))
            if purged or words:
                audit.append(
                    conn,
                    at=now,
                    actor="scheduler",
                    event="retention.purged",
                    subject="reports",
                    details={"count": purged, "submissions": words, "before": iso(horizon)},
                )
            return purged + words

        purged = await self.db.run(purge_txn)
        if purged:
            await self.db.truncate_wal()
        return purged

    async def check_storage(self) -> None:
        """Measure the data directory's free space; warn while it is low (node/store/disk.py)."""
        self.db.disk.check()

    def unless_full(self, job: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
        """A job that skips its turn while the disk is full, and whose turn ending on a full
        disk is no error: the store said so once, and the job's work waits, untouched."""

        @wraps(job)
        async def run() -> None:
            if self.db.disk.waiting():
                log.debug("%s waits: the disk is full", job.__name__)
                return
            try:
                await job()
            except StorageFull:
                log.debug("%s stopped: the disk is full", job.__name__)
            except OSError as exc:
                if not is_disk_full(exc):
                    raise
                # A file beside the database (a key rotation's) could not be written.
                log.warning("%s stopped: the disk is full (%s)", job.__name__, exc)

        return run

    def install(self, scheduler: Any) -> None:
        federation = self.config.federation
        every = federation.sweep_seconds

        def add(func: Any, seconds: int, job_id: str) -> None:
            scheduler.add_job(
                self.unless_full(func),
                "interval",
                seconds=seconds,
                id=job_id,
                max_instances=1,
                coalesce=True,
            )

        self.db.disk.check()
        scheduler.add_job(
            self.check_storage,
            "interval",
            seconds=self.config.storage.check_seconds,
            id="check-storage",
            max_instances=1,
            coalesce=True,
        )

        # Records routed by another process (a `reports import` or `reports assess` on the
        # command line) are not announced to this one: look for pending outbox rows every
        # second (one indexed query), so they reach the peer within a second or two too.
        add(self.deliver, QUEUE_CHECK_SECONDS, "deliver")
        add(self.dispatch, every, "channels")
        add(self.dispatcher.schedule_reminders, 900, "reminders")
        if federation.pull_from_peers:
            add(self.pull, every, "pull")
        add(self.refresh_peer_keys, federation.key_refresh_hours * 3600, "refresh-peer-keys")
        add(self.refresh_directory, self.config.directory.refresh_minutes * 60, "directory")
        add(self.rotate_keys, 3600, "rotate-keys")
        add(self.prune, 600, "prune")
        add(self.purge, 6 * 3600, "purge")
