"""The README's own commands on serving nodes: a running node obeys its operator at once."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib import request as urlrequest
from urllib.error import HTTPError

import orjson
import pytest

from keys import PublicKeySet, load_keys, verify_key_document
from keys.material import Validity
from node import control, locks
from node.config import parse_config, render_config
from node.datadir import DataDir
from peers.client import signed_headers
from protocol.envelope import seal
from protocol.federation import TransactionRequest, encode_frame
from tests.factories import sample_report
from tests.support.cluster import REPO, NodeProcess, cli, cli_json, wait_for
from tests.support.dns_server import ZoneDnsServer
from tests.support.sinks import SmtpSink


@pytest.fixture
def pair(tmp_path: Path, dns: ZoneDnsServer) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    """FR and DE serving, not yet peers."""
    fr = NodeProcess("fr-pdc", "FR", tmp_path / "fr", dns.nameserver)
    de = NodeProcess("de-eco", "DE", tmp_path / "de", dns.nameserver)
    try:
        for node in (fr, de):
            node.init()
            node.start()
        yield fr, de
    finally:
        for node in (fr, de):
            node.stop()


def served_kids(node: NodeProcess) -> set[str]:
    with urlrequest.urlopen(node.url + "/.well-known/hotline-node", timeout=10) as response:
        document = verify_key_document(response.read(), pinned_fingerprint=node.fingerprint)
    return {k.kid for k in (*document.signing_keys, *document.encryption_keys)}


def signing_kid(node: NodeProcess) -> str:
    rows = cli_json(node.root, "keys", "show")["keys"]
    valid = [r for r in rows if r["purpose"] == "sig" and r["state"] == "valid"]
    newest: str = max(valid, key=lambda r: r["not_before"])["kid"]
    return newest


def befriend(fr: NodeProcess, de: NodeProcess) -> None:
    fr.add_peer(de)
    de.add_peer(fr)


def test_peers_added_on_the_command_line_exchange_at_once(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    fr, de = pair
    added = fr.add_peer(de)
    assert added["status"] == "active"
    de.add_peer(fr)
    started = time.monotonic()
    report_id = fr.submit_and_assess("http://de.example/cli/peers-add.jpg")
    arrived = wait_for(lambda: de.report(report_id), timeout=10, interval=0.05)
    assert time.monotonic() - started < 2.0
    assert arrived["origin"] == "fr-pdc"
    # And back: DE's action reaches FR, so DE's server knows FR as a peer too.
    status, _ = de.post(f"/api/v1/reports/{report_id}/actions", {"code": "content_removed"})
    assert status == 201
    wait_for(
        lambda: any(a["code"] == "content_removed" for a in fr.report(report_id)["actions"]),  # type: ignore[index]
        timeout=10,
    )
    # Both additions are in each node's audit log, and the chains hold.
    for node in (fr, de):
        assert cli(node.root, "audit", "verify").returncode == 0


def test_keys_rotate_is_published_at_once_and_the_peer_verifies_the_next_envelope(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    fr, de = pair
    befriend(fr, de)
    before = signing_kid(fr)
    rotated = cli_json(fr.root, "keys", "rotate")
    new_kid = signing_kid(fr)
    assert new_kid != before
    assert any(r["kid"] == new_kid for r in rotated["keys"])
    deadline = time.monotonic() + 1.0
    assert new_kid in served_kids(fr)
    assert time.monotonic() <= deadline
    report_id = fr.submit_and_assess("http://de.example/cli/after-rotation.jpg")
    arrived = wait_for(lambda: de.report(report_id), timeout=10)
    assert arrived["origin"] == "fr-pdc"


def test_revoked_signing_key_never_signs_again_and_the_peer_refuses_it(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    fr, de = pair
    befriend(fr, de)
    revoked = signing_kid(fr)
    cli(fr.root, "keys", "revoke", revoked)
    assert revoked not in served_kids(fr)  # gone from the served document at once
    assert signing_kid(fr) != revoked
    # The next envelope is signed by another key; DE learns of it (and of the revocation)
    # by fetching FR's document when it first sees the new key.
    report_id = fr.submit_and_assess("http://de.example/cli/after-revocation.jpg")
    wait_for(lambda: de.report(report_id), timeout=10)
    peer = cli_json(de.root, "peers", "show", "fr-pdc")
    assert revoked in peer["revoked_keys"]
    # An envelope signed with the revoked key (taken from FR's key files) is refused.
    status, answer = push_report(fr, de, envelope_kid=revoked)
    assert status == 200
    assert [item["status"] for item in answer["results"]] == ["rejected"]
    assert de.report(answer["report_id"]) is None


def push_report(
    sender: NodeProcess, receiver: NodeProcess, envelope_kid: str | None = None
) -> tuple[int, dict[str, Any]]:
    """A signed push of one new report from `sender`: the answer's status and body.

    The envelope is signed by `envelope_kid` when given, else by the current key; the request
    always by the current key. A revoked key's validity was cut short at revocation; someone
    holding a stolen copy would claim it is still valid, so the copy used here does.
    """
    data_dir = DataDir(sender.root)
    keys = load_keys(data_dir.keys, data_dir.read_secret())
    now = datetime.now(UTC)
    envelope_key = keys.current_signing(now)
    if envelope_kid is not None:
        stolen = next(k for k in keys.signing if k.kid == envelope_kid)
        envelope_key = replace(
            stolen, validity=Validity(stolen.validity.not_before, now + timedelta(days=1))
        )
    with urlrequest.urlopen(receiver.url + "/.well-known/hotline-node", timeout=10) as response:
        document = verify_key_document(response.read(), pinned_fingerprint=receiver.fingerprint)
    kid, key = PublicKeySet.from_document(document).encryption_key(now)
    record = sample_report(origin=sender.node_id)
    frame = seal(
        record,
        sender=sender.node_id,
        signing_key=envelope_key,
        recipient=receiver.node_id,
        recipient_kid=kid,
        recipient_key=key,
        msg_id=uuid.uuid4(),
        now=now,
    )
    body = orjson.dumps(TransactionRequest(envelopes=[encode_frame(frame)]).model_dump())
    url = f"{receiver.url}/federation/v1/transactions/{uuid.uuid4().hex}"
    headers = signed_headers(
        "POST", url, body, node_id=sender.node_id, key=keys.current_signing(now), now=now
    )
    req = urlrequest.Request(url, data=body, headers=headers, method="POST")
    try:
        with urlrequest.urlopen(req, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())
            status = int(response.status)
    except HTTPError as exc:
        status, answer = int(exc.code), json.loads(exc.read())
    answer["report_id"] = str(record.id)
    return status, answer


def test_a_suspended_peer_receives_nothing_and_is_refused(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    fr, de = pair
    befriend(fr, de)
    shown = cli_json(fr.root, "peers", "suspend", "de-eco")
    assert shown["status"] == "suspended"
    report_id = fr.submit_and_assess("http://de.example/cli/while-suspended.jpg")
    time.sleep(2.5)  # two sweeps of FR's delivery
    assert de.report(report_id) is None
    # DE's own calls to FR are refused.
    status, answer = push_report(de, fr)
    assert status == 401
    assert "not a peer" in answer["detail"]
    assert fr.report(answer["report_id"]) is None
    # While DE is suspended, routing does not count it as DE's hotline.
    assert fr.report(report_id)["routing"]["decision"] != "peer"  # type: ignore[index]
    resumed = cli_json(fr.root, "peers", "resume", "de-eco")
    assert resumed["status"] == "active"
    later = fr.submit_and_assess("http://de.example/cli/after-resume.jpg")
    wait_for(lambda: de.report(later), timeout=5)


def test_a_second_serve_is_refused_and_sigkill_never_blocks_a_restart(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    fr, _ = pair
    assert fr.process is not None
    second = cli(fr.root, "serve", check=False)
    assert second.returncode == 1
    assert second.stderr.strip().splitlines() == [
        f"hotline-node: error: {fr.root} is already served by process {fr.process.pid}: "
        "one server per data directory"
    ]
    assert "listening" not in second.stdout
    assert fr.stop(signal.SIGKILL) == -signal.SIGKILL
    # The killed server's socket is still on disk; commands see no server and work directly.
    assert (fr.root / "control.sock").exists()
    assert cli_json(fr.root, "peers", "list") == []
    started = time.monotonic()
    fr.start()
    assert time.monotonic() - started < 10
    assert fr.get("/healthz", token=None)[0] == 200


def test_a_port_in_use_is_reported_before_listening(
    tmp_path: Path, dns: ZoneDnsServer, pair: tuple[NodeProcess, NodeProcess]
) -> None:
    fr, _ = pair
    other = NodeProcess("it-sic", "IT", tmp_path / "it", dns.nameserver, port=fr.port)
    other.init()
    result = cli(other.root, "serve", check=False)
    assert result.returncode == 1
    assert "listening" not in result.stdout
    assert "address already in use" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_a_pull_only_peer_that_cannot_be_reached_is_added_from_its_key_document(
    pair: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    fr, de = pair
    de.stop()  # unreachable, as a pull-only peer behind its firewall is
    refused = cli(
        fr.root,
        "peers", "add", "--node-id", "de-eco", "--country", "DE", "--endpoint", de.url,
        f"--fingerprint={de.fingerprint}", "--pull-only",
        check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "--key-document FILE" in refused.stderr
    document = tmp_path / "de-eco.json"
    cli(de.root, "keys", "document", "--output", str(document))
    other = fr.fingerprint  # a fingerprint that is not DE's
    wrong = cli(
        fr.root,
        "peers", "add", "--node-id", "de-eco", "--country", "DE", "--endpoint", de.url,
        f"--fingerprint={other}", "--pull-only", "--key-document", str(document),
        check=False,
    )  # fmt: skip
    assert wrong.returncode == 1
    assert "key document for de-eco refused" in wrong.stderr
    # Pasted with a trailing space, from a letter: trimmed, and accepted.
    added = fr.add_peer(de, "--pull-only", "--key-document", str(document))
    assert added["mode"] == "pull"
    assert added["fingerprint"] == de.fingerprint
    assert {k["kid"] for k in added["keys"]} == served_kids_from_file(document, de.fingerprint)


def served_kids_from_file(path: Path, fingerprint: str) -> set[str]:
    document = verify_key_document(path.read_bytes().strip(), pinned_fingerprint=fingerprint)
    return {k.kid for k in (*document.signing_keys, *document.encryption_keys)}


def test_a_peer_that_refuses_us_holds_our_records_instead_of_backing_off(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    fr, de = pair
    fr.add_peer(de)  # DE has not added FR yet: it answers 401 "not a peer of this node"
    report_id = fr.submit_and_assess("http://de.example/cli/refused.jpg")

    def refused() -> dict[str, Any] | None:
        peer: dict[str, Any] = cli_json(fr.root, "peers", "show", "de-eco")
        return peer if peer["refused"] else None

    peer = wait_for(refused, timeout=10)
    assert "401" in peer["refused"]
    assert peer["queue_depth"] == 1  # held, not dead-lettered
    assert peer["dead_outbox"] == 0
    assert peer["backoff_attempts"] == 0  # not the growing backoff
    de.add_peer(fr)
    synced = cli_json(fr.root, "sync", "--peer", "de-eco")
    assert synced[0]["sent"] == 1
    assert de.report(report_id) is not None
    assert cli_json(fr.root, "peers", "show", "de-eco")["refused"] is None


def test_tokens_made_or_revoked_on_the_command_line_act_at_once(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    fr, _ = pair
    made = cli_json(fr.root, "tokens", "create", "--role", "analyst", "--name", "carol")
    assert fr.get("/api/v1/reports", token=made["token"])[0] == 200
    token_id = made["token"].split("_")[1]
    cli(fr.root, "tokens", "revoke", token_id)
    status, problem = fr.get("/api/v1/reports", token=made["token"])
    assert status == 401
    assert problem["type"].endswith("unauthorized")


def test_channels_edited_in_node_toml_apply_without_a_restart(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    fr, _ = pair
    assert cli_json(fr.root, "channels", "list") == []
    smtp = SmtpSink().start()
    try:
        path = fr.root / "node.toml"
        raw = tomllib.loads(path.read_text())
        raw["channels"] = {
            "hosts": {
                "kind": "email",
                "roles": ["host_notice"],
                "from_address": "notices@pdc.example",
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp.port,
            }
        }
        path.write_text(render_config(parse_config(raw)))
        listed = wait_for(lambda: cli_json(fr.root, "channels", "list"), timeout=3)
        assert [c["name"] for c in listed] == ["hosts"]
        sent = cli_json(fr.root, "channels", "test", "hosts", "--to", "abuse@host.example")
        assert sent["delivered"] is True
        assert smtp.recipients == [["abuse@host.example"]]
        # A broken edit is refused and the running settings stay.
        path.write_text(path.read_text() + '\n[channels.bad]\nkind = "pigeon"\n')
        time.sleep(1.5)
        assert [c["name"] for c in cli_json(fr.root, "channels", "list")] == ["hosts"]
        assert "still running as before" in (fr.log_path or path).read_text()
    finally:
        smtp.stop()


def test_commands_sent_to_the_server_keep_their_errors_and_the_callers_directory(
    pair: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    fr, _ = pair
    missing = cli(fr.root, "peers", "show", "nl-meldpunt", check=False)
    assert missing.returncode == 1
    assert missing.stderr == "hotline-node: error: no peer 'nl-meldpunt'\n"
    assert missing.stdout == ""
    # A relative path means the caller's directory, not the server's.
    here = tmp_path / "operator-desk"
    here.mkdir()
    written = subprocess.run(
        [sys.executable, "-m", "node", "keys", "document", "--output", "fr.json",
         "--data-dir", str(fr.root)],
        capture_output=True, text=True, cwd=here, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    assert verify_key_document(
        (here / "fr.json").read_bytes().strip(), pinned_fingerprint=fr.fingerprint
    )


def test_a_command_sent_to_the_server_is_audited_under_the_callers_name(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    """The server runs as the node's user; the audit log names the person who ran the command."""
    fr, _ = pair
    env = {**os.environ, "LOGNAME": "carol", "USER": "carol"}

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "node", *args, "--data-dir", str(fr.root), "--json"],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=60,
            check=True,
        )
        return done.stdout

    report_id = json.loads(run("reports", "submit", "https://fr.example/who", "--no-trace"))["id"]
    run("reports", "action", report_id, "--code", "moved", "--as", "dave")
    made = json.loads(run("users", "add", "erin", "--role", "analyst"))
    assert made["name"] == "erin"
    # A user added on the command line can sign in to the running server's console at once.
    with urlrequest.urlopen(fr.url + "/console/sign-in", timeout=10) as response:
        assert response.status == 200

    with sqlite3.connect(fr.root / "node.sqlite3") as db:
        actors = dict(
            db.execute(
                "SELECT event, actor FROM audit_log WHERE event IN"
                " ('report.submitted', 'action.recorded', 'user.added')"
            )
        )
    assert actors == {
        "report.submitted": "carol",
        "action.recorded": "dave",
        "user.added": "carol",
    }


