"""Nodes that trust a member directory, through real processes: the umbrella's tools as the
README teaches them (a root 2 of 3, lists signed by two), serving nodes told to trust it on the
command line (their control socket), a list read from a file and one over HTTP.

The tests run in order on one network: three nodes peering through the list with no
fingerprint typed, a case flowing, refused lists keeping the last good one, an identity key
replaced through the list, a member removed, proposals without --auto-peer, a root rotated.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from keys.canonical import canonical_json
from tests.support.cluster import NodeProcess, cli, cli_json, wait_for
from tests.support.dns_server import ZoneDnsServer
from tests.support.file_server import FolderServer

LEFT = "left the directory"


@dataclass
class Network:
    root: Path
    umbrella: Path  # the umbrella's folder (signer keys, root, pending list)
    published: Path  # what it publishes: directory.json, root-N.json
    server: FolderServer  # the same folder over HTTP
    nodes: dict[str, NodeProcess]
    dns: str

    @property
    def list_file(self) -> Path:
        return self.published / "directory.json"

    def tool(self, *args: str) -> subprocess.CompletedProcess[str]:
        """An umbrella command (`hotline-node directory …`): no node needed."""
        return cli(self.root / "no-node", "directory", *args)

    def add(self, node: NodeProcess, *extra: str) -> None:
        self.tool(
            "add",
            str(self.umbrella),
            "--node-id",
            node.node_id,
            "--country",
            node.country,
            "--endpoint",
            node.url,
            "--fingerprint",
            node.fingerprint,
            *extra,
        )

    def sign_and_publish(self, *signers: int, output: Path | None = None) -> bytes:
        for n in signers:
            self.tool("sign", str(self.umbrella), "--key", str(self.umbrella / f"signer-{n}.key"))
        target = output or self.list_file
        self.tool("publish", str(self.umbrella), "--output", str(target))
        return target.read_bytes()


def refresh(node: NodeProcess) -> subprocess.CompletedProcess[str]:
    result = cli(node.root, "directory", "refresh", check=False)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def status(node: NodeProcess) -> dict[str, Any]:
    data: dict[str, Any] = cli_json(node.root, "directory", "status")
    return data


def peers(node: NodeProcess) -> dict[str, dict[str, Any]]:
    return {p["node_id"]: p for p in cli_json(node.root, "peers", "list")}


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hotline-node: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory, dns: ZoneDnsServer) -> Iterator[Network]:
    root = tmp_path_factory.mktemp("directory")
    published = root / "published"
    published.mkdir()
    nodes = {
        node_id: NodeProcess(node_id, cc, root / node_id, dns.nameserver)
        for node_id, cc in (("fr-pdc", "FR"), ("de-eco", "DE"), ("us-ncmec", "US"))
    }
    with FolderServer(published) as server:
        net = Network(root, root / "inhope", published, server, nodes, dns.nameserver)
        try:
            for node in nodes.values():
                node.init()
                node.start()
            yield net
        finally:
            for node in net.nodes.values():
                node.stop()


def test_three_nodes_peer_through_the_list_and_a_case_flows(network: Network) -> None:
    net = network
    created = json.loads(
        net.tool(
            "init",
            str(net.umbrella),
            "--name",
            "inhope",
            "--signers",
            "3",
            "--threshold",
            "2",
            "--json",
        ).stdout
    )
    for node in net.nodes.values():
        net.add(node)
    net.sign_and_publish(1, 2)
    shutil.copy(net.umbrella / "root-1.json", net.published / "root-1.json")
    root_file = net.umbrella / "root.json"
    fr, de, us = net.nodes["fr-pdc"], net.nodes["de-eco"], net.nodes["us-ncmec"]

    # FR and DE read the list from a file, US over HTTP; no fingerprint is typed.
    for node, source in (
        (fr, str(net.list_file)),
        (de, str(net.list_file)),
        (us, net.server.url("directory.json")),
    ):
        trusted = cli_json(
            node.root, "directory", "trust", str(root_file), "--source", source, "--auto-peer"
        )
        assert trusted["root_digest"] == created["root_digest"]
        assert trusted["refresh"]["state"] == "accepted"
    assert "directory.json" in net.server.requests
    assert "root-2.json" in net.server.requests  # looked for a rotation, found none (404)

    text = cli(fr.root, "directory", "status").stdout
    assert "member list version 1: 3 member(s), valid until" in text
    for node in net.nodes.values():
        listed = peers(node)
        assert set(listed) == set(net.nodes) - {node.node_id}
        assert all(p["status"] == "active" for p in listed.values())
        assert all(p["pinned_by"] == "directory" for p in listed.values())
        data = status(node)
        assert (data["version"], data["expired"]) == (1, False)
        states = {m["node_id"]: m["state"] for m in data["members"]}
        assert states == {n: "self" if n == node.node_id else "peer" for n in net.nodes}
    shown = cli_json(fr.root, "peers", "show", "de-eco")
    assert shown["fingerprint"] == de.fingerprint

    report_id = fr.submit_and_assess("http://de.example/directory/1.jpg")
    arrived = wait_for(lambda: de.report(report_id), timeout=30)
    assert arrived["origin"] == "fr-pdc"


def test_a_tampered_and_an_under_signed_list_are_refused_and_the_last_good_kept(
    network: Network,
) -> None:
    net = network
    fr = net.nodes["fr-pdc"]
    good = net.list_file.read_bytes()
    outer = orjson.loads(good)

    outer["signatures"] = outer["signatures"][:1]
    net.list_file.write_bytes(canonical_json(outer))
    line = one_line_error(refresh(fr))
    assert "member list refused (signatures)" in line
    assert "list version 1 stays in force" in line

    net.list_file.write_bytes(good.replace(b'"DE"', b'"AT"'))
    line = one_line_error(refresh(fr))
    assert "member list refused (signatures)" in line

    data = status(fr)
    assert data["version"] == 1
    assert data["last_refresh"]["refusal"] == "signatures"
    assert "refused (signatures)" in cli(fr.root, "directory", "status").stdout
    assert all(p["status"] == "active" for p in peers(fr).values())

    net.list_file.write_bytes(good)
    assert refresh(fr).returncode == 0
    assert status(fr)["last_refresh"]["error"] is None


def test_an_identity_key_replaced_through_the_list_moves_the_pin(network: Network) -> None:
    net = network
    fr, us = net.nodes["fr-pdc"], net.nodes["us-ncmec"]
    old = net.nodes["de-eco"]
    old.stop()
    # de-eco starts again with a fresh identity (its keys were lost or exposed), same address.
    rekeyed = NodeProcess("de-eco", "DE", net.root / "de-eco-rekeyed", net.dns, port=old.port)
    rekeyed.init()
    rekeyed.start()
    net.nodes["de-eco"] = rekeyed
    assert rekeyed.fingerprint != old.fingerprint

    # Until the list says so, nothing replaces the pin: the new identity's documents fail it.
    assert refresh(fr).returncode == 0
    assert cli_json(fr.root, "peers", "show", "de-eco")["fingerprint"] == old.fingerprint

    net.add(rekeyed, "--replace")
    net.sign_and_publish(2, 3)
    for node in (fr, us):
        assert refresh(node).returncode == 0
        shown = cli_json(node.root, "peers", "show", "de-eco")
        assert shown["fingerprint"] == rekeyed.fingerprint
        assert shown["keys"], "the new identity's key document was fetched and verified"
    trusted = cli_json(
        rekeyed.root,
        "directory",
        "trust",
        str(net.umbrella / "root.json"),
        "--source",
        str(net.list_file),
        "--auto-peer",
    )
    assert trusted["refresh"]["version"] == 2

    report_id = fr.submit_and_assess("http://de.example/directory/rekeyed.jpg")
    wait_for(lambda: rekeyed.report(report_id), timeout=30)


def test_a_member_removed_is_suspended_and_no_longer_sent_to(network: Network) -> None:
    net = network
    fr, de, us = net.nodes["fr-pdc"], net.nodes["de-eco"], net.nodes["us-ncmec"]
    net.tool("remove", str(net.umbrella), "--node-id", "us-ncmec")
    net.sign_and_publish(1, 3)
    for node in (fr, de):
        result = refresh(node)
        assert result.returncode == 0
        assert f"suspended us-ncmec: {LEFT}" in result.stdout
        shown = cli_json(node.root, "peers", "show", "us-ncmec")
        assert (shown["status"], shown["status_reason"]) == ("suspended", LEFT)
        assert LEFT in cli(node.root, "peers", "show", "us-ncmec").stdout
        assert status(node)["left"] == ["us-ncmec"]

    # Nothing more is sent to it...
    to_us = fr.submit_and_assess("http://us.example/directory/after.jpg")
    # ...and what it sends is refused (it still has FR as a peer: it left, FR did not).
    from_us = us.submit_and_assess("http://fr.example/directory/from-us.jpg")
    time.sleep(4)
    assert us.report(to_us) is None
    assert fr.report(from_us) is None


def test_without_auto_peer_members_are_proposals_added_by_id(network: Network) -> None:
    net = network
    za = NodeProcess("za-fpb", "ZA", net.root / "za-fpb", net.dns)
    za.init()
    za.start()
    net.nodes["za-fpb"] = za
    result = cli(
        za.root,
        "directory",
        "trust",
        str(net.umbrella / "root.json"),
        "--source",
        net.server.url("directory.json"),
    )
    assert "proposals (peers add --from-directory ID): de-eco, fr-pdc" in result.stdout
    assert peers(za) == {}
    states = {m["node_id"]: m["state"] for m in status(za)["members"]}
    assert states == {"de-eco": "proposal", "fr-pdc": "proposal"}

    added = cli_json(za.root, "peers", "add", "--from-directory", "fr-pdc")
    assert added["fingerprint"] == net.nodes["fr-pdc"].fingerprint
    assert added["pinned_by"] == "directory"
    missing = cli(za.root, "peers", "add", "--from-directory", "us-ncmec", check=False)
    assert "us-ncmec is not a member in the list held" in one_line_error(missing)
    both = cli(
        za.root, "peers", "add", "--from-directory", "de-eco", "--fingerprint", "x", check=False
    )
    assert "leave out --fingerprint" in one_line_error(both)


def test_a_rotated_root_is_followed_and_the_old_keys_no_longer_sign(network: Network) -> None:
    net = network
    fr, de = net.nodes["fr-pdc"], net.nodes["de-eco"]
    # A list signed by the old signers, kept aside for after the rotation.
    net.tool("renew", str(net.umbrella))
    old_signed = net.sign_and_publish(1, 2, output=net.root / "old-keys.json")

    rotated = cli_json(
        net.root / "no-node",
        "directory",
        "rotate",
        str(net.umbrella),
        "--signers",
        "3",
        "--threshold",
        "2",
    )
    new_files = [s["file"] for s in rotated["signers"]]
    for n in (1, 2):
        net.tool("sign-root", str(net.umbrella), "--key", str(net.umbrella / f"signer-{n}.key"))
    net.tool("publish-root", str(net.umbrella), "--output", str(net.published / "root-2.json"))

    net.list_file.write_bytes(old_signed)
    line = one_line_error(refresh(fr))
    assert "member list refused (signatures)" in line
    data = status(fr)
    assert data["root"]["version"] == 2
    assert data["version"] == 3  # the list of the removal, still in force

    for path in new_files[:2]:
        net.tool("sign", str(net.umbrella), "--key", path)
    net.tool("publish", str(net.umbrella), "--output", str(net.list_file))
    for node in (fr, de):
        result = refresh(node)
        assert result.returncode == 0, result.stderr
        data = status(node)
        assert data["root"]["version"] == 2
        assert data["version"] == 5
        assert data["last_refresh"]["error"] is None
    for node in (fr, de):
        assert cli(node.root, "audit", "verify").returncode == 0
