"""Schemathesis against a real node process: no 5xx, problem+json errors, answers as documented."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.cluster import NodeProcess, cli, free_port
from tests.support.dns_server import ZoneDnsServer
from tests.support.sinks import SmtpSink

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
SEED = 20261205
EXAMPLES = 20  # per operation, per generation mode, per caller: about 3,000 requests in all
BUDGET_SECONDS = 150
PROBLEM_JSON = "application/problem+json"
# Audit entries written by the node's own background work (trace, routing, jobs), not by requests.
BACKGROUND = ("jurisdiction", "scheduler", "delivery", "channels")
# Operations whose request schema says exactly what the node accepts, with the only refusals a
# valid request can still get (others depend on state the schema cannot know: DNS answers for a
# traced host, whether a fingerprint matches what an endpoint serves...).
EXACT: dict[str, set[str]] = {
    "POST /api/v1/reports": set(),
    "POST /api/v1/public/reports": set(),
    "GET /api/v1/stats": {"since must be before until"},
    "POST /admin/v1/channels/{name}/test": {
        "hosts mails each case's abuse contact: give --to ADDRESS"
    },
}
CHANNEL = "hosts"
# The public form answers people, not programs: its refusals are pages (text/html, as the schema
# says), held to the schema like every answer but not to problem+json.
HTML_PAGES = {"/report", "/report/report.css"}
CHANNEL_TEST = "POST /admin/v1/channels/{name}/test"
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory, dns: ZoneDnsServer, smtp: SmtpSink
) -> Iterator[NodeProcess]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    process = NodeProcess("fr-pdc", "FR", root / "fr-pdc", dns.nameserver)
    process.init(
        {
            # RDAP is pointed at a closed loopback port: no query ever leaves the machine.
            "jurisdiction": {"rdap_base": f"http://127.0.0.1:{free_port()}/"},
            # Public intake is fuzzed too, not only its rate limit.
            "intake": {"public_reports_per_minute": 10_000},
            # A channel whose test mails a real SMTP server on loopback: `to` is fuzzed.
            "channels": {
                CHANNEL: {
                    "kind": "email",
                    "roles": ["host_notice", "cdn_notice"],
                    "from_address": "notices@fuzz.example",
                    "smtp_port": smtp.port,
                }
            },
        }
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def snapshot(database: Path) -> tuple[int, ...]:
    """What a request can change: rows it adds and counters it raises (not background work)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        marks = ",".join("?" for _ in BACKGROUND)
        queries = [
            "SELECT COUNT(*) FROM reports",
            "SELECT COALESCE(SUM(duplicates), 0) FROM reports",
            "SELECT COUNT(*) FROM actions",
            "SELECT COUNT(*) FROM tokens",
            "SELECT COUNT(*) FROM peers",
            "SELECT COUNT(*) FROM request_nonces",
            f"SELECT COUNT(*) FROM audit_log WHERE actor NOT IN ({marks})"
            " AND actor NOT LIKE 'channel:%' AND actor NOT LIKE 'peer:%'",
        ]
        return tuple(
            int(conn.execute(q, BACKGROUND if "audit" in q else ()).fetchone()[0]) for q in queries
        )


def test_fuzzing_the_api_finds_no_server_error(node: NodeProcess, smtp: SmtpSink) -> None:
    schema = schemathesis.openapi.from_path(SPEC)
    database = node.root / "node.sqlite3"
    callers = {"analyst": node.analyst, "operator": node.operator, "anonymous": None}
    session = requests.Session()
    started = time.monotonic()
    seen: dict[str, set[int]] = {}
    sent: list[int] = []
    results = list(schema.get_all_operations())
    # The spec must load whole: an operation schemathesis cannot read would go untested.
    assert all(isinstance(result, Ok) for result in results), results
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) >= 20

    def check(case: Any, token: str | None, mode: GenerationMode) -> None:
        if case.operation.label == "POST /admin/v1/peers" and isinstance(case.body, dict):
            # Never let the node fetch an arbitrary host: the endpoint is the node itself,
            # which answers with its own key document (a refusal, but a real exchange).
            case.body["endpoint"] = node.url
        if case.operation.label == CHANNEL_TEST and mode is GenerationMode.POSITIVE:
            # A random name is a 404: valid cases go to the one channel there is.
            case.path_parameters = {"name": CHANNEL}
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        before = snapshot(database)
        response = case.call(base_url=node.url, session=session, headers=headers, timeout=30)
        label = case.operation.label
        seen.setdefault(label, set()).add(response.status_code)
        sent.append(response.status_code)
        assert response.status_code < 500, (label, response.status_code, response.text[:500])
        if mode is GenerationMode.POSITIVE and label in EXACT and response.status_code == 422:
            # The schema is exact here: what it calls valid, the node takes, but for what a
            # schema cannot say (one parameter's bound against another's).
            assert response.json()["detail"] in EXACT[label], (label, case.query, case.body)
        if response.status_code >= 400:
            if case.operation.path not in HTML_PAGES:
                content_type = response.headers.get("content-type", [""])[0]
                assert content_type.startswith(PROBLEM_JSON), (label, response.status_code)
                problem = response.json()
                assert {"type", "title", "status", "detail"} <= set(problem), problem
                assert problem["status"] == response.status_code
            # A refused request changed nothing that requests can change.
            assert snapshot(database) == before, (label, response.status_code, response.text)
        case.validate_response(response, checks=CHECKS, headers=headers)

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)
            for token in callers.values():

                @seed(SEED)
                @settings(
                    max_examples=EXAMPLES,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=strategy, token=st.just(token), mode=st.just(mode))
                def run(case: Any, token: str | None, mode: GenerationMode) -> None:
                    check(case, token, mode)

                try:
                    run()
                except Unsatisfiable:
                    # Nothing to make invalid (no parameters, no body): positive cases only.
                    assert mode is GenerationMode.NEGATIVE, operation.label
    elapsed = time.monotonic() - started
    assert elapsed < BUDGET_SECONDS, f"the fuzzing took {elapsed:.0f} s"
    # Every documented operation was exercised.
    assert {op.label for op in operations} <= set(seen)
    assert len(sent) > 1500, len(sent)
    assert 200 in seen[CHANNEL_TEST]
    assert smtp.messages, "no channel test reached the SMTP server"
    assert cli(node.root, "audit", "verify").returncode == 0
    # No refusal left a traceback in the node's log, and no log line names a client address.
    assert node.log_path is not None
    log = node.log_path.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log
    assert "127.0.0.1" not in log.replace(f"127.0.0.1:{node.port}", "")


def test_tokens_revoke_holds_on_the_running_node(node: NodeProcess) -> None:
    """docs/security.md: a token revoked on the command line is refused from the next request."""
    created = json.loads(cli(node.root, "tokens", "create", "--role", "analyst", "--json").stdout)
    token = created["token"]
    assert node.get("/api/v1/reports", token=token)[0] == 200
    listed = json.loads(cli(node.root, "tokens", "list", "--json").stdout)
    [row] = [t for t in listed if token.startswith(f"hln_{t['id']}_")]
    cli(node.root, "tokens", "revoke", row["id"])
    status, problem = node.get("/api/v1/reports", token=token)
    assert status == 401
    assert problem["type"].endswith("/unauthorized")
