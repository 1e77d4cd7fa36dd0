"""`stats`: counts and delays over real cases made with controlled times, checked to the number."""

from __future__ import annotations

import asyncio
import csv
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from node.app import Node, open_node
from node.cli import main
from node.clock import ManualClock
from node.datadir import DataDir
from node.errors import InvalidInput
from node.stats import Period, collect, durations, quantile
from tests.support.federation import Pair
from tests.support.nodes import START, ApiHarness

DAY = 86_400


async def removed_after(node: Node, clock: ManualClock, days: list[float]) -> list[str]:
    """One case per entry, all received at START, removed that many days later."""
    ids = []
    for n, _ in enumerate(days):
        clock.set(START)
        submitted = await node.cases.submit(
            f"http://de.example/removed-{n}", actor="analyst:alice", category="csam"
        )
        ids.append(submitted.report_id)
    await node.trace_pending()
    for report_id, delay in zip(ids, days, strict=True):
        clock.set(START + timedelta(days=delay))
        await node.cases.record_action(
            report_id, code="content_removed", reason=None, actor="analyst:alice"
        )
    return ids


def test_quantiles_interpolate_between_ranks() -> None:
    assert quantile([1, 2, 5, 10], 0.5) == 3.5
    assert quantile([1, 2, 5, 10], 0.9) == pytest.approx(8.5)
    assert quantile([7], 0.9) == 7
    assert quantile([1, 2, 3], 0.5) == 2
    summary = durations([], within_days=3)
    assert summary == {
        "cases": 0,
        "median_seconds": None,
        "median_days": None,
        "p90_seconds": None,
        "p90_days": None,
        "within_3_days": 0,
        "share_within_3_days": None,
    }
    # Exactly three days is within three days; a peer's clock behind ours is not negative.
    assert durations([3 * DAY, 3 * DAY + 1, -60], within_days=3)["within_3_days"] == 2


async def test_counts_and_time_to_removal(api: ApiHarness, clock: ManualClock) -> None:
    node = api.node
    cases = node.cases
    removed = await removed_after(node, clock, [1, 2])
    clock.set(START)
    fr = await cases.submit("http://fr.example/3", actor="analyst:alice", category="csam")
    cdn = await cases.submit("http://cdn.example/4", actor="analyst:alice", category="hate")
    await cases.submit(
        "http://fr.example/5", actor="public", source="public", description="seen on a forum"
    )
    us = await cases.submit("http://us.example/6", actor="analyst:alice", category="csam")
    await node.trace_pending()
    # The analyst's override is the hosting country that counts (routing uses it too).
    await cases.override_jurisdiction(
        us.report_id, country="NL", reason="host confirmed", actor="analyst:alice"
    )
    for report_id, code, days in (
        (removed[0], "notice_sent", 0.5),  # not a removal: does not stop the clock
        (fr.report_id, "content_removed", 5),
        (cdn.report_id, "content_unavailable", 10),
        (fr.report_id, "content_removed", 7),  # only the first removal counts
    ):
        clock.set(START + timedelta(days=days))
        await cases.record_action(report_id, code=code, reason=None, actor="analyst:alice")

    doc = await collect(node.db, node_id="fr-pointdecontact")

    assert doc["reports"] == 6
    assert doc["period"] == {"since": None, "until": None}
    assert doc["by_status"] == {"closed": 4, "new": 2}
    assert doc["by_category"] == {"csam": 4, "hate": 1, "unset": 1}
    assert doc["by_verdict"] == {"unassessed": 6}
    assert doc["by_source"] == {"analyst": 5, "public": 1}
    assert doc["by_hosting_country"] == {"DE": 2, "FR": 2, "NL": 1, "cdn": 1}
    assert doc["by_peer"] == []
    # Removed after 1, 2, 5 and 10 days.
    assert doc["time_to_removal"] == {
        "cases": 4,
        "median_seconds": 3.5 * DAY,
        "median_days": 3.5,
        "p90_seconds": pytest.approx(8.5 * DAY),
        "p90_days": pytest.approx(8.5),
        "within_3_days": 2,
        "share_within_3_days": 0.5,
    }
    assert doc["time_to_forwarding"]["cases"] == 0
    assert doc["time_to_forwarding"]["median_days"] is None


