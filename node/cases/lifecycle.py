"""The case lifecycle as one table: a case's status, the events that happen to it, and where each
event takes it (in the manner of h11's `_state.py`).

Every code path that changes a case's status asks `next_status`: intake (a case starts `new`,
or `received` when a peer sends it), assessment, routing, actions (an analyst's, a peer's, a
national channel's outcome), withdrawal and override. A cell that is absent is refused: the
event cannot happen to a case in that status, and `CaseStateError` says so.

docs/protocol.md §9.9 states the rules that cross nodes (which actions close a case, and whose).
"""

from __future__ import annotations

from enum import Enum, StrEnum

from node.errors import N_, Conflict
from protocol.records import ActionCode


class CaseStatus(StrEnum):
    NEW = "new"  # ours, submitted or imported, not yet assessed
    ASSESSED = "assessed"  # ours, assessed; routed once its hosting is traced
    ROUTED = "routed"  # sent to where it belongs: peers, channels
    MANUAL = "manual"  # routing needs an analyst (hosting unknown, or no one to send it to)
    CLOSED = "closed"  # content gone, or not illegal
    WITHDRAWN = "withdrawn"  # retracted by its origin
    RECEIVED = "received"  # a peer's case held here, until its routing into our channels


class CaseEvent(Enum):
    """What happens to a case. The value says what a refusal says the case cannot be."""

    ASSESSMENT = "assessed"  # our analyst's verdict on our case (or a verdict given at import)
    OVERRIDE = "given a hosting country"  # an analyst sets the jurisdiction; routing follows
    ROUTED = "routed"  # routing found where it goes
    ROUTED_MANUAL = "routed to an analyst"  # routing could not decide
    ROUTED_CLOSED = "closed by routing"  # routing closes it: not illegal
    VERSION_RECEIVED = "updated by its origin"  # the origin sent a new version of its case
    LOCAL_ACTION = "acted on"  # our analyst's action that does not close the case here
    LOCAL_CLOSING = "closed"  # our analyst's action that closes it here
    PEER_ACTION = "acted on by a peer"
    PEER_CLOSING = "closed by a peer"
    CHANNEL_OUTCOME = "given a channel's outcome"  # a referral or notice sent, by a channel
    CHANNEL_CLOSING = "closed by a channel's outcome"
    WITHDRAWAL = "withdrawn"


S, E = CaseStatus, CaseEvent
_OPEN = (S.NEW, S.ASSESSED, S.ROUTED, S.MANUAL, S.RECEIVED)
# A case still being worked on somewhere: what a hash list that arrives later is matched against.
OPEN_STATUSES = tuple(status.value for status in _OPEN)
_ROUTABLE = (S.ASSESSED, S.ROUTED, S.MANUAL, S.RECEIVED)


def _each(
    statuses: tuple[CaseStatus, ...], event: CaseEvent, to: CaseStatus | None
) -> dict[tuple[CaseStatus, CaseEvent], CaseStatus]:
    """Cells for several statuses at once; `to=None` keeps each status as it is."""
    return {(status, event): to or status for status in statuses}


