"""Addresses and free text from outside the node: what is taken, what is refused."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.contacts import (
    abuse_contact,
    control_character_in,
    email_address,
    free_text,
    public_contact,
)
from node.errors import InvalidInput

REFUSED = [chr(c) for c in range(0x20) if chr(c) not in "\n\t"]
REFUSED += [chr(c) for c in range(0x7F, 0xA0)] + ["\u2028", "\u2029"]


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


@given(st.text(), st.sampled_from(REFUSED), st.text())
def test_free_text_refuses_every_control_character_but_newline_and_tab(
    before: str, control: str, after: str
) -> None:
    with pytest.raises(InvalidInput, match="contains a control character"):
        free_text(before + control + after, "note")


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))))
def test_free_text_keeps_everything_else(text: str) -> None:
    assert free_text(text + "\n\t" + text, "note") == text + "\n\t" + text


def test_a_control_character_is_found_in_a_record_by_its_field() -> None:
    record = {"reason": "gone", "hosting": {"names": ["ok", "bad\x1b[0m"]}}
    assert control_character_in(orjson.dumps(record), record) == "hosting.names[1]"
    clean = {"reason": "line\nline\ttab \\u0041 \u00e9"}
    assert control_character_in(orjson.dumps(clean), clean) is None
    skipped = {"hosting": {"abuse_contact": "a@b.example\r\n"}}
    assert control_character_in(orjson.dumps(skipped), skipped) == "hosting.abuse_contact"
    skip = frozenset({"hosting.abuse_contact"})
    assert control_character_in(orjson.dumps(skipped), skipped, skip) is None
