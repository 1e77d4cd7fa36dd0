"""Hash lists on the command line, against a serving node: import, list, match, remove."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import NodeProcess, cli, cli_json
from tests.support.dns_server import ZoneDnsServer

ERROR_LINE = re.compile(r"^hotline-node: error: \S.*\n$")
SHA = "ab" * 32
PDQ = bytes(random.Random(21).randrange(256) for _ in range(32))


def flipped(digest: bytes, bits: int) -> str:
    """`digest` with its first `bits` bits flipped: a PDQ hash at exactly that distance."""
    number = int.from_bytes(digest) ^ ((1 << 256) - (1 << (256 - bits)))
    return number.to_bytes(32).hex()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, dns: ZoneDnsServer) -> Iterator[NodeProcess]:
    fr = NodeProcess("fr-pdc", "FR", tmp_path_factory.mktemp("hashes") / "fr", dns.nameserver)
    try:
        fr.init()
        fr.start()
        yield fr
    finally:
        fr.stop()


def refused(node: NodeProcess, *args: str) -> str:
    result = cli(node.root, *args, check=False)
    assert result.returncode != 0
    assert ERROR_LINE.match(result.stderr) or "refused" in result.stderr, result.stderr
    assert result.stdout == ""
    return result.stderr


def test_a_list_imported_twice_changes_nothing_and_matches_at_once(
    node: NodeProcess, tmp_path: Path
) -> None:
    listing = tmp_path / "known.csv"
    listing.write_text(
        "type,value,category,quality,note\n"
        f"sha256,{SHA},csam,,from our analysts\n"
        f"pdq,{PDQ.hex()},csam,92,\n"
        f"pdq,{'0f' * 32},csem,12,flat image\n",
        encoding="utf-8",
    )
    first = cli_json(node.root, "hashes", "import", str(listing), "--list", "known-fr")
    assert (first["added"], first["unchanged"], first["entries"]) == (3, 0, 3)
    again = cli_json(node.root, "hashes", "import", str(listing), "--list", "known-fr")
    assert (again["added"], again["unchanged"], again["entries"]) == (0, 3, 3)

    (listed,) = cli_json(node.root, "hashes", "lists")
    assert (listed["name"], listed["owner"], listed["entries"], listed["shared"]) == (
        "known-fr",
        "fr-pdc",
        3,
        False,
    )
    (exact,) = cli_json(node.root, "hashes", "match", f"sha256:{SHA}")
    assert (exact["list"], exact["distance"], exact["category"]) == ("known-fr", 0, "csam")

    # Meta's threshold: 31 bits of 256 match, 32 do not.
    (near,) = cli_json(node.root, "hashes", "match", f"pdq:{flipped(PDQ, 31)}")
    assert near["distance"] == 31
    assert cli_json(node.root, "hashes", "match", f"pdq:{flipped(PDQ, 32)}") == []
    # A low-quality entry is kept (it counts) but never matched.
    assert cli_json(node.root, "hashes", "match", f"pdq:{'0f' * 32}") == []
    text = cli(node.root, "hashes", "match", f"sha256:{'cd' * 32}").stdout
    assert text.strip() == f"sha256:{'cd' * 32}: on no list"


def test_a_case_is_matched_when_it_gets_its_hashes_on_every_entry(
    node: NodeProcess, tmp_path: Path
) -> None:
    """Run after the list above is imported: submit, import and a later hash are matched."""
    matched = cli_json(
        node.root,
        "reports",
        "submit",
        "https://fr.example/h/1.jpg",
        "--hash",
        f"pdq:{flipped(PDQ, 31)}:80",
        "--hash",
        f"md5:{'e' * 32}",
    )["id"]
    case = cli_json(node.root, "reports", "show", matched)
    [match] = case["matches"]
    assert (match["list"], match["distance"], match["type"]) == ("known-fr", 31, "pdq")
    assert match["known"].startswith("on our list known-fr since ")
    assert (case["assessment"]["category"], case["assessment"]["verdict"]) == ("csam", None)
    assert (
        "known    on our list known-fr since" in cli(node.root, "reports", "show", matched).stdout
    )

    missed = cli_json(
        node.root,
        "reports",
        "submit",
        "https://fr.example/h/2.jpg",
        "--hash",
        f"pdq:{flipped(PDQ, 32)}",
    )["id"]
    assert cli_json(node.root, "reports", "show", missed)["matches"] == []

    # The very hash of the list, of low quality on the case: kept, never matched, and why.
    poor = cli_json(
        node.root,
        "reports",
        "submit",
        "https://fr.example/h/3.jpg",
        "--hash",
        f"pdq:{PDQ.hex()}:20",
    )["id"]
    case = cli_json(node.root, "reports", "show", poor)
    assert case["matches"] == []
    [kept] = case["hashes"]
    assert kept["matchable"] is False
    assert "below 50" in kept["unmatched_reason"]

    # An import's hashes column, and a hash added later to a case, are matched the same way.
    batch = tmp_path / "cases.csv"
    batch.write_text(f"url,hashes\nhttps://fr.example/h/4.jpg,sha256:{SHA}\n", encoding="utf-8")
    cli(node.root, "reports", "import", str(batch))
    [row] = [
        r
        for r in cli_json(node.root, "reports", "list")["reports"]
        if r["url"] == "https://fr.example/h/4.jpg"
    ]
    imported = cli_json(node.root, "reports", "show", row["id"])
    assert [m["entry"] for m in imported["matches"]] == [f"sha256:{SHA}"]
    cli(node.root, "reports", "hashes", missed, "--add", f"sha256:{SHA}")
    assert [m["distance"] for m in cli_json(node.root, "reports", "show", missed)["matches"]] == [0]


def test_a_removal_stops_matching_and_a_second_removal_changes_nothing(
    node: NodeProcess, tmp_path: Path
) -> None:
    listing = tmp_path / "gone.jsonl"
    value = "12" * 20
    listing.write_text(
        json.dumps({"type": "sha1", "value": value, "category": "hate"}) + "\n", encoding="utf-8"
    )
    cli_json(node.root, "hashes", "import", str(listing), "--list", "gone")
    assert len(cli_json(node.root, "hashes", "match", f"sha1:{value}")) == 1
    removed = cli_json(node.root, "hashes", "remove", "--list", "gone", f"sha1:{value}")
    assert (removed["removed"], removed["not_on_list"]) == (1, 0)
    assert cli_json(node.root, "hashes", "match", f"sha1:{value}") == []
    removed = cli_json(node.root, "hashes", "remove", "--list", "gone", f"sha1:{value}")
    assert (removed["removed"], removed["not_on_list"]) == (0, 1)


def test_a_bad_line_refuses_the_whole_file_in_one_line_each(
    node: NodeProcess, tmp_path: Path
) -> None:
    listing = tmp_path / "bad.csv"
    listing.write_text(
        "type,value,category\n"
        f"sha256,{SHA[:-2]},csam\n"
        "crc32,00,csam\n"
        f"md5,{'a' * 32},weapons\n"
        f"md5,{'b' * 32},csam\n",
        encoding="utf-8",
    )
    result = cli(node.root, "hashes", "import", str(listing), "--list", "bad", check=False)
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert f"{listing}:2: sha256 value must be 64 hexadecimal digits (got 62)" in lines
    assert any(line.startswith(f"{listing}:3: type must be one of") for line in lines)
    assert any(line.startswith(f"{listing}:4: category must be one of") for line in lines)
    assert "3 line(s) refused, nothing imported" in lines[-1]
    assert all(hl["name"] != "bad" for hl in cli_json(node.root, "hashes", "lists"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("hashes", "match", "sha256:xyz"), "sha256 value must be hexadecimal"),
        (("hashes", "match", "md5"), "a hash is written TYPE:VALUE"),
        (("hashes", "remove", "--list", "nope", f"sha256:{SHA}"), "no hash list named nope"),
        (
            ("hashes", "import", "/nonexistent/file.csv", "--list", "x"),
            "/nonexistent/file.csv: no such file",
        ),
        (("hashes", "import", __file__, "--list", "Bad/Name"), "a list name is 1-64"),
    ],
)
def test_bad_input_is_one_line(node: NodeProcess, args: tuple[str, ...], message: str) -> None:
    assert message in refused(node, *args)
