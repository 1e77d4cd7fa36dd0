"""Records: canonical bytes equal RFC 8785, round trips through seal/open, and strict validation."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import orjson
import pytest
import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from keys import canonical_json
from protocol import (
    Action,
    ActionCode,
    Assessment,
    Category,
    Hosting,
    HostingAddress,
    MemoryReplayGuard,
    Receipt,
    RecordError,
    Report,
    Tlp,
    Verdict,
    Withdrawal,
    open_envelope,
    parse_record,
    record_bytes,
    seal,
)
from protocol.records import ContentHash, HashAlgorithm, LocationBasis
from tests.factories import NOW, Directory, make_node, sample_report

AnyRecord = Report | Action | Withdrawal | Receipt

PROPERTY = settings(max_examples=75, deadline=None)
SENDER = make_node("fr-pdc", "FR", NOW - timedelta(days=1))
RECIPIENT = make_node("de-eco", "DE", NOW - timedelta(days=1))

# --- strategies ------------------------------------------------------------------------------

# Any code point a str can carry through UTF-8: everything but lone surrogates.
CHARS = st.characters(exclude_categories=["Cs"])
ASTRAL = st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF, exclude_categories=["Cs"])
# The URL pattern forbids Unicode White_Space; every such code point is in Cc, Zs, Zl or Zp.
URL_CHARS = st.characters(exclude_categories=["Cs", "Cc", "Zs", "Zl", "Zp"])


def texts(max_size: int, min_size: int = 0) -> st.SearchStrategy[str]:
    """Unicode text, with a fair share of non-BMP strings (emoji, CJK extension, math letters)."""
    return st.one_of(
        st.text(CHARS, min_size=min_size, max_size=max_size),
        st.text(ASTRAL, min_size=max(min_size, 1), max_size=min(max_size, 12)),
        st.lists(st.sampled_from(["a", "é", "😀", "\U0001d518", "\x00", "\u2028", '"', "\\"]))
        .map("".join)
        .filter(lambda s: min_size <= len(s) <= max_size),
    )


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


NODE_IDS = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,62}", fullmatch=True)
COUNTRIES = st.from_regex(r"[A-Z]{2}", fullmatch=True)
ZONES = st.one_of(
    st.just(UTC),
    st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
        lambda minutes: timezone(timedelta(minutes=minutes))
    ),
)
TIMESTAMPS = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES
)
URLS = st.builds(
    lambda scheme, rest: f"{scheme}://{rest}",
    st.sampled_from(["http", "https"]),
    st.text(URL_CHARS, min_size=1, max_size=80),
)
SHORT = texts(256)
LONG = texts(600)

ASSESSMENTS = st.builds(
    Assessment,
    verdict=st.sampled_from(Verdict),
    category=st.sampled_from(Category),
    legal_basis=optional(SHORT),
    victim_age_group=optional(st.sampled_from(["infant_toddler", "prepubescent", "pubescent"])),
    flags=st.lists(st.from_regex(r"[a-z_]{1,32}", fullmatch=True), max_size=4),
)
ADDRESSES = st.builds(
    HostingAddress,
    ip=st.ip_addresses().map(str),
    country=optional(COUNTRIES),
    basis=optional(st.sampled_from(LocationBasis)),
    source=optional(SHORT),
    source_date=optional(SHORT),
    asn=optional(st.integers(min_value=0, max_value=2**32 - 1)),
    network_name=optional(SHORT),
    cdn=st.booleans(),
)
HOSTINGS = st.builds(
    Hosting,
    addresses=st.lists(ADDRESSES, max_size=3),
    countries=st.lists(COUNTRIES, max_size=3),
    abuse_contact=optional(SHORT),
    cdn=st.booleans(),
    traced_at=optional(TIMESTAMPS),
)
HASHES = st.builds(
    ContentHash,
    alg=st.sampled_from(HashAlgorithm),
    value=st.from_regex(r"[0-9a-f]{32,256}", fullmatch=True),
)


def reports(authors: st.SearchStrategy[str]) -> st.SearchStrategy[Report]:
    return st.builds(
        Report,
        id=st.uuids(),
        origin=authors,
        seq=st.integers(min_value=1, max_value=2**53 - 1),
        local_ref=SHORT,
        received_at=TIMESTAMPS,
        assessed_at=optional(TIMESTAMPS),
        url=URLS,
        item_urls=st.lists(URLS, max_size=3),
        content_type=optional(SHORT),
        site_type=optional(SHORT),
        assessment=ASSESSMENTS,
        hosting=HOSTINGS,
        hashes=st.lists(HASHES, max_size=3),
        tlp=st.sampled_from(Tlp),
        notes=optional(LONG),
    )


def actions(authors: st.SearchStrategy[str]) -> st.SearchStrategy[Action]:
    return st.builds(
        Action,
        id=st.uuids(),
        report_id=st.uuids(),
        report_origin=NODE_IDS,
        code=st.sampled_from(ActionCode),
        at=TIMESTAMPS,
        by=authors,
        analyst=optional(SHORT),
        country=COUNTRIES,
        reason=optional(LONG),
    )


def withdrawals(authors: st.SearchStrategy[str]) -> st.SearchStrategy[Withdrawal]:
    return st.builds(
        Withdrawal, id=st.uuids(), report_id=st.uuids(), origin=authors, at=TIMESTAMPS, reason=LONG
    )


def receipts(authors: st.SearchStrategy[str]) -> st.SearchStrategy[Receipt]:
    return st.builds(
        Receipt,
        id=st.uuids(),
        txn_id=st.from_regex(r"[A-Za-z0-9_-]{8,64}", fullmatch=True),
        by=authors,
        at=TIMESTAMPS,
        accepted=st.lists(st.from_regex(r"[0-9a-f]{64}", fullmatch=True), max_size=5),
    )


def records(authors: st.SearchStrategy[str] = NODE_IDS) -> st.SearchStrategy[AnyRecord]:
    return st.one_of(reports(authors), actions(authors), withdrawals(authors), receipts(authors))


# Fraktur "Unicode", an emoji, a CJK extension B ideograph, control and separator characters.
ASTRAL_TEXT = (
    "\U0001d518\U0001d52b\U0001d526\U0001d520\U0001d52c\U0001d521\U0001d522 \U0001f600 "
    '\U0002000b \x00\x1f\x7f\u2028 "quoted" \\ \u00e9'
)
ASTRAL_REPORT = Report.model_validate(
    {
        **sample_report(origin=SENDER.node_id).model_dump(),
        "notes": ASTRAL_TEXT,
        "local_ref": "\U0001f600",
    }
)


# --- properties ------------------------------------------------------------------------------


@PROPERTY
@given(record=records())
@example(record=sample_report())
@example(record=ASTRAL_REPORT)
def test_record_bytes_are_rfc8785_canonical(record: AnyRecord) -> None:
    payload = record_bytes(record)
    assert payload == rfc8785.dumps(orjson.loads(payload))


@PROPERTY
@given(record=records())
@example(record=ASTRAL_REPORT)
def test_parse_record_inverts_record_bytes(record: AnyRecord) -> None:
    payload = record_bytes(record)
    assert parse_record(payload) == record
    assert record_bytes(parse_record(payload)) == payload


@PROPERTY
@given(record=records(st.just(SENDER.node_id)))
@example(record=ASTRAL_REPORT)
def test_seal_open_round_trip_returns_an_equal_record(record: AnyRecord) -> None:
    target = RECIPIENT.keys.current_encryption(NOW)
    frame = seal(
        record,
        sender=SENDER.node_id,
        signing_key=SENDER.keys.current_signing(NOW),
        recipient=RECIPIENT.node_id,
        recipient_kid=target.kid,
        recipient_key=target.private.public_key(),
        msg_id=uuid4(),
        now=NOW,
    )
    opened = open_envelope(
        frame,
        recipient=RECIPIENT.node_id,
        keys=RECIPIENT.keys,
        peers=Directory(SENDER, RECIPIENT),
        replay=MemoryReplayGuard(),
        now=NOW,
    )
    assert opened.record == record
    assert opened.payload == record_bytes(record)


def test_every_enum_value_round_trips() -> None:
    base = sample_report()
    produced: list[AnyRecord] = []
    for verdict in Verdict:
        for category in Category:
            assessment = Assessment(verdict=verdict, category=category)
            produced.append(base.model_copy(update={"assessment": assessment}))
    produced += [base.model_copy(update={"tlp": tlp}) for tlp in Tlp]
    produced += [
        Action(
            id=uuid4(),
            report_id=base.id,
            report_origin=base.origin,
            code=code,
            at=NOW,
            by="de-eco",
            country="DE",
        )
        for code in ActionCode
    ]
    for record in produced:
        payload = record_bytes(record)
        assert parse_record(payload) == record
        assert payload == rfc8785.dumps(orjson.loads(payload))
    assert {str(r.tlp) for r in produced if isinstance(r, Report)} == {str(t) for t in Tlp}


def test_none_fields_are_left_out_of_the_payload() -> None:
    withdrawal = Withdrawal(id=uuid4(), report_id=uuid4(), origin="fr-pdc", at=NOW, reason="x")
    action = Action(
        id=uuid4(),
        report_id=uuid4(),
        report_origin="fr-pdc",
        code="received",
        at=NOW,
        by="a",
        country="FR",
    )
    fields = orjson.loads(record_bytes(action))
    assert "analyst" not in fields
    assert "reason" not in fields
    assert parse_record(record_bytes(withdrawal)) == withdrawal


def test_timestamp_with_a_sub_minute_offset_round_trips() -> None:
    zone = timezone(timedelta(hours=5, minutes=30, seconds=15))
    withdrawal = Withdrawal(
        id=uuid4(),
        report_id=uuid4(),
        origin="fr-pdc",
        at=datetime(2026, 1, 1, tzinfo=zone),
        reason="x",
    )
    parsed = parse_record(record_bytes(withdrawal))
    assert isinstance(parsed, Withdrawal)
    assert parsed.at == withdrawal.at


# --- refusals --------------------------------------------------------------------------------


def report_fields(**changes: Any) -> dict[str, Any]:
    fields = sample_report().model_dump()
    fields.update(changes)
    return fields


def payload_with(path: tuple[str | int, ...], value: Any) -> bytes:
    """The canonical payload of the sample report with one member replaced (or added)."""
    fields = orjson.loads(record_bytes(sample_report()))
    node = fields
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def test_sample_payload_helper_yields_a_valid_record() -> None:
    parsed = parse_record(payload_with(("notes",), "still valid"))
    assert isinstance(parsed, Report)
    assert parsed.notes == "still valid"


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        pytest.param(Report, report_fields(), id="report"),
        pytest.param(
            Withdrawal,
            {"id": uuid4(), "report_id": uuid4(), "origin": "fr-pdc", "at": NOW, "reason": "x"},
            id="withdrawal",
        ),
        pytest.param(
            Receipt,
            {"id": uuid4(), "txn_id": "txn-0001", "by": "fr-pdc", "at": NOW, "accepted": []},
            id="receipt",
        ),
        pytest.param(Assessment, {"verdict": "baseline", "category": "csam"}, id="assessment"),
    ],
)
def test_constructor_refuses_unknown_fields(model: type[Any], fields: dict[str, Any]) -> None:
    model(**fields)  # the control: valid without the extra member
    with pytest.raises(ValidationError, match="xtra"):
        model(**fields, smuggled="x")


@pytest.mark.parametrize(
    "path",
    [("smuggled",), ("assessment", "smuggled"), ("hosting", "addresses", 0, "smuggled")],
)
def test_parse_refuses_unknown_fields(path: tuple[str | int, ...]) -> None:
    with pytest.raises(RecordError):
        parse_record(payload_with(path, "x"))


@pytest.mark.parametrize(
    ("field", "value"),
    [("seq", 1.5), ("seq", float("nan")), ("seq", float("inf")), ("local_ref", 1.5)],
)
def test_constructor_refuses_floats(field: str, value: float) -> None:
    with pytest.raises(ValidationError):
        Report(**report_fields(**{field: value}))


def test_constructor_refuses_a_float_asn() -> None:
    with pytest.raises(ValidationError):
        HostingAddress(ip="192.0.2.1", asn=64496.5)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("seq",), 1.5),
        (("hosting", "addresses", 0, "asn"), 24940.25),
        (("local_ref",), 2.5),
        (("notes",), 1e300),
    ],
)
def test_parse_refuses_fractional_floats(path: tuple[str | int, ...], value: float) -> None:
    with pytest.raises(RecordError):
        parse_record(payload_with(path, value))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param(("seq",), 1.0, id="integral-float-seq"),
        pytest.param(("hosting", "addresses", 0, "asn"), 24940.0, id="integral-float-asn"),
        pytest.param(("received_at",), 1795953600.5, id="float-unix-time"),
    ],
)
def test_parse_refuses_any_json_float(path: tuple[str | int, ...], value: float) -> None:
    with pytest.raises(RecordError):
        parse_record(payload_with(path, value))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param(("seq",), True, id="bool-as-int"),
        pytest.param(("seq",), "7", id="string-as-int"),
        pytest.param(("received_at",), 1795953600, id="unix-time-as-timestamp"),
    ],
)
def test_parse_refuses_coerced_types(path: tuple[str | int, ...], value: Any) -> None:
    with pytest.raises(RecordError):
        parse_record(payload_with(path, value))


@pytest.mark.parametrize("field", ["received_at", "assessed_at"])
def test_constructor_refuses_naive_datetimes(field: str) -> None:
    with pytest.raises(ValidationError):
        Report(**report_fields(**{field: datetime(2026, 11, 29, 12, 0)}))


def test_nested_and_other_records_refuse_naive_datetimes() -> None:
    naive = datetime(2026, 11, 29, 12, 0)
    with pytest.raises(ValidationError):
        Hosting(traced_at=naive)
    with pytest.raises(ValidationError):
        Withdrawal(id=uuid4(), report_id=uuid4(), origin="fr-pdc", at=naive, reason="x")
    with pytest.raises(ValidationError):
        Receipt(id=uuid4(), txn_id="txn-0001", by="fr-pdc", at=naive, accepted=[])


@pytest.mark.parametrize("path", [("received_at",), ("assessed_at",), ("hosting", "traced_at")])
def test_parse_refuses_naive_timestamps(path: tuple[str | int, ...]) -> None:
    with pytest.raises(RecordError):
        parse_record(payload_with(path, "2026-11-29T12:00:00"))


BAD_URLS = [
    "ftp://files.example/x",
    "javascript:alert(1)",
    "https://",
    "https://a b",
    "https://tab\there",
    "https://x\n",
    "https://nbsp\u00a0here",
    "//files.example/x",
    "files.example/x",
    "HTTPS://files.example",
    "",
    "https://" + "a" * 4096,
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        Report(**report_fields(url=url))
    with pytest.raises(ValidationError):
        Report(**report_fields(item_urls=["https://ok.example/", url]))
    with pytest.raises(RecordError):
        parse_record(payload_with(("url",), url))


BAD_COUNTRIES = ["fr", "FRA", "F", "F1", "", "ÉS", " FR", "FR\n", "Fr"]


@pytest.mark.parametrize("country", BAD_COUNTRIES)
def test_bad_country_codes_are_refused(country: str) -> None:
    with pytest.raises(ValidationError):
        Action(
            id=uuid4(),
            report_id=uuid4(),
            report_origin="fr-pdc",
            code="received",
            at=NOW,
            by="de-eco",
            country=country,
        )
    with pytest.raises(ValidationError):
        HostingAddress(ip="192.0.2.1", country=country)
    with pytest.raises(ValidationError):
        Hosting(countries=["DE", country])
    with pytest.raises(RecordError):
        parse_record(payload_with(("hosting", "countries"), [country]))


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{", id="unclosed"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(b"[]", id="array"),
        pytest.param(b"null", id="null"),
        pytest.param(b"1.5", id="number"),
        pytest.param(b"{}", id="empty-object"),
        pytest.param(b'{"type":"invoice"}', id="unknown-type"),
        pytest.param(b'{"type":"report"}', id="missing-fields"),
        pytest.param(payload_with(("v",), 2), id="future-record-version"),
        pytest.param(payload_with(("id",), "not-a-uuid"), id="bad-uuid"),
        pytest.param(payload_with(("seq",), 0), id="seq-zero"),
        pytest.param(payload_with(("seq",), 2**53), id="seq-beyond-2**53"),
        pytest.param(payload_with(("origin",), "FR PDC"), id="bad-node-id"),
        pytest.param(payload_with(("tlp",), "purple"), id="unknown-tlp"),
        pytest.param(payload_with(("notes",), "x" * 8193), id="notes-too-long"),
        pytest.param(record_bytes(sample_report())[:-1], id="truncated"),
    ],
)
def test_parse_record_refuses_malformed_payloads(payload: bytes) -> None:
    with pytest.raises(RecordError):
        parse_record(payload)


# --- immutability ----------------------------------------------------------------------------


def test_records_cannot_be_mutated() -> None:
    report = sample_report()
    with pytest.raises(ValidationError, match="frozen"):
        report.seq = 2  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        report.assessment.category = Category.HATE  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        report.hosting.addresses[0].country = "FR"  # type: ignore[misc]
    receipt = Receipt(id=uuid4(), txn_id="txn-0001", by="fr-pdc", at=NOW, accepted=[])
    with pytest.raises(ValidationError, match="frozen"):
        receipt.by = "uk-iwf"  # type: ignore[misc]
    assert report == sample_report(report_id=report.id)


def test_list_fields_of_records_cannot_be_mutated() -> None:
    report = sample_report()
    with pytest.raises((AttributeError, TypeError)):
        report.item_urls.append("https://other.example/")  # type: ignore[attr-defined]
    receipt = Receipt(
        id=uuid4(),
        txn_id="txn-0001",
        by="fr-pdc",
        at=NOW,
        accepted=[hashlib.sha256(b"x").hexdigest()],
    )
    with pytest.raises((AttributeError, TypeError)):
        receipt.accepted.clear()  # type: ignore[attr-defined]


def test_canonical_json_of_a_record_dump_matches_record_bytes() -> None:
    """The key layer's canonical form and the record payload are the same bytes."""
    report = sample_report()
    assert canonical_json(report.model_dump(mode="json", exclude_none=True)) == record_bytes(report)
