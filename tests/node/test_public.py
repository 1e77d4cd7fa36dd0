"""The public report endpoint: few fields, nothing learnt back, a rate limit per client address."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import orjson
import pytest

from node.clock import ManualClock
from node.datadir import DataDir
from node.errors import PROBLEM_BASE
from node.store import submissions
from tests.support.nodes import ApiHarness, api_harness, rewrite_config, table_counts

PATH = "/api/v1/public/reports"
PER_MINUTE = 3


@pytest.fixture
async def limited(data_dir: DataDir, clock: ManualClock) -> AsyncIterator[ApiHarness]:
    """A node that takes PER_MINUTE public reports a minute from one address."""
    rewrite_config(data_dir, intake={"public_reports_per_minute": PER_MINUTE})
    async with api_harness(data_dir, clock) as harness:
        yield harness


async def public_report(api: ApiHarness, body: dict[str, Any]) -> aiohttp.ClientResponse:
    # No Authorization header: the public has no token.
    return await api.client.post(PATH, json=body)


async def stored(api: ApiHarness, reference: str) -> dict[str, Any]:
    row = await api.node.db.fetch_one(
        "SELECT * FROM reports WHERE substr(id, -8) = ?", (reference,)
    )
    assert row is not None
    # The reporter's words are the case's submissions (node.store.submissions), the first here.
    [given] = await submissions.for_case(api.node.db, row["id"])
    return {**dict(row), "description": given.description, "contact": given.contact}


async def test_url_and_description_are_enough(api: ApiHarness) -> None:
    response = await public_report(
        api, {"url": "HTTP://DE.example/Gallery?Id=7#x", "description": "seen on a forum"}
    )
    assert response.status == 202
    answer = await response.json()
    # The public learns that it was received and a short reference, nothing of the case.
    assert set(answer) == {"received", "reference"}
    assert answer["received"] is True
    row = await stored(api, answer["reference"])
    assert row["source"] == "public"
    assert row["status"] == "new"
    assert row["url"] == "http://de.example/Gallery?Id=7"
    assert row["description"] == "seen on a forum"
    assert row["contact"] is None
    assert row["category"] is None
    assert row["tlp"] == "amber"
    events = await api.node.db.fetch_all(
        "SELECT actor, event FROM audit_log WHERE subject = ?", (row["id"],)
    )
    assert [(e["actor"], e["event"]) for e in events] == [("public", "report.submitted")]


async def test_contact_is_optional_and_kept(api: ApiHarness) -> None:
    response = await public_report(
        api,
        {
            "url": "http://fr.example/a",
            "description": "a video",
            "contact": "reporter@example.org",
        },
    )
    assert response.status == 202
    row = await stored(api, (await response.json())["reference"])
    assert row["contact"] == "reporter@example.org"


async def test_the_public_cannot_set_what_analysts_decide(api: ApiHarness) -> None:
    before = await table_counts(api.node)
    for extra in ({"category": "csam"}, {"tlp": "clear"}, {"note": "x"}, {"verdict": "baseline"}):
        body = {"url": "http://fr.example/a", "description": "d", **extra}
        response = await public_report(api, body)
        assert response.status == 422
        assert (await response.json(content_type=None))["detail"].startswith(
            f"{next(iter(extra))}: "
        )
    assert await table_counts(api.node) == before


async def test_a_duplicate_reveals_nothing_either(api: ApiHarness) -> None:
    analyst = await api.post("/api/v1/reports", {"url": "http://fr.example/known"})
    assert analyst.status == 201
    report_id = (await analyst.json())["id"]
    response = await public_report(api, {"url": "http://fr.example/known", "description": "d"})
    assert response.status == 202
    answer = await response.json()
    assert answer == {"received": True, "reference": report_id[-8:]}
    case = await api.node.cases.show(report_id)
    assert case["duplicates"] == 1
    assert case["source"] == "analyst"


async def test_description_length_limit(api: ApiHarness) -> None:
    response = await public_report(api, {"url": "http://fr.example/a", "description": "d" * 4000})
    assert response.status == 202
    row = await stored(api, (await response.json())["reference"])
    assert len(row["description"]) == 4000
    before = await table_counts(api.node)
    for description in ("d" * 4001, ""):
        response = await public_report(
            api, {"url": "http://fr.example/b", "description": description}
        )
        assert response.status == 422
        problem = await response.json(content_type=None)
        assert problem["type"] == PROBLEM_BASE + "invalid-input"
        assert problem["detail"].startswith("description: ")
    response = await public_report(
        api, {"url": "http://fr.example/b", "description": "d", "contact": "c" * 257}
    )
    assert response.status == 422
    assert (await response.json(content_type=None))["detail"].startswith("contact: ")
    assert await table_counts(api.node) == before


async def test_a_description_at_its_limit_in_cyrillic_is_accepted(api: ApiHarness) -> None:
    response = await public_report(api, {"url": "http://fr.example/a", "description": "ж" * 4000})
    assert response.status == 202


async def test_public_body_cap_is_24_kib(api: ApiHarness) -> None:
    before = await table_counts(api.node)
    body = orjson.dumps({"url": "http://fr.example/a", "description": "d" * 3000, "x": "y" * 23000})
    response = await api.client.post(PATH, data=body, headers={"Content-Type": "application/json"})
    assert response.status == 413
    problem = await response.json(content_type=None)
    assert problem["type"] == PROBLEM_BASE + "payload-too-large"
    assert "24576" in problem["detail"]
    assert await table_counts(api.node) == before


async def test_rate_limit_per_client_recovers_as_the_clock_advances(
    limited: ApiHarness, clock: ManualClock
) -> None:
    api = limited
    for n in range(PER_MINUTE):
        response = await public_report(api, {"url": f"http://fr.example/{n}", "description": "d"})
        assert response.status == 202, n
    before = await table_counts(api.node)

    response = await public_report(api, {"url": "http://fr.example/over", "description": "d"})
    assert response.status == 429
    assert response.content_type == "application/problem+json"
    problem = await response.json(content_type=None)
    assert problem["type"] == PROBLEM_BASE + "rate-limited"
    assert problem["status"] == 429
    wait = int(response.headers["Retry-After"])
    assert wait == 60 // PER_MINUTE
    assert problem["retry_after"] == wait
    assert f"retry in {wait} s" in problem["detail"]
    assert await table_counts(api.node) == before

    # Not yet: one second short of Retry-After, still refused, with the shorter wait.
    clock.advance(timedelta(seconds=wait - 1))
    response = await public_report(api, {"url": "http://fr.example/over", "description": "d"})
    assert response.status == 429
    assert int(response.headers["Retry-After"]) == 1
    assert await table_counts(api.node) == before

    # Retry-After was honest: after it, one more report goes through, and only one.
    clock.advance(timedelta(seconds=1))
    response = await public_report(api, {"url": "http://fr.example/over", "description": "d"})
    assert response.status == 202
    response = await public_report(api, {"url": "http://fr.example/over2", "description": "d"})
    assert response.status == 429

    # A full minute refills the whole allowance.
    clock.advance(timedelta(minutes=1))
    for n in range(PER_MINUTE):
        response = await public_report(api, {"url": f"http://fr.example/m{n}", "description": "d"})
        assert response.status == 202, n


async def test_rate_limit_is_per_client_address(limited: ApiHarness) -> None:
    api = limited
    for n in range(PER_MINUTE + 1):
        response = await public_report(api, {"url": f"http://fr.example/{n}", "description": "d"})
    assert response.status == 429
    # Another loopback address is another client, with its own allowance.
    server = api.client.server
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as other:
        for n in range(PER_MINUTE):
            async with other.post(
                f"http://{server.host}:{server.port}{PATH}",
                json={"url": f"http://fr.example/other{n}", "description": "d"},
            ) as response:
                assert response.status == 202, n
        async with other.post(
            f"http://{server.host}:{server.port}{PATH}",
            json={"url": "http://fr.example/other-over", "description": "d"},
        ) as response:
            assert response.status == 429
    # The analyst API is not rate-limited by the public allowance.
    response = await api.post("/api/v1/reports", {"url": "http://fr.example/analyst"})
    assert response.status == 201


async def test_public_endpoint_needs_no_token_and_ignores_one(api: ApiHarness) -> None:
    response = await api.client.post(
        PATH,
        json={"url": "http://fr.example/a", "description": "d"},
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert response.status == 202
