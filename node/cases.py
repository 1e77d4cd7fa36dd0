"""Intake and qualification of cases: submit, assess, record actions, trace results, routing."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import aiosqlite
import orjson

from node.actionlog import ActionLog, Recorded
from node.clock import Clock, iso, parse_iso
from node.contacts import free_text, public_contact
from node.countries import country_problem
from node.errors import Conflict, InvalidInput, NotFound
from node.routing import (
    Decision,
    HostingFacts,
    PeerView,
    RoutingDecision,
    decide,
)
from node.store import audit
from node.store.db import Database, Tx
from node.store.reports import ReportStore
from node.urls import normalise_url
from protocol.ids import new_id, new_ids, short_reference
from protocol.records import (
    ActionCode,
    Assessment,
    Category,
    Hosting,
    HostingAddress,
    Report,
    Tlp,
    Verdict,
    Withdrawal,
    record_bytes,
)

MAX_NOTE = 8192
MAX_DESCRIPTION = 4000
MAX_CONTACT = 256
ANALYST_ACTIONS = {
    ActionCode.CONTENT_REMOVED,
    ActionCode.CONTENT_UNAVAILABLE,
    ActionCode.MOVED,
    ActionCode.NOT_ILLEGAL,
    ActionCode.LEA_REFERRED,
    ActionCode.NOTICE_SENT,
}
STATUSES = ("new", "assessed", "routed", "manual", "closed", "withdrawn", "received")

Routed = tuple[RoutingDecision | None, list[str]]
TraceFunction = Callable[[str], Awaitable[dict[str, Any]]]


class CaseRow(Protocol):
    """A case's columns by name: a stored row, or the dict of one about to be inserted."""

    def __getitem__(self, column: str) -> Any: ...


@dataclass
class RoutePlan:
    """Routing decided for a set of cases, and every row it will write (`write_routes`)."""

    decisions: dict[str, RoutingDecision] = field(default_factory=dict)
    states: dict[str, tuple[str, int]] = field(default_factory=dict)  # id: (status, seq)
    versions: list[tuple[str, int, bytes, str]] = field(default_factory=list)
    outbox: dict[str, list[tuple[str, str, str, bytes, str]]] = field(default_factory=dict)
    channels: list[tuple[str, str, str, dict[str, Any], str]] = field(default_factory=list)
    routings: list[tuple[str, str, list[dict[str, Any]], list[str], str, str]] = field(
        default_factory=list
    )
    entries: list[audit.Entry] = field(default_factory=list)


@dataclass(frozen=True)
class Intake:
    """A report's intake fields, checked and normalised before any transaction starts."""

    url_key: str
    category: str | None
    tlp: Tlp
    note: str | None
    description: str | None
    contact: str | None

    @classmethod
    def check(
        cls,
        url: str,
        *,
        category: str | None = None,
        note: str | None = None,
        tlp: str | None = None,
        description: str | None = None,
        contact: str | None = None,
    ) -> Intake:
        return cls(
            url_key=normalise_url(url),
            category=_enum(Category, category, "category").value if category is not None else None,
            tlp=_enum(Tlp, tlp, "tlp") if tlp is not None else Tlp.AMBER,
            note=_text(note, "note", MAX_NOTE),
            description=_text(description, "description", MAX_DESCRIPTION),
            contact=_contact(contact),
        )


IMPORT_FIELDS = frozenset(
    {"url", "category", "note", "tlp", "verdict", "legal_basis", "hosting_country"}
)


@dataclass(frozen=True)
class ImportItem:
    intake: Intake
    verdict: str | None
    legal_basis: str | None
    hosting_country: str | None

    @classmethod
    def check(cls, data: dict[str, Any]) -> ImportItem:
        """Strict: every field is text or absent (null). A value of another type, even a falsy
        one such as {} or false, is refused rather than read as absent."""
        unknown = set(data) - IMPORT_FIELDS
        if unknown:
            raise InvalidInput(f"unknown field(s): {', '.join(sorted(unknown))}")
        for name, value in data.items():
            if value is not None and not isinstance(value, str):
                raise InvalidInput(
                    f"{name} must be text or null (got {type(value).__name__} {value!r:.40})"
                )
        fields = {name: value for name, value in data.items() if value not in (None, "")}
        url = fields.get("url")
        if url is None:
            raise InvalidInput("url is required")
        verdict = fields.get("verdict")
        if verdict is not None:
            verdict = _enum(Verdict, verdict, "verdict").value
            if "category" not in fields:
                raise InvalidInput("an assessed report needs a category")
        country = fields.get("hosting_country")
        if country is not None:
            problem = country_problem(country)
            if problem:
                raise InvalidInput(f"hosting_country {problem}")
            country = country.upper()
        return cls(
            intake=Intake.check(
                url,
                category=fields.get("category"),
                note=fields.get("note"),
                tlp=fields.get("tlp"),
            ),
            verdict=verdict,
            legal_basis=_text(fields.get("legal_basis"), "legal_basis", 256),
            hosting_country=country,
        )


