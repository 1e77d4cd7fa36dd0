"""French and English: the catalogue covers every template string and every error template a
console page can show; the country sets the default."""

from __future__ import annotations

import ast
import re
import string
from enum import Enum
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from node import errors
from node.cases import CaseStatus
from node.cases.lifecycle import CaseEvent
from node.channels.notices import language_for
from node.console.i18n import default_language, translations
from node.countries import FRENCH_SPEAKING, ISO_3166_ALPHA2
from node.tokens import Role
from node.users import UserRole
from tests.console.conftest import Console

NODE = Path(__file__).parents[2] / "node"
TEMPLATES = NODE / "console" / "templates"
CATALOGUE = TEMPLATES.parent / "locale" / "fr" / "LC_MESSAGES" / "messages.po"
# Where a NodeError a console page shows is raised: what the console's forms and pages call.
CONSOLE_REACHES = (
    "console/*.py",
    "cases/*.py",
    "review.py",
    "users.py",
    "tokens.py",
    "federation/registry.py",
    "federation/admin.py",
    "federation/peer_keys.py",
    "channels/dispatcher.py",
    "contacts.py",
    "urls.py",
    "countries.py",
)
# Enums whose members are error parameters: vocabulary the console translates.
VOCABULARY: tuple[type[Enum], ...] = (CaseStatus, CaseEvent, UserRole, Role)


def _catalogue() -> Catalog:
    with CATALOGUE.open("rb") as handle:
        return read_po(handle, locale="fr")


def _translated() -> set[str]:
    return {m.id for m in _catalogue() if isinstance(m.id, str) and m.id and m.string}


def _marked() -> dict[str, str]:
    """Every string marked with N_ under node/, as Babel extracts it, with where it is."""
    return {
        message: f"{name}:{line}"
        for name, line, message, _comments, _context in extract_from_dir(
            str(NODE), method_map=[("**.py", "python")], keywords={"N_": None}
        )
        if isinstance(message, str)
    }


def test_every_template_string_has_a_french_translation() -> None:
    translated = _translated()
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


def test_every_marked_error_template_has_a_french_translation() -> None:
    marked = _marked()
    assert len(marked) > 60
    missing = {message: where for message, where in marked.items() if message not in _translated()}
    assert missing == {}


def test_vocabulary_in_error_parameters_has_a_french_translation() -> None:
    translated = _translated()
    values = {str(member.value) for enum in VOCABULARY for member in enum}
    assert sorted(values - translated) == []


def test_translations_keep_the_templates_parameters() -> None:
    """A translation names exactly the template's parameters, with the same conversions and
    formats ({value!r}, {code:04X}): a mistyped name would show the English instead."""

    def fields(text: str) -> set[tuple[str, str | None, str]]:
        return {
            (name, conversion, spec or "")
            for _literal, name, spec, conversion in string.Formatter().parse(text)
            if name is not None
        }

    marked = set(_marked())
    wrong = [
        m.id
        for m in _catalogue()
        if m.id in marked and m.string and fields(str(m.id)) != fields(str(m.string))
    ]
    assert wrong == []


def _marked_argument(node: ast.expr) -> bool:
    """N_("..."), either of two N_ templates, a Sentence, or a name holding one."""
    if isinstance(node, ast.IfExp):
        return _marked_argument(node.body) and _marked_argument(node.orelse)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id in ("N_", "Sentence")
    return isinstance(node, ast.Name)


def test_errors_a_console_page_can_show_carry_marked_templates() -> None:
    """No f-string or unmarked text reaches a console page: a new raise site with one fails
    here, before a French person sees English."""
    kinds = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.NodeError)
    }
    unmarked = []
    checked = 0
    for pattern in CONSOLE_REACHES:
        for path in sorted(NODE.glob(pattern)):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                call = node.exc if isinstance(node, ast.Raise) else None
                if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
                    continue
                if call.func.id not in kinds:
                    continue
                checked += 1
                if not call.args or not _marked_argument(call.args[0]):
                    unmarked.append(f"{path.relative_to(NODE)}:{call.lineno}")
    assert checked > 60
    assert unmarked == []


def test_one_list_of_french_speaking_countries_for_console_and_notices() -> None:
    """A Cameroon node once got an English console and French notices: two lists disagreed."""
    for country in sorted(ISO_3166_ALPHA2):
        expected = "fr" if country in FRENCH_SPEAKING else "en"
        assert default_language(country, None) == language_for(country) == expected, country
    assert default_language("CM", None) == "fr"
    assert default_language("cm", None) == language_for("cm") == "fr"
    assert language_for(None) == "en"
    assert default_language("CM", "en") == "en"  # [console] language chosen by the operator
