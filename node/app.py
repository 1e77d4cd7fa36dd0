"""The composition root: builds every service of a node from its data directory, and runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from keys import build_key_document, load_keys, sign_key_document
from node.api.admin import AdminContext
from node.api.clients import networks
from node.api.context import ApiContext
from node.api.federation import FederationContext
from node.api.metrics import HTTP_METRICS, HttpMetrics
from node.api.ratelimit import RateLimiter
from node.api.server import make_app, make_runner
from node.cases import CaseService
from node.cases.actionlog import ActionLog
from node.channels.adapters import EmailChannel, WebhookChannel
from node.channels.base import Channel
from node.channels.dispatcher import Dispatcher
from node.channels.notices import NoticeParty, language_for
from node.clock import Clock
from node.config import NodeConfig, load_config
from node.console.app import make_console
from node.console.context import ConsoleContext
from node.control import CommandRunner, ControlServer, socket_path
from node.datadir import DataDir, loose_modes
from node.errors import ConfigError, StorageFull
from node.federation.admin import PeerAdmin
from node.federation.crypto_pool import CryptoPool
from node.federation.delivery import Delivery
from node.federation.directory import DirectoryService
from node.federation.directory_source import DirectorySource
from node.federation.inbound import InboundFederation
from node.federation.inbox import Inbox
from node.federation.peer_keys import PeerKeyRefresher
from node.federation.recovery import Recovery
from node.federation.registry import PeerRegistry
from node.federation.wakeups import PushRequests
from node.hashes.service import KnownContent
from node.hashes.sharing import HashSharing
from node.jobs import Jobs
from node.jurisdiction import JurisdictionError, Tracer, build_tracer
from node.keyring import KeyRing
from node.memory import RELEASE_SECONDS, FreedMemory
from node.review import FourEyes, ReviewService
from node.secretbox import SecretBox
from node.store import audit
from node.store.console import ConsoleStore
from node.store.db import Database
from node.store.disk import MIB, DiskSpace
from node.tokens import TokenService
from node.users import UserService
from peers.client import PeerClient, authority
from protocol import features

log = logging.getLogger("hotline.node")
TRACE_SWEEP_SECONDS = 10
CONFIG_CHECK_SECONDS = 1.0


def _stamp(path: Path) -> tuple[int, int] | None:
    """What tells that a file changed: its modification time and size."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