# commands reach the server as structured data ------------------------------------------------
def through_socket(node: NodeProcess, caller: str, *argv: str) -> Any:
    """One command over the running server's control socket, as the command line sends it."""
    out, err = io.StringIO(), io.StringIO()
    status = asyncio.run(control.send(DataDir(node.root), [*argv, "--json"], caller, out, err))
    assert status == 0, err.getvalue()
    return json.loads(out.getvalue())


def test_a_key_id_beginning_with_a_dash_is_revoked_through_the_running_server(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    """About 1 key id in 64 begins with '-': rotate until one does, then revoke it."""
    fr, _ = pair
    dashed = None
    for _ in range(300):  # 3 new ids a rotation: P(none in 900) < 1e-6
        keys = through_socket(fr, "operator", "keys", "rotate")["keys"]
        dashed = next((k["kid"] for k in keys if k["kid"].startswith("-")), None)
        if dashed is not None:
            break
        # Older keys stay valid for the overlap, and a key document holds at most 64 of each
        # kind: retire them as an operator would, so that rotating can go on.
        newest = {max((k for k in keys if k["purpose"] == p), key=lambda k: k["not_before"])["kid"]
                  for p in {k["purpose"] for k in keys}}  # fmt: skip
        for key in keys:
            if key["kid"] not in newest and key["state"] != "revoked":
                through_socket(fr, "operator", "keys", "revoke", key["kid"])
    assert dashed is not None
    assert locks.server_running(DataDir(fr.root))  # so the command goes through the server
    revoked = cli(fr.root, "keys", "revoke", dashed, check=False)
    assert (revoked.returncode, revoked.stderr) == (0, "")
    assert revoked.stdout == f"revoked {dashed}\n"
    states = {k["kid"]: k["state"] for k in cli_json(fr.root, "keys", "show")["keys"]}
    assert states[dashed] == "revoked"
    with urlrequest.urlopen(fr.url + "/.well-known/hotline-node", timeout=10) as response:
        document = verify_key_document(response.read(), pinned_fingerprint=fr.fingerprint)
    assert dashed in document.revoked  # the running node publishes it at once
    # A fingerprint that begins with "-", as two words: taken as the fingerprint (and refused
    # because it is not de-eco's), never as an unknown option.
    added = cli(fr.root, "peers", "add", "--node-id", "de-eco", "--country", "DE",
                "--endpoint", "http://127.0.0.1:9", "--fingerprint", "-" + "A" * 42,
                check=False)  # fmt: skip
    assert added.returncode == 1
    assert added.stderr.startswith("hotline-node: error:")
    assert "usage:" not in added.stderr
    assert len(added.stderr.splitlines()) == 1


def test_the_callers_name_travels_as_a_field_and_a_note_is_never_an_option(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    fr, _ = pair
    env = {**os.environ, "LOGNAME": "carol", "USER": "carol"}

    def run(*args: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "node", *args, "--data-dir", str(fr.root), "--json"],
            capture_output=True, text=True, cwd=REPO, env=env, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    joined = run("reports", "submit", "https://fr.example/as/1", "--no-trace", "--note=--as root")
    spaced = run("reports", "submit", "https://fr.example/as/2", "--no-trace",
                 "--note", "--as mallory", "--as", "dave")  # fmt: skip
    # On the wire: no --as in argv at all; the name is the request's own field.
    through_socket(fr, "erin", "reports", "action", joined["id"], "--code", "moved")
    with sqlite3.connect(fr.root / "node.sqlite3") as db:
        actors = dict(
            db.execute(
                "SELECT subject || ' ' || event, actor FROM audit_log"
                " WHERE event IN ('report.submitted', 'action.recorded')"
            )
        )
    assert actors == {
        f"{joined['id']} report.submitted": "carol",
        f"{spaced['id']} report.submitted": "dave",
        f"{joined['id']} action.recorded": "erin",
    }
    assert cli_json(fr.root, "reports", "show", joined["id"])["notes"] == "--as root"
    assert cli_json(fr.root, "reports", "show", spaced["id"])["notes"] == "--as mallory"


# an import whose command line goes away ------------------------------------------------------
def import_progress(node: NodeProcess) -> int:
    with sqlite3.connect(node.root / "node.sqlite3", timeout=30) as db:
        row = db.execute("SELECT done FROM import_runs").fetchone()
    return int(row[0]) if row else 0


def settled_progress(node: NodeProcess, quiet: float = 1.0, timeout: float = 60.0) -> int:
    """The import's progress once it has not moved for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last = import_progress(node)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = import_progress(node)
        if now == last:
            return now
        last = now
    raise AssertionError(f"the import still moves after {timeout} s")


def test_an_import_whose_client_is_killed_stops_at_a_batch_and_resumes_exactly(
    pair: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    fr, _ = pair
    lines = 30_000
    path = tmp_path / "backlog.jsonl"
    path.write_text(
        "".join(
            json.dumps({"url": f"http://fr.example/backlog/{i}", "category": "hate"}) + "\n"
            for i in range(lines)
        ),
        encoding="utf-8",
    )

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "node", "reports", "import", str(path), "--json",
             "--data-dir", str(fr.root)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    first = start()
    try:
        wait_for(lambda: import_progress(fr) > 0 or None, timeout=60, interval=0.02)
        # A second run of the same file while the first one's caller is there: refused, and
        # it names the run, rather than racing it.
        second = cli(fr.root, "reports", "import", str(path), check=False)
        assert second.returncode == 1
        assert second.stderr.startswith(
            "hotline-node: error: backlog.jsonl is being imported by another run (started "
        )
        assert len(second.stderr.splitlines()) == 1
        first.kill()  # SIGKILL: the control connection closes, nothing said
    finally:
        first.communicate(timeout=30)
    # The server stops at the next batch boundary: the progress settles, short of the end.
    settled = settled_progress(fr)
    assert 0 < settled < lines
    assert settled % 500 == 0
    with sqlite3.connect(fr.root / "node.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM reports").fetchone()[0] == settled
    assert "stopped after" in (fr.log_path or path).read_text()
    # Run again, as the docs advise: it takes up from the batch where the server stopped.
    again = start()
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert f"an earlier run stopped after {settled} of {lines}" in err
    summary = json.loads(out)
    assert (summary["imported"], summary["duplicates"], summary["already_imported"]) == (
        lines - settled,
        0,
        settled,
    )
    with sqlite3.connect(fr.root / "node.sqlite3") as db:
        urls = db.execute("SELECT COUNT(*), COUNT(DISTINCT url) FROM reports").fetchone()
        assert urls == (lines, lines)  # every line exactly one case
        assert db.execute("SELECT MAX(duplicates) FROM reports").fetchone()[0] == 0
        events = dict(
            db.execute(
                "SELECT event, COUNT(*) FROM audit_log"
                " WHERE event IN ('report.submitted', 'report.duplicate') GROUP BY event"
            )
        )
    assert events == {"report.submitted": lines}  # no spurious duplicate entries


def test_an_import_run_again_at_once_after_its_client_is_killed_waits_and_resumes(
    pair: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    """The docs' advice taken at once: the new run waits for the old one's batch, then goes on."""
    fr, _ = pair
    lines = 20_000
    path = tmp_path / "again.csv"
    path.write_text(
        "url,category\n" + "".join(f"http://fr.example/again/{i},hate\n" for i in range(lines)),
        encoding="utf-8",
    )
    argv = [sys.executable, "-m", "node", "reports", "import", str(path), "--json",
            "--data-dir", str(fr.root)]  # fmt: skip
    first = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: import_progress(fr) > 0 or None, timeout=60, interval=0.02)
        first.kill()
    finally:
        first.communicate(timeout=30)
    again = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    resumed = summary["already_imported"]
    assert 0 < resumed < lines
    assert resumed % 500 == 0  # where a batch ended
    assert (summary["imported"], summary["duplicates"]) == (lines - resumed, 0)
    with sqlite3.connect(fr.root / "node.sqlite3") as db:
        assert db.execute(
            "SELECT COUNT(DISTINCT url), MAX(duplicates) FROM reports"
        ).fetchone() == (
            lines,
            0,
        )
        assert db.execute(
            "SELECT COUNT(*) FROM audit_log WHERE event = 'report.duplicate'"
        ).fetchone() == (0,)