@dataclass(frozen=True)
class Submitted:
    report_id: str
    duplicate: bool
    duplicates: int


def _enum(enum: Any, value: Any, field: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise InvalidInput(f"{field} must be one of {allowed} (got {value!r})") from None


def _text(value: Any, field: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string")
    if len(value) > limit:
        raise InvalidInput(f"{field} is longer than {limit} characters")
    return free_text(value, field)


def _contact(value: Any) -> str | None:
    text = _text(value, "contact", MAX_CONTACT)
    return public_contact(text) if text else None


class CaseService:
    """The hotline's case workflow; every change is audited in the same transaction."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        node_id: str,
        country: str,
        on_routed: Callable[[list[str]], None] | None = None,
        actions: ActionLog | None = None,
    ) -> None:
        self.db = db
        self.store = ReportStore(db)
        self.clock = clock
        self.node_id = node_id
        self.country = country
        self.actions = actions or ActionLog(node_id, country)
        # From the channels (set by the composition root; they follow node.toml live): how long
        # a host notice of a category waits for the police, and whether a role has a channel.
        self.hold_hours: Callable[[str | None], int | None] = lambda category: None
        self.role_served: Callable[[str], bool] = lambda role: True
        # Called with the peer ids that got new outbox rows, after the commit (push at once).
        self.on_routed = on_routed

    # intake ------------------------------------------------------------------------------
    async def submit(
        self,
        url: str,
        *,
        actor: str,
        source: str = "analyst",
        category: str | None = None,
        note: str | None = None,
        tlp: str | None = None,
        description: str | None = None,
        contact: str | None = None,
    ) -> Submitted:
        intake = Intake.check(
            url, category=category, note=note, tlp=tlp, description=description, contact=contact
        )

        def transaction(conn: Tx) -> Submitted:
            return self._submit_in(conn, intake, actor=actor, source=source)

        return await self.db.run(transaction)

    def _submit_in(self, conn: Tx, intake: Intake, *, actor: str, source: str) -> Submitted:
        at = self.clock.now()
        now = iso(at)
        existing = self.store.open_by_urls(conn, [intake.url_key]).get(intake.url_key)
        if existing is not None:
            report_id, count = existing[0], existing[1] + 1
            self.store.update(conn, report_id, {"duplicates": count, "updated_at": now})
            audit.append(
                conn,
                at=self.clock.now(),
                actor=actor,
                event="report.duplicate",
                subject=report_id,
                details={"source": source},
            )
            return Submitted(report_id, True, count)
        row = self._new_case(intake, case_id=new_id(at), source=source, now=now)
        self.store.insert(conn, row)
        audit.append_many(conn, [_submitted_entry(row, now, actor, source)])
        return Submitted(row["id"], False, 0)

    def _new_case(
        self, intake: Intake, *, case_id: uuid.UUID, source: str, now: str
    ) -> dict[str, Any]:
        """The row of a new case of ours, as submitted (not yet assessed)."""
        # 64 random bits: with 32, a hundred thousand cases collide on the unique index.
        local_ref = f"{self.node_id}-{now[:10].replace('-', '')}-{secrets.token_hex(8)}"
        return {
            "id": str(case_id),
            "origin": self.node_id,
            "local_ref": local_ref,
            "seq": 1,
            "url": intake.url_key,
            "url_key": intake.url_key,
            "source": source,
            "status": "new",
            "category": intake.category,
            "tlp": intake.tlp.value,
            "description": intake.description,
            "contact": intake.contact,
            "notes": intake.note,
            "received_at": now,
            "updated_at": now,
            "verdict": None,
            "legal_basis": None,
            "assessed_at": None,
            "trace_status": "pending",
            "trace_json": None,
            "traced_at": None,
        }

    async def import_batch(
        self,
        items: list[ImportItem],
        *,
        actor: str,
        also: Callable[[Tx], None] | None = None,
    ) -> list[Submitted]:
        """Bulk intake (e.g. an export from another system): one transaction per batch.

        `also` writes in the same transaction (an import run's progress: a run stopped between
        batches is taken up where it stopped, and no committed line is counted twice).

        Items come checked (ImportItem.check); each is submitted, assessed when it carries a
        verdict, and given its hosting country when known, so routing follows at once. The
        batch is written per table (set-based): an import of 100,000 cases is an operator's
        everyday catch-up, and per-case statements made it several times slower.
        """
        results: list[Submitted] = []
        pushed: list[str] = []
        at = self.clock.now()
        stamp = iso(at)
        # Fewer ids than items when some join open cases; one read of the OS generator.
        case_ids = iter(new_ids(at, len(items)))

        def transaction(conn: Tx) -> None:
            open_cases = self.store.open_by_urls(conn, [i.intake.url_key for i in items])
            duplicates: dict[str, int] = {}
            rows: list[dict[str, Any]] = []
            entries: list[audit.Entry] = []
            for item in items:
                key = item.intake.url_key
                if key in open_cases:
                    report_id, count = open_cases[key]
                    count = duplicates.get(report_id, count) + 1
                    duplicates[report_id] = count
                    entries.append(
                        audit.Entry(
                            stamp, actor, "report.duplicate", report_id, {"source": "import"}
                        )
                    )
                    results.append(Submitted(report_id, True, count))
                    continue
                row = self._new_case(
                    item.intake, case_id=next(case_ids), source="import", now=stamp
                )
                rows.append(row)
                entries.append(_submitted_entry(row, stamp, actor, "import"))
                results.append(Submitted(row["id"], False, 0))
                # A case assessed as not illegal is closed by its routing below (which needs
                # the hosting country), and a closed case takes no duplicates: later lines with
                # its URL open a case of their own, as they would one import after another.
                closed_by_routing = (
                    item.verdict == Verdict.NOT_ILLEGAL.value and item.hosting_country is not None
                )
                if not closed_by_routing:
                    open_cases[key] = (row["id"], 0)
                if item.verdict is None:
                    continue
                row.update(
                    verdict=item.verdict,
                    legal_basis=item.legal_basis,
                    assessed_at=stamp,
                    status="assessed",
                )
                if item.hosting_country:
                    evidence = {
                        "override": {
                            "country": item.hosting_country,
                            "reason": "hosting country given at import",
                            "by": actor,
                        }
                    }
                    row.update(
                        trace_json=orjson.dumps(evidence).decode(),
                        trace_status="done",
                        traced_at=stamp,
                    )
                entries.append(
                    audit.Entry(
                        stamp,
                        actor,
                        "report.assessed",
                        row["id"],
                        {"verdict": item.verdict, "category": item.intake.category},
                    )
                )
            audit.append_many(conn, entries)
            pushed.extend(self.insert_routed(conn, rows, actor))
            self.store.update_many(
                conn,
                ["duplicates", "updated_at"],
                [(count, stamp, report_id) for report_id, count in duplicates.items()],
            )
            if also is not None:
                also(conn)

        await self.db.run(transaction)
        self._notify(pushed)
        return results

    async def _require(self, report_id: str) -> aiosqlite.Row:
        try:
            uuid.UUID(report_id)
        except (ValueError, TypeError, AttributeError):
            raise NotFound(f"no report with id {report_id!r}") from None
        row = await self.store.get(report_id)
        if row is None:
            raise NotFound(f"no report with id {report_id}")
        return row

    # qualification -----------------------------------------------------------------------
    async def assess(
        self,
        report_id: str,
        *,
        verdict: str,
        category: str,
        legal_basis: str | None,
        actor: str,
    ) -> RoutingDecision | None:
        row = await self._require(report_id)
        if row["origin"] != self.node_id:
            raise Conflict("only the origin hotline assesses its report; record actions instead")
        if row["status"] in ("closed", "withdrawn"):
            raise Conflict(f"report {report_id} is {row['status']}")
        the_verdict = _enum(Verdict, verdict, "verdict")
        the_category = _enum(Category, category, "category")
        legal_basis = _text(legal_basis, "legal_basis", 256)
        now = self.clock.now()

        def transaction(conn: Tx) -> Routed:
            self.store.update(
                conn,
                report_id,
                {
                    "verdict": the_verdict.value,
                    "category": the_category.value,
                    "legal_basis": legal_basis,
                    "assessed_at": iso(now),
                    "updated_at": iso(now),
                    "status": "assessed",
                },
            )
            audit.append(
                conn,
                at=now,
                actor=actor,
                event="report.assessed",
                subject=report_id,
                details={"verdict": the_verdict.value, "category": the_category.value},
            )
            return self.route_in(conn, report_id, actor)

        decision, peers = await self.db.run(transaction)
        self._notify(peers)
        return decision

    async def record_action(
        self, report_id: str, *, code: str, reason: str | None, actor: str
    ) -> str:
        row = await self._require(report_id)
        the_code = _enum(ActionCode, code, "code")
        if the_code not in ANALYST_ACTIONS:
            allowed = ", ".join(sorted(c.value for c in ANALYST_ACTIONS))
            raise InvalidInput(f"code must be one of {allowed} (got {code!r})")
        if row["status"] == "withdrawn":
            raise Conflict(f"report {report_id} was withdrawn by its origin")
        reason = _text(reason, "reason", MAX_NOTE)
        now = self.clock.now()

        def transaction(conn: Tx) -> Recorded:
            recorded = self.actions.record_txn(
                conn,
                report_id=report_id,
                origin=row["origin"],
                status=row["status"],
                code=the_code,
                at=now,
                analyst=actor,
                reason=reason,
            )
            audit.append(
                conn,
                at=now,
                actor=actor,
                event="action.recorded",
                subject=report_id,
                details={
                    "action": recorded.action_id,
                    "code": the_code.value,
                    "told": recorded.told,
                },
            )
            return recorded

        recorded = await self.db.run(transaction)
        self._notify(recorded.told)
        return recorded.action_id

    async def clear_for_host(self, report_id: str, *, reason: str | None, actor: str) -> int:
        """Police cleared the case: a host notice held for them may go now. Returns how many
        host notices the clearance released (0: it is recorded, and nothing was held)."""
        row = await self._require(report_id)
        hours = self.hold_hours(row["category"])
        if row["lea_cleared_at"] is not None:
            raise Conflict(f"report {report_id} was already cleared at {row['lea_cleared_at']}")
        reason_text = _text(reason, "reason", MAX_NOTE)
        now = self.clock.now()

        def transaction(conn: Tx) -> None:
            self.store.update(conn, report_id, {"lea_cleared_at": iso(now), "updated_at": iso(now)})
            audit.append(
                conn,
                at=now,
                actor=actor,
                event="report.cleared",
                subject=report_id,
                details={"reason": reason_text},
            )

        await self.db.run(transaction)
        if hours is None:
            return 0
        return sum(
            parse_iso(queued) + timedelta(hours=hours) > now
            for queued in await self.store.waiting_host_notices(report_id)
        )

    async def withdraw(self, report_id: str, *, reason: str, actor: str) -> list[str]:
        """Retract our report: closed here, and a tombstone to every peer that received it."""
        row = await self._require(report_id)
        if row["origin"] != self.node_id:
            raise Conflict("only the origin hotline can withdraw a report")
        if row["status"] == "withdrawn":
            raise Conflict(f"report {report_id} is already withdrawn")
        reason_text = _text(reason, "reason", MAX_NOTE)
        if not reason_text:
            raise InvalidInput("a withdrawal needs a reason")
        now = self.clock.now()

        def transaction(conn: Tx) -> list[str]:
            peers = self.store.holders(conn, report_id)
            withdrawal = self._queue_withdrawal(conn, report_id, peers, reason_text, now, actor)
            self.store.mark_withdrawn(conn, report_id, iso(now))
            ActionLog.withdrawn_txn(
                conn,
                report_id=report_id,
                withdrawal_id=str(withdrawal.id),
                by=self.node_id,
                country=self.country,
                at=now,
                reason=reason_text,
            )
            audit.append(
                conn,
                at=now,
                actor=actor,
                event="report.withdrawn",
                subject=report_id,
                details={"reason": reason_text, "peers": peers},
            )
            return peers

        peers = await self.db.run(transaction)
        self._notify(peers)
        return peers

    # jurisdiction ------------------------------------------------------------------------
    async def trace_pending(self, trace: TraceFunction, limit: int = 50) -> int:
        """Trace reports waiting for it; a failed trace is recorded, never retried forever."""
        done = 0
        for row in await self.store.pending_traces(limit):
            try:
                evidence: dict[str, Any] | None = await trace(row["url"])
                error = None
            except Exception as exc:  # any failure is recorded on the case for the analyst
                evidence, error = None, str(exc) or type(exc).__name__
            try:
                await self.record_trace(row["id"], evidence, error=error)
            except Exception as exc:
                # Evidence that cannot be stored or routed (a poisoned answer, a bug) fails this
                # case alone: it is marked failed with the reason, and the next case goes on.
                reason = f"the trace could not be recorded: {type(exc).__name__}: {exc}"
                await self.record_trace(row["id"], None, error=reason[:500])
            done += 1
        return done

    async def record_trace(
        self, report_id: str, evidence: dict[str, Any] | None, *, error: str | None = None
    ) -> RoutingDecision | None:
        now = self.clock.now()
        stored = evidence if evidence is not None else {"errors": [error or "trace failed"]}

        def transaction(conn: Tx) -> Routed:
            self.store.update(
                conn,
                report_id,
                {
                    "trace_status": "done" if evidence is not None else "failed",
                    "trace_json": orjson.dumps(stored).decode(),
                    "traced_at": iso(now),
                    "updated_at": iso(now),
                },
            )
            self.store.replace_addresses(
                conn, report_id, list((evidence or {}).get("addresses", []))
            )
            audit.append(
                conn,
                at=now,
                actor="jurisdiction",
                event="report.traced",
                subject=report_id,
                details={
                    "countries": (evidence or {}).get("countries", []),
                    "error": error,
                },
            )
            return self.route_in(conn, report_id, "jurisdiction")

        decision, peers = await self.db.run(transaction)
        self._notify(peers)
        return decision

    async def override_jurisdiction(
        self, report_id: str, *, country: str, reason: str, actor: str
    ) -> RoutingDecision | None:
        row = await self._require(report_id)
        if row["status"] in ("closed", "withdrawn"):
            # As for assess: a finished case is not routed again (it would be re-sent).
            raise Conflict(f"report {report_id} is {row['status']}")
        problem = country_problem(country)
        if problem:
            raise InvalidInput(f"country {problem}")
        reason_text = _text(reason, "reason", MAX_NOTE)
        if not reason_text:
            raise InvalidInput("an override needs a reason")
        evidence = orjson.loads(row["trace_json"]) if row["trace_json"] else {}
        evidence["override"] = {"country": country.upper(), "reason": reason_text, "by": actor}
        now = self.clock.now()

        def transaction(conn: Tx) -> Routed:
            self.store.update(
                conn,
                report_id,
                {"trace_json": orjson.dumps(evidence).decode(), "updated_at": iso(now)},
            )
            audit.append(
                conn,
                at=now,
                actor=actor,
                event="jurisdiction.override",
                subject=report_id,
                details={"country": country.upper(), "reason": reason_text},
            )
            return self.route_in(conn, report_id, actor, force=True)

        decision, peers = await self.db.run(transaction)
        self._notify(peers)
        return decision

    # routing -----------------------------------------------------------------------------
    def _notify(self, peers: list[str]) -> None:
        if peers and self.on_routed is not None:
            self.on_routed(peers)

    def route_in(self, conn: Tx, report_id: str, actor: str, force: bool = False) -> Routed:
        """Route once a case is both assessed and traced; outbox rows join this transaction.

        Returns the decision and the peers that got new outbox rows (to push after commit).
        """
        row = conn.execute("SELECT * FROM reports WHERE id = ?", (report_id,)).fetchone()
        if row is None:
            return None, []
        plan = self.plan_routes(conn, [row], actor, force)
        if report_id not in plan.states:
            return None, []
        holders = self.store.holders(conn, report_id)
        status, seq = plan.states[report_id]
        self.store.update(conn, report_id, {"status": status, "seq": seq})
        decision = plan.decisions[report_id]
        told = self.write_routes(conn, plan)
        # Routed again (re-assessed, overridden): a peer that holds the case and is no longer
        # a target gets a withdrawal, so it stops acting on a case we no longer send it.
        targets = {t.name for t in decision.targets if t.kind == "peer"}
        dropped = [peer for peer in holders if peer not in targets]
        if dropped:
            reason = (
                "re-assessed: not illegal"
                if decision.decision is Decision.CLOSED
                else "routed again: no longer for this hotline"
            )
            self._queue_withdrawal(conn, report_id, dropped, reason, self.clock.now(), actor)
        return decision, sorted({*told, *dropped})

    def _queue_withdrawal(
        self,
        conn: Tx,
        report_id: str,
        peers: list[str],
        reason: str,
        now: datetime,
        actor: str,
    ) -> Withdrawal:
        withdrawal = Withdrawal(
            id=new_id(now),
            report_id=uuid.UUID(report_id),
            origin=self.node_id,
            at=now,
            reason=reason,
        )
        self.store.enqueue_for_peers(
            conn,
            peers,
            record_type="withdrawal",
            record_id=str(withdrawal.id),
            report_id=report_id,
            payload=record_bytes(withdrawal),
            at=iso(now),
        )
        audit.append(
            conn,
            at=now,
            actor=actor,
            event="report.withdrawal_sent",
            subject=report_id,
            details={"reason": reason, "peers": peers},
        )
        return withdrawal

    def insert_routed(
        self, conn: Tx, rows: list[dict[str, Any]], actor: str, force: bool = False
    ) -> list[str]:
        """Insert new cases with their routing decided first, so that each is written once,
        with its final status and seq; returns the peers to push to after the commit."""
        plan = self.plan_routes(conn, rows, actor, force)
        for row in rows:
            if row["id"] in plan.states:
                row["status"], row["seq"] = plan.states[row["id"]]
        self.store.insert_many(conn, rows)
        return self.write_routes(conn, plan)

    def plan_routes(
        self, conn: Tx, rows: Sequence[CaseRow], actor: str, force: bool = False
    ) -> RoutePlan:
        """Decide for cases given as rows (stored, or about to be inserted); nothing written.
        Cases that are not ready (no verdict, or a trace still pending) are left out."""
        stamp = iso(self.clock.now())
        # Suspended peers too: routing records that a case would have gone to one.
        peers = [
            peer_view(p)
            for p in conn.execute("SELECT * FROM peers WHERE status IN ('active', 'suspended')")
        ]
        plan = RoutePlan()
        for row in rows:
            report_id = row["id"]
            if row["verdict"] is None:
                continue
            if row["status"] not in ("assessed",) and not force:
                continue
            evidence = orjson.loads(row["trace_json"]) if row["trace_json"] else None
            if evidence is None and row["trace_status"] == "pending" and not force:
                continue
            decision = decide(
                verdict=row["verdict"],
                category=row["category"],
                tlp=Tlp(row["tlp"]),
                hosting=hosting_facts(evidence, row["trace_status"]),
                our_country=self.country,
                peers=peers,
                is_origin=row["origin"] == self.node_id,
            )
            plan.decisions[report_id] = decision
            seq = int(row["seq"])
            payload = b""
            if any(t.kind == "peer" for t in decision.targets):
                # Only the origin has peer targets (decide() never relays): a new version goes out.
                seq += 1
                payload = record_bytes(build_report_record(row, evidence, seq=seq))
                plan.versions.append((report_id, seq, payload, stamp))
            for target in decision.targets:
                if target.kind == "peer":
                    plan.outbox.setdefault(target.name, []).append(
                        ("report", report_id, report_id, payload, stamp)
                    )
                else:
                    plan.channels.append(
                        (
                            target.name,
                            report_id,
                            "report",
                            {
                                "report_id": report_id,
                                "url": row["url"],
                                "category": row["category"],
                                "verdict": row["verdict"],
                                "legal_basis": row["legal_basis"],
                                "country": target.country,
                                "abuse_contact": (evidence or {}).get("abuse_contact"),
                                "cdn_name": (evidence or {}).get("cdn_name"),
                                "reason": target.reason,
                                "tlp": row["tlp"],
                            },
                            stamp,
                        )
                    )
            status = {
                Decision.CLOSED: "closed",
                Decision.MANUAL: "manual",
            }.get(decision.decision, "routed")
            plan.states[report_id] = (status, seq)
            targets = [t.to_dict() for t in decision.targets]
            plan.routings.append(
                (report_id, decision.decision.value, targets, decision.reasons, stamp, actor)
            )
            plan.entries.append(
                audit.Entry(
                    stamp,
                    actor,
                    "report.routed",
                    report_id,
                    {
                        "decision": decision.decision.value,
                        "targets": [f"{t.kind}:{t.name}" for t in decision.targets],
                        # A case that went to the fallback though a peer exists says why.
                        **(
                            {"rerouted": [t.rerouted for t in decision.targets if t.rerouted]}
                            if any(t.rerouted for t in decision.targets)
                            else {}
                        ),
                    },
                )
            )
        return plan

    def write_routes(self, conn: Tx, plan: RoutePlan) -> list[str]:
        """Write what `plan_routes` decided, once the cases are stored with its states;
        returns the peers that got new outbox rows (to push after commit)."""
        self.store.insert_versions(conn, plan.versions)
        for peer_id, items in plan.outbox.items():
            self.store.enqueue_peer_many(conn, peer_id, items)
        self.store.enqueue_channels(conn, plan.channels)
        self.store.insert_routings(conn, plan.routings)
        audit.append_many(conn, plan.entries)
        return sorted(plan.outbox)

    # reading -----------------------------------------------------------------------------
    async def list_cases(
        self, *, status: str | None = None, limit: int = 50, after: str | None = None
    ) -> list[dict[str, Any]]:
        return (await self.list_page(status=status, limit=limit, after=after))[0]

    async def list_page(
        self, *, status: str | None = None, limit: int = 50, after: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, one page after the cursor; the cursor of the next page, if any."""
        if status is not None and status not in STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(STATUSES)} (got {status!r})")
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000 (page on with --after)")
        if after is not None and "|" not in after:
            raise InvalidInput(f"after must be a cursor from a previous page (got {after!r})")
        rows = await self.store.list_cases(status=status, limit=limit + 1, after=after)
        more = len(rows) > limit
        rows = rows[:limit]
        cursor = f"{rows[-1]['received_at']}|{rows[-1]['id']}" if more else None
        return [summary(row) for row in rows], cursor

    async def resolve(self, ref: str) -> list[str]:
        """The case(s) a REF names: an id, the public 8-character reference, a notice's own
        reference (a grouped notice names several cases) or a local_ref."""
        ref = ref.strip()
        try:
            uuid.UUID(ref)
        except ValueError:
            pass
        else:
            return [ref]  # as given: _require says "no report with id …" in the user's words
        found = await self.store.ids_by_reference(ref) if ref else []
        if not found:
            raise NotFound(
                f"no report with id {ref!r}, nor with that public reference, notice"
                " reference or local_ref"
            )
        return found

    async def resolve_one(self, ref: str) -> str:
        found = await self.resolve(ref)
        if len(found) > 1:
            raise Conflict(
                f"{ref} names {len(found)} cases (a grouped notice): give one of {', '.join(found)}"
            )
        return found[0]

    async def show(self, report_id: str) -> dict[str, Any]:
        report_id = await self.resolve_one(report_id)
        row = await self._require(report_id)
        actions = await self.store.actions(report_id)
        addresses = await self.store.addresses(report_id)
        routing = await self.store.latest_routing(report_id)
        queued = self._held(row, await self.store.queued(report_id))
        return case_view(row, actions, addresses, routing, queued)

    def _held(self, row: aiosqlite.Row, queued: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A host notice waiting for the police shows as held, until when, and who clears it."""
        hours = self.hold_hours(row["category"])
        now = self.clock.now()
        for entry in queued:
            if entry["kind"] != "channel" or entry["state"] != "pending":
                continue
            if not self.role_served(entry["name"]):
                entry["state"] = "no channel"
                entry["detail"] = (
                    f"no channel serves role {entry['name']}: add one to node.toml"
                    " ([channels.NAME] with this role)"
                )
                continue
            entry["detail"] = entry["last_error"]  # e.g. no channel for this category
            if entry["name"] != "host_notice" or entry["record_type"] != "report":
                continue
            if hours is None or row["lea_cleared_at"] is not None:
                continue
            until = parse_iso(entry["created_at"]) + timedelta(hours=hours)
            if until > now:
                entry["state"] = "held"
                entry["held_until"] = iso(until)
                entry["detail"] = (
                    f"held for law enforcement until {iso(until)}; the police clear it"
                    f" (their channel answers cleared, or an analyst runs: hotline-node"
                    f" reports clear {short_reference(row['id'])})"
                )
        return queued


def _submitted_entry(row: dict[str, Any], at: str, actor: str, source: str) -> audit.Entry:
    return audit.Entry(
        at, actor, "report.submitted", row["id"], {"source": source, "url": row["url"]}
    )


def hosting_facts(evidence: dict[str, Any] | None, trace_status: str) -> HostingFacts:
    override = (evidence or {}).get("override") or {}
    if evidence is None or (trace_status == "failed" and not override):
        return HostingFacts(False, [], 0, False, override_country=override.get("country"))
    addresses = evidence.get("addresses", [])
    unknown = sum(1 for a in addresses if not a.get("cdn") and not a.get("country"))
    # Countries with no address: the origin's analyst gave the country (import, override),
    # which is hosting evidence like a trace's.
    traced = bool(addresses) or bool(override) or bool(evidence.get("countries"))
    return HostingFacts(
        traced=traced,
        countries=list(evidence.get("countries", [])),
        unknown_addresses=unknown,
        cdn=bool(evidence.get("cdn")),
        cdn_name=evidence.get("cdn_name"),
        override_country=override.get("country"),
    )


def peer_view(row: aiosqlite.Row) -> PeerView:
    return PeerView(
        node_id=row["node_id"],
        country=row["country"],
        categories=frozenset(orjson.loads(row["categories"])),
        max_tlp=Tlp(row["max_tlp"]),
        active=row["status"] == "active",
    )


def _short(value: str | None) -> str | None:
    # The wire caps evidence strings at 256 characters; data sources (mmdb network names,
    # RDAP) can be longer, and a long name must not stop a case from being forwarded.
    return None if value is None else value[:256]


def hosting_countries(evidence: dict[str, Any]) -> list[str]:
    """The case's jurisdiction: an analyst's (an override, or a country given at import)
    before what the trace found. This is what travels and what the case shows."""
    override = evidence.get("override") or {}
    if override.get("country"):
        return [override["country"]]
    return list(evidence.get("countries", []))


def build_report_record(row: CaseRow, evidence: dict[str, Any] | None, *, seq: int) -> Report:
    """The wire form of a case. Public description, contact and notes never leave the node."""
    evidence = evidence or {}
    addresses = [
        HostingAddress(
            ip=a["ip"],
            country=a.get("country"),
            basis=a.get("basis"),
            source=_short(a.get("source")),
            source_date=_short(a.get("source_date")),
            asn=a.get("asn"),
            network_name=_short(a.get("network_name")),
            cdn=bool(a.get("cdn")),
        )
        for a in evidence.get("addresses", [])[:64]
    ]
    return Report(
        id=uuid.UUID(row["id"]),
        origin=row["origin"],
        seq=seq,
        local_ref=row["local_ref"],
        received_at=parse_iso(row["received_at"]),
        assessed_at=parse_iso(row["assessed_at"]) if row["assessed_at"] else None,
        url=row["url"],
        assessment=Assessment(
            verdict=row["verdict"], category=row["category"], legal_basis=row["legal_basis"]
        ),
        hosting=Hosting(
            addresses=addresses,
            countries=hosting_countries(evidence)[:64],
            abuse_contact=_short(evidence.get("abuse_contact")),
            cdn=bool(evidence.get("cdn")),
            traced_at=parse_iso(evidence["traced_at"]) if evidence.get("traced_at") else None,
        ),
        tlp=row["tlp"],
    )


def summary(row: aiosqlite.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "url": row["url"],
        "origin": row["origin"],
        "status": row["status"],
        "category": row["category"],
        "verdict": row["verdict"],
        "received_at": row["received_at"],
        "duplicates": row["duplicates"],
        "trace_status": row["trace_status"],
    }


def case_view(
    row: aiosqlite.Row,
    actions: list[aiosqlite.Row],
    addresses: list[aiosqlite.Row],
    routing: aiosqlite.Row | None,
    queued: list[dict[str, Any]],
) -> dict[str, Any]:
    evidence = orjson.loads(row["trace_json"]) if row["trace_json"] else {}
    by_ip = {a.get("ip"): a for a in evidence.get("addresses", [])}
    return {
        "id": row["id"],
        "url": row["url"],
        "origin": row["origin"],
        "local_ref": row["local_ref"],
        "status": row["status"],
        "source": row["source"],
        "tlp": row["tlp"],
        "duplicates": row["duplicates"],
        "received_at": row["received_at"],
        "updated_at": row["updated_at"],
        "notes": row["notes"],
        "assessment": {
            "verdict": row["verdict"],
            "category": row["category"],
            "legal_basis": row["legal_basis"],
            "assessed_at": row["assessed_at"],
        },
        "hosting": {
            "status": row["trace_status"],
            "countries": hosting_countries(evidence),
            "addresses": [
                {
                    "ip": a["ip"],
                    "country": a["country"],
                    "basis": a["basis"],
                    "source": a["source"],
                    "asn": a["asn"],
                    "cdn": bool(a["cdn"]),
                    "source_date": by_ip.get(a["ip"], {}).get("source_date"),
                    "network_name": by_ip.get(a["ip"], {}).get("network_name"),
                }
                for a in addresses
            ],
            "abuse_contact": evidence.get("abuse_contact"),
            "cdn": bool(evidence.get("cdn")),
            "cdn_name": evidence.get("cdn_name"),
            "cnames": evidence.get("cnames", []),
            "traced_at": row["traced_at"],
            "errors": evidence.get("errors", []),
            "override": evidence.get("override"),
        },
        "routing": {
            "decision": routing["decision"] if routing else None,
            "targets": orjson.loads(routing["targets"]) if routing else [],
            "reasons": orjson.loads(routing["reasons"]) if routing else [],
            "decided_at": routing["decided_at"] if routing else None,
            "queued": queued,
        },
        "actions": [
            {
                "id": a["id"],
                "code": a["code"],
                "at": a["at"],
                "by": a["by_node"],
                "analyst": a["analyst"],
                "country": a["country"],
                "reason": a["reason"],
            }
            for a in actions
        ],
    }