@dataclass
class Node:
    """A running hotline node's services; built only by `open_node`."""

    config: NodeConfig
    data_dir: DataDir
    clock: Clock
    db: Database
    keyring: KeyRing
    session: aiohttp.ClientSession
    tracer: Tracer
    cases: CaseService
    tokens: TokenService
    registry: PeerRegistry
    inbox: Inbox
    inbound: InboundFederation
    delivery: Delivery
    admin: PeerAdmin
    dispatcher: Dispatcher
    jobs: Jobs
    users: UserService
    reviews: ReviewService
    known: KnownContent
    hash_sharing: HashSharing
    recovery: Recovery
    directory: DirectoryService
    _trace_wanted: asyncio.Event = field(default_factory=asyncio.Event)
    _trace_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def trace_url(self, url: str) -> dict[str, Any]:
        result = await self.tracer.trace(url)
        return result.to_dict()

    def key_document(self) -> bytes:
        keys = self.keyring.current
        document = build_key_document(
            keys,
            node_id=self.config.node_id,
            country=self.config.country,
            endpoint=self.config.endpoint,
            now=self.clock.now(),
            # What we read beyond protocol v1: peers send it to us only once we announce it.
            accepts=features.ACCEPTED,
        )
        return sign_key_document(document, keys)

    def request_trace(self) -> None:
        self._trace_wanted.set()

    async def trace_pending(self) -> int:
        # One sweep at a time: the trace worker and a command run inside the server (reports
        # submit waits for its trace) would otherwise trace and route the same case twice.
        async with self._trace_lock:
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
            trusted_proxies=networks(self.config.intake.trusted_proxies),
            cors_origins=frozenset(self.config.intake.cors_origins),
            hotline_name=self.config.notices.notifier_name or self.config.node_id,
            retention_days=self.config.retention.personal_data_days,
            form_language=language_for(self.config.country),
            reviews=self.reviews,
        )

    def federation_context(self) -> FederationContext:
        return FederationContext(
            inbound=self.inbound,
            authority=authority(self.config.endpoint),
            path_prefix=urlsplit(self.config.endpoint).path.rstrip("/"),
        )

    def admin_context(self) -> AdminContext:
        return AdminContext(admin=self.admin, registry=self.registry, dispatcher=self.dispatcher)

    def console_context(self) -> ConsoleContext:
        from node import stats

        async def collect() -> dict[str, Any]:
            return await stats.collect(self.db, node_id=self.config.node_id)

        return ConsoleContext(
            config=self.config,
            clock=self.clock,
            db=self.db,
            users=self.users,
            cases=self.cases,
            reviews=self.reviews,
            reads=ConsoleStore(self.db),
            registry=self.registry,
            admin=self.admin,
            dispatcher=self.dispatcher,
            tokens=self.tokens,
            trusted_proxies=networks(self.config.intake.trusted_proxies),
            schedule_trace=self.request_trace,
            deliver_now=self.delivery.kick,
            stats=collect,
        )

    def make_app(self) -> web.Application:
        return make_app(
            self.api_context(),
            self.federation_context(),
            self.admin_context(),
            body_timeout=self.config.http.body_timeout_seconds,
            console=make_console(self.console_context()),
        )

    def make_public_app(self, counts: HttpMetrics | None = None) -> web.Application:
        """What `[http] public_listen` serves (see make_app's `public_only`); its requests are
        counted in `counts`, the main application's, so /metrics shows them."""
        return make_app(
            self.api_context(),
            self.federation_context(),
            body_timeout=self.config.http.body_timeout_seconds,
            public_only=True,
            http_metrics=counts,
        )

    async def _trace_worker(self) -> None:
        """Traces run here, never inside a request: intake answers at once."""
        while True:
            await self._trace_wanted.wait()
            self._trace_wanted.clear()
            if self.db.disk.waiting():
                continue  # the disk is full: the sweep after space returns traces them
            try:
                while await self.trace_pending():
                    pass
            except StorageFull:
                pass  # said once by the store; the cases wait, untraced, for the next sweep
            except Exception:
                log.exception("trace worker failed; the sweep will retry")

    async def _config_watcher(self) -> None:
        """Channels and notices edited in node.toml apply at once, without a restart."""
        seen = _stamp(self.data_dir.config)
        while True:
            await asyncio.sleep(CONFIG_CHECK_SECONDS)
            stamp = _stamp(self.data_dir.config)
            if stamp == seen:
                continue
            seen = stamp
            try:
                config = load_config(self.data_dir.root)
            except ConfigError as exc:
                log.warning("node.toml changed but is not valid; still running as before: %s", exc)
                continue
            self.dispatcher.reconfigure(
                config, _channels(config, self.session, self.keyring, self.clock)
            )
            log.warning("node.toml changed: channels and notices now as it says")
            rest = {"channels", "notices"}
            before = self.config.model_dump(exclude=rest)
            if config.model_dump(exclude=rest) != before:
                log.warning("node.toml changed beyond channels and notices: restart to apply")

    async def serve(
        self,
        stop: asyncio.Event | None = None,
        *,
        commands: CommandRunner | None = None,
        ready: Callable[[], None] | None = None,
    ) -> None:
        """Run the HTTP APIs and the scheduled jobs until `stop` is set or SIGTERM/SIGINT.

        `commands` runs the command line's commands sent over the control socket (none without
        it); `ready` is called once the port is bound, so "listening" is never said too early.
        """
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        app = self.make_app()
        runner = make_runner(app, self.config.http)
        await runner.setup()
        site = web.TCPSite(runner, self.config.listen_host, self.config.listen_port)
        public = self.config.http.public_address
        public_runner = (
            make_runner(self.make_public_app(app[HTTP_METRICS]), self.config.http)
            if public is not None
            else None
        )
        control = (
            ControlServer(socket_path(self.data_dir), commands) if commands is not None else None
        )
        try:
            await site.start()
            if public_runner is not None and public is not None:
                await public_runner.setup()
                await web.TCPSite(public_runner, public[0], public[1]).start()
            if control is not None:
                await control.start()
        except BaseException:
            if public_runner is not None:
                await public_runner.cleanup()
            await runner.cleanup()
            raise
        scheduler = AsyncIOScheduler(event_loop=loop)
        scheduler.add_job(
            self.request_trace,
            "interval",
            seconds=TRACE_SWEEP_SECONDS,
            id="trace-sweep",
            max_instances=1,
            coalesce=True,
        )
        # What bursts freed goes back to the system, so RSS follows the memory in use.
        freed = FreedMemory()
        if freed.available:
            scheduler.add_job(
                freed.release,
                "interval",
                seconds=RELEASE_SECONDS,
                id="release-memory",
                max_instances=1,
                coalesce=True,
            )
        self.jobs.install(scheduler)
        scheduler.start()
        workers = [
            asyncio.create_task(self._trace_worker(), name="trace-worker"),
            asyncio.create_task(self.delivery.worker(), name="delivery-worker"),
            asyncio.create_task(self._config_watcher(), name="config-watcher"),
        ]
        self.request_trace()
        await self.jobs.deliver()
        # A held member list that expired while the node was down is said at once.
        await self.directory.warn_if_expired()
        log.info("serving %s on %s", self.config.node_id, self.config.listen)
        if self.config.http.public_listen is not None:
            log.info("public routes only on %s", self.config.http.public_listen)
        if ready is not None:
            ready()
        try:
            await stop.wait()
        finally:
            log.info("shutting down")
            if control is not None:
                await control.close()
            scheduler.shutdown(wait=False)
            for worker in workers:
                worker.cancel()
            for worker in workers:
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            if public_runner is not None:
                await public_runner.cleanup()
            await runner.cleanup()
            for signum in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(signum)


