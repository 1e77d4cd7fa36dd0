"""Build real nodes for tests: a data directory, the composition root, an HTTP test client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer

from keys.storage import write_private_file
from node.app import Node, open_node
from node.clock import ManualClock, iso
from node.config import parse_config, render_config
from node.datadir import DataDir, create_data_dir

START = datetime(2026, 11, 29, 9, 0, 0, tzinfo=UTC)

# Public addresses whose registration country iptocc knows; no traffic is ever sent to them.
ZONE: dict[str, dict[str, list[tuple[str, int]]]] = {
    "fr.example": {"A": [("5.39.0.1", 300)]},
    "de.example": {"A": [("88.198.0.1", 300)], "AAAA": [("2a01:4f8::1", 300)]},
    "us.example": {"A": [("8.8.8.8", 300)]},
    "za.example": {"A": [("41.0.0.1", 300)]},
    "split.example": {"A": [("5.39.0.1", 300), ("88.198.0.1", 300)]},
    "cdn.example": {"CNAME": [("site.example.cdn.cloudflare.net", 60)]},
    "site.example.cdn.cloudflare.net": {"A": [("104.16.0.1", 60)]},
    "private.example": {"A": [("10.1.2.3", 300)]},
}


def init_node(
    root: Path,
    *,
    node_id: str = "fr-pointdecontact",
    country: str = "FR",
    clock: ManualClock | None = None,
    extra: dict[str, Any] | None = None,
) -> DataDir:
    clock = clock or ManualClock(START)
    raw: dict[str, Any] = {
        "node_id": node_id,
        "country": country,
        "endpoint": "http://127.0.0.1:9",
        "listen": "127.0.0.1:0",
        # Routing tests assess and expect routing at once; four-eyes review has its own tests.
        "console": {"four_eyes": []},
    }
    for key, value in (extra or {}).items():
        raw[key] = value
    data_dir = DataDir(root)
    config = parse_config(raw)
    create_data_dir(data_dir, config, clock)
    return data_dir


def rewrite_config(data_dir: DataDir, **sections: Any) -> None:
    import tomllib

    raw = tomllib.loads(data_dir.config.read_text())
    raw.update(sections)
    write_private_file(data_dir.config, render_config(parse_config(raw)).encode())


@dataclass
class ApiHarness:
    node: Node
    client: TestClient[Any, Any]
    analyst: str
    operator: str

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.analyst}"}

    async def post(self, path: str, body: Any, token: str | None = None) -> Any:
        return await self.client.post(
            path,
            data=orjson.dumps(body),
            headers={**self.auth(token), "Content-Type": "application/json"},
        )


@asynccontextmanager
async def api_harness(data_dir: DataDir, clock: ManualClock) -> AsyncIterator[ApiHarness]:
    async with open_node(data_dir, clock) as node:
        analyst = await node.tokens.create("analyst", "alice")
        operator = await node.tokens.create("operator", "olivier")
        server = TestServer(node.make_app(), host="127.0.0.1")
        async with TestClient(server) as client:
            yield ApiHarness(node, client, analyst, operator)


async def table_counts(node: Node) -> dict[str, int]:
    """Row counts of every table that user input can change: to prove nothing changed."""
    counts = {}
    for table in (
        "reports",
        "actions",
        "routing_decisions",
        "peer_outbox",
        "channel_outbox",
        "tokens",
        "audit_log",
        "hosting_addresses",
        "submissions",
    ):
        row = await node.db.fetch_one(f"SELECT COUNT(*) FROM {table}")
        counts[table] = int(row[0]) if row else 0
    return counts


__all__ = ["START", "ZONE", "ApiHarness", "api_harness", "init_node", "iso", "table_counts"]
