"""The action log: records an action on a case, applies its closing rule, and decides who is told.

Who is told:
- an action on a peer's case (ours as a holder: an analyst's, or a national channel's outcome)
  goes to the case's origin, and only there;
- an action on our own case goes to every peer holding it (each peer a report was queued for);
- an action received from a peer is recorded and told to nobody: records are never relayed.

Whether an action closes a case, and whose, is a cell of the lifecycle table (`lifecycle.py`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from node.cases.door import transition_txn
from node.cases.lifecycle import ActionSource, action_event
from node.clock import iso
from node.store import peer_outbox
from node.store.db import Tx
from node.store.reports import CaseAction, ReportStore
from protocol.ids import new_id
from protocol.records import Action, ActionCode, record_bytes

# Shown in timelines for a withdrawal (a record of its own on the wire, not an action code).
WITHDRAWN = "withdrawn"


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
        code: ActionCode,
        at: datetime,
        analyst: str | None,
        reason: str | None,
        source: ActionSource = ActionSource.LOCAL,
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
        self._insert(conn, action, at, source)
        told = [origin] if origin != self.node_id else peer_outbox.holders_txn(conn, report_id)
        peer_outbox.enqueue_for_peers_txn(
            conn,
            told,
            record_type="action",
            record_id=str(action.id),
            report_id=report_id,
            payload=record_bytes(action),
            at=iso(at),
        )
        return Recorded(str(action.id), told, True)

    def received_txn(self, conn: Tx, action: Action, *, now: datetime) -> bool:
        """A peer's action, already checked to be about a case it may act on; False if seen."""
        return self._insert(conn, action, now, ActionSource.PEER)

    def recovered_txn(self, conn: Tx, action: Action, *, now: datetime) -> bool:
        """Our own action, lost in a restore and given back by a peer: recorded, told to nobody
        (the holders had it then); False if held already."""
        return self._insert(conn, action, now, ActionSource.RECOVERED)

    def _insert(self, conn: Tx, action: Action, now: datetime, source: ActionSource) -> bool:
        report_id = str(action.report_id)
        inserted = ReportStore.insert_action(
            conn,
            CaseAction(
                str(action.id),
                report_id,
                action.code.value,
                iso(action.at),
                action.by,
                action.analyst,
                action.country,
                action.reason,
            ),
        )
        if inserted:
            event = action_event(
                action.code, source, by=action.by, origin=action.report_origin, here=self.node_id
            )
            # A refusal rolls the insert back with the rest of the caller's transaction.
            transition_txn(conn, report_id, event, at=iso(now))
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
        entry_id = str(uuid.uuid5(uuid.UUID(withdrawal_id), WITHDRAWN))
        ReportStore.insert_action(
            conn, CaseAction(entry_id, report_id, WITHDRAWN, iso(at), by, None, country, reason)
        )
