"""docs/protocol.md refers only to what the repository holds, and names every vector file."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "docs" / "protocol.md"


def test_every_relative_link_in_the_protocol_resolves() -> None:
    text = PROTOCOL.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    assert links
    missing = [link for link in links if not (PROTOCOL.parent / link).exists()]
    assert missing == []


def test_the_protocol_needs_no_document_outside_the_repository() -> None:
    text = PROTOCOL.read_text(encoding="utf-8")
    assert "DESIGN.md" not in text
    assert "informative)" not in text  # §13 is normative
    for vectors in sorted((ROOT / "tests" / "vectors").glob("*-v1.json")):
        assert vectors.name in text, vectors.name
