"""Text from outside the node: one e-mail address, a public contact, free text without controls.

The one place that decides which characters free text and URLs refuse, whatever the entry
(API, public form, console, command line, import, a peer's record)."""

from __future__ import annotations

import re
import unicodedata

import dns.exception
import dns.name

from node.errors import N_, InvalidInput

MAX_ADDRESS = 254
# RFC 5322 dot-atom local part: no quoted strings, no comments, no spaces. An address that needs
# them is not one an abuse desk publishes, and each of them is a way to smuggle a second header.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
# A phone number as people write it: an optional +, digits, and spaces, dots, dashes, brackets.
_PHONE = re.compile(r"^\+?[0-9(][0-9 ().-]{4,30}[0-9]$")
# The bidirectional embeddings, overrides (U+202A-U+202E) and isolates (U+2066-U+2069): they
# reorder what follows them on screen, so ".../abc" + U+202E + "gpj.exe" displays as
# ".../abcexe.jpg", and a note or reason can be made to read otherwise than it is stored.
# Refused everywhere: no URL needs them, and text written in Arabic or Hebrew does not either
# (the Unicode bidi algorithm orders it without them).
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# The implicit marks (LRM, RLM, ALM) cannot reverse a run of letters, only move neutral
# characters (punctuation, digits) next to them; people writing in right-to-left scripts type
# them, so free text keeps them. A URL has no use for an invisible character: refused there.
BIDI_MARKS = "\u200e\u200f\u061c"
_BIDI_IN_TEXT = re.compile(f"[{BIDI_CONTROLS}]")
_BIDI_IN_URL = re.compile(f"[{BIDI_CONTROLS}{BIDI_MARKS}]")
# In JSON text: an escape other than \n, \t, \" , \\ and \/ (\uXXXX, \r, \b, \f), a raw C1
# control or line separator (JSON allows both unescaped), or a raw bidirectional control or
# mark (UTF-8 E2 80 8E/8F/AA-AE, E2 81 A6-A9, D8 9C).
_SUSPECT_IN_JSON = re.compile(
    rb"\\[urbf]|\xc2[\x80-\x9f]|\xe2\x80[\x8e\x8f\xa8-\xae]|\xe2\x81[\xa6-\xa9]|\xd8\x9c"
)
# The C0 and C1 controls (Unicode category Cc) but newline and tab, which free text keeps for
# paragraphs and pasted tables; the line separators; lone surrogates.
_REFUSED_IN_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def email_address(value: str, field: str = "address") -> str:
    """One addr-spec (local@domain), the domain IDNA-encoded; InvalidInput otherwise.

    Everything that reaches a mail header passes here first: CR, LF, NUL, U+2028, commas
    (a second recipient) and display names are refused, not escaped.
    """
    # Only spaces and tabs around it are forgiven: a line break anywhere is refused.
    text = value.strip(" \t") if isinstance(value, str) else value
    if not isinstance(text, str) or not text:
        raise InvalidInput(N_("{field} must be an e-mail address"), field=field)
    if len(text) > MAX_ADDRESS:
        raise InvalidInput(
            N_("{field} is longer than {limit} characters"), field=field, limit=MAX_ADDRESS
        )
    local, at, domain = text.rpartition("@")
    if not at or not local or len(local) > 64 or not _LOCAL.fullmatch(local):
        raise InvalidInput(N_("{field} is not one e-mail address (local@domain)"), field=field)
    if any(not _plain(char) for char in domain) or "%" in domain or "@" in domain:
        raise InvalidInput(N_("{field} has an invalid domain"), field=field)
    host = _domain(domain)
    if host is None:
        raise InvalidInput(N_("{field} has an invalid domain"), field=field)
    if "." not in host or host.rpartition(".")[2].isdigit():
        raise InvalidInput(N_("{field} must name a domain (local@example.org)"), field=field)
    return f"{local}@{host}"


def _domain(text: str) -> str | None:
    """The lower-case A-label form of a domain name (IDNA 2008, as the trace reads hosts)."""
    name = text.rstrip(".").lower()
    if not name.isascii():
        try:
            name = dns.name.from_unicode(name, idna_codec=dns.name.IDNA_2008_Practical).to_text(
                omit_final_dot=True
            )
        except dns.exception.DNSException:
            return None
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return name


def abuse_contact(value: object) -> str | None:
    """An abuse contact from a peer, RDAP or a CDN list: one valid address, or None."""
    if not isinstance(value, str):
        return None
    try:
        return email_address(value, "abuse contact")
    except InvalidInput:
        return None


def public_contact(value: str, field: str = "contact") -> str:
    """How a member of the public can be reached: an e-mail address or a phone number."""
    text = value.strip(" \t")
    if "@" not in text and _PHONE.fullmatch(text):
        return text
    try:
        return email_address(text, field)
    except InvalidInput:
        raise InvalidInput(
            N_("{field} must be an e-mail address or a phone number"), field=field
        ) from None


def free_text(value: str, field: str) -> str:
    """Free text as given, refused when it holds NUL or another control character.

    Newline and tab are kept. Also refused: the line and paragraph separators (U+2028/9),
    which break log lines and mail bodies as a newline would, unpaired surrogates, which
    cannot be stored as UTF-8, and the bidirectional controls (BIDI_CONTROLS).
    """
    problem = text_problem(value, field)
    if problem is not None:
        raise problem
    return value


def text_problem(value: str, field: str) -> InvalidInput | None:
    """Why free text is refused (the same words on every entry), or None."""
    found = _BIDI_IN_TEXT.search(value)
    if found is not None:
        return _bidi(field, found.group())
    found = _REFUSED_IN_TEXT.search(value)
    if found is not None:
        return InvalidInput(
            N_(
                "{field} contains a control character (U+{code:04X});"
                " only newline and tab are allowed"
            ),
            field=field,
            code=ord(found.group()),
        )
    return None


def url_characters(value: str, field: str = "url") -> None:
    """InvalidInput when a URL holds a bidirectional control or mark (node.urls checks the rest:
    whitespace and controls)."""
    found = _BIDI_IN_URL.search(value)
    if found is not None:
        raise _bidi(field, found.group())


def _bidi(field: str, char: str) -> InvalidInput:
    return InvalidInput(
        N_(
            "{field} contains a bidirectional control character (U+{code:04X}),"
            " which makes text display in another order than it is written"
        ),
        field=field,
        code=ord(char),
    )


def control_character_in(
    payload: bytes, data: object, skip: frozenset[str] = frozenset()
) -> InvalidInput | None:
    """Why a record's text is refused (free text's rule, with the field's path), else None.

    `payload` is the record's JSON: only when it shows an escape or a raw character that could
    be one (rare) is the parsed `data` walked, so the hot path of a received batch pays one
    bytes search per record.
    """
    if _SUSPECT_IN_JSON.search(payload) is None:
        return None
    return _walk(data, "", skip)


def _walk(value: object, where: str, skip: frozenset[str]) -> InvalidInput | None:
    if where in skip:
        return None
    if isinstance(value, str):
        return text_problem(value, where or "value")
    if isinstance(value, dict):
        items: list[tuple[str, object]] = [
            (f"{where}.{k}".lstrip("."), v) for k, v in value.items()
        ]
    elif isinstance(value, list | tuple):
        items = [(f"{where}[{n}]", v) for n, v in enumerate(value)]
    else:
        return None
    for path, item in items:
        found = _walk(item, path, skip)
        if found is not None:
            return found
    return None


def _plain(char: str) -> bool:
    """Not a control, format, separator or space character (nothing that reshapes a line)."""
    return unicodedata.category(char)[0] not in ("C", "Z")
