"""The command line meets people's habits: option places, pipes, help, tables, colour, errors."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import pty
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node import logs
from node.cli import build_parser
from node.clock import ManualClock
from tests.node.test_cli import Cli
from tests.node.test_serve import free_port, reaped
from tests.support.dns_server import ZoneDnsServer
from tests.support.federation import Pair

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def node(tmp_path: Path, dns_server: ZoneDnsServer, capsys: pytest.CaptureFixture[str]) -> Cli:
    cli = Cli(capsys, tmp_path / "node", dns_server.nameserver)
    assert cli.init().code == 0
    return cli


def module(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HOTLINE_NODE_", "NO_COLOR"))}
    return subprocess.Popen(
        [sys.executable, "-m", "node", *args],
        cwd=REPO,
        env={**base, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def add_peer(data_dir: Path, status: str = "active") -> None:
    with sqlite3.connect(data_dir / "node.sqlite3") as conn:
        conn.execute(
            "INSERT INTO peers (node_id, country, endpoint, fingerprint, status, mode, categories,"
            " max_tlp, added_at, last_contact_at) VALUES ('de-eco', 'DE', 'http://127.0.0.1:9',"
            " 'f', ?, 'push', '[\"csam\", \"hate\"]', 'amber', '2026-11-30T00:00:00Z',"
            " '2026-11-30T12:34:56Z')",
            (status,),
        )


# every option has help -------------------------------------------------------------------------
def _walk(parser: argparse.ArgumentParser, path: list[str]) -> Iterator[tuple[str, str]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, [*path, name])
        elif not isinstance(action, argparse._HelpAction):
            yield " ".join(path) or "hotline-node", action.help or ""


def test_every_option_and_argument_has_help() -> None:
    walked = list(_walk(build_parser(), []))
    assert len(walked) > 80  # the walk reached every command
    assert [where for where, text in walked if not text.strip()] == []


# --data-dir anywhere -----------------------------------------------------------------------
def test_data_dir_and_json_before_or_after_the_command(node: Cli) -> None:
    node.capsys.readouterr()
    from node.cli import main

    assert main(["--data-dir", str(node.data_dir), "--json", "keys", "show"]) == 0
    before = json.loads(node.capsys.readouterr().out)
    assert main(["keys", "show", "--json", "--data-dir", str(node.data_dir)]) == 0
    after = json.loads(node.capsys.readouterr().out)
    assert before["fingerprint"] == after["fingerprint"]


# a closed pipe ---------------------------------------------------------------------------------
def test_a_closed_pipe_ends_quietly(node: Cli) -> None:
    for i in range(30):
        node.ok("reports", "submit", f"http://fr.example/{i}", "--no-trace")
    process = module("reports", "list", "--data-dir", str(node.data_dir))
    assert process.stdout is not None
    process.stdout.close()  # `| head` that has read enough: the reader is gone
    _, err = process.communicate(timeout=60)
    assert err == b""
    assert process.returncode == 141


# tables and local times ------------------------------------------------------------------------
def test_peers_show_is_aligned_with_local_times(node: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    add_peer(node.data_dir)
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        out = node.ok("peers", "show", "de-eco").out
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert "['csam'" not in out
    assert "None" not in out
    assert re.search(r"^last contact at +2026-11-30 21:34:56 JST$", out, re.MULTILINE), out
    lines = [line for line in out.splitlines() if line and not line.startswith("keys")]
    fields = lines[: lines.index("(none)")]
    # Values start in one column.
    assert len({len(line) - len(line.split("  ", 1)[1].lstrip()) for line in fields}) == 1
    assert re.search(r"^categories +csam,hate$", out, re.MULTILINE)
    assert json_of(node, "peers", "show", "de-eco")["last_contact_at"] == "2026-11-30T12:34:56Z"


def json_of(node: Cli, *args: str) -> dict[str, object]:
    result: dict[str, object] = node.ok(*args, "--json").json()
    return result


# colour ----------------------------------------------------------------------------------------
def _on_a_terminal(args: list[str], env: dict[str, str]) -> bytes:
    leader, follower = pty.openpty()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HOTLINE_NODE_", "NO_COLOR"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "node", *args],
        cwd=REPO,
        env={**base, **env},
        stdout=follower,
        stderr=subprocess.DEVNULL,
    )
    os.close(follower)
    output = b""
    with reaped(process):  # type: ignore[arg-type]
        while True:
            ready, _, _ = select.select([leader], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        process.wait(timeout=30)
    os.close(leader)
    return output


def test_colour_only_on_a_terminal_and_never_with_no_color(node: Cli) -> None:
    add_peer(node.data_dir, status="suspended")
    args = ["peers", "list", "--data-dir", str(node.data_dir)]
    painted = _on_a_terminal(args, {})
    assert b"\x1b[31msuspended" in painted
    assert b"\x1b[" not in _on_a_terminal(args, {"NO_COLOR": "1"})
    piped = module(*args)
    out, _ = piped.communicate(timeout=60)
    assert b"suspended" in out
    assert b"\x1b[" not in out


# errors in words -------------------------------------------------------------------------------
def test_countries_are_iso_3166(cli: Cli) -> None:
    err = cli.fails("init", "--node-id", "fr-x", "--country", "XX")
    assert "--country: must be an ISO 3166-1 alpha-2 code: 'XX' is not an assigned country" in err
    assert not cli.data_dir.exists()


def test_peers_add_refuses_an_unknown_country_before_any_request(node: Cli) -> None:
    err = node.fails(
        "peers", "add", "--node-id", "zz-x", "--country", "ZZ", "--endpoint",
        "http://127.0.0.1:9", "--fingerprint", "x" * 43,
    )  # fmt: skip
    assert "'ZZ' is not an assigned country" in err


def test_a_country_changed_after_init_is_refused(node: Cli) -> None:
    config = node.data_dir / "node.toml"
    config.write_text(config.read_text().replace('country = "FR"', 'country = "DE"'))
    err = node.fails("keys", "show")
    assert "country: DE is not the country this node was initialised with (FR)" in err


def test_config_rules_are_checked_in_words(node: Cli, tmp_path: Path) -> None:
    config = node.data_dir / "node.toml"
    original = config.read_text()
    config.write_text(
        original.replace("[jurisdiction]\n", '[jurisdiction]\nrdap_base = "rdap.example.net"\n')
    )
    assert "jurisdiction.rdap_base: must be an http:// or https:// URL with a host" in (
        node.fails("keys", "show")
    )
    config.write_text(
        original
        + '\n[channels.mail]\nkind = "email"\nroles = ["host_notice"]\nfrom_address = "n@x.example"'
        + f'\nusername = "n"\npassword_file = "{tmp_path / "missing"}"\n'
    )
    err = node.fails("keys", "show")
    assert "channels.mail: password_file: no such file" in err


@pytest.fixture
def cli(tmp_path: Path, dns_server: ZoneDnsServer, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys, tmp_path / "fresh", dns_server.nameserver)


async def test_fingerprints_are_trimmed(
    tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer, pair: Pair
) -> None:
    from tests.support.federation import live_node, node_dir

    it_dir, it_url = node_dir(tmp_path, "it-ks", "IT", clock, dns_server.nameserver)
    async with live_node(it_dir, it_url, clock) as it:
        added = await pair.fr.node.admin.add(
            node_id="it-ks",
            country="IT",
            endpoint=it.url,
            fingerprint=f"  {it.fingerprint} \n",  # pasted from a letter
            actor="test",
        )
    assert added["fingerprint"] == it.fingerprint


# logs ------------------------------------------------------------------------------------------
def test_the_scheduler_logs_only_at_debug() -> None:
    for level, expected in (("info", ""), ("debug", "Running job")):
        stream = io.StringIO()
        with logs.configured("text", level, stream):
            logging.getLogger("apscheduler.executors.default").info('Running job "sweep"')
            logging.getLogger("hotline.node").info("still here")
        assert expected in stream.getvalue()
        assert "still here" in stream.getvalue()
        if not expected:
            assert "Running job" not in stream.getvalue()


def test_listening_on_follows_the_log_format(node: Cli) -> None:
    port = free_port()
    config = node.data_dir / "node.toml"
    config.write_text(config.read_text().replace('"127.0.0.1:8700"', f'"127.0.0.1:{port}"'))
    process = module(
        "serve", "--log-format", "json", "--log-level", "info", "--data-dir", str(node.data_dir)
    )
    with reaped(process):  # type: ignore[arg-type]
        assert process.stdout is not None
        first = process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    line = json.loads(first)
    assert line["message"] == f"fr-pointdecontact listening on http://127.0.0.1:{port}"
    assert (line["level"], line["listen"]) == ("info", f"http://127.0.0.1:{port}")
    for text in err.decode().splitlines():
        json.loads(text)  # stderr too: every line one JSON object


def test_key_ids_and_fingerprints_that_begin_with_a_dash(node: Cli) -> None:
    dashed = "-" + "a" * 42
    # The parser itself takes the thumbprint's shape for a value: no argv is rewritten.
    parsed = build_parser().parse_args(["peers", "add", "--node-id", "de-x", "--country", "DE",
                                        "--endpoint", "http://127.0.0.1:9", "--fingerprint",
                                        dashed, "--json"])  # fmt: skip
    assert (parsed.fingerprint, parsed.json) == (dashed, True)
    parsed = build_parser().parse_args(["keys", "revoke", dashed, "--json"])
    assert (parsed.kid, parsed.json) == (dashed, True)
    # Parsed for real: the key id reaches the command (which says it knows no such key).
    err = node.fails("keys", "revoke", dashed)
    assert "expected one argument" not in err
    assert "unrecognized arguments" not in err
    err = node.fails(
        "peers", "add", "--node-id", "de-x", "--country", "DE", "--endpoint",
        "http://127.0.0.1:9", "--fingerprint", dashed + " ",
    )  # fmt: skip
    assert "expected one argument" not in err


def test_colour_through_a_running_server_follows_the_callers_terminal(node: Cli) -> None:
    add_peer(node.data_dir, status="suspended")
    config = node.data_dir / "node.toml"
    config.write_text(config.read_text().replace('"127.0.0.1:8700"', f'"127.0.0.1:{free_port()}"'))
    server = module("serve", "--data-dir", str(node.data_dir))
    with reaped(server):  # type: ignore[arg-type]
        assert server.stdout is not None
        assert b"listening on" in server.stdout.readline()
        args = ["peers", "list", "--data-dir", str(node.data_dir)]
        assert b"\x1b[31msuspended" in _on_a_terminal(args, {})
        assert b"\x1b[" not in _on_a_terminal(args, {"NO_COLOR": "1"})
        out, _ = module(*args).communicate(timeout=60)
        assert b"suspended" in out
        assert b"\x1b[" not in out
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
