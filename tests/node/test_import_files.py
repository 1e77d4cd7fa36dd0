"""`reports import` with files as spreadsheets write them: BOM, semicolons, CRLF, cp1252, UTF-16."""

from __future__ import annotations

import codecs
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from node.cases.intake import CaseIntake
from tests.node.test_cli import Cli
from tests.support.dns_server import ZoneDnsServer

ROWS = [
    ("http://de.example/élève", "csam", "baseline", "DE"),
    ("http://de.example/b", "hate", "national", "DE"),
]


def spreadsheet(delimiter: str, newline: str = "\r\n") -> str:
    lines = [delimiter.join(["url", "category", "verdict", "hosting_country"])]
    lines += [delimiter.join(row) for row in ROWS]
    return newline.join(lines) + newline


@pytest.fixture
def node(tmp_path: Path, dns_server: ZoneDnsServer, capsys: pytest.CaptureFixture[str]) -> Cli:
    cli = Cli(capsys, tmp_path / "node", dns_server.nameserver)
    assert cli.init().code == 0
    return cli


def imported_urls(cli: Cli) -> list[str]:
    result = cli.ok("reports", "list", "--json")
    return sorted(row["url"] for row in result.json()["reports"])


def test_excel_csv_utf8_with_a_bom(node: Cli, tmp_path: Path) -> None:
    # Excel's "CSV UTF-8 (comma delimited)": a BOM, commas, CRLF.
    path = tmp_path / "export.csv"
    path.write_bytes(codecs.BOM_UTF8 + spreadsheet(",").encode())
    result = node.ok("reports", "import", str(path), "--json")
    assert result.json()["imported"] == 2
    assert result.json()["encoding"] == "utf-8-sig"
    assert imported_urls(node) == ["http://de.example/b", "http://de.example/élève"]


def test_french_excel_semicolons_in_windows_1252(node: Cli, tmp_path: Path) -> None:
    # French Excel's "CSV (séparateur : point-virgule)": cp1252, semicolons, CRLF.
    path = tmp_path / "signalements.csv"
    path.write_bytes(spreadsheet(";").encode("cp1252"))
    err = node.fails("reports", "import", str(path))
    assert "signalements.csv:2: not UTF-8 (byte 0xe9)" in err
    assert "--encoding cp1252" in err
    assert imported_urls(node) == []
    result = node.ok("reports", "import", str(path), "--encoding", "cp1252", "--json")
    assert (result.json()["imported"], result.json()["delimiter"]) == (2, ";")
    assert "http://de.example/élève" in imported_urls(node)


def test_excel_unicode_text_is_utf16_with_tabs(node: Cli, tmp_path: Path) -> None:
    # Excel's "Unicode Text": UTF-16 LE with its BOM, tab-separated, named .txt.
    path = tmp_path / "export.txt"
    path.write_bytes(spreadsheet("\t").encode("utf-16"))
    result = node.ok("reports", "import", str(path), "--json")
    assert (result.json()["format"], result.json()["delimiter"]) == ("csv", "\t")
    assert result.json()["imported"] == 2


def test_libreoffice_quoted_csv_with_a_multiline_note_named_txt(node: Cli, tmp_path: Path) -> None:
    # LibreOffice quotes text cells and keeps LF; a note may span lines. The name says .txt:
    # the format is chosen by content.
    path = tmp_path / "calc.txt"
    path.write_text(
        '"url","category","note"\n'
        '"http://de.example/1","hate","first line\nsecond line"\n'
        '"http://de.example/2","hate",""\n',
        encoding="utf-8",
    )
    result = node.ok("reports", "import", str(path), "--json")
    assert result.json()["imported"] == 2


