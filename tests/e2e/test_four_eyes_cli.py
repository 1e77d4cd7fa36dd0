"""Four-eyes on the command line and at import, against a serving node: a named reviewer decides."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import NodeProcess, cli, cli_json
from tests.support.dns_server import ZoneDnsServer

ERROR_LINE = re.compile(r"^hotline-node: error: \S.*\n$")


@pytest.fixture
def node(tmp_path: Path, dns: ZoneDnsServer) -> Iterator[NodeProcess]:
    fr = NodeProcess("fr-pdc", "FR", tmp_path / "fr", dns.nameserver)
    try:
        fr.init({"console": {"four_eyes": ["csam"]}})
        fr.start()
        for name, role in (("alice", "analyst"), ("rene", "reviewer")):
            cli(fr.root, "users", "add", name, "--role", role)
        yield fr
    finally:
        fr.stop()


def refused(node: NodeProcess, *args: str) -> str:
    """The command fails with one error line, and nothing on stdout."""
    result = cli(node.root, *args, check=False)
    assert result.returncode != 0
    assert ERROR_LINE.match(result.stderr), result.stderr
    assert result.stdout == ""
    return result.stderr


def submit(node: NodeProcess, url: str) -> str:
    report_id: str = cli_json(node.root, "reports", "submit", url)["id"]
    return report_id


def assess(node: NodeProcess, report_id: str, verdict: str, who: str) -> dict[str, object]:
    case: dict[str, object] = cli_json(
        node.root,
        "reports",
        "assess",
        report_id,
        "--verdict",
        verdict,
        "--category",
        "csam",
        "--as",
        who,
    )
    return case


def review(report_id: str, *args: str) -> list[str]:
    return ["reports", "review", report_id, *args]


def test_the_command_line_waits_for_a_named_reviewer(node: NodeProcess) -> None:
    report_id = submit(node, "https://fr.example/cli/national.jpg")
    # --as Alice is alice: the audit log and the review name her account.
    case = assess(node, report_id, "national", "Alice")
    assert case["status"] == "new"
    pending = case["review"]
    assert isinstance(pending, dict)
    assert (pending["state"], pending["verdict"], pending["analyst"]) == (
        "pending",
        "national",
        "alice",
    )
    rid = pending["id"]
    text = cli(node.root, "reports", "show", report_id).stdout
    assert f"review   {rid} pending: national / csam by alice" in text
    assert f"--review {rid}" in text
    status, body = node.get(f"/api/v1/reports/{report_id}")
    assert status == 200
    assert body["review"] == pending
    assert body["routing"]["decision"] is None

    # Who decides is named, a person, and a reviewer; never the analyst.
    assert "needs --as NAME" in refused(node, *review(report_id, "--confirm", "--review", rid))
    nobody = refused(node, *review(report_id, "--confirm", "--review", rid, "--as", "mallory"))
    assert "is no active person" in nobody
    analyst = refused(node, *review(report_id, "--confirm", "--review", rid, "--as", "alice"))
    assert "reviewer" in analyst
    assert "--review ID" in refused(node, *review(report_id, "--confirm", "--as", "rene"))
    stale = refused(node, *review(report_id, "--confirm", "--review", "0" * 16, "--as", "rene"))
    assert "the verdict changed since you opened the case" in stale
    assert node.report(report_id)["status"] == "new"  # type: ignore[index]

    # A rejection says why; the analyst sees it, and gives a verdict again.
    assert "needs a reason" in refused(node, *review(report_id, "--reject", "--as", "rene"))
    rejected = cli_json(
        node.root, *review(report_id, "--reject", "--reason", "a drawing", "--as", "rene")
    )
    assert (rejected["review"]["state"], rejected["review"]["reason"]) == ("rejected", "a drawing")
    assert rejected["review"]["reviewer"] == "rene"
    assert "rejected by rene at" in cli(node.root, "reports", "show", report_id).stdout
    case = assess(node, report_id, "baseline", "alice")
    rid = case["review"]["id"]  # type: ignore[index]
    confirmed = cli_json(
        node.root, *review(report_id, "--confirm", "--review", rid, "--as", "RENE")
    )
    assert (confirmed["status"], confirmed["assessment"]["verdict"]) == ("routed", "baseline")
    assert confirmed["routing"]["decision"] == "domestic"

    # A re-rating of the confirmed case, even to not_illegal, waits for a reviewer too.
    case = assess(node, report_id, "not_illegal", "alice")
    assert case["status"] == "routed"
    assert case["review"]["state"] == "pending"  # type: ignore[index]


def test_a_reviewer_does_not_confirm_their_own_verdict_however_spelt(node: NodeProcess) -> None:
    report_id = submit(node, "https://fr.example/cli/own.jpg")
    rid = assess(node, report_id, "baseline", "RENE")["review"]["id"]  # type: ignore[index]
    own = refused(node, *review(report_id, "--confirm", "--review", rid, "--as", "rene"))
    assert "someone other than the analyst" in own
    assert node.report(report_id)["status"] == "new"  # type: ignore[index]


def test_an_imported_verdict_waits_for_a_reviewer(node: NodeProcess, tmp_path: Path) -> None:
    lines = tmp_path / "cases.csv"
    lines.write_text(
        "url,category,verdict,hosting_country\n"
        "https://fr.example/import/csam.jpg,csam,baseline,FR\n"
        "https://fr.example/import/hate.jpg,hate,national,FR\n"
    )
    cli(node.root, "reports", "import", str(lines), "--as", "alice")
    cases = {
        c["url"]: c for c in cli_json(node.root, "reports", "list", "--limit", "10")["reports"]
    }
    waiting = node.report(cases["https://fr.example/import/csam.jpg"]["id"])
    assert waiting is not None
    assert (waiting["status"], waiting["assessment"]["verdict"]) == ("new", None)
    assert waiting["routing"]["decision"] is None
    assert (waiting["review"]["state"], waiting["review"]["analyst"]) == ("pending", "alice")
    # The category nobody reviews routes at once, as before.
    assert cases["https://fr.example/import/hate.jpg"]["status"] == "routed"
    report_id = waiting["id"]
    rid = waiting["review"]["id"]
    own = refused(node, *review(report_id, "--confirm", "--review", rid, "--as", "alice"))
    assert "reviewer" in own
    confirmed = cli_json(
        node.root, *review(report_id, "--confirm", "--review", rid, "--as", "rene")
    )
    assert confirmed["status"] == "routed"
    assert confirmed["routing"]["decision"] == "domestic"
