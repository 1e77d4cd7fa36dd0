"""Body limits hold whatever the framing: an oversized chunked body is refused as a sized one is."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlencode, urlsplit

import orjson
import pytest

from protocol.federation import MAX_TRANSACTION_BYTES
from tests.node.test_federation import signed_headers
from tests.support.federation import LiveNode, Pair
from tests.support.nodes import table_counts

PUBLIC_LIMIT = 24 * 1024
ANALYST_LIMIT = 64 * 1024  # [intake] max_body_bytes' default
CHUNK = 16 * 1024


def form_body(size: int) -> bytes:
    """A well-formed public form whose description makes it `size` bytes long: cutting it at
    the cap would leave a valid report (what the form stored before)."""
    head = urlencode({"url": "http://de.example/chunked", "lang": "en", "description": ""})
    return (head + "x" * (size - len(head))).encode()


def json_body(size: int, **fields: str) -> bytes:
    """A JSON object `size` bytes long, padded with spaces (valid JSON at any length)."""
    text = orjson.dumps(fields)
    return text + b" " * (size - len(text))


async def send(
    url: str, path: str, body: bytes, headers: dict[str, str], *, chunked: bool, piece: int = CHUNK
) -> tuple[int, dict[str, str], bytes]:
    """POST over a raw socket, chunked or sized; the server may answer (and close) before the
    whole body is sent, as it should for an oversized one."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(len(body))}
    lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in {**headers, **framing}.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    with contextlib.suppress(ConnectionError):
        for start in range(0, len(body), piece):
            part = body[start : start + piece]
            writer.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=30)
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    head, _, payload = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    answered = {
        name.lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines)
    }
    return int(status_line.split()[1]), answered, payload


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def _public_form(pair: Pair, size: int) -> tuple[str, bytes, dict[str, str]]:
    return (
        "/report",
        form_body(size),
        {"Content-Type": "application/x-www-form-urlencoded", "Accept-Language": "en"},
    )


def _public_api(pair: Pair, size: int) -> tuple[str, bytes, dict[str, str]]:
    body = json_body(size, url="http://de.example/chunked", description="seen")
    return "/api/v1/public/reports", body, {"Content-Type": "application/json"}


def _analyst_api(pair: Pair, size: int) -> tuple[str, bytes, dict[str, str]]:
    body = json_body(size, url="http://de.example/chunked", category="csam")
    return "/api/v1/reports", body, bearer(pair.fr.analyst)


def _admin_api(pair: Pair, size: int) -> tuple[str, bytes, dict[str, str]]:
    body = json_body(
        size,
        node_id="us-ncmec",
        country="US",
        endpoint="http://127.0.0.1:9/",
        fingerprint="x" * 43,
    )
    return "/admin/v1/peers", body, bearer(pair.fr.operator)


def _federation_push(pair: Pair, size: int) -> tuple[str, bytes, dict[str, str]]:
    # Signed by a peer FR knows, so that the body is read (strangers are refused before it).
    path = "/federation/v1/transactions/chunked-0001"
    body = json_body(size, envelopes="")
    headers = signed_headers(pair.de, pair.fr.url.removeprefix("http://"), path, body, "n" * 22)
    return path, body, headers


ENDPOINTS = {
    "public form": (_public_form, PUBLIC_LIMIT),
    "public API": (_public_api, PUBLIC_LIMIT),
    "analyst API": (_analyst_api, ANALYST_LIMIT),
    "admin API": (_admin_api, ANALYST_LIMIT),
    "federation push": (_federation_push, MAX_TRANSACTION_BYTES),
}


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "sized"])
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_an_oversized_body_is_refused_whatever_its_framing_and_nothing_is_stored(
    pair: Pair, endpoint: str, chunked: bool
) -> None:
    build, limit = ENDPOINTS[endpoint]
    node: LiveNode = pair.fr
    before = await table_counts(node.node)
    path, body, headers = build(pair, limit + CHUNK)
    status, answered, payload = await send(node.url, path, body, headers, chunked=chunked)
    assert status == 413, payload[:300]
    if endpoint == "public form":
        # The form's own page, in the reporter's language, says what to fix.
        assert answered["content-type"].startswith("text/html")
        assert b"too long" in payload
    else:
        assert answered["content-type"] == "application/problem+json"
        assert orjson.loads(payload)["status"] == 413
    assert await table_counts(node.node) == before


@pytest.mark.parametrize("endpoint", ["public form", "public API", "analyst API"])
async def test_a_chunked_body_within_the_limit_is_read_to_its_end(
    pair: Pair, endpoint: str
) -> None:
    """The cap is on the whole body, not on what one read returns: a small report sent in
    several chunks is taken whole."""
    build, _ = ENDPOINTS[endpoint]
    path, body, headers = build(pair, 3 * 1000)
    status, _, payload = await send(pair.fr.url, path, body, headers, chunked=True, piece=500)
    assert status in (201, 202), payload[:300]
    [row] = await pair.fr.node.db.fetch_all("SELECT url FROM reports")
    assert row["url"] == "http://de.example/chunked"
