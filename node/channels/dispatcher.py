"""The channel outbox: holds, grouping, delivery with retries, actions on the case, reminders."""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import orjson

from node.cases.actionlog import ActionLog
from node.cases.lifecycle import ActionSource
from node.channels.base import CaseItem, Channel, Message, Outcome
from node.clock import Clock, iso, parse_iso
from node.config import NodeConfig
from node.contacts import email_address
from node.errors import N_, InvalidInput, NotFound, Sentence, StorageFull
from node.routing import ChannelRole
from node.store import audit, channel_outbox
from node.store.channel_outbox import DeadRow, OutboxRow
from node.store.db import Database, Tx
from node.store.reports import ReportStore
from peers.backoff import backoff_delay
from protocol.records import ActionCode

log = logging.getLogger("hotline.channels")
GROUPED_ROLES = (ChannelRole.HOST_NOTICE, ChannelRole.CDN_NOTICE)
DEFAULT_ACTION = {
    ChannelRole.LAW_ENFORCEMENT: ActionCode.LEA_REFERRED,
    ChannelRole.HOST_NOTICE: ActionCode.NOTICE_SENT,
    ChannelRole.CDN_NOTICE: ActionCode.NOTICE_SENT,
    ChannelRole.FALLBACK: ActionCode.LEA_REFERRED,
}
ROLES = tuple(ChannelRole)
ROLE_WORDS = {
    ChannelRole.LAW_ENFORCEMENT: "cases hosted in our country, to the police",
    ChannelRole.HOST_NOTICE: "notices to hosts in our country",
    ChannelRole.FALLBACK: "cases hosted where no peer hotline takes them",
    ChannelRole.CDN_NOTICE: "requests to CDNs for the origin host",
}
NO_CHANNEL_RETRY = timedelta(hours=1)
BATCH = 500


@dataclass
class DispatchReport:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    held: int = 0
    unrouted: int = 0
    details: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Planned:
    channel_name: str
    channel: Channel
    message: Message


