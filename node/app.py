"""The composition root: builds every service of a node from its data directory, and runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from keys import NodeKeys, build_key_document, load_keys, sign_key_document
from node.api.context import ApiContext
from node.api.ratelimit import RateLimiter
from node.api.server import make_app
from node.cases import CaseService
from node.clock import Clock
from node.config import NodeConfig, load_config
from node.datadir import DataDir
from node.errors import ConfigError
from node.jurisdiction import JurisdictionError, Tracer, build_tracer
from node.store.db import Database
from node.tokens import TokenService

log = logging.getLogger("hotline.node")
TRACE_SWEEP_SECONDS = 10


@dataclass
class Node:
    """A running hotline node's services; built only by `open_node`."""

    config: NodeConfig
    data_dir: DataDir
    clock: Clock
    db: Database
    keys: NodeKeys
    session: aiohttp.ClientSession
    tracer: Tracer
    cases: CaseService
    tokens: TokenService
    _trace_wanted: asyncio.Event = field(default_factory=asyncio.Event)

    async def trace_url(self, url: str) -> dict[str, Any]:
        result = await self.tracer.trace(url)
        return result.to_dict()

    def key_document(self) -> bytes:
        document = build_key_document(
            self.keys,
            node_id=self.config.node_id,
            country=self.config.country,
            endpoint=self.config.endpoint,
            now=self.clock.now(),
        )
        return sign_key_document(document, self.keys)

    def request_trace(self) -> None:
        self._trace_wanted.set()

    async def trace_pending(self) -> int:
        return await self.cases.trace_pending(self.trace_url)

    def api_context(self) -> ApiContext:
        return ApiContext(
            node_id=self.config.node_id,
            cases=self.cases,
            tokens=self.tokens,
            trace=self.trace_url,
            public_limiter=RateLimiter(self.clock, self.config.intake.public_reports_per_minute),
            key_document=self.key_document,
            max_body_bytes=self.config.intake.max_body_bytes,
            schedule_trace=self.request_trace,
        )

    async def _trace_worker(self) -> None:
        """Traces run here, never inside a request: intake answers at once."""
        while True:
            await self._trace_wanted.wait()
            self._trace_wanted.clear()
            try:
                while await self.trace_pending():
                    pass
            except Exception:
                log.exception("trace worker failed; the sweep will retry")

    async def serve(self, stop: asyncio.Event | None = None) -> None:
        """Run the HTTP APIs and the scheduled jobs until `stop` is set or SIGTERM/SIGINT."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        runner = web.AppRunner(make_app(self.api_context()), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.config.listen_host, self.config.listen_port)
        await site.start()
        scheduler = AsyncIOScheduler(event_loop=loop)
        scheduler.add_job(
            self.request_trace,
            "interval",
            seconds=TRACE_SWEEP_SECONDS,
            id="trace-sweep",
            max_instances=1,
            coalesce=True,
        )
        scheduler.start()
        worker = asyncio.create_task(self._trace_worker(), name="trace-worker")
        self.request_trace()
        log.info("serving %s on %s", self.config.node_id, self.config.listen)
        try:
            await stop.wait()
        finally:
            log.info("shutting down")
            scheduler.shutdown(wait=False)
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            await runner.cleanup()
            for signum in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(signum)


@asynccontextmanager
async def open_node(data_dir: DataDir, clock: Clock) -> AsyncIterator[Node]:
    config = load_config(data_dir.root)
    keys = load_keys(data_dir.keys, data_dir.read_secret())
    db = await Database.open(data_dir.database)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        jurisdiction = config.jurisdiction
        try:
            tracer = build_tracer(
                clock=clock.now,
                session=session,
                dns_server=jurisdiction.dns_server,
                dns_timeout=jurisdiction.dns_timeout_seconds,
                geo_overrides=[f"{cidr}={cc}" for cidr, cc in jurisdiction.overrides.items()],
                geofeeds=[jurisdiction.geofeed] if jurisdiction.geofeed else [],
                country_mmdb=jurisdiction.mmdb_country,
                asn_mmdb=jurisdiction.mmdb_asn,
                cdn_asns=jurisdiction.cdn_asns,
                rdap_base=jurisdiction.rdap_base,
            )
        except JurisdictionError as exc:
            raise ConfigError(f"{data_dir.config}: [jurisdiction] {exc}") from exc
        node: Node | None = None
        cases = CaseService(db, clock, node_id=config.node_id, country=config.country)
        node = Node(
            config=config,
            data_dir=data_dir,
            clock=clock,
            db=db,
            keys=keys,
            session=session,
            tracer=tracer,
            cases=cases,
            tokens=TokenService(db, clock),
        )
        try:
            yield node
        finally:
            tracer.close()
    finally:
        await session.close()
        await db.close()
