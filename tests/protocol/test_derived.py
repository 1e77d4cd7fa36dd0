"""The derived `forwarded`/`received` action ids: same ids as the node stored before they moved."""

from __future__ import annotations

import uuid

import pytest

from protocol.derived import derived_action_id, derived_name
from protocol.records import ActionCode

REPORT = uuid.UUID("01938a52-7c00-7abc-8def-0123456789ab")


def _before_the_move(namespace: str, report_id: str, peer: str) -> uuid.UUID:
    """The derivation exactly as node/federation wrote it when the ids were first stored."""
    return uuid.uuid5(uuid.UUID(namespace), f"{report_id}/{peer}")


@pytest.mark.parametrize(
    ("code", "namespace"),
    [
        (ActionCode.FORWARDED, "0b8f5d0e-52c4-4f7e-8d0c-3c1f2a9e7b44"),
        (ActionCode.RECEIVED, "6f1c7d2e-3a51-4c8e-9a7b-0d4e2f8c1b63"),
    ],
)
@pytest.mark.parametrize("peer", ["de-eco", "it-hotline", "a.b-c"])
def test_ids_already_stored_still_match(code: ActionCode, namespace: str, peer: str) -> None:
    expected = _before_the_move(namespace, str(REPORT), peer)
    assert derived_action_id(code, REPORT, peer) == expected
    assert derived_action_id(code, str(REPORT), peer) == expected
    assert expected.version == 5


def test_the_name_is_the_lowercase_report_id_a_slash_and_the_peer() -> None:
    upper = str(REPORT).upper()
    assert derived_name(upper, "de-eco") == b"01938a52-7c00-7abc-8def-0123456789ab/de-eco"
    assert derived_action_id(ActionCode.RECEIVED, upper, "de-eco") == derived_action_id(
        ActionCode.RECEIVED, REPORT, "de-eco"
    )


def test_forwarded_and_received_differ_and_depend_on_the_peer() -> None:
    ids = {
        derived_action_id(code, REPORT, peer)
        for code in (ActionCode.FORWARDED, ActionCode.RECEIVED)
        for peer in ("de-eco", "it-hotline")
    }
    assert len(ids) == 4


def test_other_codes_have_no_derived_id() -> None:
    with pytest.raises(ValueError, match="only forwarded and received"):
        derived_action_id(ActionCode.CONTENT_REMOVED, REPORT, "de-eco")