@asynccontextmanager
async def open_node(
    data_dir: DataDir, clock: Clock, rng: random.Random | None = None
) -> AsyncIterator[Node]:
    """Build every service of the node; the one place where dependencies are wired."""
    config = load_config(data_dir.root)
    # docs/security.md: warned, not refused, so that an operator locked out by a restored
    # backup's modes can still start the node and read why.
    for problem in loose_modes(data_dir):
        log.warning("file modes: %s", problem)
    jitter = rng or random.Random()  # noqa: S311 - retry jitter, not secrecy
    keyring = KeyRing(load_keys(data_dir.keys, data_dir.read_secret()), data_dir, config.keys)
    disk = DiskSpace(data_dir.root, warn_free_bytes=config.storage.warn_free_mb * MIB)
    db = await Database.open(data_dir.database, disk, cache_mib=config.storage.cache_mib)
    timeout = aiohttp.ClientTimeout(total=config.federation.request_timeout_seconds)
    session = aiohttp.ClientSession(timeout=timeout)
    crypto = CryptoPool()
    try:
        await _check_country(db, config, data_dir)
        tracer = _tracer(config, data_dir, clock, session)
        try:
            # Whoever queues records asks for pushes after the commit; delivery (built later)
            # takes them.
            push_requests = PushRequests()
            hash_sharing = HashSharing(node_id=config.node_id, wake=push_requests.kick)
            # A peer that starts receiving our hash lists gets them whole, in that transaction.
            registry = PeerRegistry(db, clock, hashes_opened=hash_sharing.share_all_txn)
            await registry.load()
            actions = ActionLog(config.node_id, config.country)
            dispatcher = Dispatcher(
                db,
                clock,
                node_id=config.node_id,
                country=config.country,
                config=config,
                channels=_channels(config, session, keyring, clock),
                rng=jitter,
                actions=actions,
                abuse_contact_for=tracer.abuse_contact_for,
            )

            known = KnownContent(
                db,
                clock,
                node_id=config.node_id,
                pdq_max_distance=config.hashes.pdq_max_distance,
                # Our shared lists' changes, and a list newly shared, go to the peers.
                share=hash_sharing.queue_txn,
                share_list=hash_sharing.share_list_txn,
                kick=hash_sharing.kick,
            )
            # A peer's change to its list takes effect as ours do (index, open cases).
            hash_sharing.on_change = known.changed_txn
            await known.load()
            four_eyes = FourEyes(clock, categories=config.console.four_eyes)
            cases = CaseService(
                db,
                clock,
                node_id=config.node_id,
                country=config.country,
                actions=actions,
                # What a case shows of its channel deliveries follows node.toml as they do.
                notices=dispatcher,
                # A routed case is pushed as soon as its transaction commits.
                wake=push_requests.kick,
                four_eyes=four_eyes,
                hash_lists=known,
            )
            client = PeerClient(
                session,
                node_id=config.node_id,
                signing_key=lambda: keyring.current.current_signing(clock.now()),
                clock=clock.now,
            )
            inbox = Inbox(
                db,
                clock,
                node_id=config.node_id,
                country=config.country,
                keys=keyring,
                registry=registry,
                cases=cases,
                crypto=crypto,
                hashes=hash_sharing,
            )
            peer_keys = PeerKeyRefresher(registry, client, clock)
            delivery = Delivery(
                db,
                clock,
                node_id=config.node_id,
                keys=keyring,
                registry=registry,
                inbox=inbox,
                client=client,
                crypto=crypto,
                rng=jitter,
                refresh_peer_keys=peer_keys.refresh_peer,
                requests=push_requests,
                batch_size=config.federation.batch_size,
            )
            admin = PeerAdmin(
                registry,
                client,
                clock,
                config.node_id,
                keys=peer_keys,
                deliver_now=push_requests.kick,
                peer_resumed=lambda country, actor: cases.reroute_waiting_for(country, actor=actor),
            )
            inbound = InboundFederation(
                db,
                clock,
                registry=registry,
                inbox=inbox,
                delivery=delivery,
                refresh_peer_keys=peer_keys.refresh_peer,
            )
            directory = DirectoryService(
                db,
                clock,
                node_id=config.node_id,
                registry=registry,
                admin=admin,
                source=DirectorySource(session),
            )
            users = UserService(
                db,
                clock,
                node_id=config.node_id,
                box=SecretBox(data_dir.read_secret()),
                session_minutes=config.console.session_minutes,
                totp_required=config.console.totp_required,
                sign_ins_per_minute=config.console.sign_ins_per_minute,
            )
            await users.seal_clear_secrets()
            jobs = Jobs(
                dispatcher=dispatcher,
                config=config,
                clock=clock,
                db=db,
                cases=cases,
                delivery=delivery,
                admin=admin,
                keyring=keyring,
                directory=directory,
            )
            yield Node(
                config=config,
                data_dir=data_dir,
                clock=clock,
                db=db,
                keyring=keyring,
                session=session,
                tracer=tracer,
                cases=cases,
                tokens=TokenService(db, clock, users),
                registry=registry,
                inbox=inbox,
                inbound=inbound,
                delivery=delivery,
                admin=admin,
                dispatcher=dispatcher,
                jobs=jobs,
                users=users,
                reviews=ReviewService(db, cases, users, four_eyes),
                known=known,
                hash_sharing=hash_sharing,
                recovery=Recovery(
                    db,
                    clock,
                    node_id=config.node_id,
                    keys=keyring,
                    registry=registry,
                    client=client,
                    inbox=inbox,
                    cases=cases,
                ),
                directory=directory,
            )
        finally:
            tracer.close()
    finally:
        await asyncio.to_thread(crypto.close)  # waits for chunks being worked on
        await session.close()
        await db.close()


