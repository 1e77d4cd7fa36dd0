"""docs/channels.md is true: its example receiver verifies a real delivery; its schema fits it."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import orjson
import pytest

from node.app import Node, open_node
from node.cases import ImportItem
from node.clock import SystemClock
from peers.client import signed_headers
from tests.node.test_serve import free_port
from tests.support.nodes import init_node

DOC = Path(__file__).resolve().parents[2] / "docs" / "channels.md"


def block(language: str) -> str:
    found = re.search(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert found is not None, f"no {language} block in {DOC}"
    return found.group(1)


@dataclass
class Receiver:
    process: subprocess.Popen[str]
    url: str

    async def next_referral(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), 30)
        referral: dict[str, Any] = orjson.loads(line)
        return referral


@pytest.fixture
async def node_and_receiver(tmp_path: Path) -> AsyncIterator[tuple[Node, Receiver]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/referrals"
    data_dir = init_node(
        tmp_path / "fr",
        extra={
            "channels": {"police": {"kind": "webhook", "roles": ["law_enforcement"], "url": url}}
        },
    )
    # The receiver's clock is the real one: so is the node's here.
    async with open_node(data_dir, SystemClock()) as node:
        (tmp_path / "key-document.json").write_bytes(node.key_document())
        (tmp_path / "receiver.py").write_text(block("python"), encoding="utf-8")
        process = subprocess.Popen(
            [
                sys.executable,
                str(tmp_path / "receiver.py"),
                str(tmp_path / "key-document.json"),
                node.keyring.current.fingerprint + "\n",  # as pasted
                str(port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            ready = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30)
            assert ready == "listening\n", process.stderr
            yield node, Receiver(process, url)
        finally:
            process.kill()
            process.communicate(timeout=30)


async def test_the_documented_receiver_verifies_a_real_delivery(
    node_and_receiver: tuple[Node, Receiver],
) -> None:
    node, receiver = node_and_receiver
    schema = orjson.loads(block("json"))
    validator = jsonschema.Draft202012Validator(schema)

    # A channel test, then a real referral of a domestic case.
    outcome = await node.dispatcher.test("police")
    assert outcome.delivered, outcome.detail
    test = await receiver.next_referral()
    validator.validate(test)
    assert test["test"] is True

    [result] = await node.cases.import_batch(
        [
            ImportItem.check(
                {
                    "url": "http://fr.example/doc",
                    "category": "csam",
                    "verdict": "baseline",
                    "hosting_country": "FR",
                    "tlp": "red",
                }
            )
        ],
        actor="test",
    )
    report = await node.dispatcher.run_once()
    assert report.delivered == 1, report.details
    referral = await receiver.next_referral()
    validator.validate(referral)
    assert (referral["test"], referral["tlp"]) == (False, "red")
    assert referral["cases"][0]["report_id"] == result.report_id
    assert referral["reference"] == result.report_id[-8:]

    # Forgeries: a body other than the one signed, and a signature by a key it does not know.
    body = orjson.dumps({"type": "hotline-node/referral"})
    key = node.keyring.current.current_signing(SystemClock().now())
    headers = signed_headers(
        "POST", receiver.url, b"{}", node_id=node.config.node_id, key=key, now=SystemClock().now()
    )
    async with aiohttp.ClientSession() as session:
        async with session.post(receiver.url, data=body, headers=headers) as response:
            assert response.status == 401
            assert (await response.json())["error"] == "Content-Digest does not match the body"
        headers["Content-Digest"] = signed_headers(
            "POST", receiver.url, body, node_id="x", key=key, now=SystemClock().now()
        )["Content-Digest"]
        async with session.post(receiver.url, data=body, headers=headers) as response:
            assert response.status == 401
            assert (await response.json())["error"] == "signature does not verify"
