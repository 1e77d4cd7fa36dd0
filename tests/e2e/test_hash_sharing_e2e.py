"""Hash lists shared between three real node processes (FR - DE - US, FR and US not peers),
driven by the documented commands: `peers policy ID --share-hashes`, `hashes import FILE --list
NAME --share`, `hashes lists`, `hashes remove`, `hashes match`."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import NodeProcess, cli, cli_json, wait_for
from tests.support.dns_server import ZoneDnsServer

Trio = dict[str, NodeProcess]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory, dns: ZoneDnsServer) -> Iterator[Trio]:
    root: Path = tmp_path_factory.mktemp("hash-trio")
    nodes = {
        cc: NodeProcess(node_id, cc, root / node_id, dns.nameserver)
        for cc, node_id in (("FR", "fr-pdc"), ("DE", "de-eco"), ("US", "us-ncmec"))
    }
    try:
        for node in nodes.values():
            node.init()
            node.start()
        fr, de, us = nodes["FR"], nodes["DE"], nodes["US"]
        for a, b in ((fr, de), (de, us)):
            a.add_peer(b)
            b.add_peer(a)
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()


def lists(node: NodeProcess) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in cli_json(node.root, "hashes", "lists")}


def hashset_rows(node: NodeProcess, peer: str) -> int:
    with sqlite3.connect(node.root / "node.sqlite3") as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM peer_outbox WHERE peer_id = ? AND record_type = 'hashset'",
            (peer,),
        ).fetchone()
    return int(row[0])


def policy(node: NodeProcess, peer: str, *flags: str) -> dict[str, Any]:
    described: dict[str, Any] = cli_json(node.root, "peers", "policy", peer, *flags)
    return described


def test_a_list_shared_from_one_node_reaches_the_other_and_removals_follow(
    trio: Trio, tmp_path: Path
) -> None:
    fr, de = trio["FR"], trio["DE"]
    assert policy(fr, "de-eco", "--share-hashes")["share_hashes"] is True
    assert policy(de, "fr-pdc", "--share-hashes")["share_hashes"] is True
    [listed] = [p for p in cli_json(fr.root, "peers", "list") if p["node_id"] == "de-eco"]
    assert listed["share_hashes"] is True
    shown = cli_json(fr.root, "peers", "show", "de-eco")
    assert shown["accepts"] == ["hashset", "pdq-quality", "sha1"]
    text = cli(fr.root, "peers", "show", "de-eco").stdout
    assert "share hashes" in text
    assert "hashset" in text

    a, b, c = sha256("a"), sha256("b"), sha256("c")
    known = tmp_path / "known.csv"
    known.write_text(
        f"type,value,category,grade\nsha256,{a},csam,A\nsha256,{b},csam,B\nsha256,{c},csem,\n"
    )
    started = time.monotonic()
    imported = cli_json(fr.root, "hashes", "import", str(known), "--list", "known-fr", "--share")
    assert (imported["added"], imported["shared"]) == (3, True)
    received = wait_for(lambda: lists(de).get("fr-pdc/known-fr"), timeout=30)
    wait_for(lambda: lists(de)["fr-pdc/known-fr"]["entries"] == 3, timeout=30)
    # Queued in the import's transaction, pushed by the per-second queue check: seconds, with
    # room for a loaded machine (each `hashes lists` here is a process of its own).
    elapsed = time.monotonic() - started
    print(f"import to matchable at the peer: {elapsed:.2f} s")
    assert elapsed < 15, elapsed
    assert received["owner"] == "fr-pdc"
    assert received["shared"] is False
    [found] = cli_json(de.root, "hashes", "match", f"sha256:{a}")
    assert (found["list"], found["category"], found["grade"]) == ("fr-pdc/known-fr", "csam", "A")
    # A case at DE whose hash is on FR's list tells the analyst so, and comes first.
    report_id = cli_json(
        de.root, "reports", "submit", "https://de.example/x/1.jpg", "--hash", f"sha256:{a}"
    )["id"]
    [match] = cli_json(de.root, "reports", "show", report_id)["matches"]
    assert match["known"].startswith("known to FR (fr-pdc) since ")
    assert (match["list"], match["distance"], match["category"]) == ("fr-pdc/known-fr", 0, "csam")

    # The same import twice changes nothing, here or there.
    rows = hashset_rows(fr, "de-eco")
    again = cli_json(fr.root, "hashes", "import", str(known), "--list", "known-fr", "--share")
    assert (again["added"], again["unchanged"]) == (0, 3)
    assert hashset_rows(fr, "de-eco") == rows
    seq = lists(de)["fr-pdc/known-fr"]["seq"]

    # A removal at the origin removes the entry there.
    cli(fr.root, "hashes", "remove", "--list", "known-fr", f"sha256:{b}")
    wait_for(lambda: lists(de)["fr-pdc/known-fr"]["entries"] == 2, timeout=30)
    assert lists(de)["fr-pdc/known-fr"]["seq"] == seq + 1
    assert cli_json(de.root, "hashes", "match", f"sha256:{b}") == []

    # Only its owner changes a list: DE cannot edit FR's, in one line.
    refused = cli(
        de.root, "hashes", "remove", "--list", "fr-pdc/known-fr", f"sha256:{a}", check=False
    )
    assert refused.returncode != 0
    assert refused.stderr.count("\n") == 1
    assert "fr-pdc" in refused.stderr


def test_a_policy_that_withholds_hashes_and_a_received_list_never_passed_on(
    trio: Trio, tmp_path: Path
) -> None:
    fr, de, us = trio["FR"], trio["DE"], trio["US"]
    policy(us, "de-eco", "--share-hashes")  # US takes DE's lists; DE does not send them yet
    own = tmp_path / "known-de.jsonl"
    own.write_text(
        '{"type": "sha256", "value": "%s", "category": "csam"}\n'  # noqa: UP031
        '{"type": "md5", "value": "%s", "category": "hate", "use": "industry"}\n'
        % (sha256("de-1"), hashlib.md5(b"de-2").hexdigest())
    )
    cli(de.root, "hashes", "import", str(own), "--list", "known-de", "--share")
    # FR's list reaches DE (the test before), DE's own list is shared, and US gets nothing:
    # DE's policy for US withholds hashes.
    wait_for(lambda: "fr-pdc/known-fr" in lists(de), timeout=30)
    time.sleep(2)  # the delivery job runs every second: anything queued would have gone
    assert hashset_rows(de, "us-ncmec") == 0
    assert lists(us) == {}

    # Allowed: the whole of DE's shared lists go, and only DE's own.
    described = policy(de, "us-ncmec", "--share-hashes")
    assert described["share_hashes"] is True
    received = wait_for(lambda: lists(us).get("de-eco/known-de"), timeout=30)
    wait_for(lambda: lists(us)["de-eco/known-de"]["entries"] == 2, timeout=30)
    assert received["owner"] == "de-eco"
    time.sleep(2)
    assert set(lists(us)) == {"de-eco/known-de"}  # FR's list, received by DE, never passed on

    # Withheld again: DE's next change stays at DE.
    assert policy(de, "us-ncmec", "--no-share-hashes")["share_hashes"] is False
    before = hashset_rows(de, "us-ncmec")
    cli(de.root, "hashes", "remove", "--list", "known-de", f"sha256:{sha256('de-1')}")
    assert hashset_rows(de, "us-ncmec") == before
    assert lists(fr).keys() >= {"known-fr"}


def test_a_policy_for_a_peer_that_does_not_exist_is_one_line(trio: Trio) -> None:
    result = cli(trio["FR"].root, "peers", "policy", "xx-nobody", "--share-hashes", check=False)
    assert result.returncode != 0
    assert result.stderr == "hotline-node: error: no peer 'xx-nobody'\n"
