"""The soak's judgements on made-up holdings: what counts as lost, as duplicated, as growth."""

from __future__ import annotations

import json

import pytest

from bench.soak_ledger import (
    AuditRow,
    Case,
    EvidenceRow,
    Holdings,
    Sample,
    account,
    duplicates,
    rss_slope,
)

URL = "http://de.example/soak/fr/1.jpg"


def delivered(
    *, at_origin: bool = True, assessed: bool = True, receipt: bool = True
) -> dict[str, Holdings]:
    """FR's case r1, held by DE, with DE's receipt back at FR: everything as it should be."""
    fr = Holdings("fr", own={URL: ("r1", assessed)} if at_origin else {}, reports={"r1"})
    fr.actions = {"f1": ("r1", "forwarded", "fr")}
    if receipt:
        fr.actions["x1"] = ("r1", "received", "de")
    de = Holdings("de", reports={"r1"}, actions={"x1": ("r1", "received", "de")})
    return {"fr": fr, "de": de}


def acked(outcome: str | None = None, *, outcome_uncertain: bool = False) -> Case:
    return Case(URL, "fr", "de", "r1", True, outcome, outcome_uncertain)


def test_an_acknowledged_case_at_both_ends_with_its_receipt_is_not_lost() -> None:
    result = account([acked()], delivered())
    assert (result.counted, result.losses) == (1, [])


def test_an_acknowledged_case_missing_at_its_destination_is_lost() -> None:
    holdings = delivered()
    holdings["de"].reports.clear()
    [loss] = account([acked()], holdings).losses
    assert "destination de" in loss.what


def test_an_acknowledged_case_its_origin_no_longer_holds_is_lost() -> None:
    [loss] = account([acked()], delivered(at_origin=False)).losses
    assert "not held by fr" in loss.what


def test_a_receipt_that_never_came_back_is_a_loss() -> None:
    [loss] = account([acked()], delivered(receipt=False)).losses
    assert "receipt" in loss.what


def test_an_uncertain_case_counts_only_if_its_origin_holds_it_assessed() -> None:
    lost_answer = Case(URL, "fr", "de")  # the submission's answer never came
    held = account([lost_answer], delivered())
    assert (held.counted, held.uncertain_counted, held.losses) == (1, 1, [])
    not_assessed = delivered(assessed=False)
    assert account([lost_answer], not_assessed).uncertain_dropped == 1
    absent = delivered(at_origin=False)
    result = account([lost_answer], absent)
    assert (result.counted, result.uncertain_dropped, result.losses) == (0, 1, [])
    # Held assessed at its origin but never delivered: lost, though its answer was lost too.
    undelivered = delivered()
    undelivered["de"].reports.clear()
    assert len(account([lost_answer], undelivered).losses) == 1


def test_an_outcome_posted_at_the_destination_must_reach_the_origin() -> None:
    holdings = delivered()
    [loss] = account([acked(outcome="o1")], holdings).losses
    assert "outcome" in loss.what
    holdings = delivered()
    holdings["fr"].actions["o1"] = ("r1", "content_removed", "de")
    assert account([acked(outcome="o1")], holdings).losses == []


def test_an_uncertain_outcome_counts_only_if_the_destination_holds_it() -> None:
    case = acked(outcome_uncertain=True)
    assert account([case], delivered()).losses == []
    holdings = delivered()
    holdings["de"].actions["o1"] = ("r1", "content_removed", "de")
    assert len(account([case], holdings).losses) == 1


def audit(event: str, subject: str, **details: object) -> AuditRow:
    return AuditRow(event, subject, json.dumps(details))


def test_a_clean_receiver_has_no_duplicates() -> None:
    de = Holdings("de", actions={"x1": ("r1", "received", "de"), "o1": ("r1", "c", "fr")})
    rows = [
        audit("report.received", "r1", seq=2),
        audit("report.updated", "r1", seq=3),
        audit("report.updated", "r1", seq=4),
        audit("action.received", "r1", action="o1", code="content_removed"),
    ]
    assert duplicates(de, rows, [EvidenceRow("fr", "action", "o1")]) == set()


def test_a_report_received_twice_is_one_duplicate() -> None:
    rows = [audit("report.received", "r1", seq=2)] * 2 + [audit("report.updated", "r2", seq=3)] * 2
    assert duplicates(Holdings("de"), rows, []) == {("report", "r1"), ("report", "r2")}


def test_one_action_applied_twice_counts_once_however_many_checks_see_it() -> None:
    fr = Holdings("fr", actions={"o1": ("r1", "content_removed", "de")})
    rows = [audit("action.received", "r1", action="o1", code="content_removed")] * 2
    frames = [EvidenceRow("de", "action", "o1")] * 2
    assert duplicates(fr, rows, frames) == {("action", "r1", "content_removed", "de")}


def test_an_action_stored_twice_under_fresh_ids_is_a_duplicate() -> None:
    fr = Holdings(
        "fr",
        actions={
            "x1": ("r1", "received", "de"),
            "x2": ("r1", "received", "de"),
            "n1": ("r1", "notice_sent", "fr"),  # may happen more than once: not checked
            "n2": ("r1", "notice_sent", "fr"),
        },
    )
    assert duplicates(fr, [], []) == {("action", "r1", "received", "de")}


def test_the_slope_of_a_steady_leak_is_found_across_restarts() -> None:
    # 6 MiB/h = 1 MiB per 600 s, in two processes that each settle at a different level.
    segments = [
        [Sample(age, 100 + age / 600) for age in range(0, 1200, 10)],
        [Sample(age, 80 + age / 600) for age in range(0, 900, 10)],
    ]
    assert rss_slope(segments) == pytest.approx(6.0)


def test_restarts_and_warm_up_are_not_counted_as_growth() -> None:
    # Flat after a steep first minute; the second process settles higher than the first.
    segments = [
        [Sample(age, (50 + age) if age < 60 else 110) for age in range(0, 600, 10)],
        [Sample(age, (70 + age) if age < 60 else 130) for age in range(0, 600, 10)],
    ]
    assert rss_slope(segments) == pytest.approx(0.0)


def test_no_slope_without_two_samples_after_the_warm_up() -> None:
    assert rss_slope([[Sample(10, 1), Sample(70, 2)], []]) is None
