"""French and English: the catalogue covers every template string; the country sets the default."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.pofile import read_po

from node.console.i18n import default_language, translations
from tests.console.conftest import Console

TEMPLATES = Path(__file__).parents[2] / "node" / "console" / "templates"
CATALOGUE = TEMPLATES.parent / "locale" / "fr" / "LC_MESSAGES" / "messages.po"


def test_every_template_string_has_a_french_translation() -> None:
    with CATALOGUE.open("rb") as handle:
        catalog = read_po(handle, locale="fr")
    translated = {m.id for m in catalog if m.id and m.string}
    used: set[str] = set()
    for path in TEMPLATES.glob("*.html"):
        text = path.read_text()
        used |= set(re.findall(r'_\("([^"]+)"\)', text)) | set(re.findall(r"_\('([^']+)'\)", text))
    assert len(used) > 100
    assert sorted(used - translated) == []


def test_the_country_sets_the_default_language() -> None:
    assert default_language("FR", None) == "fr"
    assert default_language("BE", None) == "fr"
    assert default_language("DE", None) == "en"
    assert default_language("FR", "en") == "en"
    assert translations("fr").gettext("Triage queue") == "File de tri"
    assert translations("en").gettext("Triage queue") == "Triage queue"


async def test_a_french_node_speaks_french_until_the_person_chooses(
    french_console: Console,
) -> None:
    browser = await french_console.browser("alice")
    _, text = await browser.get("/console/queue")
    assert '<html lang="fr">' in text
    assert "File de tri" in text
    response, _ = await browser.post("/console/language", {"lang": "en", "next": "/console/queue"})
    assert response.status == 303
    _, text = await browser.get("/console/queue")
    assert '<html lang="en">' in text
    assert "Triage queue" in text
