"""Structured logs: one JSON object per line, extra fields kept, credentials never written."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.logs import JsonFormatter, TextFormatter, configured
from tests.node.test_serve import STOP_TIMEOUT, cli_json, free_port, reaped, wait_healthy
from tests.support.dns_server import ZoneDnsServer
from tests.support.nodes import ApiHarness

TOKEN = "hln_0123456789abcdef_c2VjcmV0LXRva2VuLXZhbHVlLXRoYXQtbXVzdC1ub3QtbGVhaw"


def record(message: str, *args: Any, **extra: Any) -> logging.LogRecord:
    logger = logging.getLogger("hotline.test")
    return logger.makeRecord(
        logger.name, logging.WARNING, __file__, 1, message, args, None, extra=extra
    )


def test_a_json_line_has_the_fields_and_the_extras() -> None:
    line = JsonFormatter().format(record("push to %s failed", "de-eco", peer="de-eco", attempt=3))
    assert "\n" not in line
    document = json.loads(line)
    assert document["level"] == "warning"
    assert document["logger"] == "hotline.test"
    assert document["message"] == "push to de-eco failed"
    assert document["peer"] == "de-eco"
    assert document["attempt"] == 3
    assert document["ts"].endswith("Z")
    assert "T" in document["ts"]


def test_credentials_are_not_written_whatever_the_caller_passes() -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
    noisy = record(
        "request with %s",
        f"Authorization: Bearer {TOKEN}",
        headers=headers,
        token=TOKEN,
        key_secret="00" * 32,
        signature="sig1=:AAAA:",
        nested={"cookie": "session=1", "items": [f"then {TOKEN}"]},
    )
    line = JsonFormatter().format(noisy)
    document = json.loads(line)
    assert TOKEN not in line
    assert "00" * 32 not in line
    assert "AAAA" not in line
    assert "session=1" not in line
    assert document["headers"] == {"Authorization": "[redacted]", "Accept": "application/json"}
    assert document["token"] == "[redacted]"
    assert document["message"] == "request with Authorization: [redacted]"
    assert document["nested"] == {"cookie": "[redacted]", "items": ["then [redacted]"]}
    assert TOKEN not in TextFormatter().format(noisy)


def test_an_exception_is_one_line_of_json() -> None:
    try:
        raise RuntimeError(f"failed with {TOKEN}")
    except RuntimeError:
        failed = record("boom")
        failed.exc_info = sys.exc_info()
    document = json.loads(JsonFormatter().format(failed))
    assert "RuntimeError" in document["exception"]
    assert TOKEN not in document["exception"]


async def test_each_request_is_logged_without_headers_query_or_address(api: ApiHarness) -> None:
    stream = io.StringIO()
    with configured("json", "info", stream=stream):
        response = await api.client.get(
            "/api/v1/reports", params={"status": "new"}, headers=api.auth()
        )
        assert response.status == 200
        response = await api.client.get("/api/v1/trace", params={"url": "http://de.example/x"})
        assert response.status == 401
    # The test server keeps aiohttp's own access log on (`serve` turns it off): ours only.
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    ours = [line for line in lines if line["logger"].startswith("hotline.")]
    requests = [line for line in ours if line["logger"] == "hotline.http"]
    assert [(r["method"], r["route"], r["status"]) for r in requests] == [
        ("GET", "/api/v1/reports", 200),
        ("GET", "/api/v1/trace", 401),
    ]
    assert all(r["level"] == "info" and r["duration_ms"] >= 0 for r in requests)
    text = json.dumps(ours)
    assert api.analyst not in stream.getvalue()
    assert "de.example" not in text  # the reported URL in the query string
    assert "127.0.0.1" not in text
    # The previous set-up is back: nothing more is written to our stream.
    logging.getLogger("hotline.http").warning("after")
    assert "after" not in stream.getvalue()


async def test_serve_writes_json_lines_and_no_token(
    tmp_path: Path, dns_server: ZoneDnsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = str(tmp_path / "node")
    port = free_port()
    await asyncio.to_thread(
        cli_json,
        capsys,
        "init",
        "--data-dir",
        data_dir,
        "--node-id",
        "fr-pointdecontact",
        "--country",
        "FR",
        "--listen",
        f"127.0.0.1:{port}",
        "--dns-server",
        dns_server.nameserver,
    )
    created = await asyncio.to_thread(
        cli_json, capsys, "tokens", "create", "--role", "analyst", "--data-dir", data_dir
    )
    token = created["token"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_NODE_")}
    command = [sys.executable, "-m", "node", "serve", "--data-dir", data_dir]
    process = subprocess.Popen(
        [*command, "--log-format", "json", "--log-level", "info"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with reaped(process):
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{port}"
            await wait_healthy(session, base, process)
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(f"{base}/api/v1/reports", headers=headers) as response:
                assert response.status == 200
            async with session.get(
                f"{base}/api/v1/trace",
                params={"url": "http://de.example/secret-path"},
                headers=headers,
            ) as response:
                assert response.status == 200
            bad = {"Authorization": "Bearer hln_not_a_real_token"}
            async with session.get(f"{base}/api/v1/reports", headers=bad) as response:
                assert response.status == 401
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(process.communicate, timeout=STOP_TIMEOUT)
    assert process.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines()]
    assert lines, "no log line at info level"
    assert {"ts", "level", "logger", "message"} <= set(lines[0])
    messages = [line["message"] for line in lines]
    assert "serving fr-pointdecontact on 127.0.0.1:" + str(port) in messages
    assert "shutting down" in messages
    statuses = [(r["route"], r["status"]) for r in lines if r["logger"] == "hotline.http"]
    assert ("/api/v1/reports", 200) in statuses
    assert ("/api/v1/reports", 401) in statuses
    assert token not in err
    assert "hln_not_a_real_token" not in err
    assert "secret-path" not in err