def test_bad_lines_are_named_and_nothing_is_imported(node: Cli, tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(
        "url;category;verdict;hosting_country\n"
        "http://de.example/ok;csam;baseline;DE\n"
        "http://de.example/zz;csam;baseline;ZZ\n"
        "http://de.example/c;nonsense;;\n"
        "not a url;csam;;\n",
        encoding="utf-8",
    )
    result = node.run("reports", "import", str(path))
    assert result.code == 1
    assert "Traceback" not in result.err
    assert "mixed.csv:3: hosting_country must be an ISO 3166-1 alpha-2 code" in result.err
    assert "mixed.csv:4: category must be one of" in result.err
    assert "mixed.csv:5:" in result.err
    assert "3 line(s) refused, nothing imported" in result.err
    assert imported_urls(node) == []


def test_json_lines_types_are_strict(node: Cli, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"  # JSON lines whatever the name says
    lines = [
        {"url": "http://de.example/1", "tlp": {}},
        {"url": "http://de.example/2", "category": "csam", "verdict": False},
        {"url": "http://de.example/3", "hosting_country": "ZZ"},
        {"url": "http://de.example/4", "category": "hate", "note": "a\u2028b"},
    ]
    # ensure_ascii=False: U+2028 stays raw inside a string, as many exporters write it; it
    # does not end a line, so the bad line after it is still line 5.
    text = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)
    path.write_text(text + "\n{oops\n", encoding="utf-8")
    result = node.run("reports", "import", str(path))
    assert result.code == 1
    assert "export.csv:1: tlp must be text or null (got dict {})" in result.err
    assert "export.csv:2: verdict must be text or null (got bool False)" in result.err
    assert "export.csv:3: hosting_country must be an ISO 3166-1 alpha-2 code" in result.err
    assert "export.csv:5: not JSON" in result.err
    assert imported_urls(node) == []


def test_binary_and_unknown_encodings_are_one_line(node: Cli, tmp_path: Path) -> None:
    path = tmp_path / "photo.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert "binary data" in node.fails("reports", "import", str(path))
    text = tmp_path / "a.csv"
    text.write_text("url\nhttp://de.example/x\n", encoding="utf-8")
    assert "unknown encoding 'klingon'" in node.fails(
        "reports", "import", str(text), "--encoding", "klingon"
    )
    assert "no such file" in node.fails("reports", "import", str(tmp_path / "missing.csv"))


def test_format_flag_overrides_the_content(node: Cli, tmp_path: Path) -> None:
    path = tmp_path / "urls.txt"
    path.write_text('{"url": "http://de.example/j"}\n', encoding="utf-8")
    err = node.run("reports", "import", str(path), "--format", "csv").err
    assert 'urls.txt:1: unknown column(s): {"url": "http://de.example/j"}' in err
    assert (
        node.ok("reports", "import", str(path), "--format", "jsonl", "--json").json()["imported"]
        == 1
    )


def test_an_interrupted_import_run_again_counts_only_what_is_new(
    node: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.jsonl"
    path.write_text(
        "".join(
            json.dumps({"url": f"http://de.example/{i}", "category": "hate"}) + "\n"
            for i in range(1200)
        ),
        encoding="utf-8",
    )
    # The operator presses Ctrl-C while the second batch of 500 is on its way.
    real = CaseIntake.import_batch
    calls = 0

    async def interrupted(self: CaseIntake, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(CaseIntake, "import_batch", interrupted)
    assert node.run("reports", "import", str(path)).code == 130
    monkeypatch.setattr(CaseIntake, "import_batch", real)
    database = node.data_dir / "node.sqlite3"
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 500
        entries_before = conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0]
    again = node.run("reports", "import", str(path), "--json")
    assert again.code == 0, again.err
    assert "stopped after 500 of 1200" in again.err
    summary = again.json()
    assert (summary["imported"], summary["duplicates"], summary["already_imported"]) == (
        700,
        0,
        500,
    )
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT MAX(duplicates) FROM reports").fetchone()[0] == 0
        added = conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] - entries_before
    assert added == 700  # one report.submitted per new case, none for the 500 committed
    # A third run of the finished file does nothing at all.
    third = node.ok("reports", "import", str(path), "--json").json()
    assert (third["imported"], third["duplicates"]) == (0, 0)
    assert "nothing to do" in node.ok("reports", "import", str(path)).out
    assert node.ok("audit", "verify", "--json").json()["ok"] is True
