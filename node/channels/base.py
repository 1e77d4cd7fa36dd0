"""What every channel adapter takes and returns: one message about one or more cases."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class CaseItem:
    report_id: str
    url: str
    category: str | None
    verdict: str | None
    legal_basis: str | None
    country: str | None
    abuse_contact: str | None
    cdn_name: str | None
    reason: str

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> CaseItem:
        return cls(
            report_id=payload["report_id"],
            url=payload["url"],
            category=payload.get("category"),
            verdict=payload.get("verdict"),
            legal_basis=payload.get("legal_basis"),
            country=payload.get("country"),
            abuse_contact=payload.get("abuse_contact"),
            cdn_name=payload.get("cdn_name"),
            reason=payload.get("reason", ""),
        )


@dataclass(frozen=True)
class Message:
    """One delivery: a role, its cases (several for a grouped host notice), a reminder flag."""

    role: str
    items: tuple[CaseItem, ...]
    reminder: bool = False
    row_ids: tuple[int, ...] = field(default=())

    @property
    def recipient_hint(self) -> str | None:
        return self.items[0].abuse_contact if self.items else None


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    detail: str
    # A refusal that retrying cannot fix (HTTP 4xx, SMTP 5xx, no recipient).
    permanent: bool = False
    # The police answered that the host may be notified now (law-enforcement-first hold).
    cleared: bool = False


class Channel(Protocol):
    name: str
    kind: str

    async def deliver(self, message: Message) -> Outcome: ...
