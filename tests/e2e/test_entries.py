"""The same rules on every entry of a real node, and every public reporter's words kept."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib import request as urlrequest
from urllib.error import HTTPError
from urllib.parse import urlencode

import pytest

from node.datadir import DataDir
from tests.support.cluster import NodeProcess, cli, cli_json
from tests.support.dns_server import ZoneDnsServer

RLO = "\u202e"
# The example: shown as ".../abcexe.jpg" by anything that renders it.
BIDI_URL = f"http://de.example/abc{RLO}gpj.exe"
BIDI_NOTE = f"see the file abc{RLO}gpj.exe"
WHY = "contains a bidirectional control character (U+202E), which makes text display in another order than it is written"  # noqa: E501 - the exact sentence


@pytest.fixture(scope="module")
def fr(tmp_path_factory: pytest.TempPathFactory, dns: ZoneDnsServer) -> Iterator[NodeProcess]:
    node = NodeProcess("fr-pdc", "FR", tmp_path_factory.mktemp("entries") / "fr", dns.nameserver)
    node.init({"intake": {"public_reports_per_minute": 1000}})
    node.start()
    try:
        yield node
    finally:
        node.stop()


def counts(node: NodeProcess) -> dict[str, int]:
    """What intake could have written, read from the database file itself."""
    path = DataDir(node.root).database
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        found = {
            table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("reports", "submissions", "audit_log")
        }
    conn.close()
    return found


def post_form(node: NodeProcess, fields: dict[str, str]) -> tuple[int, str]:
    req = urlrequest.Request(
        node.url + "/report",
        data=urlencode(fields).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept-Language": "en"},
        method="POST",
    )
    try:
        with urlrequest.urlopen(req, timeout=30) as response:
            return response.status, response.read().decode()
    except HTTPError as exc:
        return exc.code, exc.read().decode()


# Each entry takes (node, url, text) and returns the one-line reason it refused, or fails.
Entry = Callable[[NodeProcess, str, str], str]


def analyst_api(node: NodeProcess, url: str, text: str) -> str:
    status, body = node.post("/api/v1/reports", {"url": url, "note": text})
    assert status == 422, body
    assert body["type"].endswith("invalid-input")
    return str(body["detail"])


def public_api(node: NodeProcess, url: str, text: str) -> str:
    status, body = node.post(
        "/api/v1/public/reports", {"url": url, "description": text}, token=None
    )
    assert status == 422, body
    return str(body["detail"])


def public_form(node: NodeProcess, url: str, text: str) -> str:
    status, page = post_form(node, {"url": url, "description": text, "lang": "en"})
    assert status == 422, page[-500:]
    # The page keeps what was typed and says what to fix: the reason's own sentence.
    return page


def cli_submit(node: NodeProcess, url: str, text: str) -> str:
    result = cli(node.root, "reports", "submit", url, "--note", text, check=False)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def cli_import(node: NodeProcess, url: str, text: str) -> str:
    path = node.root.parent / "import.jsonl"
    lines = [
        {"url": "http://de.example/fine-line", "category": "hate"},
        {"url": url, "category": "hate", "note": text},
    ]
    path.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n")
    result = cli(node.root, "reports", "import", str(path), check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    # The file is refused as a whole, naming the line, so nothing of it is imported.
    assert "import.jsonl:2: " in result.stderr, result.stderr
    return result.stderr


ENTRIES: dict[str, Entry] = {
    "analyst API": analyst_api,
    "public API": public_api,
    "public form": public_form,
    "reports submit": cli_submit,
    "reports import": cli_import,
}
# The public calls its text a description; analysts, command line and import a note.
TEXT_FIELD = {"public API": "description", "public form": "description"}


@pytest.mark.parametrize("entry", list(ENTRIES))
def test_a_url_with_a_bidirectional_control_is_refused_alike_everywhere(
    fr: NodeProcess, entry: str
) -> None:
    before = counts(fr)
    reason = ENTRIES[entry](fr, BIDI_URL, "seen on a forum")
    assert f"url {WHY}" in reason
    assert counts(fr) == before


@pytest.mark.parametrize("entry", list(ENTRIES))
def test_a_text_with_a_bidirectional_control_is_refused_alike_everywhere(
    fr: NodeProcess, entry: str
) -> None:
    before = counts(fr)
    reason = ENTRIES[entry](fr, "http://de.example/fine", BIDI_NOTE)
    assert f"{TEXT_FIELD.get(entry, 'note')} {WHY}" in reason
    assert counts(fr) == before


def test_every_public_reporters_words_are_kept_and_shown_in_order(fr: NodeProcess) -> None:
    url = "http://de.example/words"
    status, answer = fr.post(
        "/api/v1/public/reports",
        {
            "url": url,
            "description": "a picture of a child",
            "contact": "first@example.org",
            "language": "en",
        },
        token=None,
    )
    assert status == 202, answer
    status, page = post_form(
        fr,
        {
            "url": url,
            "description": "there is also a video",
            "contact": "+33 6 12 34 56 78",
            "lang": "fr",
        },
    )
    assert status == 201, page[-500:]

    [case] = [c for c in cli_json(fr.root, "reports", "list")["reports"] if c["url"] == url]
    shown = cli_json(fr.root, "reports", "show", case["id"])
    assert case["duplicates"] == 1
    words = [(s["description"], s["contact"], s["language"]) for s in shown["submissions"]]
    assert words == [
        ("a picture of a child", "first@example.org", "en"),
        ("there is also a video", "+33 6 12 34 56 78", "fr"),
    ]
    assert all(s["source"] == "public" for s in shown["submissions"])
    assert shown["submissions"][0]["at"] <= shown["submissions"][1]["at"]

    status, body = fr.get(f"/api/v1/reports/{case['id']}")
    assert status == 200
    assert body["submissions"] == shown["submissions"]
    # Operators administer the node; the public's words and contacts are for analysts.
    status, body = fr.get(f"/api/v1/reports/{case['id']}", token=fr.operator)
    assert status == 200
    assert [(s["description"], s["contact"]) for s in body["submissions"]] == [(None, None)] * 2
    assert [s["at"] for s in body["submissions"]] == [s["at"] for s in shown["submissions"]]

    text = cli(fr.root, "reports", "show", case["id"]).stdout
    first, second = text.index("a picture of a child"), text.index("there is also a video")
    assert first < second
    assert "first@example.org" in text
    assert "+33 6 12 34 56 78" in text


def test_the_database_file_holds_no_bidirectional_control(fr: NodeProcess) -> None:
    """Whatever the tests above sent, none of it reached the store (read from the file)."""
    path: Path = DataDir(fr.root).database
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT url, COALESCE(notes, '') FROM reports").fetchall()
    conn.close()
    assert rows  # the reports of the words test
    assert not any(RLO in url or RLO in notes for url, notes in rows)