async def test_the_period_selects_reports_by_receipt(api: ApiHarness, clock: ManualClock) -> None:
    await removed_after(api.node, clock, [1])
    clock.set(START + timedelta(days=40))  # 2027-01-08
    later = await api.node.cases.submit("http://fr.example/later", actor="a", category="hate")
    clock.set(START + timedelta(days=44))
    await api.node.cases.record_action(
        later.report_id, code="content_removed", reason=None, actor="a"
    )
    db = api.node.db

    november = await collect(db, node_id="x", period=Period.parse("2026-11-01", "2026-11-29"))
    assert november["period"] == {"since": "2026-11-01T00:00:00Z", "until": "2026-11-30T00:00:00Z"}
    assert november["reports"] == 1
    assert november["time_to_removal"]["median_days"] == 1

    january = await collect(db, node_id="x", period=Period.parse("2027-01-01", None))
    assert january["reports"] == 1
    assert january["by_category"] == {"hate": 1}
    assert january["time_to_removal"]["median_days"] == 4

    exact = Period.parse("2026-11-29T09:00:01Z", "2027-01-08T09:00:00+00:00")
    assert (await collect(db, node_id="x", period=exact))["reports"] == 0


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("yesterday", None, "since must be YYYY-MM-DD"),
        (None, "2026-13-01", "until must be YYYY-MM-DD"),
        ("2026-11-29T10:00:00", None, "needs a time zone"),
        ("2026-12-01", "2026-11-30", "since must be before until"),
    ],
)
def test_bad_periods_are_refused(since: str | None, until: str | None, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Period.parse(since, until)


async def test_forwarding_and_removal_across_two_nodes(pair: Pair, clock: ManualClock) -> None:
    cases = pair.fr.node.cases
    first = await cases.submit("http://de.example/a", actor="a", category="csam")
    second = await cases.submit("http://de.example/b", actor="a", category="csam")
    await pair.fr.node.trace_pending()
    clock.set(START + timedelta(hours=6))
    await cases.assess(
        first.report_id, verdict="baseline", category="csam", legal_basis=None, actor="a"
    )
    await pair.fr.settle()
    # The second waits in the queue: the peer is unreachable when it is routed.
    await pair.de.stop_http()
    await cases.assess(
        second.report_id, verdict="baseline", category="csam", legal_basis=None, actor="a"
    )
    await pair.fr.settle()
    await pair.de.start_http()
    clock.set(START + timedelta(days=1))
    await pair.de.node.cases.record_action(
        first.report_id, code="content_removed", reason=None, actor="analyst:bea"
    )
    await pair.de.settle()

    at_fr = await collect(pair.fr.node.db, node_id="fr-pdc")
    assert at_fr["by_peer"] == [
        {"peer": "de-eco", "forwarded": 1, "queued": 1, "dead": 0, "received": 0}
    ]
    assert at_fr["by_status"] == {"closed": 1, "routed": 1}
    assert at_fr["by_verdict"] == {"baseline": 2}
    assert at_fr["time_to_forwarding"]["cases"] == 1
    assert at_fr["time_to_forwarding"]["median_days"] == 0.25
    # The peer's removal counts for the origin, from the origin's receipt.
    assert at_fr["time_to_removal"]["cases"] == 1
    assert at_fr["time_to_removal"]["median_seconds"] == DAY
    assert at_fr["time_to_removal"]["share_within_3_days"] == 1

    at_de = await collect(pair.de.node.db, node_id="de-eco")
    assert at_de["reports"] == 1
    assert at_de["by_peer"] == [
        {"peer": "fr-pdc", "forwarded": 0, "queued": 0, "dead": 0, "received": 1}
    ]
    assert at_de["by_source"] == {"peer": 1}
    assert at_de["by_hosting_country"] == {"DE": 1}
    # At the receiving hotline the clock starts when the case arrived there.
    assert at_de["time_to_removal"]["median_days"] == 0.75


async def test_http_stats_for_staff_only(api: ApiHarness, clock: ManualClock) -> None:
    await removed_after(api.node, clock, [1, 2, 5, 10])
    for token in (api.analyst, api.operator):
        response = await api.client.get("/api/v1/stats", headers=api.auth(token))
        assert response.status == 200
        doc = await response.json()
        assert doc["reports"] == 4
        assert doc["time_to_removal"]["median_days"] == 3.5
        assert doc["time_to_removal"]["share_within_3_days"] == 0.5

    response = await api.client.get(
        "/api/v1/stats", params={"since": "2026-11-30"}, headers=api.auth()
    )
    assert (await response.json())["reports"] == 0

    response = await api.client.get("/api/v1/stats")
    assert response.status == 401
    response = await api.client.get("/api/v1/stats", params={"until": "soon"}, headers=api.auth())
    assert response.status == 422
    assert response.content_type == "application/problem+json"
    assert "until must be" in (await response.json())["detail"]


def test_cli_prints_tables_json_and_writes_csv(
    data_dir: DataDir,
    clock: ManualClock,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def populate() -> None:
        async with open_node(data_dir, clock) as node:
            await removed_after(node, clock, [1, 2, 5, 10])

    asyncio.run(populate())
    base = ["stats", "--data-dir", str(data_dir.root)]

    capsys.readouterr()
    assert main([*base, "--json", "--since", "2026-11-29", "--until", "2026-11-29"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["reports"] == 4
    assert doc["time_to_removal"]["median_days"] == 3.5

    assert main(base) == 0
    text = capsys.readouterr().out
    assert "4 report(s) received" in text
    # The period in the reader's time zone, not as stored.
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    try:
        assert main([*base, "--since", "2026-11-29"]) == 0
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert "from 2026-11-29 01:00:00 CET until now" in capsys.readouterr().out
    assert "median 3.50 d" in text
    assert "within 3 days 50% (2)" in text
    assert "csam" in text

    target = tmp_path / "annual.csv"
    assert main([*base, "--csv", str(target)]) == 0
    assert f"wrote {target}" in capsys.readouterr().err
    with target.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["section", "key", "value"]
    assert ["reports", "total", "4"] in rows
    assert ["time_to_removal", "median_days", "3.5"] in rows
    assert ["time_to_removal", "share_within_3_days", "0.5"] in rows
    assert ["category", "csam", "4"] in rows
    assert ["hosting_country", "DE", "4"] in rows

    assert main([*base, "--since", "someday"]) == 1
    assert capsys.readouterr().err.startswith("hotline-node: error: since must be")


def test_every_rfc_3339_bound_is_read() -> None:
    """Issue 12: the schema says date or RFC 3339 date-time; the node read less than that."""
    period = Period.parse("2016-12-31t23:59:60.5z", "9999-12-31")
    assert period.since == datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert period.until is None
    with pytest.raises(InvalidInput, match="RFC 3339"):
        Period.parse("0001-01-01T00:00:00+01:00", None)


def test_times_are_utc() -> None:
    period = Period.parse("2026-11-29T10:00:00+02:00", None)
    assert period.since == datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
