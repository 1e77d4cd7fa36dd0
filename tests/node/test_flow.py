"""A case end to end inside one node: intake, trace on a real DNS server, assessment, routing."""

from __future__ import annotations

from typing import Any

import orjson

from node.app import Node
from node.clock import ManualClock, iso
from tests.support.nodes import ApiHarness


async def add_peer(node: Node, node_id: str, country: str, categories: list[str]) -> None:
    async with node.db.write() as conn:
        await conn.execute(
            "INSERT INTO peers (node_id, country, endpoint, fingerprint, status, mode, categories,"
            " max_tlp, added_at) VALUES (?, ?, 'http://127.0.0.1:9', 'x', 'active', 'push', ?,"
            " 'amber', ?)",
            (node_id, country, orjson.dumps(categories).decode(), iso(node.clock.now())),
        )


async def submit_traced(api: ApiHarness, url: str) -> str:
    response = await api.post("/api/v1/reports", {"url": url, "category": "csam"})
    assert response.status == 201, await response.text()
    report_id: str = (await response.json())["id"]
    assert await api.node.trace_pending() == 1
    return report_id


async def assess(api: ApiHarness, report_id: str, verdict: str = "baseline") -> dict[str, Any]:
    response = await api.post(
        f"/api/v1/reports/{report_id}/assessment",
        {"verdict": verdict, "category": "csam", "legal_basis": "Art. 227-23"},
    )
    assert response.status == 200, await response.text()
    case: dict[str, Any] = await response.json()
    return case


async def test_foreign_case_is_queued_for_the_peer_with_its_evidence(api: ApiHarness) -> None:
    await add_peer(api.node, "de-eco", "DE", ["csam"])
    report_id = await submit_traced(api, "https://DE.example:443/gallery/x.jpg#frag")
    case = await assess(api, report_id)
    assert case["url"] == "https://de.example/gallery/x.jpg"
    assert case["status"] == "routed"
    assert case["hosting"]["countries"] == ["DE"]
    ips = {a["ip"]: a for a in case["hosting"]["addresses"]}
    assert ips["88.198.0.1"]["country"] == "DE"
    assert ips["88.198.0.1"]["basis"] == "registration"
    assert ips["88.198.0.1"]["source"] == "iptocc"
    assert "2a01:4f8::1" in ips
    assert case["routing"]["decision"] == "peer"
    assert case["routing"]["targets"][0]["name"] == "de-eco"
    queued = case["routing"]["queued"]
    assert [(q["kind"], q["name"], q["state"]) for q in queued] == [("peer", "de-eco", "pending")]


async def test_domestic_case_goes_to_national_channels(api: ApiHarness) -> None:
    report_id = await submit_traced(api, "http://fr.example/a")
    case = await assess(api, report_id)
    assert case["routing"]["decision"] == "domestic"
    assert sorted(q["name"] for q in case["routing"]["queued"]) == [
        "host_notice",
        "law_enforcement",
    ]


async def test_no_peer_country_goes_to_fallback(api: ApiHarness) -> None:
    report_id = await submit_traced(api, "http://za.example/a")
    case = await assess(api, report_id)
    assert case["routing"]["decision"] == "fallback"
    assert [q["name"] for q in case["routing"]["queued"]] == ["fallback"]


async def test_cdn_case_notifies_the_cdn(api: ApiHarness) -> None:
    report_id = await submit_traced(api, "http://cdn.example/a")
    case = await assess(api, report_id)
    assert case["hosting"]["cdn"] is True
    assert case["hosting"]["countries"] == []
    assert case["routing"]["decision"] == "cdn"
    assert [q["name"] for q in case["routing"]["queued"]] == ["cdn_notice"]


async def test_not_illegal_closes_the_case(api: ApiHarness) -> None:
    report_id = await submit_traced(api, "http://de.example/b")
    case = await assess(api, report_id, verdict="not_illegal")
    assert case["status"] == "closed"
    assert case["routing"]["decision"] == "closed"
    assert case["routing"]["queued"] == []


async def test_unknown_host_goes_to_the_analyst_queue(api: ApiHarness) -> None:
    report_id = await submit_traced(api, "http://gone.example/a")
    case = await assess(api, report_id)
    assert case["hosting"]["status"] == "failed"
    assert case["routing"]["decision"] == "manual"
    assert case["status"] == "manual"


