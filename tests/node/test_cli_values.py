"""Values stay values: key ids and fingerprints that begin with "-"; JSON lines nested too deep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.cli import build_parser
from node.cli.base import ParserExit
from tests.node.test_cli import Cli
from tests.support.dns_server import ZoneDnsServer

BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# An RFC 7638 thumbprint is 43 base64url characters; one in 64 begins with "-". These all do,
# including the nastiest: "--json…", "-h…" (the help option's prefix), "---…".
dashed_thumbprints = st.text(BASE64URL, min_size=42, max_size=42).map(lambda rest: "-" + rest)


@given(kid=dashed_thumbprints, before=st.booleans())
def test_keys_revoke_takes_a_dashed_key_id_as_the_key_id(kid: str, before: bool) -> None:
    options = ["--json", "--as", "alice", "--data-dir", "/d"]
    argv = ["keys", "revoke", *(options if before else []), kid, *([] if before else options)]
    args = build_parser().parse_args(argv)
    assert (args.kid, args.json, args.as_name, args.data_dir) == (kid, True, "alice", "/d")


@given(fingerprint=dashed_thumbprints, joined=st.booleans())
def test_peers_add_takes_a_dashed_fingerprint_as_the_fingerprint(
    fingerprint: str, joined: bool
) -> None:
    given_as = [f"--fingerprint={fingerprint}"] if joined else ["--fingerprint", fingerprint]
    argv = [
        "peers", "add", *given_as, "--node-id", "de-eco", "--country", "DE",
        "--endpoint", "http://127.0.0.1:9", "--json",
    ]  # fmt: skip
    args = build_parser().parse_args(argv)
    assert (args.fingerprint, args.node_id, args.json) == (fingerprint, "de-eco", True)


@given(kid=dashed_thumbprints)
def test_a_dashed_value_is_given_to_the_option_that_precedes_it_never_to_another(
    kid: str,
) -> None:
    # `--as` takes the thumbprint as its value; the key id is then missing, and says so.
    with pytest.raises(ParserExit) as refused:
        build_parser().parse_args(["keys", "revoke", "--as", kid])
    assert refused.value.status == 2
    assert "the following arguments are required: kid" in refused.value.err


def test_a_real_option_is_still_an_option() -> None:
    args = build_parser().parse_args(["keys", "show", "--json"])
    assert args.json is True
    with pytest.raises(ParserExit) as refused:
        build_parser().parse_args(["keys", "show", "--jsn"])
    assert "unrecognized arguments: --jsn" in refused.value.err


@pytest.fixture
def node(tmp_path: Path, dns_server: ZoneDnsServer, capsys: pytest.CaptureFixture[str]) -> Cli:
    cli = Cli(capsys, tmp_path / "node", dns_server.nameserver)
    assert cli.init().code == 0
    return cli


def test_a_dashed_key_id_of_this_node_is_revoked_without_a_server(node: Cli) -> None:
    keys = node.ok("keys", "show", "--json").json()["keys"]
    # This node's own ids rarely begin with "-": the parser is what is tested here, the whole
    # chain through a running server is in tests/e2e/test_operator_cli.py.
    kid = keys[0]["kid"]
    assert node.ok("keys", "revoke", kid, "--json").json()["revoked"] == kid
    err = node.fails("keys", "revoke", "-" + kid[1:])
    assert err == f"hotline-node: error: unknown key -{kid[1:]}\n"


def test_a_deeply_nested_json_line_is_a_bad_line_with_its_number(node: Cli, tmp_path: Path) -> None:
    path = tmp_path / "nested.jsonl"
    lines = [
        json.dumps({"url": "http://de.example/fine"}),
        "[" * 100_000,  # json's own recursion guard
        '{"url": "http://de.example/deep", "note": ' + "[" * 500 + "]" * 500 + "}",  # parses
        json.dumps({"url": "http://de.example/also-fine"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = node.run("reports", "import", str(path))
    assert result.code == 1
    assert "Traceback" not in result.err
    assert "RecursionError" not in result.err
    assert "nested.jsonl:2: not JSON we read: nested deeper than 16" in result.err
    assert "nested.jsonl:3: not JSON we read: nested deeper than 16" in result.err
    assert "2 line(s) refused, nothing imported" in result.err
    assert result.err.splitlines()[-1].startswith("hotline-node: error:")
    assert node.ok("reports", "list", "--json").json()["reports"] == []
