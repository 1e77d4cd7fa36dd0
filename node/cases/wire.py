"""The wire form of a case: the report record a case is sent as, and the jurisdiction it carries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from node.clock import parse_iso
from node.hashes.values import HashValue
from node.store.reports import Case
from protocol.records import Assessment, ContentHash, Hosting, HostingAddress, Report


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


def build_report_record(
    row: Case,
    evidence: dict[str, Any] | None,
    *,
    seq: int,
    hashes: Sequence[HashValue] = (),
) -> Report:
    """The wire form of a case, with its hashes. Public description, contact and notes never
    leave the node."""
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
        id=uuid.UUID(row.id),
        origin=row.origin,
        seq=seq,
        local_ref=row.local_ref,
        received_at=parse_iso(row.received_at),
        assessed_at=parse_iso(row.assessed_at) if row.assessed_at else None,
        url=row.url,
        assessment=Assessment(
            verdict=row.verdict, category=row.category, legal_basis=row.legal_basis
        ),
        hosting=Hosting(
            addresses=addresses,
            countries=hosting_countries(evidence)[:64],
            abuse_contact=_short(evidence.get("abuse_contact")),
            cdn=bool(evidence.get("cdn")),
            traced_at=parse_iso(evidence["traced_at"]) if evidence.get("traced_at") else None,
        ),
        hashes=content_hashes(hashes),
        tlp=row.tlp,
    )


def content_hashes(hashes: Sequence[HashValue]) -> tuple[ContentHash, ...]:
    """A case's hashes as a report record carries them, each digest once, a PDQ hash with its
    quality (routing leaves out, per peer, what that peer does not read: protocol.features)."""
    unique: dict[tuple[str, bytes], HashValue] = {}
    for value in hashes:
        unique.setdefault((value.alg.value, value.digest), value)
    return tuple(
        ContentHash(alg=value.alg, value=value.hex, quality=value.quality)
        for value in unique.values()
    )
