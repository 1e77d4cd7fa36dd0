"""The action log: records an action on a case, applies its closing rule, and decides who is told.

Who is told:
- an action on a peer's case (ours as a holder: an analyst's, or a national channel's outcome)
  goes to the case's origin, and only there;
- an action on our own case goes to every peer holding it (each peer a report was queued for);
- an action received from a peer is recorded and told to nobody: records are never relayed.

Which actions close a case (docs/protocol.md §9.9 states the same rules):
- `content_removed` and `content_unavailable` close it wherever they are recorded: the content
  is gone;
- `not_illegal` closes it at the node that says so, and at every holder when the origin says so
  (the origin withdrew its qualification). A holder's "not illegal here" is its verdict under its
  own law: the origin's case stays open for the origin's analyst to decide;
- nothing changes a withdrawn case.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from node.clock import iso
from node.store.db import Tx
from node.store.reports import ReportStore
from protocol.ids import new_id
from protocol.records import Action, ActionCode, record_bytes

GONE = frozenset({ActionCode.CONTENT_REMOVED, ActionCode.CONTENT_UNAVAILABLE})
# Shown in timelines for a withdrawal (a record of its own on the wire, not an action code).
WITHDRAWN = "withdrawn"


def closes(code: ActionCode, *, by: str, origin: str, here: str) -> bool:
    """Whether an action by node `by` on a case whose origin is `origin` closes it at `here`."""
    if code in GONE:
        return True
    return code is ActionCode.NOT_ILLEGAL and by in (origin, here)


@dataclass(frozen=True)
class Recorded:
    action_id: str
    told: list[str]  # peers the action was queued for
    new: bool  # False when an action with this id was already recorded


class ActionLog:
    def __init__(self, node_id: str, country: str) -> None:
        self.node_id = node_id
        self.country = country

    def record_txn(
        self,
        conn: Tx,
        *,
        report_id: str,
        origin: str,
        status: str,
        code: ActionCode,
        at: datetime,
        analyst: str | None,
        reason: str | None,
        country: str | None = None,
    ) -> Recorded:
        """Our own action (an analyst's or a channel's), told to whoever must know."""
        action = Action(
            id=new_id(at),
            report_id=uuid.UUID(report_id),
            report_origin=origin,
            code=code,
            at=at,
            by=self.node_id,
            analyst=analyst[:256] if analyst else None,
            country=country or self.country,
            reason=reason,
        )
        self._insert(conn, action, status, at)
        told = [origin] if origin != self.node_id else ReportStore.holders(conn, report_id)
        ReportStore.enqueue_for_peers(
            conn,
            told,
            record_type="action",
            record_id=str(action.id),
            report_id=report_id,
            payload=record_bytes(action),
            at=iso(at),
        )
        return Recorded(str(action.id), told, True)

    def received_txn(self, conn: Tx, action: Action, *, status: str, now: datetime) -> bool:
        """A peer's action, already checked to be about a case it may act on; False if seen."""
        return self._insert(conn, action, status, now)

    def _insert(self, conn: Tx, action: Action, status: str, now: datetime) -> bool:
        report_id = str(action.report_id)
        inserted = ReportStore.insert_action(
            conn,
            {
                "id": str(action.id),
                "report_id": report_id,
                "code": action.code.value,
                "at": iso(action.at),
                "by_node": action.by,
                "analyst": action.analyst,
                "country": action.country,
                "reason": action.reason,
            },
        )
        if inserted and status != "withdrawn":
            changes: dict[str, str] = {"updated_at": iso(now)}
            if closes(action.code, by=action.by, origin=action.report_origin, here=self.node_id):
                changes["status"] = "closed"
            ReportStore.update(conn, report_id, changes)
        return inserted

    @staticmethod
    def withdrawn_txn(
        conn: Tx,
        *,
        report_id: str,
        withdrawal_id: str,
        by: str,
        country: str,
        at: datetime,
        reason: str | None,
    ) -> None:
        """A withdrawal in the case's timeline, with the same entry id at the origin and peers."""
        ReportStore.insert_action(
            conn,
            {
                "id": str(uuid.uuid5(uuid.UUID(withdrawal_id), WITHDRAWN)),
                "report_id": report_id,
                "code": WITHDRAWN,
                "at": iso(at),
                "by_node": by,
                "analyst": None,
                "country": country,
                "reason": reason,
            },
        )
