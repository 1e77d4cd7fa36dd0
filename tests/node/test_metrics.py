"""`/metrics` against a running app: the text format, store figures and per-route HTTP counts."""

from __future__ import annotations

import os
import re
from datetime import timedelta

from node.clock import ManualClock, iso
from node.store.db import Tx
from tests.support.nodes import START, ApiHarness

LABEL_PAIR = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    rf"(?:\{{(?P<labels>{LABEL_PAIR}(?:,{LABEL_PAIR})*)\}})? "
    r"(?P<value>-?[0-9.e+-]+|\+Inf|NaN)$"
)
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')
UNKNOWN_ID = "2f1e7c1a-5b6d-4e8f-9a0b-1c2d3e4f5a6b"


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample, after checking each family is announced by HELP and TYPE first."""
    assert text.endswith("\n")
    announced: set[str] = set()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert kind in {"counter", "gauge", "histogram"}
            assert name not in announced, f"{name} announced twice"
            announced.add(name)
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name = match["name"]
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in announced or family in announced, f"{name} has no TYPE"
        labels = frozenset(LABEL.findall(match["labels"] or ""))
        assert (name, labels) not in samples, f"duplicate sample {line!r}"
        samples[(name, labels)] = float(match["value"])
    return samples


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples[(name, frozenset(labels.items()))]


async def test_metrics_report_queues_peers_cases_audit_and_requests(
    api: ApiHarness, clock: ManualClock
) -> None:
    created = await api.post("/api/v1/reports", {"url": "http://fr.example/m", "category": "csam"})
    assert created.status == 201
    now = iso(clock.now())
    later = iso(START + timedelta(minutes=10))

    def transaction(conn: Tx) -> None:
        # Two peers: one backing off with a queue, one idle (it must still show a 0).
        for node_id, backoff in (("de-eco", later), ("us-ncmec", None)):
            conn.execute(
                "INSERT INTO peers (node_id, country, endpoint, fingerprint, status, mode,"
                " categories, max_tlp, added_at, backoff_until) VALUES (?, 'DE',"
                " 'http://127.0.0.1:9', 'fp', 'active', 'push', '[]', 'amber', ?, ?)",
                (node_id, now, backoff),
            )
        for seq, state in enumerate(("pending", "pending", "sent", "dead"), start=1):
            conn.execute(
                "INSERT INTO peer_outbox (peer_id, seq, record_type, record_id, report_id,"
                " payload, state, created_at) VALUES ('de-eco', ?, 'report', 'r', 'r', x'',"
                " ?, ?)",
                (seq, state, now),
            )
        conn.execute(
            "INSERT INTO dead_letters (peer_id, direction, seq, reason, at)"
            " VALUES ('de-eco', 'out', 4, 'refused', ?)",
            (now,),
        )
        for channel, state in (("police", "pending"), ("police", "delivered"), ("host", "dead")):
            conn.execute(
                "INSERT INTO channel_outbox (role, report_id, kind, payload, state,"
                " created_at) VALUES (?, 'r', 'report', '{}', ?, ?)",
                (channel, state, now),
            )

    await api.node.db.run(transaction)
    for _ in range(2):
        assert (await api.client.get("/healthz")).status == 200
    assert (await api.client.get(f"/api/v1/reports/{UNKNOWN_ID}", headers=api.auth())).status == 404
    assert (await api.client.get("/api/v1/reports")).status == 401
    assert (await api.client.get("/no/such/route")).status == 404

    response = await api.client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse(await response.text())

    assert value(samples, "hotline_peer_queue_depth", peer="de-eco") == 2
    assert value(samples, "hotline_peer_queue_depth", peer="us-ncmec") == 0
    assert value(samples, "hotline_peer_delivered_total", peer="de-eco") == 1
    assert value(samples, "hotline_peer_dead_letters_total", peer="de-eco", direction="out") == 1
    assert value(samples, "hotline_peer_backoff", peer="de-eco") == 1
    assert value(samples, "hotline_peer_backoff", peer="us-ncmec") == 0
    assert value(samples, "hotline_peers_in_backoff") == 1
    assert value(samples, "hotline_peers", status="active") == 2
    assert value(samples, "hotline_channel_queue_depth", channel="police") == 1
    assert value(samples, "hotline_channel_queue_depth", channel="host") == 0
    assert value(samples, "hotline_channel_delivered_total", channel="police") == 1
    assert value(samples, "hotline_channel_dead_total", channel="host") == 1
    assert value(samples, "hotline_reports", status="new") == 1
    assert value(samples, "hotline_reports_trace_pending") == 1
    audit = await api.node.db.fetch_one("SELECT COUNT(*) FROM audit_log")
    assert audit is not None
    assert value(samples, "hotline_audit_log_entries") == audit[0]

    # Requests by route template (never the raw path), with the status the client saw.
    requests = "hotline_http_requests_total"
    assert value(samples, requests, method="GET", route="/healthz", status="200") == 2
    assert value(samples, requests, method="POST", route="/api/v1/reports", status="201") == 1
    assert value(samples, requests, method="GET", route="/api/v1/reports/{id}", status="404") == 1
    assert value(samples, requests, method="GET", route="/api/v1/reports", status="401") == 1
    assert value(samples, requests, method="GET", route="unmatched", status="404") == 1
    assert not any(UNKNOWN_ID in dict(labels).get("route", "") for _, labels in samples)

    duration = "hotline_http_request_duration_seconds"
    healthz = {"method": "GET", "route": "/healthz"}
    assert value(samples, f"{duration}_count", **healthz) == 2
    assert value(samples, f"{duration}_bucket", **healthz, le="+Inf") == 2
    buckets = sorted(
        (float(dict(labels)["le"]), count)
        for (name, labels), count in samples.items()
        if name == f"{duration}_bucket" and dict(labels)["route"] == "/healthz"
    )
    counts = [count for _, count in buckets]
    assert counts == sorted(counts)
    assert value(samples, f"{duration}_sum", **healthz) >= 0

    # The scrape itself is counted from the next scrape on.
    again = parse(await (await api.client.get("/metrics")).text())
    assert value(again, requests, method="GET", route="/metrics", status="200") == 1


async def test_metrics_of_an_empty_node_parse(api: ApiHarness) -> None:
    samples = parse(await (await api.client.get("/metrics")).text())
    assert value(samples, "hotline_peers_in_backoff") == 0
    assert value(samples, "hotline_reports_trace_pending") == 0
    assert not any(name == "hotline_peer_queue_depth" for name, _ in samples)


async def test_metrics_show_the_free_space_of_the_data_directory(api: ApiHarness) -> None:
    samples = parse(await (await api.client.get("/metrics")).text())
    usage = os.statvfs(api.node.data_dir.root)
    free = value(samples, "hotline_disk_free_bytes")
    # The same file system, measured a moment apart: within what the test run may write.
    assert abs(free - usage.f_bavail * usage.f_frsize) < 64 * 1024 * 1024
    assert value(samples, "hotline_disk_size_bytes") == usage.f_blocks * usage.f_frsize
    assert value(samples, "hotline_disk_full") == 0
