"""What every channel adapter takes and returns: one message about one or more cases."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from protocol.ids import short_reference


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
    # The case's TLP 2.0 marking; rows queued before it was carried are treated as amber.
    tlp: str = "amber"

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> CaseItem:
        """TypeError or KeyError when a field is missing or not text: the row is unreadable."""
        for name, value in payload.items():
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} is not text")
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
            tlp=payload.get("tlp") or "amber",
        )


@dataclass(frozen=True)
class Message:
    """One delivery: a role, its cases (several for a grouped host notice), a reminder flag."""

    role: str
    items: tuple[CaseItem, ...]
    reminder: bool = False
    row_ids: tuple[int, ...] = field(default=())
    # `channels test`: marked TEST in the subject and `"test": true`, never taken as a case.
    test: bool = False
    # A grouped notice's own short reference (one case: the case's public reference).
    notice_ref: str | None = None

    @property
    def recipient_hint(self) -> str | None:
        return self.items[0].abuse_contact if self.items else None

    @property
    def tlp(self) -> str:
        """The most restrictive marking of its cases: the message is shared no wider."""
        return max((item.tlp for item in self.items), key=TLP_RANK.index, default="amber")

    @property
    def reference(self) -> str:
        if self.notice_ref:
            return self.notice_ref
        return "+".join(short_reference(item.report_id) for item in self.items)


TLP_RANK = ["clear", "green", "amber", "amber+strict", "red"]


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
