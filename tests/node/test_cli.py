"""The real command line, in-process and as `python -m node`: output shapes and one-line errors."""

from __future__ import annotations

import getpass
import os
import re
import sqlite3
import stat
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from node.cli import main
from node.store.migrations import MIGRATIONS
from tests.support.dns_server import ZoneDnsServer

ERROR_LINE = re.compile(r"^hotline-node: error: \S.*\n$")
UNKNOWN_ID = "2f1e7c1a-5b6d-4e8f-9a0b-1c2d3e4f5a6b"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return orjson.loads(self.out)


@dataclass
class Cli:
    capsys: pytest.CaptureFixture[str]
    data_dir: Path
    dns: str

    def run(self, *args: str, data_dir: Path | None = None) -> Result:
        self.capsys.readouterr()
        code = main([*args, "--data-dir", str(data_dir or self.data_dir)])
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def init(self, data_dir: Path | None = None, *extra: str) -> Result:
        return self.run(
            "init",
            "--node-id",
            "fr-pointdecontact",
            "--country",
            "FR",
            "--dns-server",
            self.dns,
            *extra,
            data_dir=data_dir,
        )

    def ok(self, *args: str) -> Result:
        result = self.run(*args)
        assert result.code == 0, result.err
        return result

    def fails(self, *args: str, data_dir: Path | None = None) -> str:
        """The command fails with one `hotline-node: error:` line and nothing on stdout."""
        result = self.run(*args, data_dir=data_dir)
        assert result.code != 0
        assert ERROR_LINE.match(result.err), result.err
        assert "Traceback" not in result.err
        assert result.out == ""
        return result.err


@pytest.fixture
def cli(tmp_path: Path, dns_server: ZoneDnsServer, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys, tmp_path / "node", dns_server.nameserver)


@pytest.fixture
def node(cli: Cli) -> Cli:
    """An initialised data directory."""
    assert cli.init().code == 0
    return cli


