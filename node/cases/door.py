"""The one door through which a case's status changes: read inside the writer transaction,
asked of the lifecycle table, written with a guard.

Whoever changes a case (intake, assessment, review, override, routing, withdrawal, an action by
an analyst, a peer or a channel, a new version from the origin) calls `transition_txn` inside
its write transaction; new cases enter through `admit_txn`. Nothing else writes a case's
status (tests/node/test_case_door.py holds the code to that). Because the status is read in
the same transaction as the write, a status read earlier on the reader connection can no
longer win over a change that landed in between (a peer's `content_removed` between an
analyst's look and their assessment): the door reads `closed`, and the table refuses.
"""

from __future__ import annotations

from collections.abc import Sequence

from node.cases.lifecycle import CaseEvent, CaseStatus, next_status
from node.errors import N_, NotFound
from node.store.db import Tx
from node.store.reports import Case, ReportStore

# Where a case enters the lifecycle: ours when submitted or imported, a peer's when received.
ENTRY_STATUSES = frozenset({CaseStatus.NEW, CaseStatus.RECEIVED})


class StaleCaseError(RuntimeError):
    """The guarded write found the case in another status than the one just read. One writer
    connection makes this impossible; it is raised, not ignored, should that ever change."""


def transition_txn(
    conn: Tx, report_id: str, event: CaseEvent, *, at: str, seq: int | None = None
) -> CaseStatus:
    """Apply `event` to the case and return its new status (the same when the event keeps
    it): CaseStateError (nothing written) when the table refuses it, NotFound when there is
    no such case. `seq` moves the case to a new version with it."""
    head = ReportStore.head_txn(conn, report_id)
    if head is None:
        raise NotFound(N_("no report with id {report!r}"), report=report_id)
    after = next_status(report_id, head.status, event)
    if not ReportStore.set_status_txn(
        conn, report_id, expected=head.status, status=after.value, at=at, seq=seq
    ):
        raise StaleCaseError(f"report {report_id} changed under its own write transaction")
    return after


def entry_status(report_id: str, events: Sequence[CaseEvent], *, ours: bool) -> CaseStatus:
    """The status a new case enters with, after the events that happen to it at once (an
    import's verdict, its routing), each asked of the table from where the case enters."""
    status = CaseStatus.NEW if ours else CaseStatus.RECEIVED
    for event in events:
        status = next_status(report_id, status, event)
    return status


def admit_txn(
    conn: Tx, cases: list[Case], *, routed: dict[str, tuple[str, int]] | None = None
) -> None:
    """Insert new cases. Their status comes from `entry_status`, or from routing as they are
    inserted (`routed`: id -> (status, seq), which routing asked of the table the same way);
    only an assessed case gets beyond where cases enter, and a case that breaks this is a bug,
    refused."""
    routed = routed or {}
    for case in cases:
        status = routed[case.id][0] if case.id in routed else case.status
        if CaseStatus(status) not in ENTRY_STATUSES and not case.verdict:
            raise ValueError(f"a new case cannot enter as {status}: {case.id}")
    ReportStore.insert_many(conn, cases, routed)
