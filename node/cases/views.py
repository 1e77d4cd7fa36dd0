"""Reading cases: lists page by page, references resolved, and the whole of one case as shown."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from typing import Any, Protocol

import orjson

from node.cases.hashes import hashes_view
from node.cases.intake import choice
from node.cases.lifecycle import CaseStatus
from node.cases.wire import hosting_countries
from node.clock import Clock, iso, parse_iso
from node.errors import N_, Conflict, InvalidInput, NotFound, Sentence
from node.store import hashlists, report_hashes, submissions
from node.store.hashlists import CaseMatch
from node.store.reports import Case, CaseAction, ReportStore, Routing, StoredAddress
from node.store.reviews import ReviewStore
from protocol.ids import short_reference


class NoticeRules(Protocol):
    """What the channels say of queued notices; they follow node.toml as it is edited."""

    def hold_hours(self, category: str | None) -> int | None:
        """How long a host notice of this category waits for the police (None: not at all)."""

    def role_served(self, role: str) -> bool:
        """Whether a channel serves this routing role."""


class CaseViews:
    def __init__(self, store: ReportStore, clock: Clock, notices: NoticeRules) -> None:
        self.store = store
        self.clock = clock
        self.notices = notices

    async def require(self, report_id: str) -> Case:
        try:
            uuid.UUID(report_id)
        except (ValueError, TypeError, AttributeError):
            raise NotFound(N_("no report with id {report!r}"), report=report_id) from None
        row = await self.store.get(report_id)
        if row is None:
            raise NotFound(N_("no report with id {report}"), report=report_id)
        return row

    async def list_cases(
        self, *, status: str | None = None, limit: int = 50, after: str | None = None
    ) -> list[dict[str, Any]]:
        return (await self.list_page(status=status, limit=limit, after=after))[0]

    async def list_page(
        self, *, status: str | None = None, limit: int = 50, after: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, one page after the cursor; the cursor of the next page, if any."""
        if status is not None:
            status = choice(CaseStatus, status, "status").value
        if not 1 <= limit <= 1000:
            raise InvalidInput(N_("limit must be between 1 and 1000 (page on with --after)"))
        if after is not None and "|" not in after:
            raise InvalidInput(
                N_("after must be a cursor from a previous page (got {value!r})"), value=after
            )
        rows = await self.store.list_cases(status=status, limit=limit + 1, after=after)
        more = len(rows) > limit
        rows = rows[:limit]
        cursor = f"{rows[-1].received_at}|{rows[-1].id}" if more else None
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
                N_(
                    "no report with id {ref!r}, nor with that public reference, notice"
                    " reference or local_ref"
                ),
                ref=ref,
            )
        return found

    async def resolve_one(self, ref: str) -> str:
        found = await self.resolve(ref)
        if len(found) > 1:
            raise Conflict(
                N_("{ref} names {count} cases (a grouped notice): give one of {cases}"),
                ref=ref,
                count=len(found),
                cases=", ".join(found),
            )
        return found[0]

    async def show(self, report_id: str) -> dict[str, Any]:
        report_id = await self.resolve_one(report_id)
        row = await self.require(report_id)
        actions = await self.store.actions(report_id)
        addresses = await self.store.addresses(report_id)
        routing = await self.store.latest_routing(report_id)
        queued = self.held(row, await self.store.queued(report_id))
        case = case_view(row, actions, addresses, routing, queued)
        # Every member of the public who reported the URL, in the order they came.
        case["submissions"] = [
            dataclasses.asdict(s) for s in await submissions.for_case(self.store.db, report_id)
        ]
        # Hashes given with the case, and why a low-quality PDQ hash is never matched.
        case["hashes"] = hashes_view(await report_hashes.for_report(self.store.db, report_id))
        # A verdict waiting for a reviewer, or rejected by one, is part of the case as shown.
        review = await ReviewStore(self.store.db).get(report_id)
        case["review"] = review.shown() if review else None
        # Known content: the lists its hashes are on, closest first (evidence, not a verdict).
        found = await hashlists.matches_for(self.store.db, [report_id])
        case["matches"] = [match_view(m) for m in found.get(report_id, [])]
        return case

    def held(self, row: Case, queued: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A host notice waiting for the police shows as held, until when, and who clears it."""
        hours = self.notices.hold_hours(row.category)
        now = self.clock.now()
        for entry in queued:
            if entry["state"] == "cancelled":
                entry["detail"] = entry["last_error"]  # why a new decision cancelled it
                continue
            if entry["kind"] != "channel" or entry["state"] != "pending":
                continue
            if not self.notices.role_served(entry["name"]):
                entry["state"] = "no channel"
                entry["detail"] = (
                    f"no channel serves role {entry['name']}: add one to node.toml"
                    " ([channels.NAME] with this role)"
                )
                continue
            entry["detail"] = entry["last_error"]  # e.g. no channel for this category
            if entry["name"] != "host_notice" or entry["record_type"] != "report":
                continue
            if hours is None or row.lea_cleared_at is not None:
                continue
            until = parse_iso(entry["created_at"]) + timedelta(hours=hours)
            if until > now:
                entry["state"] = "held"
                entry["held_until"] = iso(until)
                entry["detail"] = (
                    f"held for law enforcement until {iso(until)}; the police clear it"
                    f" (their channel answers cleared, or an analyst runs: hotline-node"
                    f" reports clear {short_reference(row.id)})"
                )
        return queued


def summary(row: Case) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": row.url,
        "origin": row.origin,
        "status": row.status,
        "category": row.category,
        "verdict": row.verdict,
        "received_at": row.received_at,
        "duplicates": row.duplicates,
        "trace_status": row.trace_status,
    }


def case_view(
    row: Case,
    actions: list[CaseAction],
    addresses: list[StoredAddress],
    routing: Routing | None,
    queued: list[dict[str, Any]],
) -> dict[str, Any]:
    evidence = orjson.loads(row.trace_json) if row.trace_json else {}
    by_ip = {a.get("ip"): a for a in evidence.get("addresses", [])}
    return {
        "id": row.id,
        "url": row.url,
        "origin": row.origin,
        "local_ref": row.local_ref,
        "status": row.status,
        "source": row.source,
        "tlp": row.tlp,
        "duplicates": row.duplicates,
        "received_at": row.received_at,
        "updated_at": row.updated_at,
        "notes": row.notes,
        "assessment": {
            "verdict": row.verdict,
            "category": row.category,
            "legal_basis": row.legal_basis,
            "assessed_at": row.assessed_at,
        },
        "hosting": {
            "status": row.trace_status,
            "countries": hosting_countries(evidence),
            "addresses": [
                {
                    "ip": a.ip,
                    "country": a.country,
                    "basis": a.basis,
                    "source": a.source,
                    "asn": a.asn,
                    "cdn": bool(a.cdn),
                    "source_date": by_ip.get(a.ip, {}).get("source_date"),
                    "network_name": by_ip.get(a.ip, {}).get("network_name"),
                }
                for a in addresses
            ],
            "abuse_contact": evidence.get("abuse_contact"),
            "cdn": bool(evidence.get("cdn")),
            "cdn_name": evidence.get("cdn_name"),
            "cnames": evidence.get("cnames", []),
            "traced_at": row.traced_at,
            "errors": evidence.get("errors", []),
            "override": evidence.get("override"),
        },
        "routing": {
            "decision": routing.decision if routing else None,
            "targets": routing.targets if routing else [],
            "reasons": routing.reasons if routing else [],
            "decided_at": routing.decided_at if routing else None,
            "queued": queued,
        },
        "actions": [
            {
                "id": a.id,
                "code": a.code,
                "at": a.at,
                "by": a.by_node,
                "analyst": a.analyst,
                "country": a.country,
                "reason": a.reason,
            }
            for a in actions
        ],
    }


def match_view(match: CaseMatch) -> dict[str, Any]:
    """A case's hash found on a list, as `reports show`, the API and the console show it."""
    view: dict[str, Any] = {
        "list": match.list_name,
        "owner": match.list_owner,
        "country": match.owner_country,
        "type": match.value.alg.value,
        "entry": match.value.text,
        "distance": match.distance,
        "category": match.category,
        "grade": match.grade,
        "since": match.since,
        "matched_at": match.matched_at,
        "removed_at": match.removed_at,
    }
    view["known"] = str(known_sentence(view))
    return view


def known_sentence(match: dict[str, Any]) -> Sentence:
    """What a match tells the analyst: whose list, since when (the console translates it)."""
    if match["country"] is not None:
        return Sentence(
            N_("known to {country} ({owner}) since {since}"),
            country=match["country"],
            owner=match["owner"],
            since=match["since"],
        )
    return Sentence(
        N_("on our list {list} since {since}"), list=match["list"], since=match["since"]
    )