def run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_NODE_")}
    return subprocess.run(
        [sys.executable, "-m", "node", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# init ----------------------------------------------------------------------------------------
def test_init_creates_a_private_data_dir(cli: Cli) -> None:
    result = cli.init()
    assert result.code == 0, result.err
    assert "initialised fr-pointdecontact (FR)" in result.out
    fingerprint = re.search(r"identity fingerprint: (\S+)", result.out)
    assert fingerprint is not None
    root = cli.data_dir
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for name in ("node.toml", "key-secret", "node.sqlite3", "keys/keys.json", "keys/identity.pem"):
        assert stat.S_IMODE((root / name).stat().st_mode) == 0o600, name
    config = (root / "node.toml").read_text()
    assert 'node_id = "fr-pointdecontact"' in config
    assert f'dns_server = "{cli.dns}"' in config
    shown = cli.ok("keys", "show", "--json").json()
    assert shown["fingerprint"] == fingerprint.group(1)


def test_init_json(cli: Cli) -> None:
    result = cli.init(None, "--json")
    assert result.code == 0
    data = result.json()
    assert data["node_id"] == "fr-pointdecontact"
    assert data["country"] == "FR"
    assert data["data_dir"] == str(cli.data_dir)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", data["fingerprint"])


def test_init_refuses_to_overwrite_a_node(node: Cli) -> None:
    before = node.ok("keys", "show", "--json").json()["fingerprint"]
    config = (node.data_dir / "node.toml").read_bytes()
    error = node.fails("init", "--node-id", "other", "--country", "DE", "--dns-server", node.dns)
    assert "already holds a node" in error
    assert str(node.data_dir) in error
    assert node.ok("keys", "show", "--json").json()["fingerprint"] == before
    assert (node.data_dir / "node.toml").read_bytes() == config


@pytest.mark.parametrize(
    ("option", "value", "key"),
    [
        ("--country", "fr", "country"),
        ("--node-id", "FR Hotline", "node_id"),
        ("--listen", "localhost", "listen"),
        ("--listen", "127.0.0.1:99999", "listen"),
        ("--endpoint", "ftp://hotline.example", "endpoint"),
        ("--dns-server", "resolver", "jurisdiction.dns_server"),
    ],
)
def test_init_refuses_a_bad_value_and_touches_nothing(
    cli: Cli, option: str, value: str, key: str
) -> None:
    args = {"--node-id": "fr-pointdecontact", "--country": "FR", "--dns-server": cli.dns}
    args[option] = value
    flat = [part for pair in args.items() for part in pair]
    error = cli.fails("init", *flat)
    # The flag the operator typed (not the config key), and the rule in words, not a regex.
    assert f"{option}: " in error
    assert f"error: {key}: " not in error
    assert "pattern" not in error
    assert "^" not in error
    assert repr(value) in error
    assert not cli.data_dir.exists()


# tokens and keys -----------------------------------------------------------------------------
def test_tokens_create_prints_the_token_once(node: Cli) -> None:
    result = node.ok("tokens", "create", "--role", "analyst", "--name", "alice")
    token = result.out.strip()
    assert result.out == token + "\n"
    assert token.startswith("hln_")
    assert "shown only once" in result.err
    as_json = node.ok("tokens", "create", "--role", "operator", "--json").json()
    assert as_json["role"] == "operator"
    assert as_json["name"] == "default"
    assert as_json["token"].startswith("hln_")
    # Stored hashed: neither token appears in the database file.
    database = (node.data_dir / "node.sqlite3").read_bytes()
    assert token.encode() not in database
    assert as_json["token"].encode() not in database
    with sqlite3.connect(node.data_dir / "node.sqlite3") as conn:
        rows = conn.execute("SELECT role, name FROM tokens ORDER BY created_at, role").fetchall()
    assert sorted(rows) == [("analyst", "alice"), ("operator", "default")]


def test_tokens_create_refuses_a_bad_name(node: Cli) -> None:
    error = node.fails("tokens", "create", "--role", "analyst", "--name", "alice smith")
    assert "name must be" in error


def test_keys_show_json_is_one_document(node: Cli) -> None:
    result = node.ok("keys", "show", "--json")
    assert result.err == ""
    data = result.json()  # the whole of stdout parses: nothing else was printed
    assert data["node_id"] == "fr-pointdecontact"
    assert data["country"] == "FR"
    assert {k["purpose"] for k in data["keys"]} == {"sig", "enc", "hyb"}
    assert all(k["state"] == "valid" for k in data["keys"])
    assert all(set(k) >= {"kid", "not_before", "not_after"} for k in data["keys"])
    text = node.ok("keys", "show").out
    assert data["fingerprint"] in text
    assert all(k["kid"] in text for k in data["keys"])


# reports -------------------------------------------------------------------------------------
def test_report_lifecycle(node: Cli) -> None:
    submitted = node.ok("reports", "submit", "https://FR.example/a/b.jpg#x", "--category", "csam")
    report_id = submitted.out.strip()
    assert submitted.out == report_id + "\n"
    assert str(uuid.UUID(report_id)) == report_id

    case = node.ok("reports", "show", report_id, "--json").json()
    assert case["id"] == report_id
    assert case["url"] == "https://fr.example/a/b.jpg"
    assert case["origin"] == "fr-pointdecontact"
    assert case["status"] == "new"
    assert case["assessment"] == {
        "verdict": None,
        "category": "csam",
        "legal_basis": None,
        "assessed_at": None,
    }
    hosting = case["hosting"]
    assert hosting["status"] == "done"  # `reports submit` traces at once
    assert hosting["countries"] == ["FR"]
    assert hosting["abuse_contact"] is None
    [address] = hosting["addresses"]
    assert {k: address[k] for k in ("ip", "country", "basis", "source", "asn", "cdn")} == {
        "ip": "5.39.0.1",
        "country": "FR",
        "basis": "registration",
        "source": "iptocc",
        "asn": None,
        "cdn": False,
    }
    assert case["routing"]["decision"] is None
    assert case["routing"]["targets"] == []
    assert case["actions"] == []

    assessed = node.ok(
        "reports",
        "assess",
        report_id,
        "--verdict",
        "baseline",
        "--category",
        "csam",
        "--legal-basis",
        "Art. 227-23",
        "--as",
        "alice",
        "--json",
    ).json()
    # Four-eyes is on for csam by default: one analyst's baseline verdict waits for a reviewer.
    assert assessed["status"] == "new"
    assert assessed["review"]["analyst"] == "alice"
    assert assessed["routing"]["decision"] is None
    review = assessed["review"]["id"]
    node.ok("users", "add", "bob", "--role", "reviewer")
    node.ok("users", "add", "alice", "--role", "reviewer")
    same = node.fails(
        "reports", "review", report_id, "--confirm", "--review", review, "--as", "alice"
    )
    assert "someone other than the analyst" in same
    assessed = node.ok(
        "reports", "review", report_id, "--confirm", "--review", review, "--as", "bob", "--json"
    ).json()
    assert assessed["status"] == "routed"
    assert assessed["assessment"]["verdict"] == "baseline"
    assert assessed["assessment"]["legal_basis"] == "Art. 227-23"
    assert assessed["routing"]["decision"] == "domestic"
    assert {t["name"] for t in assessed["routing"]["targets"]} == {
        "host_notice",
        "law_enforcement",
    }

    action = node.ok("reports", "action", report_id, "--code", "content_removed", "--json").json()
    assert set(action) == {"id"}
    text = node.ok("reports", "action", report_id, "--code", "notice_sent", "--reason", "x").out
    assert text.startswith("recorded notice_sent (")

    case = node.ok("reports", "show", report_id, "--json").json()
    assert case["status"] == "closed"
    assert [a["code"] for a in case["actions"]] == ["content_removed", "notice_sent"]
    first = case["actions"][0]
    assert first["id"] == action["id"]
    assert first["by"] == "fr-pointdecontact"
    assert first["country"] == "FR"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["at"])

    listed = node.ok("reports", "list", "--json").json()
    assert [(r["id"], r["status"], r["url"]) for r in listed["reports"]] == [
        (report_id, "closed", "https://fr.example/a/b.jpg")
    ]
    assert listed["next"] is None
    assert node.ok("reports", "list", "--status", "new", "--json").json() == {
        "reports": [],
        "next": None,
    }
    table = node.ok("reports", "list").out
    assert report_id in table
    assert "closed" in table

    shown = node.ok("reports", "show", report_id).out
    assert "https://fr.example/a/b.jpg" in shown
    assert "content_removed" in shown
    assert "5.39.0.1" in shown

    verified = node.ok("audit", "verify", "--json").json()
    assert verified["ok"] is True
    assert verified["first_broken"] is None
    # init, submit, trace, review requested, two users added, assess, route, review
    # confirmed, two actions
    assert verified["entries"] == 11
    assert "audit log intact: 11 entries" in node.ok("audit", "verify").out
    with sqlite3.connect(node.data_dir / "node.sqlite3") as db:
        actors = dict(
            db.execute("SELECT event, actor FROM audit_log WHERE event != 'report.routed'")
        )
    # Without --as the command line names the operating-system user, never "cli".
    assert actors["report.submitted"] == getpass.getuser()
    assert actors["review.requested"] == "alice"
    assert actors["report.assessed"] == "alice (confirmed by bob)"
    assert actors["review.confirmed"] == "bob"


def test_submit_of_a_known_url_joins_the_case(node: Cli) -> None:
    first = node.ok("reports", "submit", "http://de.example/x", "--no-trace").out.strip()
    again = node.ok("reports", "submit", "HTTP://DE.EXAMPLE:80/x", "--json").json()
    assert again == {"id": first, "duplicate": True, "duplicates": 1}
    text = node.ok("reports", "submit", "http://de.example/x#other").out
    assert text == f"{first} (joined an existing case; 2 duplicate(s))\n"


def test_trace_command(node: Cli) -> None:
    evidence = node.ok("trace", "http://split.example/x", "--json").json()
    assert evidence["host"] == "split.example"
    assert evidence["countries"] == ["DE", "FR"]
    assert sorted(a["ip"] for a in evidence["addresses"]) == ["5.39.0.1", "88.198.0.1"]
    assert "no such host: gone.example" in node.fails("trace", "http://gone.example/")
    # The same URL rules as intake and GET /api/v1/trace.
    assert "must start with http" in node.fails("trace", "ftp://fr.example/a")
    assert "credentials" in node.fails("trace", "http://user:pw@fr.example/a")


# errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "detail"),
    [
        (("reports", "show", UNKNOWN_ID), f"no report with id {UNKNOWN_ID}"),
        (("reports", "show", "not-a-uuid", "--json"), "no report with id 'not-a-uuid'"),
        (
            ("reports", "assess", UNKNOWN_ID, "--verdict", "baseline", "--category", "csam"),
            "no report with id",
        ),
        (("reports", "action", UNKNOWN_ID, "--code", "notice_sent"), "no report with id"),
        (("reports", "submit", "ftp://fr.example/a"), "http:// or https://"),
        (("reports", "submit", "fr.example/a"), "http:// or https://"),
        (("reports", "submit", "http://u:p@fr.example/a"), "credentials"),
        (("reports", "submit", "http://fr.example/a b"), "whitespace"),
        (("reports", "submit", "http://fr.example/" + "a" * 4100), "4096"),
        (("reports", "list", "--status", "open"), "status must be one of"),
        (("reports", "list", "--limit", "0"), "limit must be between"),
        (("peers", "requeue", "xx-nobody"), "no peer 'xx-nobody'"),
    ],
)
def test_user_errors_are_one_line(node: Cli, args: tuple[str, ...], detail: str) -> None:
    before = audit_entries(node.data_dir)
    assert detail in node.fails(*args)
    assert audit_entries(node.data_dir) == before


