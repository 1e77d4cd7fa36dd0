"""Hashes on real node processes: computed from a real image file that no node ever holds, given
on every entry, each bad value refused in one line, and carried from FR to DE."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pdqhash
import pytest
from PIL import Image

from node.datadir import DataDir
from tests.node.test_hashes_compute import pdq_bits_to_hex, photo
from tests.support.cluster import REPO, NodeProcess, cli, cli_json, wait_for
from tests.support.dns_server import ZoneDnsServer

SHA1 = "sha1:" + "cd" * 20
# Each kind of bad value on every entry, with the words of its one-line reason.
BAD = {
    "sha256:abc": "sha256 value must be 64 hexadecimal digits (got 3)",
    "crc32:00": "unknown hash type 'crc32'",
    "md5:" + "zz" * 16: "md5 value must be hexadecimal",
    "pdq:" + "ab" * 32 + ":101": "PDQ quality must be a whole number from 0 to 100",
    "sha1:" + "cd" * 20 + ":9": "only a pdq hash carries a quality",
}


@dataclass
class Nodes:
    fr: NodeProcess
    de: NodeProcess


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, dns: ZoneDnsServer) -> Iterator[Nodes]:
    root = tmp_path_factory.mktemp("hashes")
    fr = NodeProcess("fr-pdc", "FR", root / "fr-pdc", dns.nameserver)
    de = NodeProcess("de-eco", "DE", root / "de-eco", dns.nameserver)
    try:
        for node in (fr, de):
            node.init()
            node.start()
        fr.add_peer(de)
        de.add_peer(fr)
        yield Nodes(fr, de)
    finally:
        for node in (fr, de):
            node.stop()


def counts(node: NodeProcess) -> tuple[int, int, int]:
    """Cases, hashes on cases, and audit entries of hashes added, from the database file."""
    path = DataDir(node.root).database
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        cases, hashes, added = (
            int(conn.execute(query).fetchone()[0])
            for query in (
                "SELECT COUNT(*) FROM reports",
                "SELECT COUNT(*) FROM report_hashes",
                "SELECT COUNT(*) FROM audit_log WHERE event = 'report.hashes_added'",
            )
        )
    conn.close()
    return cases, hashes, added


def found_in(root: Path, needles: list[bytes]) -> list[str]:
    """Every file under `root` holding any of the needles (database, WAL, logs, keys...)."""
    return [
        str(path)
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_socket() and any(n in path.read_bytes() for n in needles)
    ]


def test_hashes_of_a_real_image_reach_the_peer_and_the_file_stays_where_it_was(
    nodes: Nodes, tmp_path: Path
) -> None:
    fr, de = nodes.fr, nodes.de
    image = photo(tmp_path / "evidence-7f3a9c1e.jpg", 640, 480, seed=21)
    raw = image.read_bytes()
    # The node is stopped dead while the command runs: it answers from this process alone,
    # never through the node's control socket (the server must not open analysts' files).
    fr.pause()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "node", "hashes", "compute", str(image), "--json"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
            check=False,
            env={**os.environ, "HOTLINE_NODE_DATA_DIR": str(fr.root)},
        )
    finally:
        fr.resume()
    assert result.returncode == 0, result.stderr
    [computed] = json.loads(result.stdout)
    assert computed["md5"] == hashlib.md5(raw).hexdigest()
    assert computed["sha1"] == hashlib.sha1(raw).hexdigest()
    assert computed["sha256"] == hashlib.sha256(raw).hexdigest()
    bits, quality = pdqhash.compute(np.asarray(Image.open(image).convert("RGB")))
    assert (computed["pdq"], computed["pdq_quality"]) == (pdq_bits_to_hex(bits), quality)
    assert quality >= 50
    # Given to a case through the serving node, as the analyst copies them.
    given = [arg for value in computed["hashes"] for arg in ("--hash", value)]
    submitted = cli_json(
        fr.root, "reports", "submit", "http://de.example/e2e/evidence.jpg", *given,
        "--category", "csam",
    )  # fmt: skip
    report_id = submitted["id"]
    status, _ = fr.post(
        f"/api/v1/reports/{report_id}/assessment",
        {"verdict": "baseline", "category": "csam", "legal_basis": "227-23"},
    )
    assert status == 200
    shown = cli_json(fr.root, "reports", "show", report_id)["hashes"]
    assert sorted(f"{h['type']}:{h['value']}" for h in shown) == sorted(
        value.rsplit(":", 1)[0] if value.startswith("pdq:") else value
        for value in computed["hashes"]
    )
    assert [h["quality"] for h in shown if h["type"] == "pdq"] == [quality]
    at_de = wait_for(lambda: de.report(report_id), timeout=30)
    assert {(h["type"], h["value"], h["source"]) for h in at_de["hashes"]} == {
        (h["type"], h["value"], "peer:fr-pdc") for h in shown
    }
    # The file itself, and its name, are nowhere in either node's data directory.
    middle = len(raw) // 2
    needles = [raw, raw[middle : middle + 256], image.name.encode(), b"evidence-7f3a9c1e"]
    for node in (fr, de):
        assert found_in(node.root, needles) == []


def cli_submit(node: NodeProcess, value: str) -> str:
    result = cli(
        node.root, "reports", "submit", "http://de.example/bad", "--hash", value, check=False
    )
    return one_line(result)


def cli_add(node: NodeProcess, value: str) -> str:
    report_id = cli_json(node.root, "reports", "submit", "http://de.example/holder")["id"]
    result = cli(
        node.root, "reports", "hashes", report_id, "--add", SHA1, "--add", value, check=False
    )
    return one_line(result)


def cli_import(node: NodeProcess, value: str) -> str:
    path = node.root.parent / "hashes.csv"
    path.write_text(
        f"url,category,hashes\nhttp://de.example/fine,hate,{SHA1}\n"
        f"http://de.example/badline,hate,{SHA1} {value}\n"
    )
    result = cli(node.root, "reports", "import", str(path), check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "hashes.csv:3: " in result.stderr, result.stderr
    return result.stderr


def api_submit(node: NodeProcess, value: str) -> str:
    status, body = node.post("/api/v1/reports", {"url": "http://de.example/api", "hashes": [value]})
    assert status == 422, body
    assert body["type"].endswith("invalid-input")
    return str(body["detail"])


def api_add(node: NodeProcess, value: str) -> str:
    status, body = node.post("/api/v1/reports", {"url": "http://de.example/api-holder"})
    assert status in (200, 201), body
    status, body = node.post(f"/api/v1/reports/{body['id']}/hashes", {"hashes": [SHA1, value]})
    assert status == 422, body
    assert body["type"].endswith("invalid-input")
    return str(body["detail"])


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("hotline-node: error: ")
    return result.stderr


ENTRIES: dict[str, Callable[[NodeProcess, str], str]] = {
    "reports submit --hash": cli_submit,
    "reports hashes --add": cli_add,
    "reports import": cli_import,
    "POST /api/v1/reports": api_submit,
    "POST /api/v1/reports/{id}/hashes": api_add,
}


@pytest.mark.parametrize("entry", list(ENTRIES))
def test_each_bad_hash_is_refused_in_one_line_on_every_entry(nodes: Nodes, entry: str) -> None:
    node = nodes.fr
    for value, reason in BAD.items():
        before = counts(node)
        said = ENTRIES[entry](node, value)
        assert reason in said, (value, said)
        after = counts(node)
        assert after[1:] == before[1:], value  # no hash kept, none audited
        assert after[0] <= before[0] + 1  # at most the case an entry adds hashes to


def test_an_imported_csv_puts_its_hashes_column_on_the_cases(nodes: Nodes) -> None:
    node = nodes.fr
    pdq = "pdq:" + "e1" * 32 + ":40"
    path = node.root.parent / "with-hashes.csv"
    path.write_text(
        "url;category;hashes\n"
        f"http://de.example/imported/1;hate;{SHA1} {pdq}\n"
        "http://de.example/imported/2;hate;\n"
    )
    summary = cli_json(node.root, "reports", "import", str(path))
    assert summary["imported"] == 2
    listed = cli_json(node.root, "reports", "list", "--limit", "1000")["reports"]
    ids = {r["url"]: r["id"] for r in listed}
    first = cli_json(node.root, "reports", "show", ids["http://de.example/imported/1"])
    assert [(h["type"], h["quality"], h["source"], h["matchable"]) for h in first["hashes"]] == [
        ("pdq", 40, "import", False),
        ("sha1", None, "import", True),
    ]
    text = cli(node.root, "reports", "show", ids["http://de.example/imported/1"]).stdout
    assert f"hash     {pdq}  (import, " in text
    assert "  PDQ quality 40 is below 50: kept, but never matched" in text
    second = cli_json(node.root, "reports", "show", ids["http://de.example/imported/2"])
    assert second["hashes"] == []
