"""The case lifecycle table, cell by cell, against a specification written out here on its own."""

from __future__ import annotations

import pytest

from node.cases.lifecycle import (
    TRANSITIONS,
    ActionSource,
    CaseEvent,
    CaseStateError,
    CaseStatus,
    action_event,
    allows,
    next_status,
)
from node.errors import Conflict
from protocol.records import ActionCode

# One row per status, one column per event; "-" is refused. Read a row as "a case in this
# status, when this happens, becomes…".
SPEC = """
status    assess   override routed  manual  r_closed version   act       act_close peer      peer_close chan      chan_close withdraw
new       assessed new      -       -       -        -         new       closed    new       closed     new       closed     withdrawn
assessed  assessed assessed routed  manual  closed   -         assessed  closed    assessed  closed     assessed  closed     withdrawn
routed    assessed routed   routed  manual  closed   routed    routed    closed    routed    closed     routed    closed     withdrawn
manual    assessed manual   routed  manual  closed   manual    manual    closed    manual    closed     manual    closed     withdrawn
closed    -        -        -       -       -        closed    closed    closed    closed    closed     closed    closed     withdrawn
withdrawn -        -        -       -       -        withdrawn -         -         withdrawn withdrawn  withdrawn withdrawn  -
received  -        received routed  manual  closed   received  received  closed    received  closed     received  closed     withdrawn
"""  # noqa: E501 - a table reads best on one line per status
COLUMNS = {
    "assess": CaseEvent.ASSESSMENT,
    "override": CaseEvent.OVERRIDE,
    "routed": CaseEvent.ROUTED,
    "manual": CaseEvent.ROUTED_MANUAL,
    "r_closed": CaseEvent.ROUTED_CLOSED,
    "version": CaseEvent.VERSION_RECEIVED,
    "act": CaseEvent.LOCAL_ACTION,
    "act_close": CaseEvent.LOCAL_CLOSING,
    "peer": CaseEvent.PEER_ACTION,
    "peer_close": CaseEvent.PEER_CLOSING,
    "chan": CaseEvent.CHANNEL_OUTCOME,
    "chan_close": CaseEvent.CHANNEL_CLOSING,
    "withdraw": CaseEvent.WITHDRAWAL,
}


def _spec() -> dict[tuple[CaseStatus, CaseEvent], CaseStatus | None]:
    header, *rows = [line.split() for line in SPEC.strip().splitlines()]
    events = [COLUMNS[name] for name in header[1:]]
    cells: dict[tuple[CaseStatus, CaseEvent], CaseStatus | None] = {}
    for status, *targets in rows:
        for event, target in zip(events, targets, strict=True):
            cells[CaseStatus(status), event] = None if target == "-" else CaseStatus(target)
    return cells


CELLS = sorted(_spec().items(), key=lambda cell: (cell[0][0].value, cell[0][1].name))


def test_the_specification_covers_every_status_and_every_event() -> None:
    spec = _spec()
    assert len(spec) == len(CaseStatus) * len(CaseEvent)
    assert set(TRANSITIONS) <= set(spec)


@pytest.mark.parametrize(
    ("cell", "expected"), CELLS, ids=[f"{s.value}-{e.name}" for (s, e), _ in CELLS]
)
def test_every_cell(cell: tuple[CaseStatus, CaseEvent], expected: CaseStatus | None) -> None:
    status, event = cell
    assert allows(status.value, event) is (expected is not None)
    if expected is None:
        with pytest.raises(CaseStateError) as refused:
            next_status("r-1", status.value, event)
        # A refusal is a conflict (409 over HTTP) that says what the case is and cannot be.
        assert isinstance(refused.value, Conflict)
        assert str(refused.value) == f"report r-1 is {status.value}: it cannot be {event.value}"
        assert refused.value.case_status is status
    else:
        assert next_status("r-1", status.value, event) is expected


def test_withdrawn_is_final_and_only_a_withdrawal_leaves_a_closed_case() -> None:
    for event in CaseEvent:
        if allows("withdrawn", event):
            assert next_status("r", "withdrawn", event) is CaseStatus.WITHDRAWN
        if allows("closed", event) and event is not CaseEvent.WITHDRAWAL:
            assert next_status("r", "closed", event) is CaseStatus.CLOSED


FR, DE = "fr-pdc", "de-eco"


@pytest.mark.parametrize(
    ("code", "source", "by", "origin", "here", "event"),
    [
        # content gone closes wherever it is said, whoever says it
        (ActionCode.CONTENT_REMOVED, ActionSource.PEER, DE, FR, FR, CaseEvent.PEER_CLOSING),
        (ActionCode.CONTENT_UNAVAILABLE, ActionSource.LOCAL, DE, FR, DE, CaseEvent.LOCAL_CLOSING),
        # not illegal: closes where it is said, and at a holder when the origin says it …
        (ActionCode.NOT_ILLEGAL, ActionSource.LOCAL, FR, FR, FR, CaseEvent.LOCAL_CLOSING),
        (ActionCode.NOT_ILLEGAL, ActionSource.PEER, FR, FR, DE, CaseEvent.PEER_CLOSING),
        # … but a holder's "not illegal here" leaves the origin's case open
        (ActionCode.NOT_ILLEGAL, ActionSource.PEER, DE, FR, FR, CaseEvent.PEER_ACTION),
        # a channel's outcome is an event of its own
        (ActionCode.LEA_REFERRED, ActionSource.CHANNEL, DE, FR, DE, CaseEvent.CHANNEL_OUTCOME),
        (ActionCode.MOVED, ActionSource.LOCAL, FR, FR, FR, CaseEvent.LOCAL_ACTION),
    ],
)
def test_an_action_is_the_event_its_code_source_and_nodes_make_it(
    code: ActionCode, source: ActionSource, by: str, origin: str, here: str, event: CaseEvent
) -> None:
    assert action_event(code, source, by=by, origin=origin, here=here) is event
