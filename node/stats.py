"""Figures for the operator and the annual report: counts, time to removal, time to forwarding."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from node.clock import iso
from node.errors import InvalidInput
from node.output import local_time, table
from node.store import metrics
from node.store.db import Database

DAY = 86_400
# INHOPE's headline figure is the share of content removed within three days of the report.
WITHIN_DAYS = 3
CLOSING_CODES = ("content_removed", "content_unavailable")
_LEAP_SECOND = re.compile(r"^(?P<minute>.{16}):60(?:[.][0-9]+)?(?P<offset>.*)$")


@dataclass(frozen=True)
class Period:
    """Reports received in [since, until); either end may be open."""

    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(cls, since: str | None, until: str | None) -> Period:
        """`YYYY-MM-DD` or an RFC 3339 time; a bare `until` date includes that whole day."""
        start = _parse_bound(since, "since", end=False)
        end = _parse_bound(until, "until", end=True)
        if start is not None and end is not None and start >= end:
            raise InvalidInput("since must be before until")
        return cls(start, end)

    def received(self) -> metrics.Received:
        """The period as the store selects reports by (stored time text sorts by time)."""
        return metrics.Received(
            iso(self.since) if self.since is not None else None,
            iso(self.until) if self.until is not None else None,
        )

    def to_dict(self) -> dict[str, str | None]:
        return {
            "since": iso(self.since) if self.since else None,
            "until": iso(self.until) if self.until else None,
        }


def _parse_bound(text: str | None, name: str, *, end: bool) -> datetime | None:
    if text is None or text == "":
        return None
    refused = InvalidInput(f"{name} must be YYYY-MM-DD or an RFC 3339 time (got {text!r})")
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            if end and day == date.max:
                return None  # "until 9999-12-31" has no day after it: no upper bound
            return datetime.combine(day + timedelta(days=1 if end else 0), time(), UTC)
        at = datetime.fromisoformat(_rfc3339(text))
    except ValueError:
        raise refused from None
    if at.tzinfo is None:
        raise InvalidInput(f"{name} needs a time zone, e.g. {text}Z")
    try:
        return at.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the first time UTC can hold
        raise refused from None


def _rfc3339(text: str) -> str:
    """What datetime.fromisoformat reads: RFC 3339 also allows a lower-case "t" and "z", and a
    leap second (:60), which a datetime cannot hold: it becomes the last instant before it."""
    upper = text.upper().replace("Z", "+00:00")
    leap = _LEAP_SECOND.match(upper)
    if leap is None:
        return upper
    return f"{leap['minute']}:59.999999{leap['offset']}"


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default): median(1, 2, 5, 10) = 3.5."""
    if not sorted_values:
        raise ValueError("no values")
    position = (len(sorted_values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


def durations(seconds: Iterable[int], *, within_days: int | None = None) -> dict[str, Any]:
    """Median and p90 of durations, in seconds and days; optionally the share within N days."""
    values = sorted(max(0, s) for s in seconds)  # a peer's clock running behind is not negative
    result: dict[str, Any] = {"cases": len(values)}
    for name, q in (("median", 0.5), ("p90", 0.9)):
        value = quantile(values, q) if values else None
        result[f"{name}_seconds"] = value
        result[f"{name}_days"] = value / DAY if value is not None else None
    if within_days is not None:
        within = sum(1 for s in values if s <= within_days * DAY)
        result[f"within_{within_days}_days"] = within
        result[f"share_within_{within_days}_days"] = within / len(values) if values else None
    return result


async def collect(db: Database, *, node_id: str, period: Period | None = None) -> dict[str, Any]:
    """Every figure over the reports received in the period (read-only)."""
    period = period or Period()
    received = period.received()
    return {
        "node_id": node_id,
        "period": period.to_dict(),
        "reports": await metrics.report_count(db, received),
        "by_status": await metrics.counts_by(db, "status", "unknown", received),
        "by_category": await metrics.counts_by(db, "category", "unset", received),
        "by_verdict": await metrics.counts_by(db, "verdict", "unassessed", received),
        "by_source": await metrics.counts_by(db, "source", "unknown", received),
        "by_hosting_country": await metrics.counts_by_hosting_country(db, received),
        "by_peer": await _by_peer(db, node_id, received),
        "rerouted": await metrics.rerouted(db, received),
        "time_to_removal": durations(
            await metrics.first_action_delays(db, CLOSING_CODES, received),
            within_days=WITHIN_DAYS,
        ),
        "time_to_forwarding": durations(
            await metrics.first_action_delays(db, ("forwarded",), received)
        ),
    }


async def _by_peer(db: Database, node_id: str, received: metrics.Received) -> list[dict[str, Any]]:
    """Per peer: our reports delivered to it, still queued or dead-lettered; its reports to us."""
    peers: dict[str, dict[str, Any]] = {}

    def entry(peer: str) -> dict[str, Any]:
        return peers.setdefault(
            peer, {"peer": peer, "forwarded": 0, "queued": 0, "dead": 0, "received": 0}
        )

    states = {"sent": "forwarded", "pending": "queued", "dead": "dead"}
    for count in await metrics.forwarded_by_peer(db, received):
        if count.state in states:
            entry(count.peer)[states[count.state]] += count.reports
    for origin, n in (await metrics.received_by_origin(db, node_id, received)).items():
        entry(origin)["received"] += n
    return [peers[name] for name in sorted(peers)]


# rendering ----------------------------------------------------------------------------------
def _days(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} d"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _count_rows(counts: dict[str, int], key: str) -> list[dict[str, Any]]:
    return [{key: name, "count": count} for name, count in counts.items()]


def render_text(doc: dict[str, Any], colour: bool | None = None) -> str:
    period = doc["period"]
    removal, forwarding = doc["time_to_removal"], doc["time_to_forwarding"]
    parts = [
        f"node {doc['node_id']}: {doc['reports']} report(s) received"
        f" from {local_time(period['since']) if period['since'] else 'the start'}"
        f" until {local_time(period['until']) if period['until'] else 'now'}",
        "",
        "time to removal (receipt to first content_removed/content_unavailable)",
        f"  cases {removal['cases']}   median {_days(removal['median_days'])}"
        f"   p90 {_days(removal['p90_days'])}"
        f"   within {WITHIN_DAYS} days {_share(removal[f'share_within_{WITHIN_DAYS}_days'])}"
        f" ({removal[f'within_{WITHIN_DAYS}_days']})",
        "time to forwarding (receipt to first delivery to a peer)",
        f"  cases {forwarding['cases']}   median {_days(forwarding['median_days'])}"
        f"   p90 {_days(forwarding['p90_days'])}",
    ]
    for title, key, column in (
        ("by status", "by_status", "status"),
        ("by category", "by_category", "category"),
        ("by verdict", "by_verdict", "verdict"),
        ("by source", "by_source", "source"),
        ("by hosting country", "by_hosting_country", "country"),
        ("rerouted to the fallback although a peer hotline exists", "rerouted", "reason"),
    ):
        parts += ["", title, table(_count_rows(doc[key], column), [column, "count"], colour)]
    parts += [
        "",
        "by peer (forwarded/queued/dead: our reports; received: theirs)",
        table(doc["by_peer"], ["peer", "forwarded", "queued", "dead", "received"], colour),
    ]
    return "\n".join(parts)


def csv_rows(doc: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """Long format (section, key, value): one row per figure, easy to pivot in a spreadsheet."""
    rows: list[tuple[str, str, Any]] = [
        ("period", "since", doc["period"]["since"] or ""),
        ("period", "until", doc["period"]["until"] or ""),
        ("reports", "total", doc["reports"]),
    ]
    for section in ("time_to_removal", "time_to_forwarding"):
        for key, value in doc[section].items():
            rows.append((section, key, _plain(value)))
    for key in (
        "by_status",
        "by_category",
        "by_verdict",
        "by_source",
        "by_hosting_country",
        "rerouted",
    ):
        rows += [(key.removeprefix("by_"), name, count) for name, count in doc.get(key, {}).items()]
    for peer in doc["by_peer"]:
        rows += [
            (f"peer_{field}", peer["peer"], peer[field])
            for field in ("forwarded", "queued", "dead", "received")
        ]
    return rows


def _plain(value: float | None) -> str | float:
    """No exponent notation for spreadsheets: 2 seconds is 0.000023 days, not 2.3e-05."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".")
    return value


def write_csv(doc: dict[str, Any], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("section", "key", "value"))
        writer.writerows(csv_rows(doc))