class Dispatcher:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        node_id: str,
        country: str,
        config: NodeConfig,
        channels: dict[str, Channel],
        rng: random.Random,
        actions: ActionLog,
        abuse_contact_for: Callable[[list[str]], Awaitable[str | None]] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.node_id = node_id
        self.country = country
        self.config = config
        self.channels = channels
        self.rng = rng
        self.actions = actions
        # RDAP, for a host notice whose case came without an abuse contact (from a peer).
        self.abuse_contact_for = abuse_contact_for
        # Messages set aside for want of a channel are looked at again once the channels may
        # have changed: at start (node.toml may have been edited meanwhile) and on reconfigure.
        self._release_unserved = True

    def reconfigure(self, config: NodeConfig, channels: dict[str, Channel]) -> None:
        """Channel and notice settings changed in node.toml: used from the next delivery on,
        which also takes up again the messages set aside because no channel served them."""
        self.config = config
        self.channels = channels
        self._release_unserved = True

    def channel_for(self, role: str, item: CaseItem) -> tuple[str, Channel] | None:
        """The first configured channel serving this role, category and hosting country."""
        for name, settings in self.config.channels.items():
            if role not in settings.roles:
                continue
            if settings.categories and item.category not in settings.categories:
                continue
            if settings.countries and item.country not in settings.countries:
                continue
            return name, self.channels[name]
        return None

    # planning ---------------------------------------------------------------------------
    def _held(self, row: OutboxRow, item: CaseItem, now: datetime) -> bool:
        """Law-enforcement-first: a host notice waits for police, or for the deadline."""
        if row.role != "host_notice" or row.kind == "reminder":
            return False
        hours = self.hold_hours(item.category)
        if hours is None or row.lea_cleared_at is not None:
            return False
        return parse_iso(row.created_at) + timedelta(hours=hours) > now

    async def plan(self, now: datetime) -> tuple[list[Planned], list[OutboxRow], int]:
        """Messages to send now, rows no channel serves, and how many rows are held.

        A row whose payload cannot be read is dead-lettered here, alone, with the reason.
        """
        rows = await channel_outbox.due(self.db, iso(now), BATCH)
        items: dict[int, CaseItem] = {}
        poisoned: list[DeadRow] = []
        for row in rows:
            try:
                items[row.id] = CaseItem.from_payload(orjson.loads(row.payload))
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                why = f"unreadable outbox row: {type(exc).__name__}: {exc}"
                poisoned.append(DeadRow(row.id, row.role, row.report_id, why))
        if poisoned:
            await self.db.run(partial(self._dead_rows, rows=poisoned, now=now))
            rows = [row for row in rows if row.id in items]
        for row in rows:
            item = items[row.id]
            if row.role == "host_notice" and not item.abuse_contact:
                items[row.id] = await self._with_contact_found(row, item)
        window = timedelta(seconds=self.config.notices.group_window_seconds)
        planned: list[Planned] = []
        unrouted: list[OutboxRow] = []
        held = 0
        groups: dict[tuple[str, str, str, bool], list[OutboxRow]] = {}
        for row in rows:
            item = items[row.id]
            if self._held(row, item, now):
                held += 1
                continue
            target = self.channel_for(row.role, item)
            if target is None:
                unrouted.append(row)
                continue
            reminder = row.kind == "reminder"
            if row.role in GROUPED_ROLES:
                # One notice per abuse desk and channel: hosts get one mail, not fifty.
                key = (row.role, target[0], item.abuse_contact or "", reminder)
                groups.setdefault(key, []).append(row)
                continue
            planned.append(
                Planned(target[0], target[1], Message(row.role, (item,), reminder, (row.id,)))
            )
        for (role, name, _, reminder), members in groups.items():
            oldest = min(parse_iso(r.created_at) for r in members)
            if not reminder and oldest + window > now:
                held += len(members)  # still gathering cases for this abuse desk
                continue
            message = Message(
                role,
                tuple(items[r.id] for r in members),
                reminder,
                tuple(r.id for r in members),
                notice_ref=_notice_ref(members),
            )
            planned.append(Planned(name, self.channels[name], message))
        return planned, unrouted, held

    # delivering -------------------------------------------------------------------------
    async def _with_contact_found(self, row: OutboxRow, item: CaseItem) -> CaseItem:
        """Look the abuse desk up (RDAP, on the case's addresses) and keep it for retries."""
        if self.abuse_contact_for is None:
            return item
        addresses = await ReportStore(self.db).addresses(item.report_id)
        ips = [a.ip for a in addresses if not a.cdn]
        found = await self.abuse_contact_for(ips) if ips else None
        try:
            contact = email_address(found) if found else None
        except InvalidInput:
            contact = None
        if contact is None:
            return item
        payload = {**orjson.loads(row.payload), "abuse_contact": contact}

        def keep_contact_txn(conn: Tx) -> None:
            channel_outbox.set_payload_txn(conn, row.id, payload)
            ReportStore.set_abuse_contact(conn, item.report_id, contact, source="rdap")
            audit.append(
                conn,
                at=self.clock.now(),
                actor="jurisdiction",
                event="report.abuse_contact_found",
                subject=item.report_id,
                details={"source": "rdap", "contact": contact},
            )

        await self.db.run(keep_contact_txn)
        return replace(item, abuse_contact=contact)

    async def run_once(self) -> DispatchReport:
        now = self.clock.now()
        report = DispatchReport()
        if self._release_unserved:
            self._release_unserved = False
            await self.db.run(partial(channel_outbox.release_unserved_txn, at=iso(now)))
        planned, unrouted, report.held = await self.plan(now)
        if unrouted:
            waiting = [
                (row.id, f"no channel configured for role {row.role} (add one to node.toml)")
                for row in unrouted
            ]
            until = iso(now + NO_CHANNEL_RETRY)
            await self.db.run(partial(channel_outbox.postpone_txn, rows=waiting, until=until))
            report.unrouted = len(unrouted)
        for plan in planned:
            if self.db.disk.waiting():
                # A message sent now could not be recorded as sent, and would go twice: the
                # rest wait, pending, for space (a full disk fails nothing, node/store/disk.py).
                break
            try:
                outcome = await plan.channel.deliver(plan.message)
            except Exception as exc:
                # A value no check caught (or a bug) fails this message alone: it is
                # dead-lettered with the reason, once, and the other messages still go.
                log.exception("channel %s could not handle a message", plan.channel_name)
                detail = f"{plan.channel_name}: {type(exc).__name__}: {exc}"
                outcome = Outcome(False, detail, permanent=True)
            try:
                state = await self.db.run(
                    partial(self._record, plan=plan, outcome=outcome, now=now)
                )
            except StorageFull:
                # Not the message's fault: it stays pending, neither failed nor dead, and is
                # sent again once space returns (the one message in flight as the disk filled).
                log.warning(
                    "channel %s: %s sent, but the disk is full: not recorded, it goes again"
                    " once space is freed",
                    plan.channel_name,
                    plan.message.role,
                )
                raise
            except Exception as exc:
                # The outcome cannot be written (a poisoned item): that message alone is
                # dead-lettered, saying what happened to it, so it is not sent again each sweep.
                log.exception("channel %s: could not record an outcome", plan.channel_name)
                why = f"{outcome.detail}; not recorded: {type(exc).__name__}: {exc}"
                dead = [
                    DeadRow(row_id, plan.message.role, item.report_id, why, plan.channel_name)
                    for row_id, item in zip(plan.message.row_ids, plan.message.items, strict=True)
                ]
                await self.db.run(partial(self._dead_rows, rows=dead, now=now))
                outcome, state = Outcome(False, why, permanent=True), "dead"
            if state == "delivered":
                report.delivered += len(plan.message.row_ids)
            elif state == "dead":
                report.dead += len(plan.message.row_ids)
            else:
                report.failed += len(plan.message.row_ids)
            report.details.append(outcome.detail)
            if not outcome.delivered:
                log.warning("channel %s: %s", plan.channel_name, outcome.detail)
        return report

    def _dead_rows(self, conn: Tx, *, rows: list[DeadRow], now: datetime) -> None:
        """Dead-letter outbox rows that no delivery settled."""
        channel_outbox.dead_txn(conn, rows, at=iso(now))
        for row in rows:
            audit.append(
                conn,
                at=now,
                actor="channels",
                event="channel.dead",
                subject=row.report_id,
                details={"role": row.role, "reason": row.reason[:500]},
            )
            log.warning("channel outbox row %s dead-lettered: %s", row.row_id, row.reason)

    def _record(self, conn: Tx, *, plan: Planned, outcome: Outcome, now: datetime) -> str:
        ids = plan.message.row_ids
        attempts = channel_outbox.attempts_txn(conn, ids) + 1
        if outcome.delivered:
            channel_outbox.delivered_txn(
                conn,
                ids,
                at=iso(now),
                attempts=attempts,
                channel=plan.channel_name,
                notice_ref=plan.message.notice_ref,
            )
            code = (
                "reminder_sent"
                if plan.message.reminder
                else (
                    self.config.channels[plan.channel_name].records_as
                    or DEFAULT_ACTION[ChannelRole(plan.message.role)]
                )
            )
            for item in plan.message.items:
                case = ReportStore.head_txn(conn, item.report_id)
                if case is None:
                    raise NotFound(
                        N_("no case {report!r} to record the delivery on"), report=item.report_id
                    )
                # Recorded like an analyst's action: on a peer's case it goes back to the
                # origin, which sees its police referral or notice as it happens.
                self.actions.record_txn(
                    conn,
                    report_id=item.report_id,
                    origin=case.origin,
                    code=ActionCode(code),
                    at=now,
                    analyst=None,
                    reason=f"via {plan.channel_name}: {outcome.detail}"[:500],
                    source=ActionSource.CHANNEL,
                    country=item.country or self.country,
                )
                if outcome.cleared:
                    ReportStore.set_cleared_once(conn, item.report_id, iso(now))
            audit.append(
                conn,
                at=now,
                actor=f"channel:{plan.channel_name}",
                event="channel.delivered",
                subject=plan.message.items[0].report_id,
                details={
                    "role": plan.message.role,
                    "code": code,
                    "reports": [i.report_id for i in plan.message.items],
                    "cleared": outcome.cleared,
                },
            )
            return "delivered"
        if outcome.permanent or attempts >= self.config.notices.max_attempts:
            dead = [
                DeadRow(
                    row_id, plan.message.role, item.report_id, outcome.detail, plan.channel_name
                )
                for row_id, item in zip(ids, plan.message.items, strict=True)
            ]
            channel_outbox.dead_txn(
                conn, dead, at=iso(now), attempts=attempts, sent_via=plan.channel_name
            )
            audit.append(
                conn,
                at=now,
                actor=f"channel:{plan.channel_name}",
                event="channel.dead",
                subject=plan.message.items[0].report_id,
                details={"role": plan.message.role, "reason": outcome.detail[:500]},
            )
            return "dead"
        retry_at = now + backoff_delay(attempts, self.rng)
        channel_outbox.retry_txn(
            conn,
            ids,
            attempts=attempts,
            error=outcome.detail,
            next_attempt_at=iso(retry_at),
            notice_ref=plan.message.notice_ref,
        )
        return "retry"

    # reminders --------------------------------------------------------------------------
    async def schedule_reminders(self) -> int:
        """Remind hosts that have not acted, every `reminder_hours`, until removal."""
        now = self.clock.now()
        cutoff = iso(now - timedelta(hours=self.config.notices.reminder_hours))

        return await self.db.run(
            partial(
                channel_outbox.queue_reminders_txn,
                node_id=self.node_id,
                delivered_before=cutoff,
                at=iso(now),
            )
        )

    async def requeue_dead(self, name: str, actor: str) -> int:
        """Send again the messages this channel gave up on (once the cause is fixed).

        They become pending with their attempts reset, keeping their place (ids) and their
        notice reference; the dead letters stay as history, and the audit log says who did it.
        """
        if name not in self.config.channels:
            known = ", ".join(sorted(self.config.channels)) or Sentence(N_("none configured"))
            raise NotFound(N_("no channel {name!r} (channels: {known})"), name=name, known=known)
        now = self.clock.now()

        def requeue_dead_txn(conn: Tx) -> int:
            ids = channel_outbox.requeue_dead_txn(conn, name, iso(now))
            if ids:
                audit.append(
                    conn,
                    at=now,
                    actor=actor,
                    event="channel.requeued",
                    subject=name,
                    details={"messages": len(ids), "rows": ids[:100]},
                )
            return len(ids)

        return await self.db.run(requeue_dead_txn)

    async def test(self, name: str, to: str | None = None) -> Outcome:
        """Send a clearly marked test message through one channel (nothing is recorded)."""
        if name not in self.channels:
            known = ", ".join(sorted(self.channels)) or Sentence(N_("none configured"))
            raise NotFound(N_("no channel {name!r} (channels: {known})"), name=name, known=known)
        settings = self.config.channels[name]
        if settings.kind == "email" and not settings.to and not to:
            raise InvalidInput(
                N_("{name} mails each case's abuse contact: give --to ADDRESS"), name=name
            )
        if to is not None:
            to = email_address(to, "to")
        item = CaseItem(
            report_id="00000000-0000-4000-8000-000000000000",
            url="https://example.invalid/hotline-node-channel-test",
            category="other",
            verdict="national",
            legal_basis="TEST MESSAGE: no action is needed",
            country=self.country,
            abuse_contact=to,
            cdn_name=None,
            reason="channel test from hotline-node",
        )
        outcome = await self.channels[name].deliver(Message(settings.roles[0], (item,), test=True))
        now = self.clock.now()

        def tested_txn(conn: Tx) -> None:
            audit.append(
                conn,
                at=now,
                actor="operator",
                event="channel.tested",
                subject=name,
                details={"delivered": outcome.delivered, "detail": outcome.detail[:500]},
            )

        await self.db.run(tested_txn)
        return outcome

    # inspection -------------------------------------------------------------------------
    def hold_hours(self, category: str | None) -> int | None:
        """Law-enforcement-first: how long a host notice of this category waits for police."""
        return self.config.notices.lea_first_hours.get(category or "")  # type: ignore[call-overload,no-any-return]

    def role_served(self, role: str) -> bool:
        return role not in self.roles_without_channel()

    def roles_without_channel(self) -> list[ChannelRole]:
        served = {role for settings in self.config.channels.values() for role in settings.roles}
        return [role for role in ROLES if role not in served]

    async def warnings(self) -> list[str]:
        """One line per routing role that no channel serves, with the cases waiting for it."""
        missing = self.roles_without_channel()
        if not missing:
            return []
        waiting = await channel_outbox.pending_by_role(self.db)
        return [
            f"no channel serves role {role} ({ROLE_WORDS[role]}): {waiting.get(role, 0)}"
            " case(s) wait for it; add a [channels.NAME] table with this role to node.toml"
            for role in missing
        ]

    async def describe(self) -> list[dict[str, Any]]:
        counts = await channel_outbox.counts_by_channel(self.db)
        by_role = await channel_outbox.pending_by_role(self.db)
        out = []
        for name, settings in self.config.channels.items():
            out.append(
                {
                    "name": name,
                    "kind": settings.kind,
                    "roles": list(settings.roles),
                    "categories": list(settings.categories),
                    "countries": list(settings.countries),
                    "target": settings.url or settings.to or "(the case's abuse contact)",
                    "pending_for_roles": sum(by_role.get(role, 0) for role in settings.roles),
                    "delivered": counts.get((name, "delivered"), 0),
                    "dead": counts.get((name, "dead"), 0),
                }
            )
        return out


def _notice_ref(members: list[OutboxRow]) -> str | None:
    """A grouped notice's own short reference, kept across retries (one case: its own)."""
    if len(members) < 2:
        return None
    known = {row.notice_ref for row in members} - {None}
    return known.pop() if len(known) == 1 else new_notice_ref()


def new_notice_ref() -> str:
    # "N" and 8 hex digits: short enough for any ticketing system's subject line.
    return "N" + secrets.token_hex(4).upper()