def test_peers_requeue_queues_rejected_records_again(node: Cli) -> None:
    with sqlite3.connect(node.data_dir / "node.sqlite3") as conn:
        conn.execute(
            "INSERT INTO peers (node_id, country, endpoint, fingerprint, status, mode, categories,"
            " max_tlp, added_at) VALUES ('de-eco', 'DE', 'http://127.0.0.1:9', 'f', 'active',"
            " 'push', '[]', 'amber', '2026-11-30T00:00:00Z')"
        )
        conn.execute(
            "INSERT INTO peer_outbox (peer_id, seq, record_type, record_id, report_id, payload,"
            " state, created_at) VALUES ('de-eco', 1, 'action', 'a', 'r', x'7b7d', 'dead',"
            " '2026-11-30T00:00:00Z')"
        )
    printed = node.ok("peers", "requeue", "de-eco").out
    assert printed == "de-eco: 1 rejected record(s) queued again\n"
    assert node.ok("peers", "requeue", "de-eco", "--json").json() == {
        "node_id": "de-eco",
        "requeued": 0,
    }
    with sqlite3.connect(node.data_dir / "node.sqlite3") as conn:
        rows = conn.execute("SELECT seq, state FROM peer_outbox ORDER BY seq").fetchall()
    assert rows == [(1, "requeued"), (2, "pending")]