def _channels(
    config: NodeConfig, session: aiohttp.ClientSession, keyring: KeyRing, clock: Clock
) -> dict[str, Channel]:
    channels: dict[str, Channel] = {}
    for name, settings in config.channels.items():
        if settings.kind == "webhook":
            channels[name] = WebhookChannel(
                name,
                settings,
                session,
                node_id=config.node_id,
                signing_key=lambda: keyring.current.current_signing(clock.now()),
                clock=clock.now,
            )
        else:
            assert settings.from_address is not None
            party = NoticeParty(config.node_id, settings.from_address, config.notices)
            channels[name] = EmailChannel(name, settings, party, clock.now)
    return channels


async def _check_country(db: Database, config: NodeConfig, data_dir: DataDir) -> None:
    """Peers pinned the country of our key document: node.toml cannot change it afterwards."""
    first = await audit.initialised(db)
    country = (first or {}).get("country")
    if country and country != config.country:
        raise ConfigError(
            f"{data_dir.config}: country: {config.country} is not the country this node was"
            f" initialised with ({country}); peers know it as {country}, so it cannot change:"
            " put it back, or initialise a new node"
        )


def _tracer(
    config: NodeConfig, data_dir: DataDir, clock: Clock, session: aiohttp.ClientSession
) -> Tracer:
    jurisdiction = config.jurisdiction
    try:
        return build_tracer(
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