# (status, event) -> new status. An absent cell is refused.
TRANSITIONS: dict[tuple[CaseStatus, CaseEvent], CaseStatus] = {
    # Only our own cases are assessed (a received case's verdict is its origin's); a finished
    # case is not assessed again, since that would send it out again.
    **_each((S.NEW, S.ASSESSED, S.ROUTED, S.MANUAL), E.ASSESSMENT, S.ASSESSED),
    # An override keeps the status; the routing it forces decides the next one.
    **_each(_OPEN, E.OVERRIDE, None),
    **_each(_ROUTABLE, E.ROUTED, S.ROUTED),
    **_each(_ROUTABLE, E.ROUTED_MANUAL, S.MANUAL),
    **_each(_ROUTABLE, E.ROUTED_CLOSED, S.CLOSED),
    # A new version updates what we hold; its status stays (a withdrawn case stays withdrawn).
    **_each((S.RECEIVED, S.ROUTED, S.MANUAL, S.CLOSED, S.WITHDRAWN), E.VERSION_RECEIVED, None),
    # Our analyst acts on any case its origin has not withdrawn.
    **_each((*_OPEN, S.CLOSED), E.LOCAL_ACTION, None),
    **_each((*_OPEN, S.CLOSED), E.LOCAL_CLOSING, S.CLOSED),
    # A peer's action and a channel's outcome are facts: recorded whatever the status, and
    # they close no withdrawn case.
    **_each((*_OPEN, S.CLOSED, S.WITHDRAWN), E.PEER_ACTION, None),
    **_each((*_OPEN, S.CLOSED), E.PEER_CLOSING, S.CLOSED),
    (S.WITHDRAWN, E.PEER_CLOSING): S.WITHDRAWN,
    **_each((*_OPEN, S.CLOSED, S.WITHDRAWN), E.CHANNEL_OUTCOME, None),
    **_each((*_OPEN, S.CLOSED), E.CHANNEL_CLOSING, S.CLOSED),
    (S.WITHDRAWN, E.CHANNEL_CLOSING): S.WITHDRAWN,
    **_each((*_OPEN, S.CLOSED), E.WITHDRAWAL, S.WITHDRAWN),
}

# Content gone closes a case wherever it is said.
GONE = frozenset({ActionCode.CONTENT_REMOVED, ActionCode.CONTENT_UNAVAILABLE})


class ActionSource(Enum):
    LOCAL = "local"  # our analyst
    PEER = "peer"  # received from a peer
    CHANNEL = "channel"  # a national channel's outcome, recorded by the dispatcher
    # Our own, lost in a restore and given back by a peer (protocol.md §13.8): a fact from our
    # past, recorded whatever the case's status is now, like a peer's.
    RECOVERED = "recovered"


_ACTION_EVENTS = {
    ActionSource.LOCAL: (E.LOCAL_ACTION, E.LOCAL_CLOSING),
    ActionSource.PEER: (E.PEER_ACTION, E.PEER_CLOSING),
    ActionSource.CHANNEL: (E.CHANNEL_OUTCOME, E.CHANNEL_CLOSING),
    ActionSource.RECOVERED: (E.PEER_ACTION, E.PEER_CLOSING),
}


def closes(code: ActionCode, *, by: str, origin: str, here: str) -> bool:
    """Whether an action by node `by` on a case whose origin is `origin` closes it at `here`.

    Content gone closes it everywhere. `not_illegal` closes it at the node that says so, and at
    every holder when the origin says so (the origin withdrew its qualification); a holder's
    "not illegal here" is its verdict under its own law, and the origin's case stays open for
    the origin's analyst to decide.
    """
    if code in GONE:
        return True
    return code is ActionCode.NOT_ILLEGAL and by in (origin, here)


def action_event(
    code: ActionCode, source: ActionSource, *, by: str, origin: str, here: str
) -> CaseEvent:
    """The event an action is, at node `here`."""
    keeps, closing = _ACTION_EVENTS[source]
    return closing if closes(code, by=by, origin=origin, here=here) else keeps


class CaseStateError(Conflict):
    """An event that cannot happen to a case in its status."""

    def __init__(self, report_id: str, status: CaseStatus, event: CaseEvent) -> None:
        super().__init__(
            N_("report {report} is {status}: it cannot be {event}"),
            report=report_id,
            status=status,
            event=event,
        )
        self.case_status = status
        self.event = event


def next_status(report_id: str, status: str, event: CaseEvent) -> CaseStatus:
    """Where `event` takes a case in `status`; CaseStateError when the table refuses it."""
    current = CaseStatus(status)
    try:
        return TRANSITIONS[current, event]
    except KeyError:
        raise CaseStateError(report_id, current, event) from None


def allows(status: str, event: CaseEvent) -> bool:
    return (CaseStatus(status), event) in TRANSITIONS