def audit_entries(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "node.sqlite3") as conn:
        count: int = conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0]
    return count


def test_missing_data_dir(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    error = cli.fails("reports", "list", data_dir=missing)
    assert str(missing / "node.toml") in error
    assert "not found" in error
    assert "hotline-node init" in error
    assert not missing.exists()


def test_data_dir_from_the_environment(node: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTLINE_NODE_DATA_DIR", str(node.data_dir))
    node.capsys.readouterr()
    assert main(["keys", "show", "--json"]) == 0
    assert orjson.loads(node.capsys.readouterr().out)["node_id"] == "fr-pointdecontact"


@pytest.mark.parametrize(
    ("old", "new", "names"),
    [
        ('country = "FR"', 'country = "fr"', ["country", "'fr'"]),
        ('node_id = "fr-pointdecontact"', 'node_id = "FR_PDC"', ["node_id", "'FR_PDC'"]),
        ('listen = "127.0.0.1:8700"', 'listen = "everywhere"', ["listen", "'everywhere'"]),
        ('country = "FR"', 'country = "FR"\ncolour = "blue"', ["colour", "'blue'"]),
        ("[intake]", "[intake]\nburst = 5", ["intake.burst", "5"]),
        (
            "max_body_bytes = 65536",
            "max_body_bytes = -1",
            ["intake.max_body_bytes", "-1"],
        ),
        ('country = "FR"', 'country = "FR', ["not valid TOML"]),
    ],
)
def test_bad_node_toml_names_the_key_and_value(
    node: Cli, old: str, new: str, names: list[str]
) -> None:
    path = node.data_dir / "node.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    error = node.fails("reports", "list")
    assert str(path) in error
    for name in names:
        assert name in error


@pytest.mark.parametrize(
    "pattern",
    ["keys/identity.pem", "keys/sig-*.pem", "keys/enc-*.pem", "keys/keys.json", "key-secret"],
)
def test_key_file_readable_by_others_is_refused(node: Cli, pattern: str) -> None:
    [path] = node.data_dir.glob(pattern)
    path.chmod(0o644)
    error = node.fails("keys", "show")
    assert str(path) in error
    assert "0644" in error
    assert f"chmod 600 {path}" in error


def test_key_directory_open_to_others_is_refused(node: Cli) -> None:
    (node.data_dir / "keys").chmod(0o755)
    error = node.fails("reports", "list")
    assert "0755" in error
    assert "chmod 700" in error


def test_database_newer_than_the_program_is_refused(node: Cli) -> None:
    with sqlite3.connect(node.data_dir / "node.sqlite3") as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    error = node.fails("reports", "list")
    assert "newer than this program" in error
    assert "upgrade hotline-node" in error


def test_init_over_a_file_is_one_line(cli: Cli, tmp_path: Path) -> None:
    occupied = tmp_path / "occupied"
    occupied.write_text("not a directory")
    error = cli.fails(
        "init", "--node-id", "fr-x", "--country", "FR", "--dns-server", cli.dns, data_dir=occupied
    )
    assert str(occupied) in error


# as a real process -------------------------------------------------------------------------
def test_module_keys_show_json(node: Cli, tmp_path: Path) -> None:
    expected = node.ok("keys", "show", "--json").json()
    done = run_module("keys", "show", "--json", "--data-dir", str(node.data_dir), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert orjson.loads(done.stdout) == expected


def test_module_errors_are_one_line_with_status_1(node: Cli, tmp_path: Path) -> None:
    done = run_module("reports", "show", UNKNOWN_ID, "--data-dir", str(node.data_dir), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == f"hotline-node: error: no report with id {UNKNOWN_ID}\n"

    # Default data dir: ./hotline-data in the working directory, which does not exist here.
    done = run_module("reports", "list", cwd=tmp_path)
    assert done.returncode == 1
    assert ERROR_LINE.match(done.stderr), done.stderr
    assert "hotline-data/node.toml not found" in done.stderr


def test_module_refuses_a_newer_database_without_a_traceback(node: Cli, tmp_path: Path) -> None:
    # In a real process an unclosed database connection also printed a thread traceback at exit.
    with sqlite3.connect(node.data_dir / "node.sqlite3") as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    done = run_module("reports", "list", "--data-dir", str(node.data_dir), cwd=tmp_path)
    assert done.returncode == 1
    assert ERROR_LINE.match(done.stderr), done.stderr
    assert "newer than this program" in done.stderr


# users, paging, references ------------------------------------------------------------------
def test_users_add_list_disable_reset_enable(node: Cli) -> None:
    made = node.ok("users", "add", "alice", "--role", "analyst", "--totp", "--json").json()
    assert made["name"] == "alice"
    assert len(made["password"]) >= 20
    assert made["totp_uri"].startswith("otpauth://totp/")
    listed = node.ok("users", "list", "--json").json()
    assert [(u["name"], u["role"], u["state"], u["totp"]) for u in listed] == [
        ("alice", "analyst", "active", True)
    ]
    assert made["password"] not in node.ok("users", "list").out
    assert "exists" in node.fails("users", "add", "alice", "--role", "reviewer")
    assert "user name" in node.fails("users", "add", "Bad Name", "--role", "analyst")
    node.ok("users", "disable", "alice")
    assert node.ok("users", "list", "--json").json()[0]["state"] == "disabled"
    assert "already disabled" in node.fails("users", "disable", "alice")
    again = node.ok("users", "reset", "alice", "--json").json()
    assert again["password"] != made["password"]
    assert again["totp_secret"] not in (None, made["totp_secret"])
    # A reset does not enable a disabled person: enabling is its own decision.
    assert node.ok("users", "list", "--json").json()[0]["state"] == "disabled"
    node.ok("users", "enable", "alice")
    assert node.ok("users", "list", "--json").json()[0]["state"] == "active"
    assert "not disabled" in node.fails("users", "enable", "alice")
    assert "no user named" in node.fails("users", "reset", "bob")
    # The last active operator cannot be disabled from here either.
    node.ok("users", "add", "olga", "--role", "operator")
    assert "olga is the last active operator" in node.fails("users", "disable", "olga")
    assert "olga is the last active operator" in node.fails("users", "role", "olga", "analyst")
    node.ok("users", "role", "alice", "operator")
    node.ok("users", "role", "olga", "reviewer")
    assert [(u["name"], u["role"]) for u in node.ok("users", "list", "--json").json()] == [
        ("alice", "operator"),
        ("olga", "reviewer"),
    ]


def test_reports_list_pages_through_every_case(node: Cli) -> None:
    submitted = [
        node.ok("reports", "submit", f"https://fr.example/p/{n}", "--no-trace").out.strip()
        for n in range(7)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        args = ["reports", "list", "--limit", "3", "--json"]
        page = node.ok(*args, *(["--after", cursor] if cursor else [])).json()
        seen += [r["id"] for r in page["reports"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(submitted)
    assert len(seen) == len(set(seen)) == 7
    assert "more: --after" in node.ok("reports", "list", "--limit", "3").out
    assert "cursor" in node.fails("reports", "list", "--after", "yesterday")


def test_reports_show_opens_a_case_by_any_reference(node: Cli) -> None:
    report_id = node.ok("reports", "submit", "https://fr.example/r", "--no-trace").out.strip()
    local_ref = node.ok("reports", "show", report_id, "--json").json()["local_ref"]
    for ref in (report_id[-8:], report_id[-8:].upper(), local_ref):
        assert node.ok("reports", "show", ref, "--json").json()["id"] == report_id
    assert "nor with that public reference" in node.fails("reports", "show", "zzzzzzzz")


def test_channels_requeue_names_an_unknown_channel(node: Cli) -> None:
    assert "no channel 'pharos'" in node.fails("channels", "requeue", "pharos")