async def test_assessment_before_trace_routes_when_trace_lands(api: ApiHarness) -> None:
    response = await api.post("/api/v1/reports", {"url": "http://fr.example/late"})
    report_id = (await response.json())["id"]
    case = await assess(api, report_id)
    assert case["routing"]["decision"] is None
    await api.node.trace_pending()
    case = await api.node.cases.show(report_id)
    assert case["routing"]["decision"] == "domestic"


async def test_duplicate_urls_join_one_case(api: ApiHarness) -> None:
    first = await api.post("/api/v1/reports", {"url": "HTTP://Fr.Example:80/dup#x"})
    second = await api.post("/api/v1/reports", {"url": "http://fr.example/dup"})
    public = await api.client.post(
        "/api/v1/public/reports", json={"url": "http://fr.example/dup", "description": "seen"}
    )
    assert first.status == 201
    assert second.status == 200
    assert public.status == 202
    report_id = (await first.json())["id"]
    assert (await second.json())["id"] == report_id
    case = await api.node.cases.show(report_id)
    assert case["duplicates"] == 2


async def test_action_closes_and_appears_in_timeline(api: ApiHarness, clock: ManualClock) -> None:
    report_id = await submit_traced(api, "http://fr.example/c")
    await assess(api, report_id)
    response = await api.post(
        f"/api/v1/reports/{report_id}/actions", {"code": "content_removed", "reason": "gone"}
    )
    assert response.status == 201
    case = await api.node.cases.show(report_id)
    assert case["status"] == "closed"
    assert [(a["code"], a["by"], a["country"]) for a in case["actions"]] == [
        ("content_removed", "fr-pointdecontact", "FR")
    ]


async def test_long_evidence_strings_do_not_stop_forwarding(api: ApiHarness) -> None:
    """Data sources can name networks at length; the wire form keeps the first 256 characters."""
    await add_peer(api.node, "de-eco", "DE", ["csam"])
    response = await api.post("/api/v1/reports", {"url": "http://de.example/long"})
    report_id = (await response.json())["id"]
    evidence = {
        "addresses": [
            {
                "ip": "88.198.0.1",
                "country": "DE",
                "basis": "geolocation",
                "source": "mmdb",
                "network_name": "N" * 1000,
            }
        ],
        "countries": ["DE"],
        "abuse_contact": "abuse@" + "x" * 400 + ".example",
        "cdn": False,
    }
    await api.node.cases.record_trace(report_id, evidence)
    case = await assess(api, report_id)
    assert case["routing"]["decision"] == "peer"
    row = await api.node.db.fetch_one(
        "SELECT payload FROM report_versions WHERE report_id = ? ORDER BY seq DESC", (report_id,)
    )
    assert row is not None
    wire = orjson.loads(row["payload"])
    assert wire["hosting"]["addresses"][0]["network_name"] == "N" * 256


async def test_a_trace_that_cannot_be_recorded_fails_its_case_alone(api: ApiHarness) -> None:
    """Isolation (issue 12): evidence that raises while it is stored or routed marks that case
    failed, with the reason, and the cases after it are traced as usual."""
    cases = api.node.cases
    poisoned = (await cases.submit("http://de.example/poisoned", actor="test")).report_id
    clean = (await cases.submit("http://fr.example/clean", actor="test")).report_id

    async def trace(url: str) -> dict[str, Any]:
        if url.endswith("/poisoned"):
            return {"addresses": [{"not": "an address"}], "countries": ["DE"]}
        return await api.node.trace_url(url)

    assert await cases.trace_pending(trace) == 2
    bad = await cases.show(poisoned)
    good = await cases.show(clean)
    assert "the trace could not be recorded: KeyError" in orjson.dumps(bad).decode()
    assert good["hosting"]["countries"] == ["FR"]
    rows = await api.node.db.fetch_all("SELECT id, trace_status FROM reports ORDER BY id")
    assert {r["id"]: r["trace_status"] for r in rows} == {poisoned: "failed", clean: "done"}
    # Nothing is left pending to fail again on every sweep.
    assert await cases.trace_pending(trace) == 0
