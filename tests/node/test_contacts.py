"""Addresses and free text from outside the node: what is taken, what is refused."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.contacts import (
    BIDI_CONTROLS,
    BIDI_MARKS,
    abuse_contact,
    control_character_in,
    email_address,
    free_text,
    public_contact,
)
from node.errors import InvalidInput
from node.urls import normalise_url

REFUSED = [chr(c) for c in range(0x20) if chr(c) not in "\n\t"]
REFUSED += [chr(c) for c in range(0x7F, 0xA0)] + ["\u2028", "\u2029"]
# Text that holds none of the characters refused in free text.
PLAIN = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters=BIDI_CONTROLS
    )
)
BIDI_REASON = "contains a bidirectional control character"


@pytest.mark.parametrize(
    ("given_address", "taken"),
    [
        ("abuse@example.net", "abuse@example.net"),
        ("  Abuse+desk@Example.NET ", "Abuse+desk@example.net"),
        ("abuse@bücher.example", "abuse@xn--bcher-kva.example"),
        ("o'brien.x@sub.example.org", "o'brien.x@sub.example.org"),
    ],
)
def test_one_address_is_taken_with_its_domain_normalised(given_address: str, taken: str) -> None:
    assert email_address(given_address) == taken
    assert abuse_contact(given_address) == taken


@pytest.mark.parametrize(
    "bad",
    [
        "abuse@example.net\r\nBcc: all@evil.example",
        "abuse@example.net\n",
        "abuse\n@example.net",
        "abuse@exa\nmple.net",
        "Abuse <abuse@example.net>",
        "abuse@example.net, other@example.org",
        "abuse@example.net;other@example.org",
        '"quoted"@example.net',
        "abuse@localhost",
        "abuse@192.0.2.1",
        "abuse@[192.0.2.1]",
        "abuse@-bad.example",
        "abuse@exa%0a.example",
        "a..b@example.net",
        "@example.net",
        "abuse@",
        "x" * 65 + "@example.net",
        "",
    ],
)
def test_anything_but_one_address_is_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        email_address(bad)
    assert abuse_contact(bad) is None


def test_an_abuse_contact_that_is_not_text_is_none() -> None:
    assert abuse_contact(None) is None
    assert abuse_contact(["abuse@example.net"]) is None


@pytest.mark.parametrize("phone", ["+33 1 23 45 67 89", "(030) 123-4567", "0612345678"])
def test_a_public_contact_is_an_address_or_a_phone_number(phone: str) -> None:
    assert public_contact(phone) == phone
    assert public_contact("me@example.org") == "me@example.org"
    for bad in ("call me", "12", "+33 1 23\n45 67 89", "me@example.org\n"):
        with pytest.raises(InvalidInput, match="e-mail address or a phone number"):
            public_contact(bad)


@given(PLAIN, st.sampled_from(REFUSED), PLAIN)
def test_free_text_refuses_every_control_character_but_newline_and_tab(
    before: str, control: str, after: str
) -> None:
    with pytest.raises(InvalidInput, match="contains a control character"):
        free_text(before + control + after, "note")


@given(PLAIN)
def test_free_text_keeps_everything_else(text: str) -> None:
    assert free_text(text + "\n\t" + text, "note") == text + "\n\t" + text


@given(st.text(), st.sampled_from(BIDI_CONTROLS), st.text())
def test_free_text_refuses_a_bidirectional_control_anywhere(
    before: str, control: str, after: str
) -> None:
    with pytest.raises(InvalidInput, match=BIDI_REASON):
        free_text(before + control + after, "note")


@given(PLAIN, st.sampled_from(BIDI_MARKS), PLAIN)
def test_free_text_keeps_the_implicit_direction_marks(before: str, mark: str, after: str) -> None:
    """RLM, LRM and ALM are typed by people writing Arabic or Hebrew and reverse nothing."""
    assert free_text(before + mark + after, "note") == before + mark + after


URL_SAFE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~/", max_size=40)


@given(URL_SAFE, st.sampled_from(BIDI_CONTROLS + BIDI_MARKS), URL_SAFE)
def test_a_url_with_a_bidirectional_control_or_mark_anywhere_in_its_path_is_refused(
    before: str, control: str, after: str
) -> None:
    with pytest.raises(InvalidInput, match=f"^url {BIDI_REASON} \\(U\\+{ord(control):04X}\\)"):
        normalise_url(f"https://example.com/{before}{control}{after}")


def test_the_spoofed_extension_of_the_issue_is_refused() -> None:
    with pytest.raises(InvalidInput, match=BIDI_REASON):
        normalise_url("https://example.com/abc\u202egpj.exe")


@given(st.sampled_from(BIDI_CONTROLS), st.text(alphabet="abc. ", max_size=10))
def test_a_bidirectional_control_in_a_record_is_found_by_its_field(control: str, text: str) -> None:
    """Raw in the JSON (as orjson writes it) or escaped, the record's walk finds it."""
    record = {"reason": text + control + text, "id": "x"}
    for payload in (
        orjson.dumps(record),
        orjson.dumps(record).decode().encode("ascii", "backslashreplace"),
    ):
        problem = control_character_in(payload, record)
        assert problem is not None
        assert str(problem).startswith(f"reason {BIDI_REASON}")


def test_a_control_character_is_found_in_a_record_by_its_field() -> None:
    record = {"reason": "gone", "hosting": {"names": ["ok", "bad\x1b[0m"]}}
    found = control_character_in(orjson.dumps(record), record)
    assert str(found).startswith("hosting.names[1] contains a control character (U+001B)")
    clean = {"reason": "line\nline\ttab \\u0041 \u00e9"}
    assert control_character_in(orjson.dumps(clean), clean) is None
    skipped = {"hosting": {"abuse_contact": "a@b.example\r\n"}}
    found = control_character_in(orjson.dumps(skipped), skipped)
    assert str(found).startswith("hosting.abuse_contact contains a control character")
    skip = frozenset({"hosting.abuse_contact"})
    assert control_character_in(orjson.dumps(skipped), skipped, skip) is None
