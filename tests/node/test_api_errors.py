"""Analyst and public endpoints refuse bad input with problem+json and leave the store alone."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse

from node.api.reports import PUBLIC_MAX_BYTES
from node.errors import PROBLEM_BASE
from tests.support.nodes import ApiHarness, table_counts

PROBLEM_JSON = "application/problem+json"
UNKNOWN_ID = "2f1e7c1a-5b6d-4e8f-9a0b-1c2d3e4f5a6b"
MAX_BODY = 64 * 1024  # node.toml [intake] max_body_bytes, the default
PUBLIC_MAX = PUBLIC_MAX_BYTES


@dataclass(frozen=True)
class BodyEndpoint:
    """A POST endpoint that takes a JSON object; `valid` is a body it accepts."""

    name: str
    path: str
    valid: dict[str, Any]
    ok_status: int
    cap: int = MAX_BODY
    staff: bool = True

    def url(self, report_id: str) -> str:
        return self.path.format(id=report_id)


SUBMIT = BodyEndpoint(
    "submit", "/api/v1/reports", {"url": "http://de.example/new", "category": "csam"}, 201
)
PUBLIC = BodyEndpoint(
    "public",
    "/api/v1/public/reports",
    {"url": "http://de.example/pub", "description": "seen on a forum"},
    202,
    cap=PUBLIC_MAX,
    staff=False,
)
ASSESS = BodyEndpoint(
    "assessment",
    "/api/v1/reports/{id}/assessment",
    {"verdict": "baseline", "category": "csam", "legal_basis": "Art. 227-23"},
    200,
)
ACTION = BodyEndpoint("actions", "/api/v1/reports/{id}/actions", {"code": "notice_sent"}, 201)
OVERRIDE = BodyEndpoint(
    "jurisdiction",
    "/api/v1/reports/{id}/jurisdiction",
    {"country": "DE", "reason": "the hoster confirmed it"},
    200,
)
BODY_ENDPOINTS = [SUBMIT, PUBLIC, ASSESS, ACTION, OVERRIDE]
STAFF_BODY_ENDPOINTS = [SUBMIT, ASSESS, ACTION, OVERRIDE]
each_endpoint = pytest.mark.parametrize("endpoint", BODY_ENDPOINTS, ids=lambda e: e.name)


@dataclass
class Case:
    """The harness and one existing, traced, not yet assessed report."""

    api: ApiHarness
    report_id: str

    async def snapshot(self) -> tuple[dict[str, int], dict[str, Any]]:
        """Row counts and the case itself: an update without a new row shows up too."""
        return await table_counts(self.api.node), await self.api.node.cases.show(self.report_id)

    async def send(
        self,
        endpoint: BodyEndpoint,
        body: bytes | Any,
        *,
        headers: dict[str, str] | None = None,
        report_id: str | None = None,
    ) -> ClientResponse:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        all_headers = {"Content-Type": "application/json"}
        if endpoint.staff:
            all_headers.update(self.api.auth())
        all_headers.update(headers or {})
        return await self.api.client.post(
            endpoint.url(report_id or self.report_id), data=data, headers=all_headers
        )


@pytest.fixture
async def case(api: ApiHarness) -> Case:
    submitted = await api.node.cases.submit("http://fr.example/existing", actor="test")
    assert await api.node.trace_pending() == 1
    return Case(api, submitted.report_id)


async def expect_problem(
    response: ClientResponse, status: int, kind: str, *detail_parts: str
) -> dict[str, Any]:
    """The response is a problem of this status and type whose detail names every part."""
    text = await response.text()
    assert response.status == status, (response.method, response.url.path, text)
    assert response.content_type == PROBLEM_JSON
    body: dict[str, Any] = orjson.loads(text)
    assert body["type"] == PROBLEM_BASE + kind
    assert body["status"] == status
    assert body["title"]
    assert body["instance"] == response.url.path
    for part in detail_parts:
        assert part in body["detail"], (status, body["detail"])
    assert "Traceback" not in text
    return body


async def unchanged(case: Case, before: tuple[dict[str, int], dict[str, Any]]) -> None:
    assert await case.snapshot() == before


# malformed bodies ----------------------------------------------------------------------------
@each_endpoint
async def test_malformed_body_is_400(case: Case, endpoint: BodyEndpoint) -> None:
    before = await case.snapshot()
    for body, detail in [
        (b'{"url": "http://de.example/x",', "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (orjson.dumps([endpoint.valid]), "must be a JSON object"),
        (b'"a string"', "must be a JSON object"),
        (b"null", "must be a JSON object"),
    ]:
        response = await case.send(endpoint, body)
        await expect_problem(response, 400, "malformed-request", detail)
    await unchanged(case, before)


@each_endpoint
async def test_other_content_type_is_415(case: Case, endpoint: BodyEndpoint) -> None:
    before = await case.snapshot()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        response = await case.send(
            endpoint, orjson.dumps(endpoint.valid), headers={"Content-Type": content_type}
        )
        await expect_problem(response, 415, "unsupported-media-type", content_type)
    await unchanged(case, before)


async def test_missing_content_type_is_read_as_json(case: Case) -> None:
    response = await case.api.client.post(
        SUBMIT.url(case.report_id),
        data=orjson.dumps(SUBMIT.valid),
        headers=case.api.auth(),
        skip_auto_headers=["Content-Type"],
    )
    assert response.status == 201, await response.text()


BAD_SHAPES: dict[str, list[tuple[dict[str, Any], str]]] = {
    "submit": [
        ({"url": 42}, "url: Input should be a valid string"),
        ({"url": "http://de.example/a", "category": 7}, "category: "),
        ({"url": "http://de.example/a", "note": ["x"]}, "note: "),
        ({"url": "http://de.example/a", "tlp": True}, "tlp: "),
        ({"url": "http://de.example/a", "note": "n" * 8193}, "note: "),
        ({"category": "csam"}, "url: Field required"),
    ],
    "public": [
        ({"url": "http://de.example/a", "description": 5}, "description: "),
        ({"url": ["http://de.example/a"], "description": "x"}, "url: "),
        ({"url": "http://de.example/a", "description": "x", "contact": {}}, "contact: "),
        ({"url": "http://de.example/a"}, "description: Field required"),
        ({"url": "http://de.example/a", "description": "x", "category": "csam"}, "category: "),
    ],
    "assessment": [
        ({"verdict": 1, "category": "csam"}, "verdict: "),
        ({"verdict": "baseline", "category": None}, "category: "),
        ({"verdict": "baseline", "category": "csam", "legal_basis": 3}, "legal_basis: "),
        ({"verdict": "baseline", "category": "csam", "legal_basis": "b" * 257}, "legal_basis: "),
        ({"verdict": "baseline"}, "category: Field required"),
    ],
    "actions": [
        ({"code": 3}, "code: "),
        ({"code": "notice_sent", "reason": False}, "reason: "),
        ({"reason": "why"}, "code: Field required"),
    ],
    "jurisdiction": [
        ({"country": 33, "reason": "x"}, "country: "),
        ({"country": "DE", "reason": []}, "reason: "),
        ({"country": "DE"}, "reason: Field required"),
    ],
}


@each_endpoint
async def test_unknown_field_wrong_type_or_missing_field_is_named(
    case: Case, endpoint: BodyEndpoint
) -> None:
    before = await case.snapshot()
    unknown = ({**endpoint.valid, "priority": "urgent"}, "priority: Extra inputs")
    for body, detail in [unknown, *BAD_SHAPES[endpoint.name]]:
        response = await case.send(endpoint, body)
        problem = await expect_problem(response, 422, "invalid-input", detail)
        assert problem["detail"].startswith(detail.split(":")[0] + ": "), problem["detail"]
    await unchanged(case, before)


# body size -----------------------------------------------------------------------------------
def padded(endpoint: BodyEndpoint, size: int) -> bytes:
    """A JSON object of exactly `size` bytes: the valid body with a padded first string."""
    key = next(iter(endpoint.valid))
    room = size - len(orjson.dumps(endpoint.valid))
    assert room > 0
    data = orjson.dumps({**endpoint.valid, key: endpoint.valid[key] + "x" * room})
    assert len(data) == size
    return data


async def pieces(data: bytes, size: int, pause: float = 0.0) -> AsyncIterator[bytes]:
    """The body as a chunked upload (no Content-Length), optionally with pauses between."""
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(pause)


@each_endpoint
async def test_body_over_the_cap_is_413(case: Case, endpoint: BodyEndpoint) -> None:
    before = await case.snapshot()
    # With a Content-Length: refused before reading.
    response = await case.send(endpoint, padded(endpoint, endpoint.cap + 1))
    await expect_problem(response, 413, "payload-too-large", str(endpoint.cap))
    # Chunked, without a Content-Length: refused while reading.
    headers = {"Content-Type": "application/json", **(case.api.auth() if endpoint.staff else {})}
    response = await case.api.client.post(
        endpoint.url(case.report_id),
        data=pieces(padded(endpoint, endpoint.cap + 100), 1024),
        headers=headers,
    )
    await expect_problem(response, 413, "payload-too-large", str(endpoint.cap))
    # At the cap exactly: too long for its field, so refused, but not for its size.
    response = await case.send(endpoint, padded(endpoint, endpoint.cap))
    await expect_problem(response, 422, "invalid-input")
    await unchanged(case, before)


@each_endpoint
async def test_chunked_body_is_read_to_its_end(case: Case, endpoint: BodyEndpoint) -> None:
    # Sent in small pieces with pauses, as a slow client would: the first read of the stream
    # returns only the first piece, and a handler that stops there sees invalid JSON.
    headers = {"Content-Type": "application/json", **(case.api.auth() if endpoint.staff else {})}
    response = await case.api.client.post(
        endpoint.url(case.report_id),
        data=pieces(orjson.dumps(endpoint.valid), 7, pause=0.01),
        headers=headers,
    )
    assert response.status == endpoint.ok_status, await response.text()


# bad URLs ------------------------------------------------------------------------------------
BAD_URLS = [
    ("fr.example/a", "http:// or https://"),
    ("ftp://fr.example/a", "http:// or https://"),
    ("javascript:alert(1)", "http:// or https://"),
    ("http://user:secret@fr.example/a", "credentials"),
    ("http://fr.example/a b", "whitespace"),
    ("http://fr.example/a\tb", "whitespace"),
    ("http://fr.example/" + "a" * 4100, "4096"),
    ("http:///a", "no host"),
    ("http://fr..example/a", "invalid host"),
    ("http://fr.example:99999/a", "Port out of range"),
]


@pytest.mark.parametrize("endpoint", [SUBMIT, PUBLIC], ids=lambda e: e.name)
async def test_bad_url_is_refused(case: Case, endpoint: BodyEndpoint) -> None:
    before = await case.snapshot()
    for url, detail in BAD_URLS:
        response = await case.send(endpoint, {**endpoint.valid, "url": url})
        problem = await expect_problem(response, 422, "invalid-input", detail)
        assert "url" in problem["detail"]
    await unchanged(case, before)


async def test_trace_refuses_a_bad_url(case: Case) -> None:
    before = await case.snapshot()
    for url, detail in [*BAD_URLS, ("", "url is required")]:
        response = await case.api.client.get(
            "/api/v1/trace", params={"url": url}, headers=case.api.auth()
        )
        await expect_problem(response, 422, "invalid-input", detail)
    response = await case.api.client.get("/api/v1/trace", headers=case.api.auth())
    await expect_problem(response, 422, "invalid-input", "url is required")
    await unchanged(case, before)


async def test_trace_of_a_host_that_does_not_exist_is_422(case: Case) -> None:
    response = await case.api.client.get(
        "/api/v1/trace", params={"url": "http://gone.example/x"}, headers=case.api.auth()
    )
    await expect_problem(response, 422, "invalid-input", "no such host: gone.example")


async def test_trace_answers_with_the_evidence_of_the_normalised_url(case: Case) -> None:
    response = await case.api.client.get(
        "/api/v1/trace", params={"url": "HTTP://DE.example:80/x#top"}, headers=case.api.auth()
    )
    assert response.status == 200
    evidence = await response.json()
    assert evidence["url"] == "http://de.example/x"
    assert evidence["countries"] == ["DE"]


# bad values ----------------------------------------------------------------------------------
BAD_VALUES: dict[str, list[tuple[dict[str, Any], str]]] = {
    "submit": [
        ({"url": "http://de.example/a", "category": "weapons"}, "category must be one of"),
        ({"url": "http://de.example/a", "category": "CSAM"}, "category must be one of"),
        ({"url": "http://de.example/a", "tlp": "purple"}, "tlp must be one of"),
    ],
    "public": [
        ({"url": "http://de.example/a", "description": ""}, "description: "),
        ({"url": "http://de.example/a", "description": "d" * 4001}, "description: "),
        ({"url": "http://de.example/a", "description": "x", "contact": "c" * 257}, "contact: "),
    ],
    "assessment": [
        ({"verdict": "guilty", "category": "csam"}, "verdict must be one of"),
        ({"verdict": "baseline", "category": "weapons"}, "category must be one of"),
    ],
    "actions": [
        ({"code": "deleted"}, "code must be one of"),
        ({"code": "forwarded"}, "code must be one of"),  # a protocol code, not an analyst's
        ({"code": "received"}, "code must be one of"),
    ],
    "jurisdiction": [
        ({"country": "FRA", "reason": "x"}, "country must be an ISO 3166-1 alpha-2 code"),
        ({"country": "F1", "reason": "x"}, "country must be an ISO 3166-1 alpha-2 code"),
        ({"country": "", "reason": "x"}, "country must be an ISO 3166-1 alpha-2 code"),
        ({"country": "éé", "reason": "x"}, "country must be an ISO 3166-1 alpha-2 code"),
        # "ß".upper() is "SS": this one was stored as the three-letter country "SSA".
        ({"country": "ßa", "reason": "x"}, "country must be an ISO 3166-1 alpha-2 code"),
        ({"country": "DE", "reason": ""}, "reason: "),
    ],
}


@each_endpoint
async def test_bad_value_is_refused(case: Case, endpoint: BodyEndpoint) -> None:
    before = await case.snapshot()
    for body, detail in BAD_VALUES[endpoint.name]:
        response = await case.send(endpoint, body)
        await expect_problem(response, 422, "invalid-input", detail)
    await unchanged(case, before)


async def test_list_refuses_a_bad_query(case: Case) -> None:
    for query, detail in [
        ("status=open", "status must be one of"),
        ("status=", "status must be one of"),
        ("limit=0", "limit must be between 1 and 1000"),
        ("limit=1001", "limit must be between 1 and 1000"),
        ("limit=-1", "limit must be a positive integer"),
        ("limit=ten", "limit must be a positive integer"),
        ("limit=%C2%B2", "limit must be a positive integer"),  # "²": isdigit(), yet not int()
        ("limit=1.5", "limit must be a positive integer"),
    ]:
        response = await case.api.client.get(f"/api/v1/reports?{query}", headers=case.api.auth())
        await expect_problem(response, 422, "invalid-input", detail)


async def test_list_with_a_good_query(case: Case) -> None:
    response = await case.api.client.get(
        "/api/v1/reports?status=new&limit=1", headers=case.api.auth()
    )
    assert response.status == 200
    assert [r["id"] for r in (await response.json())["reports"]] == [case.report_id]


# unknown reports -----------------------------------------------------------------------------
UNKNOWN_IDS = [UNKNOWN_ID, UNKNOWN_ID.upper(), "not-a-uuid", "1"]


@pytest.mark.parametrize("endpoint", [ASSESS, ACTION, OVERRIDE], ids=lambda e: e.name)
async def test_unknown_report_is_404(case: Case, endpoint: BodyEndpoint) -> None:
    before = await case.snapshot()
    for report_id in UNKNOWN_IDS:
        response = await case.send(endpoint, endpoint.valid, report_id=report_id)
        await expect_problem(response, 404, "not-found", report_id)
    await unchanged(case, before)


async def test_show_unknown_report_is_404(case: Case) -> None:
    for report_id in UNKNOWN_IDS:
        response = await case.api.client.get(
            f"/api/v1/reports/{report_id}", headers=case.api.auth()
        )
        await expect_problem(response, 404, "not-found", report_id)


async def test_unknown_path_and_method_are_problems(case: Case) -> None:
    response = await case.api.client.get("/api/v1/nothing-here", headers=case.api.auth())
    await expect_problem(response, 404, "not-found")
    response = await case.api.client.delete(
        f"/api/v1/reports/{case.report_id}", headers=case.api.auth()
    )
    await expect_problem(response, 405, "method-not-allowed")


# authentication ------------------------------------------------------------------------------
STAFF_GETS = {
    "list": "/api/v1/reports",
    "show": "/api/v1/reports/{id}",
    "trace": "/api/v1/trace?url=http://fr.example/a",
}
AUTH_FAILURES = [
    (None, "missing Authorization header"),
    ("", "missing Authorization header"),
    ("Basic YWxpY2U6c2VjcmV0", "malformed Authorization header"),
    ("Bearer", "malformed Authorization header"),
    ("Bearer not-a-token", "malformed Authorization header"),
    ("Bearer hln_0123456789abcdef_wrong", "unknown or revoked token"),
]


async def expect_401(response: ClientResponse, detail: str) -> None:
    await expect_problem(response, 401, "unauthorized", detail)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("endpoint", STAFF_BODY_ENDPOINTS, ids=lambda e: e.name)
async def test_staff_post_needs_a_valid_token(case: Case, endpoint: BodyEndpoint) -> None:
    before = await case.snapshot()
    for header, detail in AUTH_FAILURES:
        headers = {"Content-Type": "application/json"}
        if header is not None:
            headers["Authorization"] = header
        response = await case.api.client.post(
            endpoint.url(case.report_id), data=orjson.dumps(endpoint.valid), headers=headers
        )
        await expect_401(response, detail)
    await unchanged(case, before)


@pytest.mark.parametrize("name", list(STAFF_GETS))
async def test_staff_get_needs_a_valid_token(case: Case, name: str) -> None:
    for header, detail in AUTH_FAILURES:
        headers = {} if header is None else {"Authorization": header}
        response = await case.api.client.get(
            STAFF_GETS[name].format(id=case.report_id), headers=headers
        )
        await expect_401(response, detail)


async def test_a_token_with_one_character_changed_is_refused(case: Case) -> None:
    token = case.api.analyst
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    response = await case.api.client.get("/api/v1/reports", headers=case.api.auth(forged))
    await expect_401(response, "unknown or revoked token")


async def test_authorization_header_that_is_not_utf8_is_401(case: Case) -> None:
    server = case.api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(
            b"GET /api/v1/reports HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer hln_\xff\xfe\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 "), head
    assert b"Content-Type: application/problem+json" in head
    problem = orjson.loads(body)
    assert problem["type"] == PROBLEM_BASE + "unauthorized"
    assert "malformed Authorization header" in problem["detail"]


async def test_operator_token_is_staff_too(case: Case) -> None:
    response = await case.api.client.get(
        f"/api/v1/reports/{case.report_id}", headers=case.api.auth(case.api.operator)
    )
    assert response.status == 200


# state conflicts -----------------------------------------------------------------------------
async def close_case(case: Case) -> None:
    response = await case.send(ASSESS, ASSESS.valid)
    assert response.status == 200
    response = await case.send(ACTION, {"code": "content_removed", "reason": "gone"})
    assert response.status == 201
    assert (await case.api.node.cases.show(case.report_id))["status"] == "closed"


async def test_assessing_a_closed_report_is_409(case: Case) -> None:
    await close_case(case)
    before = await case.snapshot()
    response = await case.send(ASSESS, {"verdict": "national", "category": "hate"})
    await expect_problem(response, 409, "conflict", case.report_id, "closed")
    await unchanged(case, before)


async def test_overriding_a_closed_report_is_409(case: Case) -> None:
    # It was accepted, routed the finished case again and queued it for the channels twice.
    await close_case(case)
    before = await case.snapshot()
    response = await case.send(OVERRIDE, OVERRIDE.valid)
    await expect_problem(response, 409, "conflict", case.report_id, "closed")
    await unchanged(case, before)


# internal errors -----------------------------------------------------------------------------
async def test_unexpected_failure_is_a_500_problem_without_internals(
    case: Case, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged database (a table gone) fails deep inside the case service."""
    node = case.api.node
    async with node.db.write() as conn:
        await conn.execute("ALTER TABLE routing_decisions RENAME TO routing_gone")
    try:
        with caplog.at_level(logging.ERROR, logger="hotline.api"):
            shown = await case.api.client.get(
                f"/api/v1/reports/{case.report_id}", headers=case.api.auth()
            )
            assessed = await case.send(ASSESS, ASSESS.valid)
        for response in (shown, assessed):
            body = await expect_problem(response, 500, "internal")
            assert body["detail"] == "internal error"
            text = orjson.dumps(body).decode().lower()
            assert "routing" not in text
            assert "sqlite" not in text
            assert "error:" not in text
        # The operator's log has what the client does not.
        logged = [r for r in caplog.records if "unhandled error" in r.getMessage()]
        assert len(logged) == 2
        assert all(r.exc_info is not None for r in logged)
    finally:
        async with node.db.write() as conn:
            await conn.execute("ALTER TABLE routing_gone RENAME TO routing_decisions")
    # The assessment failed while routing: its transaction left nothing behind.
    shown_case = await node.cases.show(case.report_id)
    assert shown_case["assessment"]["verdict"] is None
    assert shown_case["status"] == "new"
    events = await node.db.fetch_all(
        "SELECT event FROM audit_log WHERE subject = ? ORDER BY seq", (case.report_id,)
    )
    assert [e["event"] for e in events] == ["report.submitted", "report.traced"]
