"""The soak's bookkeeping, kept apart from the node processes so that it can be tested alone.

What the driver was told (`Case`), what each node holds at the end (`Holdings`, read from its
database), and the three judgements made from them: which records were lost, which were
applied more than once, and how fast each node's memory grows (`rss_slope`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

# Action codes that a node records at most once per case in the soak: `forwarded` by the
# origin (each case goes to one peer), `received` by the destination (its id is derived from
# the case, so both ends agree), and `content_removed`, which the driver posts once per case.
ONCE_PER_CASE = ("forwarded", "received", "content_removed")


@dataclass
class Case:
    """One case the driver tried to create at `origin`, hosted in `destination`'s country.

    `acknowledged`: both the submission and the assessment were answered with success.
    Otherwise the answer to one of them was lost (its node was killed or did not answer in
    time): the case is uncertain, and counts only if its origin holds it assessed.
    `outcome`: the id of the `content_removed` action acknowledged at the destination;
    `outcome_uncertain`: that post's answer was lost.
    """

    url: str
    origin: str
    destination: str
    report_id: str | None = None
    acknowledged: bool = False
    outcome: str | None = None
    outcome_uncertain: bool = False


@dataclass
class Holdings:
    """What one node holds at the end, as read from its store.

    `own`: this node's own cases, by URL: (report id, assessed). `reports`: the ids of every
    case it holds. `actions`: action id -> (report id, code, by node).
    """

    node_id: str
    own: dict[str, tuple[str, bool]] = field(default_factory=dict)
    reports: set[str] = field(default_factory=set)
    actions: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def has_action(self, report_id: str, code: str, by: str) -> bool:
        return (report_id, code, by) in self._slots

    @cached_property
    def _slots(self) -> set[tuple[str, str, str]]:
        """Read once, after `actions` is filled."""
        return set(self.actions.values())


@dataclass(frozen=True)
class Loss:
    url: str
    what: str


@dataclass(frozen=True)
class Accounting:
    counted: int  # cases that had to arrive: acknowledged, or uncertain but held assessed
    uncertain_counted: int
    uncertain_dropped: int  # uncertain cases their origin does not hold assessed
    losses: list[Loss]


def account(cases: Iterable[Case], holdings: dict[str, Holdings]) -> Accounting:
    """Every case that had to reach its destination, and what of it did not.

    For each counted case: the destination holds it; its origin still holds it (an
    acknowledged case must survive a SIGKILL of its origin); the origin holds the
    destination's `received` action (the receipt came back); and an outcome posted at the
    destination (acknowledged, or uncertain but held there) is held by the origin.
    """
    counted = uncertain_counted = uncertain_dropped = 0
    losses: list[Loss] = []
    for case in cases:
        origin, destination = holdings[case.origin], holdings[case.destination]
        held = origin.own.get(case.url)
        if case.acknowledged:
            report_id = case.report_id
            if held is None or held[0] != report_id:
                losses.append(Loss(case.url, f"acknowledged but not held by {case.origin}"))
        elif held is not None and held[1]:
            report_id = held[0]
            uncertain_counted += 1
        else:
            uncertain_dropped += 1
            continue
        counted += 1
        assert report_id is not None
        if report_id not in destination.reports:
            losses.append(Loss(case.url, f"not held by its destination {case.destination}"))
            continue
        if not origin.has_action(report_id, "received", case.destination):
            losses.append(Loss(case.url, f"{case.origin} lacks {case.destination}'s receipt"))
        outcome_held = case.outcome is not None or (
            case.outcome_uncertain
            and destination.has_action(report_id, "content_removed", case.destination)
        )
        if outcome_held and not origin.has_action(report_id, "content_removed", case.destination):
            losses.append(Loss(case.url, f"{case.destination}'s outcome not at {case.origin}"))
    return Accounting(counted, uncertain_counted, uncertain_dropped, losses)


@dataclass(frozen=True)
class AuditRow:
    event: str
    subject: str
    details: str  # the entry's JSON details, as stored


@dataclass(frozen=True)
class EvidenceRow:
    """An evidence frame kept for an accepted record: kept only when a record is applied."""

    sender: str
    record_type: str
    record_id: str


def duplicates(
    holdings: Holdings, audit_rows: Sequence[AuditRow], evidence_rows: Sequence[EvidenceRow]
) -> set[tuple[str, ...]]:
    """The records this node applied more than once, each named once however many checks see it.

    Three independent checks, each able to see a duplicate that the store's keys let through:
    - the audit log: a second `report.received` for a case, a second `report.updated` for the
      same version, or a second `action.received` for the same action id (the log is
      append-only; each application of a record writes its entry);
    - the evidence frames: two frames kept for the same action (a frame is kept only when the
      record is applied, whatever message id it came under);
    - the actions: two rows of the same once-per-case code by the same node on one case (a
      duplicate minted under a fresh id, which no primary key would stop).
    A report is named ("report", id); an action ("action", report id, code, by node).
    """
    found: set[tuple[str, ...]] = set()

    def action_key(action_id: str) -> tuple[str, ...]:
        slot = holdings.actions.get(action_id)
        return ("action", *slot) if slot else ("action-id", action_id)

    per_key: Counter[tuple[str, ...]] = Counter()
    for row in audit_rows:
        if row.event == "report.received":
            per_key[("received", row.subject)] += 1
        elif row.event == "report.updated":
            seq = json.loads(row.details).get("seq")
            per_key[("updated", row.subject, str(seq))] += 1
        elif row.event == "action.received":
            per_key[("action", str(json.loads(row.details).get("action")))] += 1
    for key, count in per_key.items():
        if count > 1:
            found.add(action_key(key[1]) if key[0] == "action" else ("report", key[1]))
    frames = Counter(r.record_id for r in evidence_rows if r.record_type == "action")
    found.update(action_key(action_id) for action_id, count in frames.items() if count > 1)
    slots = Counter(slot for slot in holdings.actions.values() if slot[1] in ONCE_PER_CASE)
    found.update(("action", *slot) for slot, count in slots.items() if count > 1)
    return found


@dataclass(frozen=True)
class Sample:
    """One reading of a node process's resident memory: seconds since it started, MiB."""

    age: float
    rss_mib: float


def rss_slope(segments: Sequence[Sequence[Sample]], warmup: float = 60.0) -> float | None:
    """Memory growth in MiB/h over a node's process lifetimes (segments between restarts).

    A pooled within-segment regression: each segment is centred on its own means, so the
    drop at a restart and the level each process settles at do not count as growth; the
    first `warmup` seconds of each process (imports, caches filling) are skipped. None when
    no segment has two samples after its warm-up.
    """
    sxy = sxx = 0.0
    for segment in segments:
        kept = [s for s in segment if s.age >= warmup]
        if len(kept) < 2:
            continue
        mean_t = sum(s.age for s in kept) / len(kept)
        mean_r = sum(s.rss_mib for s in kept) / len(kept)
        sxy += sum((s.age - mean_t) * (s.rss_mib - mean_r) for s in kept)
        sxx += sum((s.age - mean_t) ** 2 for s in kept)
    if sxx == 0:
        return None
    return sxy / sxx * 3600.0
