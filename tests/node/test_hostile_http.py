"""Hostile bytes on the wire: every refusal is problem+json, nothing hangs, nothing is a 5xx."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from node.clock import ManualClock
from node.errors import PROBLEM_BASE
from tests.support.dns_server import ZoneDnsServer
from tests.support.federation import LiveNode, Pair, live_node, node_dir

PROBLEM_JSON = "application/problem+json"


async def raw_exchange(node: LiveNode, request: bytes, wait: float = 5.0) -> bytes:
    """Send bytes as they are and read until the node closes the connection."""
    host, port = node.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), wait)
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One answer, read by its Content-Length (the node may keep reading the request after)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(parse(head)[1]["content-length"])
    return head + await reader.readexactly(length)


def parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, orjson.loads(body) if body.strip() else None


def assert_problem(raw: bytes, status: int) -> dict[str, Any]:
    got, headers, body = parse(raw)
    assert got == status, raw[:300]
    assert headers["content-type"].startswith(PROBLEM_JSON)
    assert body["status"] == status
    assert body["type"].startswith(PROBLEM_BASE)
    assert b"Traceback" not in raw
    return dict(body)


async def call(
    node: LiveNode, method: str, path: str, **kwargs: Any
) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, node.url + path, **kwargs) as response,
    ):
        text = await response.text()
        headers = dict(response.headers)
        return response.status, headers, orjson.loads(text) if text else None


# --- federation refusals that were 500s -------------------------------------------------------


@pytest.mark.parametrize("query", ["after=%C2%B2", "limit=%C2%B2", "after=1%0A", "after=-1"])
async def test_outbox_query_that_is_not_ascii_digits_is_a_422(pair: Pair, query: str) -> None:
    status, headers, body = await call(pair.fr, "GET", f"/federation/v1/outbox?{query}")
    assert status == 422
    assert headers["Content-Type"].startswith(PROBLEM_JSON)
    assert "non-negative integers" in body["detail"]


async def test_a_signature_created_beyond_year_9999_is_refused_not_a_crash(pair: Pair) -> None:
    kid = "A" * 43
    signature_input = (
        'hln=("@method" "@authority" "@path" "@query" "content-digest");created=999999999999'
        f';keyid="de-eco/{kid}";nonce="{"n" * 16}";alg="ed25519";tag="hotline-node/v1"'
    )
    for method, path in (
        ("POST", "/federation/v1/transactions/abcdefgh1"),
        ("GET", "/federation/v1/outbox"),
    ):
        status, _, body = await call(
            pair.fr, method, path, headers={"Signature-Input": signature_input}, data=b""
        )
        assert status == 401, body
        assert body["type"] == PROBLEM_BASE + "request-signature"
        assert "time window" in body["detail"]


async def test_pull_refuses_a_body_before_reading_it(pair: Pair) -> None:
    # Declares 16 MiB and sends none of it: the answer must not wait for the body.
    request = (
        b"GET /federation/v1/outbox?after=0 HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 16777216\r\nConnection: close\r\n\r\n"
    )
    started = asyncio.get_running_loop().time()
    host, port = pair.fr.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    writer.close()
    assert head.startswith(b"HTTP/1.1 400")
    assert asyncio.get_running_loop().time() - started < 3


async def test_refused_federation_requests_do_not_log_the_client_address(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    status, _, _ = await call(pair.fr, "GET", "/federation/v1/outbox")
    assert status == 401
    assert "refused federation request" in caplog.text
    assert "127.0.0.1" not in caplog.text


# --- the server's own refusals ----------------------------------------------------------------


async def test_405_keeps_allow_and_is_problem_json(pair: Pair) -> None:
    status, headers, body = await call(pair.fr, "PUT", "/api/v1/reports")
    assert status == 405
    assert headers["Content-Type"].startswith(PROBLEM_JSON)
    assert set(headers["Allow"].split(",")) >= {"GET", "POST"}
    assert body["type"] == PROBLEM_BASE + "method-not-allowed"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
        b"POST /api/v1/reports HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
    ],
    ids=["header-too-long", "nul-in-header", "bad-chunking", "path-not-utf8", "not-http"],
)
async def test_parser_refusals_are_problem_json_that_echo_nothing(
    pair: Pair, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    raw = await raw_exchange(pair.fr, request_bytes)
    status, _, _ = parse(raw)
    assert 400 <= status < 500
    body = assert_problem(raw, status)
    assert "aaaa" not in body["detail"]
    assert "not http at all" not in raw.decode("latin-1")
    assert "127.0.0.1" not in caplog.text
    assert "Traceback" not in caplog.text


async def test_incomplete_requests_time_out(
    tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> None:
    data_dir, url = node_dir(
        tmp_path,
        "fr-pdc",
        "FR",
        clock,
        dns_server.nameserver,
        http={"header_timeout_seconds": 0.5, "body_timeout_seconds": 0.5},
    )
    async with live_node(data_dir, url, clock) as node:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        # Half-sent headers: the connection is closed by the node, without an answer.
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        # Half-sent body: a 408 problem once the body deadline passes.
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /api/v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + node.analyst.encode() + b"\r\n"
            b'Content-Length: 100\r\n\r\n{"url": '
        )
        raw = await asyncio.wait_for(read_response(reader), 5)
        writer.close()
        body = assert_problem(raw, 408)
        assert body["type"] == PROBLEM_BASE + "request-timeout"
        assert await node.node.db.fetch_all("SELECT id FROM reports") == []


# --- text fields ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/reports", {"url": "http://de.example/a", "note": "a\x00b"}, "note"),
        ("/api/v1/reports", {"url": "http://de.example/a", "note": "a\rb"}, "note"),
        (
            "/api/v1/public/reports",
            {"url": "http://de.example/a", "description": "seen\x1b[31m"},
            "description",
        ),
        (
            "/api/v1/public/reports",
            {"url": "http://de.example/a", "description": "seen", "contact": "not a contact"},
            "contact",
        ),
        (
            "/api/v1/public/reports",
            {"url": "http://de.example/a", "description": "seen", "contact": "a@b.example\nc"},
            "contact",
        ),
    ],
)
async def test_free_text_refuses_control_characters_and_contact_is_checked(
    pair: Pair, path: str, body: dict[str, Any], field: str
) -> None:
    headers = {"Authorization": f"Bearer {pair.fr.analyst}"}
    status, _, problem = await call(pair.fr, "POST", path, json=body, headers=headers)
    assert status == 422, problem
    assert field in problem["detail"]
    assert await pair.fr.node.db.fetch_all("SELECT id FROM reports") == []


async def test_newline_and_tab_are_kept_and_a_phone_number_is_a_contact(pair: Pair) -> None:
    status, _, answer = await call(
        pair.fr,
        "POST",
        "/api/v1/public/reports",
        json={
            "url": "http://de.example/b",
            "description": "line one\n\tline two",
            "contact": "+33 1 23 45 67 89",
        },
    )
    assert status == 202, answer


async def test_a_peer_endpoint_with_a_line_break_is_a_422(pair: Pair) -> None:
    status, _, problem = await call(
        pair.fr,
        "POST",
        "/admin/v1/peers",
        json={
            "node_id": "it-x",
            "country": "IT",
            "endpoint": "http://127.0.0.1:1\r\nX: y",
            "fingerprint": "A" * 43,
        },
        headers={"Authorization": f"Bearer {pair.fr.operator}"},
    )
    assert status == 422, problem
    assert "endpoint" in problem["detail"]


async def test_a_failed_trace_does_not_log_the_reported_host(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression (issue 12): the 502 of a trace whose DNS query timed out was logged with its
    message, which names the reported host."""
    caplog.set_level(logging.DEBUG)
    headers = {"Authorization": f"Bearer {pair.fr.analyst}"}
    status, _, problem = await call(
        pair.fr, "GET", "/api/v1/trace?url=http://slow.example/x", headers=headers
    )
    assert status == 502
    assert "slow.example" in problem["detail"]  # the analyst who asked is told
    assert "request failed: GET /api/v1/trace: upstream" in caplog.text
    assert "slow.example" not in caplog.text
