"""French and English: Babel message catalogues, the person's choice, the node's country default."""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from node.countries import language_of

LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = ("en", "fr")


def default_language(country: str, configured: str | None) -> str:
    if configured:
        return configured
    return language_of(country)


@cache
def translations(language: str) -> NullTranslations:
    """The catalogue for `language`, compiled from its .po file once per process (no binary
    .mo files in the repository: the .po is what translators edit and reviewers read)."""
    path = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return NullTranslations()
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)
